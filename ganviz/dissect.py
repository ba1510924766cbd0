"""Network Dissection and GAN Dissection: label the units of a layer with concepts.

A dissection makes two passes over the data, on the model's device, under ``torch.no_grad()``:

1. a per-unit quantile sketch over every spatial activation, and the top-k images of every unit ranked by the
   unit's spatial maximum;
2. per unit x concept IoU tallies: each unit map is upsampled (bilinear, ``align_corners=False``) to the
   segmentation's resolution, thresholded at the unit's ``quantile`` level (default 0.99, the top 1%) and
   compared with the concept masks.

Memory does not grow with the number of images: only streaming statistics are kept.  When the layer's
activations (and labels) of all images fit in ``activation_cache_bytes`` they are kept from pass 1 so that
pass 2 does not run the model again; otherwise pass 2 recomputes them batch by batch.

Example::

    model, info = ganviz.zoo.load("toy-classifier")
    result = dissect_classifier(model, "conv5_3", ToyWorldSource(n=2000, seed=1))
    result.concept_counts()           # {'sky': 12, 'tree': 9, ...}
    result.labels()[0]                # UnitLabel(unit=3, concept='tree', iou=0.21, runners_up=(...))
    fig = result.plot_concept_counts()

The same call under ``torchrun`` (with ``torch.distributed`` initialised) shards the images over the ranks and
gives the same result as one process: images are processed in fixed chunks whose quantile sketches are merged
in chunk order, so thresholds, top-k and IoU counts do not depend on the number of processes.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple, Union,
                    runtime_checkable)

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import ResultCache, atomic_write, callable_id, make_key, weights_hash
from .progress import progress as _progress
from .stats import IoUTally, Quantile, TopK, load_stats, save_stats
from .toyworld import CONCEPTS, RENDER_VERSION, WATERMARK_FRACTION, render_batch
from .trace import Trace, get_module

__all__ = [
    "DataSource",
    "ToyWorldSource",
    "TensorSource",
    "DatasetSource",
    "GeneratorSource",
    "as_source",
    "UnitLabel",
    "DissectionResult",
    "dissect_classifier",
    "dissect_generator",
    "DEFAULT_LEVELS",
]

_FORMAT = 1
IGNORE = -1  # label value of pixels that belong to no concept

DEFAULT_LEVELS: np.ndarray = np.unique(np.round(np.concatenate([
    np.linspace(0.0, 1.0, 101), np.linspace(0.99, 1.0, 11), [0.995, 0.999, 0.9995]]), 6))
"""Quantile levels stored with every result (a grid for histograms and for reading other thresholds)."""


# ----------------------------------------------------------------------------------------------------------
# Data sources
# ----------------------------------------------------------------------------------------------------------
@runtime_checkable
class DataSource(Protocol):
    """What a dissection reads: ``len(source)`` items, loaded by index.

    ``load(indices)`` returns ``(inputs, labels)``: for image sources ``inputs`` are float images in [0, 1]
    ``(N, 3, H, W)`` and ``labels`` a long ``(N, H, W)`` concept index per pixel (-1: no concept) or ``None``;
    for latent sources ``inputs`` are the generator's ``z``.  ``identity`` names the data exactly for caches
    (``''``: unknown, results are then not cached); ``concept_names`` names the label values (or ``None``).
    """

    identity: str
    concept_names: Optional[Sequence[str]]

    def __len__(self) -> int: ...

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]: ...


class ToyWorldSource:
    """Scenes ``0 .. n-1`` of toy world ``seed`` with their ground-truth concept labels (rendered on demand)."""

    def __init__(self, n: int = 5000, seed: int = 1, size: int = 64,
                 watermark_fraction: float = WATERMARK_FRACTION) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.seed, self.size, self.watermark_fraction = int(n), int(seed), int(size), watermark_fraction
        self.concept_names: Optional[Sequence[str]] = CONCEPTS

    def __len__(self) -> int:
        return self.n

    @property
    def identity(self) -> str:
        return (f"toyworld v{RENDER_VERSION} seed={self.seed} n={self.n} size={self.size} "
                f"watermark={self.watermark_fraction!r}")

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        images, labels, _ = render_batch(list(indices), self.seed, self.size, self.watermark_fraction)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
        return x, torch.from_numpy(labels).long()

    def __repr__(self) -> str:
        return f"ToyWorldSource(n={self.n}, seed={self.seed}, size={self.size})"


def _as_image_batch(x: Tensor) -> Tensor:
    """uint8 or float images, (N,H,W,C) or (N,C,H,W) -> float (N,C,H,W) in [0, 1]."""
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, 3, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    return x.float()


def _tensor_digest(*tensors: Optional[Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


class TensorSource:
    """Images held in memory (``(N,3,H,W)`` float in [0,1] or uint8, or ``(N,H,W,3)``), optional labels ``(N,H,W)``.

    ``identity`` defaults to a hash of the tensors' contents.
    """

    def __init__(self, images: Union[Tensor, np.ndarray], labels: Union[Tensor, np.ndarray, None] = None, *,
                 identity: Optional[str] = None, concept_names: Optional[Sequence[str]] = None) -> None:
        self.images = torch.as_tensor(images)
        self.labels = None if labels is None else torch.as_tensor(labels)
        if self.labels is not None and self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} label maps")
        self.concept_names = tuple(concept_names) if concept_names is not None else None
        self._identity = identity

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = f"tensor sha256={_tensor_digest(self.images, self.labels)}"
        return self._identity

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        labels = None if self.labels is None else self.labels[idx].long()
        return _as_image_batch(self.images[idx]), labels


class DatasetSource:
    """A map-style dataset whose items are an image or a tuple ``(image, labels, ...)``.

    A second tuple element that is a 2-d tensor/array is taken as the label map.  ``identity`` defaults to the
    dataset's ``identity`` attribute; without one, results are not cached.
    """

    def __init__(self, dataset: Any, *, identity: Optional[str] = None,
                 concept_names: Optional[Sequence[str]] = None) -> None:
        self.dataset = dataset
        self.identity = identity if identity is not None else str(getattr(dataset, "identity", "") or "")
        if concept_names is None and type(dataset).__name__ == "ToyWorld":
            concept_names = CONCEPTS
        self.concept_names = tuple(concept_names) if concept_names is not None else None

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        images, labels = [], []
        for i in indices:
            item = self.dataset[int(i)]
            lab = None
            if isinstance(item, (tuple, list)):
                img = item[0]
                if len(item) > 1 and hasattr(item[1], "shape") and len(item[1].shape) == 2:
                    lab = torch.as_tensor(item[1])
            else:
                img = item
            img = torch.as_tensor(np.asarray(img)) if not isinstance(img, Tensor) else img
            if img.ndim == 3 and img.shape[-1] in (1, 3, 4) and img.shape[0] not in (1, 3, 4):
                img = img.permute(2, 0, 1)
            images.append(img)
            labels.append(lab)
        x = _as_image_batch(torch.stack(images))
        if all(lab is not None for lab in labels):
            return x, torch.stack(labels).long()
        return x, None


class GeneratorSource:
    """Latents ``z_0 .. z_{n-1}``: standard normal, reproducible per index (independent of batching).

    ``z_i`` is row ``i % 1024`` of a block drawn from a generator seeded with ``(seed, i // 1024)``.
    """

    block = 1024

    def __init__(self, n: int = 1000, z_dim: Union[int, Sequence[int]] = 128, seed: int = 1) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.seed = int(n), int(seed)
        self.shape = (int(z_dim),) if isinstance(z_dim, (int, np.integer)) else tuple(int(s) for s in z_dim)
        self.concept_names: Optional[Sequence[str]] = None

    def __len__(self) -> int:
        return self.n

    @property
    def identity(self) -> str:
        return f"gaussian z shape={self.shape} seed={self.seed} n={self.n}"

    def _block(self, b: int) -> Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + b) % (2**63))
        return torch.randn((self.block,) + self.shape, generator=g)

    def latents(self, indices: Sequence[int]) -> Tensor:
        """``z`` for the given sample indices, ``(N, *shape)`` float32 on the CPU."""
        idx = [int(i) for i in indices]
        blocks = {b: self._block(b) for b in sorted({i // self.block for i in idx})}
        if not idx:
            return torch.empty((0,) + self.shape)
        return torch.stack([blocks[i // self.block][i % self.block] for i in idx])

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        return self.latents(indices), None


class _LatentTensor:
    """Given latents as a :class:`DataSource`."""

    concept_names = None

    def __init__(self, z: Tensor) -> None:
        self.z = z
        self.identity = f"latents sha256={_tensor_digest(z)}"

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        return self.z[torch.as_tensor(list(indices), dtype=torch.long)].float(), None


def as_source(data: Any, **kwargs: Any) -> DataSource:
    """Wrap ``data`` (a DataSource, an image tensor/array, or a torch Dataset) as a :class:`DataSource`."""
    if isinstance(data, (Tensor, np.ndarray)):
        return TensorSource(data, **kwargs)
    if hasattr(data, "load") and hasattr(data, "identity") and hasattr(data, "__len__"):
        return data
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return DatasetSource(data, **kwargs)
    raise TypeError(f"cannot read images from {type(data).__name__}; pass a DataSource, a tensor or a Dataset")


# ----------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitLabel:
    """A unit's best concept and its IoU, with the next best concepts ``((name, iou), ...)``."""

    unit: int
    concept: str
    iou: float
    runners_up: Tuple[Tuple[str, float], ...] = ()


_ARRAYS = ("thresholds", "quantile_levels", "quantile_values", "iou", "intersection", "unit_area",
           "concept_area", "topk_values", "topk_indices")


@dataclass(eq=False)
class DissectionResult:
    """Everything a dissection of one layer found; saveable as a single ``.npz`` (arrays + json, no pickle).

    Arrays: ``thresholds[C]`` (activation level of each unit's mask), ``quantile_levels[L]`` and
    ``quantile_values[C, L]`` (each unit's activation distribution), ``iou[C, K]``, the raw tallies
    ``intersection[C, K]``, ``unit_area[C]`` (active pixels) and ``concept_area[K]``, and
    ``topk_values[C, k]`` / ``topk_indices[C, k]`` (image indices into the data, by the unit's spatial max).
    """

    layer: str
    model_kind: str
    concept_names: Tuple[str, ...]
    quantile: float
    thresholds: np.ndarray
    quantile_levels: np.ndarray
    quantile_values: np.ndarray
    iou: np.ndarray
    intersection: np.ndarray
    unit_area: np.ndarray
    concept_area: np.ndarray
    topk_values: np.ndarray
    topk_indices: np.ndarray
    num_images: int
    pixels: int
    activation_size: Tuple[int, int]
    label_size: Tuple[int, int]
    data: str = ""
    model_hash: str = ""
    params: Dict[str, Any] = field(default_factory=dict)

    # -- shape ----------------------------------------------------------------------------------------------
    @property
    def num_units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def num_concepts(self) -> int:
        return int(self.iou.shape[1])

    @property
    def best_concept(self) -> np.ndarray:
        """Index of each unit's best concept ``[C]`` (ties: the lower index)."""
        return self.iou.argmax(1)

    @property
    def best_iou(self) -> np.ndarray:
        """Each unit's best IoU ``[C]``."""
        return self.iou.max(1)

    def _concept_index(self, concept: Union[str, int]) -> int:
        if isinstance(concept, (int, np.integer)):
            if not 0 <= int(concept) < self.num_concepts:
                raise IndexError(f"concept {concept} out of range 0..{self.num_concepts - 1}")
            return int(concept)
        try:
            return self.concept_names.index(concept)
        except ValueError:
            raise KeyError(f"no concept {concept!r}; concepts: {', '.join(self.concept_names)}") from None

    # -- labels ---------------------------------------------------------------------------------------------
    def label(self, unit: int, runners_up: int = 3) -> UnitLabel:
        """The label of ``unit``: best concept, its IoU and the next ``runners_up`` concepts."""
        row = self.iou[int(unit)]
        order = np.argsort(-row, kind="stable")
        best = int(order[0])
        rest = tuple((self.concept_names[int(j)], float(row[j])) for j in order[1:1 + runners_up])
        return UnitLabel(int(unit), self.concept_names[best], float(row[best]), rest)

    def labels(self, min_iou: float = 0.04, runners_up: int = 3) -> List[UnitLabel]:
        """Labels of the units whose best IoU is at least ``min_iou``, in unit order."""
        return [self.label(u, runners_up) for u in np.nonzero(self.best_iou >= min_iou)[0]]

    def units_for(self, concept: Union[str, int], n: Optional[int] = None, labelled_only: bool = False,
                  min_iou: float = 0.0) -> List[int]:
        """Units ranked by their IoU with ``concept`` (descending).

        ``labelled_only`` keeps units whose best concept it is; ``min_iou`` drops weaker units; ``n`` caps.
        """
        j = self._concept_index(concept)
        scores = self.iou[:, j]
        order = np.argsort(-scores, kind="stable")
        keep = scores[order] >= min_iou
        if labelled_only:
            keep &= self.best_concept[order] == j
        units = [int(u) for u in order[keep]]
        return units if n is None else units[:n]

    def concept_counts(self, min_iou: float = 0.04) -> Dict[str, int]:
        """Number of units per best concept among units with IoU >= ``min_iou``, most units first."""
        best, ok = self.best_concept, self.best_iou >= min_iou
        counts = np.bincount(best[ok], minlength=self.num_concepts)
        order = sorted(range(self.num_concepts), key=lambda j: (-counts[j], j))
        return {self.concept_names[j]: int(counts[j]) for j in order if counts[j] > 0}

    def level(self, q: float) -> np.ndarray:
        """Each unit's activation level at quantile ``q`` ``[C]`` (interpolated in the stored grid)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must lie in [0, 1], got {q}")
        return np.array([np.interp(q, self.quantile_levels, row) for row in self.quantile_values],
                        dtype=np.float32)

    def summary(self, min_iou: float = 0.04) -> str:
        """A few lines of text: units, interpretable units, units per concept."""
        counts = self.concept_counts(min_iou)
        lines = [f"layer {self.layer} ({self.model_kind}): {self.num_units} units, {self.num_images} images, "
                 f"threshold quantile {self.quantile}",
                 f"{sum(counts.values())} units with IoU >= {min_iou} covering {len(counts)} concepts"]
        width = max([len(c) for c in counts] + [7])
        lines += [f"  {name:<{width}} {count:4d}" for name, count in counts.items()]
        return "\n".join(lines)

    def plot_concept_counts(self, min_iou: float = 0.04, ax: Any = None, title: Optional[str] = None) -> Any:
        """Bar chart of :meth:`concept_counts`; returns a ``matplotlib.figure.Figure`` (no pyplot state)."""
        from matplotlib.figure import Figure

        counts = self.concept_counts(min_iou)
        if ax is None:
            fig = Figure(figsize=(max(4.0, 0.45 * len(counts) + 1.5), 3.2), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        names = list(counts)
        ax.bar(range(len(names)), [counts[c] for c in names], color="#4c72b0")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right")
        ax.set_ylabel("units")
        if not names:
            ax.text(0.5, 0.5, f"no unit reaches IoU {min_iou}", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title or f"which units match concepts best: {self.layer} "
                              f"({sum(counts.values())}/{self.num_units} units, IoU >= {min_iou})", fontsize=9)
        return fig

    # -- persistence ----------------------------------------------------------------------------------------
    def _meta(self) -> Dict[str, Any]:
        return {"format": _FORMAT, "layer": self.layer, "model_kind": self.model_kind,
                "concept_names": list(self.concept_names), "quantile": self.quantile,
                "num_images": self.num_images, "pixels": self.pixels,
                "activation_size": list(self.activation_size), "label_size": list(self.label_size),
                "data": self.data, "model_hash": self.model_hash, "params": self.params}

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write one ``.npz`` at exactly ``path`` (atomically): the arrays and a json ``meta`` entry."""
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        arrays["meta"] = np.asarray(json.dumps(self._meta()))

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path, write, suffix=".npz")

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "DissectionResult":
        """Read a result written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(os.fspath(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"unsupported dissection format {meta.get('format')!r}")
            return _from_state(meta, {name: z[name] for name in _ARRAYS})

    def __repr__(self) -> str:
        n_ok = int((self.best_iou >= 0.04).sum())
        return (f"DissectionResult(layer={self.layer!r}, kind={self.model_kind!r}, units={self.num_units}, "
                f"concepts={self.num_concepts}, images={self.num_images}, labelled@0.04={n_ok})")


# ----------------------------------------------------------------------------------------------------------
# Statistics helpers
# ----------------------------------------------------------------------------------------------------------
def _unit_quantiles(sketch: Quantile, levels: np.ndarray, units_per_step: int = 16) -> np.ndarray:
    """``sketch.quantiles(levels)`` as float32 numpy ``[C, L]``, a few units at a time to bound temporary memory."""
    q = torch.as_tensor(levels, dtype=torch.float64)
    c = sketch.num_units or 0
    out = []
    for u in range(0, c, units_per_step):
        part = copy.copy(sketch)  # shares nothing mutable: the sliced tensors below are new objects
        part.levels = [lvl[u:u + units_per_step] for lvl in sketch.levels]
        part._min, part._max = sketch._min[u:u + units_per_step], sketch._max[u:u + units_per_step]
        part._sum = sketch._sum[u:u + units_per_step]
        out.append(part.quantiles(q.to(sketch._min.device)).float().cpu())
    return torch.cat(out).numpy()


@dataclass
class _AxisPlan:
    """Bilinear (align_corners=False) resampling along one axis, as segments of output coordinates.

    Segment ``s`` interpolates source cells ``i0[s]`` and ``i1[s]``: output coordinate ``coords[s, r]`` gets
    ``x[i0] + lam[s, r] * (x[i1] - x[i0])``.  Unused slots point at the sink coordinate ``n_out``.
    """

    i0: Tensor
    i1: Tensor
    coords: Tensor
    lam: Tensor


def _axis_plan(n_in: int, n_out: int, device: torch.device) -> _AxisPlan:
    dst = torch.arange(n_out)
    if n_in == n_out:
        i0, lam = dst.clone(), torch.zeros(n_out)
    else:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = (scale * (dst.float() + 0.5) - 0.5).clamp(min=0)
        i0 = src.floor().long().clamp(max=n_in - 1)
        lam = (src - i0.float()).clamp(0, 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    # Coordinates that take one source cell only (borders) form their own segments, so that every
    # segment spans at most about n_out / n_in coordinates.
    alone = (lam == 0) | (i1 == i0)
    lam = torch.where(alone, torch.zeros_like(lam), lam)
    seg_key = i0 * 2 + (~alone).long()
    bounds = torch.nonzero(torch.diff(seg_key, prepend=seg_key[:1] - 1)).reshape(-1)
    lengths = torch.diff(bounds, append=torch.tensor([n_out]))
    segs: List[Tuple[int, int, List[int], List[float]]] = []
    for start, length in zip(bounds.tolist(), lengths.tolist()):
        a, b = int(i0[start]), int(i1[start]) if not bool(alone[start]) else int(i0[start])
        rows, lams = list(range(start, start + length)), lam[start:start + length].tolist()
        segs.append((a, b, rows, lams))
    width = max(len(rows) for _, _, rows, _ in segs)
    coords = torch.full((len(segs), width), n_out, dtype=torch.long)
    lams = torch.zeros(len(segs), width)
    for j, (_, _, rows, ls) in enumerate(segs):
        coords[j, :len(rows)] = torch.tensor(rows)
        lams[j, :len(rows)] = torch.tensor(ls)
    return _AxisPlan(torch.tensor([a for a, _, _, _ in segs], device=device),
                     torch.tensor([b for _, b, _, _ in segs], device=device), coords.to(device), lams.to(device))


def _tally_batch(acts: Tensor, labels: Tensor, thresholds: Tensor, tally: IoUTally,
                 plans: Dict[Tuple[int, int, int, int], Tuple[_AxisPlan, _AxisPlan, Tensor]],
                 max_values: int = 1 << 22) -> None:
    """Add one batch to ``tally``: pixels where the upsampled unit map exceeds the unit's threshold.

    Upsampled values are computed only in tiles (segment x segment) whose source cells hold a value above the
    threshold: bilinear values are convex combinations of them, so no other pixel can be active.
    """
    n, c, h, w = acts.shape
    hh, ww = labels.shape[-2:]
    k = tally.num_concepts
    key = (h, w, hh, ww)
    if key not in plans:
        py, px = _axis_plan(h, hh, acts.device), _axis_plan(w, ww, acts.device)
        # offsets[(sy * Sx + sx) * Ry * Rx + r * Rx + q]: offset of slot (r, q) of tile (sy, sx) in a padded label map
        offsets = py.coords[:, None, :, None] * (ww + 1) + px.coords[None, :, None, :]
        plans[key] = (py, px, offsets.reshape(-1))
    py, px, offsets = plans[key]
    sxn, slots = px.coords.shape[0], py.coords.shape[1] * px.coords.shape[1]
    lab = torch.where(labels < 0, torch.full_like(labels, k), labels)  # bin K: no concept
    tally.concept_area += torch.bincount(lab.reshape(-1), minlength=k + 1)[:k]
    tally.pixels += n * hh * ww
    tally.images += n
    lab = F.pad(lab, (0, 1, 0, 1), value=k + 1).reshape(-1)  # sink row/column: bin K+1, never counted
    thr = thresholds.to(acts.device, acts.dtype)
    flat = acts.reshape(n * c, h * w)
    live = (acts.amax((2, 3)) > thr[None]).reshape(-1).nonzero().squeeze(1)  # maps with any active pixel
    if live.numel() == 0:
        return
    maps = flat.index_select(0, live).view(-1, h, w)
    rows = torch.maximum(maps.index_select(1, py.i0), maps.index_select(1, py.i1))
    tile_max = torch.maximum(rows.index_select(2, px.i0), rows.index_select(2, px.i1))
    tiles = (tile_max > thr[live % c].view(-1, 1, 1)).nonzero()
    cells = maps.reshape(-1)
    bins = k + 2
    step = max(1, max_values // slots)
    counts = torch.zeros(c * bins, dtype=torch.long, device=acts.device)
    for s in range(0, tiles.shape[0], step):
        m, sy, sx = tiles[s:s + step].unbind(1)
        mi = live[m]
        ni, ci = torch.div(mi, c, rounding_mode="floor"), mi % c
        base = m * (h * w)
        y0, y1, x0, x1 = base + py.i0[sy] * w, base + py.i1[sy] * w, px.i0[sx], px.i1[sx]
        x00, x01 = cells.index_select(0, y0 + x0)[:, None], cells.index_select(0, y0 + x1)[:, None]
        x10, x11 = cells.index_select(0, y1 + x0)[:, None], cells.index_select(0, y1 + x1)[:, None]
        lx, ly = px.lam[sx], py.lam[sy]  # [T, Rx], [T, Ry]
        top = torch.addcmul(x00, lx, x01 - x00)
        bot = torch.addcmul(x10, lx, x11 - x10)
        vals = torch.addcmul(top[:, None, :], ly[:, :, None], (bot - top)[:, None, :])  # [T, Ry, Rx]
        on = (vals > thr[ci][:, None, None]).view(-1).nonzero().squeeze(1)
        if on.numel() == 0:
            continue
        t = torch.div(on, slots, rounding_mode="floor")  # tile of each active pixel, and its slot in the tile
        slot = on - t * slots
        tile_id = (sy * sxn + sx).index_select(0, t)
        pix = (ni * ((hh + 1) * (ww + 1))).index_select(0, t) + offsets.index_select(0, tile_id * slots + slot)
        counts += torch.bincount(ci.index_select(0, t) * bins + lab.index_select(0, pix), minlength=c * bins)
    counts = counts.view(c, bins)
    tally.intersection += counts[:, :k]
    tally.unit_area += counts[:, :k + 1].sum(1)


# ----------------------------------------------------------------------------------------------------------
# Distributed helpers
# ----------------------------------------------------------------------------------------------------------
class _Dist:
    """Rank/world of the current ``torch.distributed`` group (or a single process)."""

    def __init__(self, enabled: Optional[bool]) -> None:
        import torch.distributed as dist

        ready = dist.is_available() and dist.is_initialized()
        if enabled and not ready:
            raise RuntimeError("distributed=True but torch.distributed is not initialised")
        self.on = ready if enabled is None else bool(enabled)
        self.dist = dist
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def gather(self, obj: Any) -> Optional[List[Any]]:
        """Objects of all ranks, in rank order, on rank 0 (``None`` elsewhere)."""
        if not self.on:
            return [obj]
        out: Optional[List[Any]] = [None] * self.world if self.rank == 0 else None
        self.dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.on:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_(self, *tensors: Tensor) -> None:
        if self.on:
            for t in tensors:
                self.dist.all_reduce(t)


# ----------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------
def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextmanager
def _eval_mode(*models: Optional[nn.Module]) -> Iterator[None]:
    """Put models in eval mode for the block, then restore every submodule's own flag."""
    saved = [(m, m.training) for model in models if isinstance(model, nn.Module) for m in model.modules()]
    try:
        for model in models:
            if isinstance(model, nn.Module):
                model.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def _to_signed(images: Tensor) -> Tensor:
    """[0, 1] images -> [-1, 1] (the toy models' input range)."""
    return images * 2 - 1


