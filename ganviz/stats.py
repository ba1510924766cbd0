"""Streaming, mergeable per-unit statistics.

Every statistic here runs on the device of the tensors given to it, keeps a
state whose size does not grow with the number of images added, and follows
one protocol:

* ``add(...)`` folds in a batch;
* ``merge(other)`` folds in a statistic computed over disjoint data (in place,
  returns ``self``), so that the result is that of one pass over all data;
* ``state_dict()`` returns only numpy arrays, ints, floats and strings, so it
  can be written with ``np.savez``/json without pickle; ``load_state_dict(d)``
  and the classmethod ``from_state_dict(d)`` restore it;
* ``to_(device)`` moves the state in place.

:func:`save_stats` / :func:`load_stats` store several named statistics in one
``.npz`` file, written atomically.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

from .cache import atomic_write

__all__ = [
    "Stat",
    "TopK",
    "Quantile",
    "IoUTally",
    "Mean",
    "Variance",
    "merge_all",
    "save_stats",
    "load_stats",
]

S = TypeVar("S", bound="Stat")
Device = Union[str, torch.device, None]

_REGISTRY: Dict[str, type] = {}
_FORMAT = 1


# ----------------------------------------------------------------- helpers
def _np(t: Tensor) -> np.ndarray:
    """A CPU numpy copy of ``t`` that does not alias the statistic's state."""
    return t.detach().cpu().clone().numpy()


def _tensor(a: Any, device: Device = None) -> Tensor:
    return torch.tensor(np.asarray(a), device=device)


def _int(v: Any) -> int:
    return int(np.asarray(v).item())


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    """Working dtype for floating data: float64 stays, everything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _as_samples(x: Tensor, name: str = "x") -> Tensor:
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, C], got {tuple(x.shape)}")
    return x.detach()


def _feature_map_samples(x: Tensor) -> Tensor:
    """[N, C, *spatial] -> [N * prod(spatial), C]."""
    if x.dim() < 2:
        raise ValueError(f"feature map must have shape [N, C, ...], got {tuple(x.shape)}")
    return x.detach().movedim(1, -1).reshape(-1, x.shape[1])


# -------------------------------------------------------------- protocol
class Stat:
    """Base class: the shared add / merge / state_dict protocol."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def merge(self: S, other: S) -> S:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self: S, d: Mapping[str, Any]) -> S:
        raise NotImplementedError

    def to_(self: S, device: Device) -> S:
        """Move every tensor of the state to ``device`` (in place)."""
        for name, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(self, name, value.to(device))
            elif isinstance(value, list) and value and isinstance(value[0], Tensor):
                setattr(self, name, [v.to(device) for v in value])
        return self

    @classmethod
    def from_state_dict(cls: type, d: Mapping[str, Any], device: Device = None) -> "Stat":
        """Build a statistic from ``state_dict()`` output (optionally on ``device``)."""
        obj = cls.__new__(cls)
        obj.load_state_dict(d)
        if device is not None:
            obj.to_(device)
        return obj

    def _check_type(self, other: "Stat") -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")


class _SampleStat(Stat):
    """Statistics fed with samples ``x[N, C]``."""

    def add_feature_map(self, x: Tensor) -> None:
        """Add every spatial position of ``x[N, C, H, W]`` as one sample."""
        self.add(_feature_map_samples(x))


