"""Per-unit running mean and variance (Chan's parallel algorithm, float64 accumulation).

    var = Variance()
    var.add(samples)                  # [N, C]
    var.add_feature_map(acts)         # [N, C, H, W]: every position is a sample
    var.mean(), var.std()             # [C] each
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .base import Device, SampleStat, as_int, as_numpy, as_samples, as_tensor

__all__ = ["Mean", "Variance"]


class Mean(SampleStat):
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
        x = as_samples(x)
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
            d["mean"] = as_numpy(self._mean)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> "Mean":
        self.count = as_int(d["count"])
        self._mean = as_tensor(d["mean"]).double() if "mean" in d else None
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
            d["m2"] = as_numpy(self._m2)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> "Variance":
        super().load_state_dict(d)
        self._m2 = as_tensor(d["m2"]).double() if "m2" in d else None
        return self