def _identity(x: Tensor) -> Tensor:
    return x


def _segment(segmenter: Callable[[Tensor], Any], x: Tensor) -> Tuple[Tensor, Optional[int]]:
    """Run a segmenter: logits ``(N,K,H,W)`` -> ``(argmax, K)``; integer labels ``(N,H,W)`` -> ``(labels, None)``."""
    out = segmenter(x)
    if isinstance(out, Mapping):
        out = out["out"]
    if not isinstance(out, Tensor):
        raise TypeError(f"the segmenter returned {type(out).__name__}; expected a tensor")
    if out.is_floating_point():
        if out.ndim != 4:
            raise ValueError(f"segmenter logits must be (N, K, H, W), got {tuple(out.shape)}")
        return out.argmax(1), int(out.shape[1])
    if out.ndim != 3:
        raise ValueError(f"segmenter labels must be (N, H, W), got {tuple(out.shape)}")
    return out.long(), None


class _Probe:
    """Computes ``(activations, labels)`` for a batch of indices."""

    def __init__(self, model: nn.Module, layer: str, source: DataSource, kind: str, device: torch.device,
                 preprocess: Callable[[Tensor], Tensor], segmenter: Optional[Callable[[Tensor], Any]],
                 segmenter_preprocess: Callable[[Tensor], Tensor]) -> None:
        self.model, self.layer, self.source, self.kind, self.device = model, layer, source, kind, device
        self.preprocess, self.segmenter, self.seg_pre = preprocess, segmenter, segmenter_preprocess
        self.num_concepts: Optional[int] = None  # set by the first segmented batch

    def _acts(self, tr: Trace) -> Tensor:
        if not tr[self.layer].has_output:
            raise RuntimeError(f"layer {self.layer!r} did not run during the forward pass")
        acts = tr[self.layer].output
        if not isinstance(acts, Tensor) or acts.ndim != 4:
            shape = tuple(acts.shape) if isinstance(acts, Tensor) else type(acts).__name__
            raise ValueError(f"dissection needs a spatial layer output (N, C, H, W); layer {self.layer!r} "
                             f"gives {shape}")
        return acts.float()

    def _labels(self, x: Tensor) -> Tensor:
        assert self.segmenter is not None
        if isinstance(self.segmenter, nn.Module):  # it may live on another device than the model
            x = x.to(_model_device(self.segmenter))
        labels, k = _segment(self.segmenter, x)
        if k is not None:
            self.num_concepts = k
        return labels.to(self.device)

    def __call__(self, indices: Sequence[int], want_labels: bool) -> Tuple[Tensor, Optional[Tensor]]:
        inputs, labels = self.source.load(indices)
        inputs = inputs.to(self.device)
        if self.kind == "generator":
            # a full pass (for the image) may modify the layer's output in place later on: keep a copy
            with Trace(self.model, self.layer, stop=not want_labels, clone=want_labels) as tr:
                out = tr.run(inputs)
            acts = self._acts(tr)
            labels = self._labels(self.seg_pre(out)) if want_labels else None
            return acts, labels
        with Trace(self.model, self.layer, stop=True) as tr:
            tr.run(self.preprocess(inputs))
        acts = self._acts(tr)
        if not want_labels:
            return acts, None
        if self.segmenter is not None:
            return acts, self._labels(self.seg_pre(inputs))
        if labels is None:
            raise ValueError("the data carries no labels; pass segmenter= to segment the images")
        return acts, labels.to(self.device)