# ------------------------------------------------------------------- TopK
class TopK(Stat):
    """Per-unit k largest values and the (global) image indices they came from.

    Ties are broken deterministically: the smaller image index ranks first.
    NaN values are treated as ``-inf``.
    """

    def __init__(self, k: int = 100) -> None:
        if k < 1:
            raise ValueError("k must be positive")
        self.k = int(k)
        self.count = 0
        self._values: Optional[Tensor] = None  # [C, k_eff], sorted descending
        self._indices: Optional[Tensor] = None  # [C, k_eff] int64

    @property
    def num_units(self) -> Optional[int]:
        return None if self._values is None else self._values.shape[0]

    def add(self, values: Tensor, index: Optional[Tensor] = None) -> None:
        """Add ``values[N, C]`` of images ``index[N]`` (default: running count)."""
        values = _as_samples(values, "values")
        n, c = values.shape
        if self._values is not None:
            if c != self._values.shape[0]:
                raise ValueError(f"expected {self._values.shape[0]} units, got {c}")
            values = values.to(self._values.device, self._values.dtype)
        elif values.is_floating_point():
            values = values.to(_float_dtype(values.dtype))
        if index is None:
            index = torch.arange(self.count, self.count + n, device=values.device)
        index = index.detach().to(values.device, torch.int64).reshape(-1)
        if index.numel() != n:
            raise ValueError(f"index has {index.numel()} entries for {n} rows")
        if values.is_floating_point():
            values = values.masked_fill(values.isnan(), float("-inf"))
        self._fold(values.t(), index.expand(c, n))
        self.count += n

    def _fold(self, v: Tensor, i: Tensor) -> None:
        if self._values is not None:
            v = torch.cat([self._values, v], 1)
            i = torch.cat([self._indices, i], 1)
        # Sort by index, then stably by value: equal values keep index order.
        order = i.argsort(dim=1, stable=True)
        v, i = v.gather(1, order), i.gather(1, order)
        order = v.argsort(dim=1, descending=True, stable=True)[:, : self.k]
        self._values, self._indices = v.gather(1, order), i.gather(1, order)

    def result(self) -> Tuple[Tensor, Tensor]:
        """``(values[C, k_eff], indices[C, k_eff])``, sorted descending."""
        if self._values is None:
            raise ValueError("TopK is empty")
        return self._values.clone(), self._indices.clone()

    def merge(self, other: "TopK") -> "TopK":
        self._check_type(other)
        if other.k != self.k:
            raise ValueError(f"cannot merge TopK with k={other.k} into k={self.k}")
        if other._values is None:
            return self
        if self._values is None:
            self._values, self._indices = other._values.clone(), other._indices.clone()
        else:
            if other._values.shape[0] != self._values.shape[0]:
                raise ValueError("number of units differs")
            dev, dt = self._values.device, self._values.dtype
            self._fold(other._values.to(dev, dt), other._indices.to(dev))
        self.count += other.count
        return self

    def state_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"k": self.k, "count": self.count}
        if self._values is not None:
            d["values"] = _np(self._values)
            d["indices"] = _np(self._indices)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> "TopK":
        self.k, self.count = _int(d["k"]), _int(d["count"])
        self._values = _tensor(d["values"]) if "values" in d else None
        self._indices = _tensor(d["indices"]).long() if "indices" in d else None
        return self


