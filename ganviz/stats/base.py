"""The protocol every statistic follows, and the small conversions they share.

    class Count(Stat):                       # a new statistic: subclassing registers it for load_stats
        def add(self, x): ...
        def merge(self, other): ...          # in place, returns self
        def state_dict(self): ...            # numpy arrays, ints, floats, strings only
        def load_state_dict(self, d): ...    # returns self
    Count.from_state_dict(d, device="cuda")

``to_(device)`` moves every tensor of a statistic's state in place.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["Stat", "SampleStat", "Device", "registered", "as_numpy", "as_tensor", "as_int", "float_dtype",
           "as_samples", "feature_map_samples"]

S = TypeVar("S", bound="Stat")
Device = Union[str, torch.device, None]

_REGISTRY: Dict[str, type] = {}


def registered(name: str) -> type:
    """The :class:`Stat` subclass called ``name`` (for :func:`ganviz.stats.load_stats`)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown statistic class {name!r}")
    return _REGISTRY[name]


def as_numpy(t: Tensor) -> np.ndarray:
    """A CPU numpy copy of ``t`` that does not alias the statistic's state."""
    return t.detach().cpu().clone().numpy()


def as_tensor(a: Any, device: Device = None) -> Tensor:
    return torch.tensor(np.asarray(a), device=device)


def as_int(v: Any) -> int:
    return int(np.asarray(v).item())


def float_dtype(dtype: torch.dtype) -> torch.dtype:
    """Working dtype for floating data: float64 stays, everything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_samples(x: Tensor, name: str = "x") -> Tensor:
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [N, C], got {tuple(x.shape)}")
    return x.detach()


def feature_map_samples(x: Tensor) -> Tensor:
    """[N, C, *spatial] -> [N * prod(spatial), C]."""
    if x.dim() < 2:
        raise ValueError(f"feature map must have shape [N, C, ...], got {tuple(x.shape)}")
    return x.detach().movedim(1, -1).reshape(-1, x.shape[1])


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


class SampleStat(Stat):
    """Statistics fed with samples ``x[N, C]``."""

    def add_feature_map(self, x: Tensor) -> None:
        """Add every spatial position of ``x[N, C, H, W]`` as one sample."""
        self.add(feature_map_samples(x))