def _check_labels(labels: Tensor, k: int) -> Tensor:
    labels = labels.long()
    bad = (labels < IGNORE) | (labels >= k)
    if bool(bad.any()):
        v = int(labels[bad][0])
        raise ValueError(f"label value {v} outside 0..{k - 1} ({k} concept names; -1 marks no concept)")
    return labels


class _ActivationStore:
    """Keeps pass-1 activations and labels on the device when all of this process's images fit the budget.

    They go into two buffers allocated once (one allocation instead of one per batch keeps the allocator from
    fragmenting, which otherwise slows the forward passes themselves).
    """

    def __init__(self, budget: int, images: int) -> None:
        self.budget, self.images = int(budget), int(images)
        self.decided = budget <= 0 or images == 0
        self.active = False
        self.items: List[Tuple[Sequence[int], int]] = []  # (indices, offset into the buffers)
        self.acts: Optional[Tensor] = None
        self.labels: Optional[Tensor] = None
        self.used = 0

    @property
    def wants_labels(self) -> bool:
        return not self.decided or self.active

    def offer(self, indices: Sequence[int], acts: Tensor, labels: Optional[Tensor]) -> None:
        if not self.decided:
            self.decided = True
            if labels is not None:
                per_image = acts[0].numel() * acts.element_size() + labels[0].numel() * 2
                self.active = per_image * self.images <= self.budget
                if self.active:
                    self.acts = acts.new_empty((self.images,) + tuple(acts.shape[1:]))
                    self.labels = torch.empty((self.images,) + tuple(labels.shape[1:]), dtype=torch.int16,
                                              device=labels.device)
        if self.active and labels is not None:
            assert self.acts is not None and self.labels is not None
            n = acts.shape[0]
            self.acts[self.used:self.used + n] = acts
            self.labels[self.used:self.used + n] = labels
            self.items.append((indices, self.used))
            self.used += n

    def batches(self) -> Iterator[Tuple[Sequence[int], Tensor, Tensor]]:
        """The kept ``(indices, activations, labels)`` in the order they came."""
        assert self.acts is not None and self.labels is not None
        for indices, offset in self.items:
            n = len(indices)
            yield indices, self.acts[offset:offset + n], self.labels[offset:offset + n].long()

    def clear(self) -> None:
        self.items.clear()
        self.acts = self.labels = None
        self.active = False