# --------------------------------------------------------------- Quantile
def _sort_last(x: Tensor) -> Tensor:
    """``x`` sorted along its last dim; numpy's sort for CPU floats (many times faster than torch's there)."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.sort(x.numpy(), axis=-1))
    return x.sort(dim=-1).values


class Quantile(_SampleStat):
    """Streaming per-unit quantile sketch (deterministic "merge and compact").

    Level ``h`` holds samples of weight ``2**h``.  Whenever ``resolution``
    samples have gathered in a level, they are sorted and every other one is
    kept (the offset alternates with a per-level counter) and pushed to level
    ``h + 1``.  Each level adds a rank error of at most ``n / resolution``;
    alternating offsets make these errors largely cancel, so in practice the
    rank error is well below ``1 / resolution``.  Memory per unit is
    ``O(resolution * log2(n / resolution))``.  All units share sample counts,
    so the state of ``C`` units is one ``[C, m]`` tensor per level.

    NaN samples are not supported.
    """

    def __init__(self, resolution: int = 4096) -> None:
        if resolution < 2 or resolution % 2:
            raise ValueError("resolution must be an even number >= 2")
        self.resolution = int(resolution)
        self.count = 0
        self.levels: List[Tensor] = []  # level h: [C, m_h], weight 2**h
        self.compactions: List[int] = []  # compactions done per level
        self._min: Optional[Tensor] = None
        self._max: Optional[Tensor] = None
        self._sum: Optional[Tensor] = None  # float64, for mean()

    @property
    def num_units(self) -> Optional[int]:
        return None if self._min is None else self._min.shape[0]

    @property
    def num_stored(self) -> int:
        """Number of samples per unit currently held in the sketch."""
        return sum(lvl.shape[1] for lvl in self.levels)

    def add(self, x: Tensor) -> None:
        """Add samples ``x[N, C]`` (N samples of C units)."""
        x = _as_samples(x)
        n, c = x.shape
        if self._min is None:
            dt = _float_dtype(x.dtype) if x.is_floating_point() else torch.float32
            self._min = torch.full((c,), float("inf"), dtype=dt, device=x.device)
            self._max = torch.full((c,), float("-inf"), dtype=dt, device=x.device)
            self._sum = torch.zeros(c, dtype=torch.float64, device=x.device)
        elif c != self._min.shape[0]:
            raise ValueError(f"expected {self._min.shape[0]} units, got {c}")
        if n == 0:
            return
        xt = x.t().to(self._min.device, self._min.dtype)  # [C, N]
        self._min = torch.minimum(self._min, xt.min(1).values)
        self._max = torch.maximum(self._max, xt.max(1).values)
        self._sum += xt.sum(1, dtype=torch.float64)
        self.count += n
        self._push(0, xt)

    def _push(self, h: int, items: Tensor) -> None:
        """Append ``items[C, m]`` of weight ``2**h`` to level ``h``, compacting."""
        r = self.resolution
        c = items.shape[0]
        while items.shape[1]:
            if h == len(self.levels):
                self.levels.append(items.new_empty((c, 0)))
                self.compactions.append(0)
            buf = torch.cat([self.levels[h], items], 1) if self.levels[h].shape[1] else items
            nfull = buf.shape[1] // r
            if nfull == 0:
                self.levels[h] = buf
                return
            self.levels[h] = buf[:, nfull * r :].clone()
            pairs = _sort_last(buf[:, : nfull * r].reshape(c, nfull, r))
            pairs = pairs.view(c, nfull, r // 2, 2)
            odd = torch.arange(nfull, device=buf.device).add_(self.compactions[h]) % 2 == 1
            kept = torch.where(odd.view(1, nfull, 1), pairs[..., 1], pairs[..., 0])
            self.compactions[h] += nfull
            items = kept.reshape(c, -1)
            h += 1

    def _check_nonempty(self) -> None:
        if self.count == 0:
            raise ValueError("Quantile is empty")

    def _sorted_weighted(self) -> Tuple[Tensor, Tensor]:
        """Sorted stored values ``[C, M]`` and their weights ``[C, M]`` (float64)."""
        vals = torch.cat(self.levels, 1)
        w = torch.cat(
            [
                torch.full((lvl.shape[1],), float(2**h), dtype=torch.float64, device=vals.device)
                for h, lvl in enumerate(self.levels)
            ]
        )
        vals, order = vals.sort(dim=1)
        return vals, w.expand_as(order).gather(1, order)

    def quantiles(self, q: Union[float, Sequence[float], Tensor]) -> Tensor:
        """Estimated quantiles: ``[C, Q]`` for a 1-d ``q``, ``[C]`` for a scalar.

        Matches ``torch.quantile`` (linear interpolation) while no compaction
        has happened yet.
        """
        self._check_nonempty()
        qt = torch.as_tensor(q, dtype=torch.float64, device=self._min.device)
        scalar = qt.dim() == 0
        qt = qt.reshape(-1)
        if ((qt < 0) | (qt > 1)).any():
            raise ValueError("quantiles must lie in [0, 1]")
        vals, w = self._sorted_weighted()
        c = vals.shape[0]
        # Each stored sample sits at the centre of the rank range it stands for;
        # exact min and max anchor both ends.
        centers = w.cumsum(1) - w / 2
        n = float(self.count)
        ends = torch.tensor([0.5, n - 0.5], dtype=torch.float64, device=vals.device)
        centers = torch.cat([ends[:1].expand(c, 1), centers, ends[1:].expand(c, 1)], 1)
        vals = torch.cat([self._min[:, None], vals, self._max[:, None]], 1).double()
        target = (qt * (n - 1) + 0.5).expand(c, -1).contiguous()
        hi = torch.searchsorted(centers, target).clamp_(max=centers.shape[1] - 1)
        lo = (hi - 1).clamp_(min=0)
        c_lo, c_hi = centers.gather(1, lo), centers.gather(1, hi)
        v_lo, v_hi = vals.gather(1, lo), vals.gather(1, hi)
        gap = c_hi - c_lo
        t = torch.where(gap > 0, (target - c_lo) / gap.clamp(min=1e-300), torch.zeros_like(gap))
        res = v_lo + t.clamp(0, 1) * (v_hi - v_lo)
        res = torch.minimum(torch.maximum(res, vals[:, :1]), vals[:, -1:]).to(self._min.dtype)
        return res[:, 0] if scalar else res

    def min(self) -> Tensor:
        """Exact per-unit minimum ``[C]``."""
        self._check_nonempty()
        return self._min.clone()

    def max(self) -> Tensor:
        """Exact per-unit maximum ``[C]``."""
        self._check_nonempty()
        return self._max.clone()

    def mean(self) -> Tensor:
        """Exact per-unit mean ``[C]``."""
        self._check_nonempty()
        return (self._sum / self.count).to(self._min.dtype)

    def merge(self, other: "Quantile") -> "Quantile":
        self._check_type(other)
        if other.resolution != self.resolution:
            raise ValueError("cannot merge sketches of different resolution")
        if other._min is None:
            return self
        if self._min is None:
            self.__dict__.update(copy.deepcopy(other.__dict__))
            return self
        if other._min.shape[0] != self._min.shape[0]:
            raise ValueError("number of units differs")
        dev, dt = self._min.device, self._min.dtype
        self._min = torch.minimum(self._min, other._min.to(dev, dt))
        self._max = torch.maximum(self._max, other._max.to(dev, dt))
        self._sum += other._sum.to(dev)
        self.count += other.count
        for h, lvl in enumerate(other.levels):
            self._push(h, lvl.to(dev, dt))
        return self

    def state_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "resolution": self.resolution,
            "count": self.count,
            "num_levels": len(self.levels),
            "compactions": np.asarray(self.compactions, dtype=np.int64),
        }
        if self._min is not None:
            d.update(min=_np(self._min), max=_np(self._max), sum=_np(self._sum))
        for h, lvl in enumerate(self.levels):
            d[f"level_{h}"] = _np(lvl)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> "Quantile":
        self.resolution, self.count = _int(d["resolution"]), _int(d["count"])
        self.compactions = [int(v) for v in np.asarray(d["compactions"]).reshape(-1)]
        self.levels = [_tensor(d[f"level_{h}"]) for h in range(_int(d["num_levels"]))]
        has = "min" in d
        self._min = _tensor(d["min"]) if has else None
        self._max = _tensor(d["max"]) if has else None
        self._sum = _tensor(d["sum"]).double() if has else None
        return self


# --------------------------------------------------------------- IoUTally
class IoUTally(Stat):
    """Pixel tallies for Network Dissection IoU between units and concepts.

    Keeps (int64, exact) per-unit active-pixel counts ``unit_area[C]``,
    per-concept pixel counts ``concept_area[K]`` and ``intersection[C, K]``.
    Label pixels equal to ``ignore_index`` belong to no concept.
    """

    def __init__(
        self,
        num_units: int,
        num_concepts: int,
        ignore_index: int = -1,
        chunk_bytes: int = 1 << 28,
        device: Device = None,
    ) -> None:
        self.num_units, self.num_concepts = int(num_units), int(num_concepts)
        self.ignore_index = int(ignore_index)
        self.chunk_bytes = int(chunk_bytes)
        self.unit_area = torch.zeros(num_units, dtype=torch.int64, device=device)
        self.concept_area = torch.zeros(num_concepts, dtype=torch.int64, device=device)
        self.intersection = torch.zeros(
            num_units, num_concepts, dtype=torch.int64, device=device
        )
        self.pixels = 0  # pixels counted (valid ones)
        self.images = 0

    @property
    def device(self) -> torch.device:
        return self.unit_area.device

    def add(
        self,
        unit_masks: Tensor,
        concept_labels: Tensor,
        valid: Optional[Tensor] = None,
    ) -> None:
        """Tally one batch.

        ``unit_masks``: ``[N, C, H, W]`` (nonzero = active).  ``concept_labels``:
        int ``[N, H, W]`` or ``[N, L, H, W]`` (concept index per pixel, ``L``
        label layers), or bool multi-hot ``[N, K, H, W]``.  ``valid``: optional
        bool ``[N, H, W]``; pixels outside it are not counted at all.
        """
        if unit_masks.dim() != 4 or unit_masks.shape[1] != self.num_units:
            raise ValueError(f"unit_masks must be [N, {self.num_units}, H, W]")
        n, c, hgt, wid = unit_masks.shape
        if self.images == 0 and unit_masks.device != self.device:
            self.to_(unit_masks.device)
        dev = self.device
        masks = unit_masks.detach().to(dev)
        masks = masks if masks.dtype == torch.bool else masks != 0
        labels = concept_labels.detach().to(dev)
        multihot = labels.dtype == torch.bool
        if multihot:
            if labels.shape != (n, self.num_concepts, hgt, wid):
                raise ValueError(f"bool labels must be [N, {self.num_concepts}, H, W]")
        else:
            if labels.is_floating_point():
                raise TypeError("concept labels must be integer or bool")
            if labels.dim() == 3:
                labels = labels[:, None]
            if labels.dim() != 4 or labels.shape[0] != n or labels.shape[2:] != (hgt, wid):
                raise ValueError("int labels must be [N, H, W] or [N, L, H, W]")
            labels = labels.long()
            bad = (labels != self.ignore_index) & ((labels < 0) | (labels >= self.num_concepts))
            if bad.any():
                raise ValueError("concept label out of range")
        if valid is not None:
            valid = valid.detach().to(dev, torch.bool)
            if valid.shape != (n, hgt, wid):
                raise ValueError("valid must be [N, H, W]")
        # Images per chunk: bound memory, and keep float32 sums below 2**24 (exact).
        k_est = self.num_concepts if multihot else min(self.num_concepts, 512)
        per_image = hgt * wid
        step = max(1, min(self.chunk_bytes // (4 * per_image * (c + k_est)), (1 << 24) // per_image))
        for s in range(0, n, step):
            e = min(n, s + step)
            self._add_chunk(masks[s:e], labels[s:e], None if valid is None else valid[s:e], multihot)
        self.images += n

    def _add_chunk(self, masks: Tensor, labels: Tensor, valid: Optional[Tensor], multihot: bool) -> None:
        c = masks.shape[1]
        if valid is not None:
            masks = masks & valid[:, None]
        units = masks.transpose(0, 1).reshape(c, -1)  # [C, P]
        npix = units.shape[1]
        vflat = None if valid is None else valid.reshape(-1)
        if multihot:
            onehot = labels.permute(0, 2, 3, 1).reshape(npix, -1)  # [P, K]
            if vflat is not None:
                onehot = onehot & vflat[:, None]
            present = onehot.any(0).nonzero().squeeze(1)
            onehot = onehot[:, present].float()
        else:
            lab = labels.permute(0, 2, 3, 1).reshape(npix, -1)  # [P, L]
            ok = lab != self.ignore_index
            if vflat is not None:
                ok &= vflat[:, None]
            present, inverse = torch.unique(lab[ok], return_inverse=True)
            kp = present.numel()
            cols = torch.full_like(lab, kp)
            cols[ok] = inverse
            onehot = torch.zeros(npix, kp + 1, device=lab.device)
            onehot.scatter_(1, cols, 1.0)
            onehot = onehot[:, :kp]
        self.unit_area += units.sum(1)
        self.pixels += npix if vflat is None else int(vflat.sum())
        if present.numel() == 0:
            return
        inter = units.float() @ onehot  # integer-valued, exact below 2**24
        self.intersection.index_add_(1, present, inter.round().long())
        self.concept_area.index_add_(0, present, onehot.sum(0).round().long())

    def iou(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``[C, K]`` intersection over union; 0 where the union is empty."""
        inter = self.intersection.double()
        union = self.unit_area[:, None].double() + self.concept_area[None, :].double() - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union)).to(dtype)

    def merge(self, other: "IoUTally") -> "IoUTally":
        self._check_type(other)
        if (other.num_units, other.num_concepts) != (self.num_units, self.num_concepts):
            raise ValueError("tally shapes differ")
        self.unit_area += other.unit_area.to(self.device)
        self.concept_area += other.concept_area.to(self.device)
        self.intersection += other.intersection.to(self.device)
        self.pixels += other.pixels
        self.images += other.images
        return self

    def state_dict(self) -> Dict[str, Any]:
        return {
            "num_units": self.num_units,
            "num_concepts": self.num_concepts,
            "ignore_index": self.ignore_index,
            "chunk_bytes": self.chunk_bytes,
            "pixels": self.pixels,
            "images": self.images,
            "unit_area": _np(self.unit_area),
            "concept_area": _np(self.concept_area),
            "intersection": _np(self.intersection),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> "IoUTally":
        for key in ("num_units", "num_concepts", "ignore_index", "chunk_bytes", "pixels", "images"):
            setattr(self, key, _int(d[key]))
        self.unit_area = _tensor(d["unit_area"]).long()
        self.concept_area = _tensor(d["concept_area"]).long()
        self.intersection = _tensor(d["intersection"]).long()
        return self


# ----------------------------------------------------------- Mean/Variance
class Mean(_SampleStat):
    """Per-unit running mean (float64 accumulation)."""

    def __init__(self) -> None:
        self.count = 0
        self._mean: Optional[Tensor] = None  # [C] float64

    @property
    def num_units(self) -> Optional[int]:
        return None if self._mean is None else self._mean.shape[0]

    def _batch(self, x: Tensor) -> Tuple[int, Tensor, Optional[Tensor]]:
        xd = x.double()
        return x.shape[0], xd.mean(0), None

    def add(self, x: Tensor) -> None:
        """Add samples ``x[N, C]``."""
        x = _as_samples(x)
        if self._mean is not None:
            if x.shape[1] != self._mean.shape[0]:
                raise ValueError(f"expected {self._mean.shape[0]} units, got {x.shape[1]}")
            x = x.to(self._mean.device)
        if x.shape[0] == 0:
            if self._mean is None:
                self._init(x.shape[1], x.device)
            return
        self._combine(*self._batch(x))

    def _init(self, c: int, device: Device) -> None:
        self._mean = torch.zeros(c, dtype=torch.float64, device=device)

    def _combine(self, n: int, mean: Tensor, m2: Optional[Tensor]) -> None:
        """Chan et al. parallel update with a part of ``n`` samples."""
        if self._mean is None:
            self._init(mean.shape[0], mean.device)
        if n == 0:
            return
        total = self.count + n
        delta = mean.to(self._mean.device) - self._mean
        self._update_m2(delta, n, total, m2)
        self._mean = self._mean + delta * (n / total)
        self.count = total

    def _update_m2(self, delta: Tensor, n: int, total: int, m2: Optional[Tensor]) -> None:
        pass

    def mean(self) -> Tensor:
        """Per-unit mean ``[C]`` (float64)."""
        if self._mean is None or self.count == 0:
            raise ValueError(f"{type(self).__name__} is empty")
        return self._mean.clone()

    def merge(self, other: "Mean") -> "Mean":
        self._check_type(other)
        if other._mean is None:
            return self
        if self._mean is not None and other._mean.shape != self._mean.shape:
            raise ValueError("number of units differs")
        self._combine(other.count, other._mean, getattr(other, "_m2", None))
        return self

    def state_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"count": self.count}
        if self._mean is not None:
            d["mean"] = _np(self._mean)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> "Mean":
        self.count = _int(d["count"])
        self._mean = _tensor(d["mean"]).double() if "mean" in d else None
        return self


