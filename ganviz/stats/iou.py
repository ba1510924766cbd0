"""Pixel tallies for Network Dissection IoU between units and concepts.

    tally = IoUTally(num_units=C, num_concepts=K)
    tally.add(unit_masks, labels)                         # masks [N, C, H, W] at the labels' resolution
    tally.add_upsampled(acts, labels, thresholds)         # maps [N, C, h, w] upsampled to the labels, cut at
                                                          # each unit's threshold (activation value) [C]
    tally.iou()                                           # [C, K]
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch
from torch import Tensor

from .base import Device, Stat, as_int, as_numpy, as_tensor
from .upsampled import upsampled_counts

__all__ = ["IoUTally"]


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

    def _int_labels(self, labels: Tensor, n: int, hgt: int, wid: int) -> Tensor:
        """Integer labels ``[N, H, W]`` or ``[N, L, H, W]`` as long ``[N, L, H, W]``, range-checked."""
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
        return labels

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
        if not multihot:
            labels = self._int_labels(labels, n, hgt, wid)
        elif labels.shape != (n, self.num_concepts, hgt, wid):
            raise ValueError(f"bool labels must be [N, {self.num_concepts}, H, W]")
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

    def add_upsampled(self, unit_maps: Tensor, concept_labels: Tensor, thresholds: Tensor,
                      max_values: int = 1 << 22) -> None:
        """Tally one batch of unit maps at a lower resolution than the labels.

        ``unit_maps``: float ``[N, C, h, w]``, upsampled bilinearly (``align_corners=False``) to the labels'
        ``H x W``; a pixel is active where the upsampled value exceeds the unit's ``thresholds[C]`` (an
        activation value).  ``concept_labels``: int ``[N, H, W]``.  The counts equal
        ``add(F.interpolate(unit_maps, (H, W), mode="bilinear") > thresholds[:, None, None], concept_labels)``,
        but the upsampled maps are never materialised (see :mod:`ganviz.stats.upsampled`); ``max_values``
        bounds how many upsampled values are held at once.
        """
        if unit_maps.dim() != 4 or unit_maps.shape[1] != self.num_units:
            raise ValueError(f"unit_maps must be [N, {self.num_units}, h, w]")
        if concept_labels.dim() != 3 or concept_labels.shape[0] != unit_maps.shape[0]:
            raise ValueError("concept labels must be [N, H, W]")
        if thresholds.shape != (self.num_units,):
            raise ValueError(f"thresholds must be [{self.num_units}]")
        if self.images == 0 and unit_maps.device != self.device:
            self.to_(unit_maps.device)
        n, k = unit_maps.shape[0], self.num_concepts
        labels = self._int_labels(concept_labels.detach().to(self.device), n, *concept_labels.shape[1:])[:, 0]
        labels = labels.masked_fill(labels == self.ignore_index, k)  # bin K: no concept
        counts = upsampled_counts(unit_maps.detach().to(self.device), labels, thresholds.to(self.device), k + 1,
                                  max_values)
        self.concept_area += torch.bincount(labels.reshape(-1), minlength=k + 1)[:k]
        self.intersection += counts[:, :k]
        self.unit_area += counts.sum(1)
        self.pixels += labels.numel()
        self.images += n

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
            "unit_area": as_numpy(self.unit_area),
            "concept_area": as_numpy(self.concept_area),
            "intersection": as_numpy(self.intersection),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> "IoUTally":
        for key in ("num_units", "num_concepts", "ignore_index", "chunk_bytes", "pixels", "images"):
            setattr(self, key, as_int(d[key]))
        self.unit_area = as_tensor(d["unit_area"]).long()
        self.concept_area = as_tensor(d["concept_area"]).long()
        self.intersection = as_tensor(d["intersection"]).long()
        return self