def _batches(chunk: range, batch_size: int) -> Iterator[range]:
    for s in range(chunk.start, chunk.stop, batch_size):
        yield range(s, min(s + batch_size, chunk.stop))


def _check_args(n: int, quantile: float, k: int, batch_size: int, chunk_size: int) -> None:
    if n < 1:
        raise ValueError(f"expected at least 1 image to dissect, got n={n}")
    if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real) or not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"quantile must lie strictly between 0 and 1 (0.99 = top 1%), got {quantile!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")


@dataclass
class _Job:
    """One dissection's settings, shared by the passes."""

    model: nn.Module
    layer: str
    kind: str
    source: DataSource
    n: int
    probe: _Probe
    k: int
    quantile: float
    batch_size: int
    chunk: int
    resolution: int
    device: torch.device
    par: _Dist
    show: bool

    @property
    def chunks(self) -> List[range]:
        return [range(s, min(s + self.chunk, self.n)) for s in range(0, self.n, self.chunk)]

    @property
    def mine(self) -> List[range]:
        """This process's chunks (round robin)."""
        return self.chunks[self.par.rank::self.par.world]

    @property
    def local(self) -> int:
        return sum(len(c) for c in self.mine)


def _pass_one(job: _Job, store: _ActivationStore) -> Tuple[Quantile, TopK]:
    """Quantile sketch and top-k (complete on rank 0).

    Every chunk of images gets its own sketch, merged into the total in chunk order, so the result does not
    depend on how many processes share the chunks.
    """
    par, chunks = job.par, job.chunks
    total, topk = Quantile(job.resolution), TopK(job.k)
    with _progress(total=job.local, desc=f"dissect {job.layer}: pass 1/2", disable=not job.show) as bar:
        for r in range(math.ceil(len(chunks) / par.world)):
            ci = r * par.world + par.rank
            sketch: Optional[Quantile] = None
            if ci < len(chunks):
                sketch = Quantile(job.resolution)
                for b in _batches(chunks[ci], job.batch_size):
                    acts, labels = job.probe(b, store.wants_labels)
                    # [N*H*W, C] samples, as the transpose of a contiguous [C, N*H*W] (the sketch's layout)
                    sketch.add(acts.transpose(0, 1).reshape(acts.shape[1], -1).t())
                    topk.add(acts.amax((2, 3)), torch.as_tensor(list(b), device=job.device))
                    store.offer(b, acts, labels)
                    bar.update(len(b))
            if not par.on:
                if sketch is not None:
                    total.merge(sketch)
                continue
            parts = par.gather(None if sketch is None else sketch.state_dict())
            for p in parts or []:  # rank order = chunk order
                if p is not None:
                    total.merge(Quantile.from_state_dict(p, job.device))
    if par.on:
        parts = par.gather(topk.state_dict() if topk.count else None)
        if par.rank == 0:
            topk = TopK(job.k)
            for p in parts or []:
                if p is not None:
                    topk.merge(TopK.from_state_dict(p, job.device))
    return total, topk