class Variance(Mean):
    """Per-unit running mean and variance (Chan's parallel algorithm, float64)."""

    def __init__(self) -> None:
        super().__init__()
        self._m2: Optional[Tensor] = None  # [C] sum of squared deviations

    def _init(self, c: int, device: Device) -> None:
        super()._init(c, device)
        self._m2 = torch.zeros(c, dtype=torch.float64, device=device)

    def _batch(self, x: Tensor) -> Tuple[int, Tensor, Optional[Tensor]]:
        xd = x.double()
        mean = xd.mean(0)
        return x.shape[0], mean, (xd - mean).square().sum(0)

    def _update_m2(self, delta: Tensor, n: int, total: int, m2: Optional[Tensor]) -> None:
        assert m2 is not None
        self._m2 = self._m2 + m2.to(self._m2.device) + delta.square() * (self.count * n / total)

    def variance(self, unbiased: bool = True) -> Tensor:
        """Per-unit variance ``[C]`` (float64); NaN if too few samples."""
        self.mean()  # raises when empty
        dof = self.count - (1 if unbiased else 0)
        return self._m2 / dof if dof > 0 else torch.full_like(self._m2, float("nan"))

    def std(self, unbiased: bool = True) -> Tensor:
        """Per-unit standard deviation ``[C]`` (float64)."""
        return self.variance(unbiased).sqrt()

    def state_dict(self) -> Dict[str, Any]:
        d = super().state_dict()
        if self._m2 is not None:
            d["m2"] = _np(self._m2)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> "Variance":
        super().load_state_dict(d)
        self._m2 = _tensor(d["m2"]).double() if "m2" in d else None
        return self


