"""Per-unit top-k values with the image indices they came from.

    topk = TopK(k=100)
    topk.add(acts.amax((2, 3)), index=batch_indices)   # values [N, C], global image indices [N]
    values, indices = topk.result()                     # [C, k], sorted descending
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .base import Stat, as_int, as_numpy, as_samples, as_tensor, float_dtype

__all__ = ["TopK"]


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
        values = as_samples(values, "values")
        n, c = values.shape
        if self._values is not None:
            if c != self._values.shape[0]:
                raise ValueError(f"expected {self._values.shape[0]} units, got {c}")
            values = values.to(self._values.device, self._values.dtype)
        elif values.is_floating_point():
            values = values.to(float_dtype(values.dtype))
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
            d["values"] = as_numpy(self._values)
            d["indices"] = as_numpy(self._indices)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> "TopK":
        self.k, self.count = as_int(d["k"]), as_int(d["count"])
        self._values = as_tensor(d["values"]) if "values" in d else None
        self._indices = as_tensor(d["indices"]).long() if "indices" in d else None
        return self