def _levels(job: _Job, sketch: Optional[Quantile]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds[C], levels[L], values[C, L])``: computed on rank 0, the same on every rank."""
    shared = None
    if job.par.rank == 0:
        assert sketch is not None
        levels = np.union1d(DEFAULT_LEVELS, [job.quantile])
        values = _unit_quantiles(sketch, levels)
        shared = (values[:, int(np.searchsorted(levels, job.quantile))].copy(), levels, values)
    return job.par.broadcast(shared)


def _pass_two(job: _Job, store: _ActivationStore, thresholds: Tensor, names: Optional[List[str]]
              ) -> Tuple[IoUTally, List[str], Tuple[int, int], Tuple[int, int]]:
    """IoU tallies (summed over ranks): ``(tally, concept names, activation size, label size)``."""
    plans: Dict[Tuple[int, int, int, int], Tuple[_AxisPlan, _AxisPlan, Tensor]] = {}
    tally: Optional[IoUTally] = None
    sizes: Optional[Tuple[Tuple[int, int], Tuple[int, int]]] = None

    def add(acts: Tensor, labels: Tensor) -> None:
        nonlocal tally, names, sizes
        if names is None:
            kk = job.probe.num_concepts
            if kk is None:
                raise ValueError("the segmenter returns labels without names; pass concept_names=")
            names = list(CONCEPTS) if kk == len(CONCEPTS) else [f"concept_{j}" for j in range(kk)]
        labels = _check_labels(labels, len(names))
        if tally is None:
            tally = IoUTally(thresholds.shape[0], len(names), ignore_index=IGNORE, device=job.device)
        sizes = (tuple(acts.shape[-2:]), tuple(labels.shape[-2:]))
        _tally_batch(acts, labels, thresholds, tally, plans)

    with _progress(total=job.local, desc=f"dissect {job.layer}: pass 2/2", disable=not job.show) as bar:
        if store.active:
            for b, acts, labels in store.batches():
                add(acts, labels)
                bar.update(len(b))
            store.clear()
        else:
            store.clear()
            for c in job.mine:
                for b in _batches(c, job.batch_size):
                    acts, labels = job.probe(b, True)
                    assert labels is not None
                    add(acts, labels)
                    bar.update(len(b))
    if job.par.on:  # ranks without images learn names and sizes from the others
        known = job.par.gather((names, sizes) if tally is not None else None)
        names, sizes = job.par.broadcast(next((m for m in known or [] if m is not None), None))
        if tally is None:
            tally = IoUTally(thresholds.shape[0], len(names), ignore_index=IGNORE, device=job.device)
        counts = torch.tensor([tally.pixels, tally.images], dtype=torch.long, device=job.device)
        job.par.sum_(tally.intersection, tally.unit_area, tally.concept_area, counts)
        tally.pixels, tally.images = int(counts[0]), int(counts[1])
    assert tally is not None and names is not None and sizes is not None
    return tally, names, sizes[0], sizes[1]


def _dissect(*, model: nn.Module, layer: str, kind: str, source: DataSource, n: Optional[int],
             segmenter: Optional[Callable[[Tensor], Any]], preprocess: Callable[[Tensor], Tensor],
             segmenter_preprocess: Callable[[Tensor], Tensor], concept_names: Optional[Sequence[str]],
             batch_size: int, k: int, quantile: float, device: Optional[Union[str, torch.device]],
             cache_dir: Optional[Union[str, "os.PathLike[str]"]], progress: bool, chunk_size: int,
             sketch_resolution: int, activation_cache_bytes: int, distributed: Optional[bool]
             ) -> DissectionResult:
    # Everything that can be checked is checked before any work.
    get_module(model, layer)
    n = len(source) if n is None else int(n)
    if n > len(source):
        raise ValueError(f"n={n} but the data has only {len(source)} items")
    _check_args(n, quantile, k, batch_size, chunk_size)
    seg_module = segmenter if isinstance(segmenter, nn.Module) else None
    if device is not None:
        model.to(device)
        if seg_module is not None:
            seg_module.to(device)
    dev = _model_device(model)
    names = list(concept_names) if concept_names is not None else None
    if names is None and segmenter is None:
        if source.concept_names is None:
            raise ValueError("the data's label values have no names; pass concept_names=")
        names = list(source.concept_names)
    if names is None:
        names = list(getattr(segmenter, "concept_names", None) or []) or None
    chunk = batch_size * max(1, round(chunk_size / batch_size))
    params = {"k": k, "quantile": float(quantile), "batch_size": batch_size, "chunk": chunk,
              "sketch_resolution": sketch_resolution, "n": n}
    par = _Dist(distributed)
    model_hash = weights_hash(model) if par.rank == 0 else ""

    cache = key = None
    if cache_dir is not None:
        if not source.identity:
            warnings.warn("the data source has no identity; the result will not be cached", RuntimeWarning,
                          stacklevel=3)
        else:
            cache = ResultCache(cache_dir)
            key = make_key(format=_FORMAT, kind=kind, layer=layer, data=source.identity, concepts=names,
                           weights=model_hash, segmenter_weights=weights_hash(seg_module) if seg_module else "",
                           segmenter=callable_id(segmenter) if seg_module is None else "module",
                           preprocess=callable_id(preprocess),
                           segmenter_preprocess=callable_id(segmenter_preprocess), **params)
            key = par.broadcast(key)
            hit = cache.load(key, DissectionResult.load) if par.rank == 0 else None
            if par.on:
                state = par.broadcast(None if hit is None else _to_state(hit))
                hit = None if state is None else _from_state(*state)
            if hit is not None:
                return hit

    probe = _Probe(model, layer, source, kind, dev, preprocess, segmenter, segmenter_preprocess)
    job = _Job(model, layer, kind, source, n, probe, k, float(quantile), batch_size, chunk, sketch_resolution,
               dev, par, progress and par.rank == 0)
    resume = cache.path(key, ".pass1.npz") if cache is not None and key is not None and not par.on else None

    with torch.no_grad(), _eval_mode(model, seg_module):
        store = _ActivationStore(activation_cache_bytes, job.local)
        saved = _load_checkpoint(resume, dev)
        if saved is None:
            sketch, topk = _pass_one(job, store)
            if resume is not None:
                resume.parent.mkdir(parents=True, exist_ok=True)
                save_stats(resume, quantile=sketch, topk=topk)
        else:
            sketch, topk = saved
        thr, levels, values = _levels(job, sketch)
        tally, names, act_size, label_size = _pass_two(job, store, torch.as_tensor(thr, device=dev), names)

    state = None
    if par.rank == 0:
        top_values, top_indices = topk.result()
        result = DissectionResult(
            layer=layer, model_kind=kind, concept_names=tuple(names), quantile=float(quantile),
            thresholds=np.asarray(thr, np.float32), quantile_levels=np.asarray(levels, np.float64),
            quantile_values=np.asarray(values, np.float32), iou=tally.iou().cpu().numpy(),
            intersection=tally.intersection.cpu().numpy(), unit_area=tally.unit_area.cpu().numpy(),
            concept_area=tally.concept_area.cpu().numpy(), topk_values=top_values.float().cpu().numpy(),
            topk_indices=top_indices.cpu().numpy(), num_images=n, pixels=int(tally.pixels),
            activation_size=act_size, label_size=label_size, data=source.identity, model_hash=model_hash,
            params=params)
        if cache is not None and key is not None:
            cache.save(key, result.save)
            if resume is not None:
                resume.unlink(missing_ok=True)
        if not par.on:
            return result
        state = _to_state(result)
    return _from_state(*par.broadcast(state))


def _load_checkpoint(path: Optional["os.PathLike[str]"], device: torch.device
                     ) -> Optional[Tuple[Quantile, TopK]]:
    """Pass-1 statistics saved by an interrupted run, or ``None`` (missing or unreadable)."""
    if path is None or not os.path.exists(path):
        return None
    try:
        saved = load_stats(path, device=device)
        sketch, topk = saved["quantile"], saved["topk"]
        if not isinstance(sketch, Quantile) or not isinstance(topk, TopK):
            raise TypeError("unexpected statistics")
        return sketch, topk
    except Exception as exc:
        warnings.warn(f"ignoring unreadable checkpoint {path}: {exc}", RuntimeWarning, stacklevel=4)
        return None


def _to_state(result: DissectionResult) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    return result._meta(), {a: getattr(result, a) for a in _ARRAYS}


def _from_state(meta: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> DissectionResult:
    return DissectionResult(layer=meta["layer"], model_kind=meta["model_kind"],
                            concept_names=tuple(meta["concept_names"]), quantile=float(meta["quantile"]),
                            num_images=int(meta["num_images"]), pixels=int(meta["pixels"]),
                            activation_size=tuple(meta["activation_size"]), label_size=tuple(meta["label_size"]),
                            data=meta["data"], model_hash=meta["model_hash"], params=dict(meta["params"]),
                            **{a: np.asarray(v) for a, v in arrays.items()})


# ----------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------
def dissect_classifier(model: nn.Module, layer: str, data: Any, *,
                       segmenter: Optional[Callable[[Tensor], Any]] = None, n: Optional[int] = None,
                       batch_size: int = 64, k: int = 100, quantile: float = 0.99,
                       preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                       segmenter_preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                       concept_names: Optional[Sequence[str]] = None,
                       device: Optional[Union[str, torch.device]] = None,
                       cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None, progress: bool = True,
                       chunk_size: int = 512, sketch_resolution: int = 2048,
                       activation_cache_bytes: int = 512 << 20,
                       distributed: Optional[bool] = None) -> DissectionResult:
    """Dissect ``layer`` of an image classifier over ``data`` (first ``n`` items).

    ``data``: a :class:`DataSource` (e.g. :class:`ToyWorldSource`), an image tensor, or a Dataset.  Concept
    labels come from the data, or from ``segmenter`` (logits ``(N,K,H,W)`` or labels ``(N,H,W)``) applied to
    ``segmenter_preprocess(images)``.  The model sees ``preprocess(images)`` (default ``images * 2 - 1``).
    ``device``: move the model (and segmenter) there; default the model's own device.  ``cache_dir``: reuse
    a result computed with identical weights, data and parameters (and resume after pass 1).
    ``activation_cache_bytes``: keep pass-1 activations for pass 2 when they fit (0: always recompute).
    ``distributed``: ``None`` uses ``torch.distributed`` when it is initialised.
    """
    source = as_source(data)
    return _dissect(model=model, layer=layer, kind="classifier", source=source, n=n, segmenter=segmenter,
                    preprocess=preprocess or _to_signed, segmenter_preprocess=segmenter_preprocess or _to_signed,
                    concept_names=concept_names, batch_size=batch_size, k=k, quantile=quantile, device=device,
                    cache_dir=cache_dir, progress=progress, chunk_size=chunk_size,
                    sketch_resolution=sketch_resolution, activation_cache_bytes=activation_cache_bytes,
                    distributed=distributed)


def dissect_generator(generator: nn.Module, layer: str, segmenter: Callable[[Tensor], Any], *,
                      n: Optional[int] = None, z_dim: Optional[Union[int, Sequence[int]]] = None, seed: int = 1,
                      latents: Any = None, batch_size: int = 32, k: int = 100, quantile: float = 0.99,
                      segmenter_preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                      concept_names: Optional[Sequence[str]] = None,
                      device: Optional[Union[str, torch.device]] = None,
                      cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None, progress: bool = True,
                      chunk_size: int = 512, sketch_resolution: int = 2048,
                      activation_cache_bytes: int = 512 << 20,
                      distributed: Optional[bool] = None) -> DissectionResult:
    """Dissect ``layer`` of a generator over ``n`` samples (default 1000), labelling generated images with ``segmenter``.

    Latents are ``GeneratorSource(n, z_dim, seed)`` (``z_dim`` defaults to ``generator.z_dim``) unless
    ``latents`` (a source or a tensor of ``z``) is given; top-k indices are sample indices into it.  The
    segmenter sees ``segmenter_preprocess(generator(z))`` (default: the output as is).  Other arguments as
    in :func:`dissect_classifier`.
    """
    if latents is None:
        z_dim = z_dim if z_dim is not None else getattr(generator, "z_dim", None)
        if z_dim is None:
            raise ValueError("pass z_dim= (the generator has no z_dim attribute)")
        source: DataSource = GeneratorSource(1000 if n is None else n, z_dim, seed)
    elif isinstance(latents, (Tensor, np.ndarray)):
        z = torch.as_tensor(latents)
        source = _LatentTensor(z)
    else:
        source = latents
    if segmenter is None:
        raise ValueError("dissecting a generator needs a segmenter to label the generated images")
    return _dissect(model=generator, layer=layer, kind="generator", source=source, n=n, segmenter=segmenter,
                    preprocess=_identity, segmenter_preprocess=segmenter_preprocess or _identity,
                    concept_names=concept_names, batch_size=batch_size, k=k, quantile=quantile, device=device,
                    cache_dir=cache_dir, progress=progress, chunk_size=chunk_size,
                    sketch_resolution=sketch_resolution, activation_cache_bytes=activation_cache_bytes,
                    distributed=distributed)