# ---------------------------------------------------------------- helpers
def merge_all(stats: Sequence[S]) -> S:
    """Merge statistics over disjoint data into a new one (inputs untouched)."""
    if not stats:
        raise ValueError("merge_all needs at least one statistic")
    result = copy.deepcopy(stats[0])
    for other in stats[1:]:
        result.merge(other)
    return result


def save_stats(path: Union[str, os.PathLike], **stats: Stat) -> None:
    """Write named statistics to one ``.npz`` at ``path`` (exactly), atomically.

    Arrays are stored as ``"{name}/{key}"``; the class of each statistic is kept
    as json in the ``"__meta__"`` entry.  No pickle is involved.
    """
    arrays: Dict[str, np.ndarray] = {}
    kinds: Dict[str, str] = {}
    for name, stat in stats.items():
        if "/" in name or name.startswith("__"):
            raise ValueError(f"invalid statistic name {name!r}")
        if not isinstance(stat, Stat):
            raise TypeError(f"{name!r} is not a Stat")
        kinds[name] = type(stat).__name__
        for key, value in stat.state_dict().items():
            arrays[f"{name}/{key}"] = np.asarray(value)
    arrays["__meta__"] = np.asarray(json.dumps({"format": _FORMAT, "stats": kinds}))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write, suffix=".npz")


def load_stats(path: Union[str, os.PathLike], device: Device = None) -> Dict[str, Stat]:
    """Read statistics written by :func:`save_stats` (no pickle)."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        grouped: Dict[str, Dict[str, Any]] = {name: {} for name in meta["stats"]}
        for key in z.files:
            name, sep, field = key.partition("/")
            if sep and name in grouped:
                grouped[name][field] = z[key]
    out: Dict[str, Stat] = {}
    for name, kind in meta["stats"].items():
        if kind not in _REGISTRY:
            raise ValueError(f"unknown statistic class {kind!r}")
        out[name] = _REGISTRY[kind].from_state_dict(grouped[name], device)
    return out
