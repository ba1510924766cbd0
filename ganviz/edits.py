"""Edits as values: what to do to a layer's output, stored, compared and rebuilt from a slider.

    Ablate([4, 17])                       # units 4 and 17 set to 0
    Scale([3], 2.0)                       # unit 3 doubled
    SetLevel([5, 9], levels=3.0, mask=m)  # units written at a level where the mask is on (max-pooled to the layer)
    Compose(Ablate([1]), Replace(fn))     # applied in order

An edit is applied by :class:`ganviz.trace.Trace` (``edit=`` / ``edit={layer: ...}``) or called on a tensor.  The
trace hands it the layer's ``[B, C, H, W]`` map -- token (ViT) and channels-last (Swin) layers included -- and
writes the result back in the layer's own layout (class tokens untouched); see :mod:`ganviz.trace`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Edit", "Ablate", "Scale", "SetLevel", "Replace", "Compose", "EditSpec", "as_edit"]

Units = Union[int, Sequence[int], Tensor, np.ndarray, range]
Values = Union[float, Sequence[float], Tensor, np.ndarray]
MaskLike = Union[Tensor, np.ndarray]
EditSpec = Union["Edit", Callable[[Tensor], Tensor], Sequence[Any]]


# --------------------------------------------------------------------------
# Edits
# --------------------------------------------------------------------------


def _where(layer: Optional[str]) -> str:
    return f"layer {layer!r}" if layer else "this output"


def _units_list(units: Units) -> List[int]:
    """Normalise a unit selection to a list of Python ints."""
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        return [int(units)]
    if isinstance(units, (Tensor, np.ndarray)):
        t = torch.as_tensor(units)
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(f"units must be integer indices, got dtype {t.dtype}")
        return [int(u) for u in t.flatten().tolist()]
    out = []
    for u in units:
        if isinstance(u, bool) or not isinstance(u, (int, np.integer)):
            raise TypeError(f"units must be integer indices, got {u!r}")
        out.append(int(u))
    return out


def _check_values(values: Values, n_units: int, what: str) -> None:
    """Check that ``values`` is a scalar or holds one value per unit."""
    if isinstance(values, (int, float, np.number)):
        return
    t = values if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float64))
    if t.ndim > 1 or t.numel() not in (1, n_units):
        raise ValueError(
            f"{what} must be a scalar or one value per unit ({n_units} units), "
            f"got shape {tuple(t.shape)}"
        )


def _as_mask(mask: MaskLike) -> Tensor:
    """Convert a mask to a float tensor of shape (N, 1, H, W), checking rank and range."""
    m = torch.as_tensor(mask)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    elif not (m.ndim == 4 and m.shape[1] == 1):
        raise ValueError(
            "mask must have shape (H, W), (N, H, W) or (N, 1, H, W); "
            f"got shape {tuple(m.shape)}"
        )
    if m.dtype == torch.bool or not m.is_floating_point():
        m = m.float()
    if m.numel() and (bool(m.min() < 0) or bool(m.max() > 1)):
        raise ValueError("mask values must lie in [0, 1]")
    return m


def _resize_mask(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Resize an (N,1,H,W) mask to ``size``: max-pool to shrink, nearest to grow."""
    h, w = int(size[0]), int(size[1])
    m = mask.float()
    if m.shape[-2:] == (h, w):
        return m
    small = (min(m.shape[-2], h), min(m.shape[-1], w))
    if tuple(m.shape[-2:]) != small:
        m = F.adaptive_max_pool2d(m, small)
    if small != (h, w):
        m = F.interpolate(m, size=(h, w), mode="nearest")
    return m


class Edit:
    """Base class: an edit maps a layer output ``(N, C, ...)`` to a new tensor."""

    def apply(self, output: Tensor, layer: Optional[str] = None) -> Tensor:
        """Return the edited ``output``; ``layer`` names it in error messages."""
        raise NotImplementedError

    def __call__(self, output: Tensor) -> Tensor:
        return self.apply(output)


class _UnitEdit(Edit):
    """Shared validation for edits that act on a set of channel units."""

    units: Units

    def _indices(self, output: Any, layer: Optional[str]) -> Tensor:
        if not isinstance(output, Tensor):
            raise TypeError(
                f"{type(self).__name__} needs a tensor output; {_where(layer)} "
                f"returned {type(output).__name__}"
            )
        if output.ndim < 2:
            raise ValueError(
                f"{type(self).__name__} needs an output of shape (N, C, ...); "
                f"{_where(layer)} has shape {tuple(output.shape)}"
            )
        n = output.shape[1]
        units = _units_list(self.units)
        for u in units:
            if not 0 <= u < n:
                raise IndexError(
                    f"unit {u} out of range for {_where(layer)} with {n} units "
                    f"(expected 0..{n - 1})"
                )
        return torch.tensor(units, dtype=torch.long, device=output.device)

    @staticmethod
    def _per_channel(values: Values, idx: Tensor, output: Tensor, fill: float) -> Tensor:
        """A length-C vector equal to ``fill`` except ``values`` at ``idx``."""
        vec = torch.full((output.shape[1],), fill, dtype=output.dtype, device=output.device)
        if isinstance(values, Tensor):
            vals = values.to(device=output.device, dtype=output.dtype).flatten()
        else:
            vals = torch.as_tensor(np.asarray(values, dtype=np.float64).ravel(), dtype=output.dtype,
                                   device=output.device)
        if vals.numel() == 1:
            vals = vals.expand(idx.numel())
        return vec.index_put((idx,), vals)

    @staticmethod
    def _view(vec: Tensor, output: Tensor) -> Tensor:
        return vec.view((1, -1) + (1,) * (output.ndim - 2))

    def _spatial_mask(self, mask: Optional[Tensor], output: Tensor, layer: Optional[str]) -> Optional[Tensor]:
        if mask is None:
            return None
        if output.ndim != 4:
            raise ValueError(
                f"a spatial mask needs an output of shape (N, C, H, W); {_where(layer)} "
                f"has shape {tuple(output.shape)}; use mask=None"
            )
        m = _as_mask(mask)
        if m.shape[0] not in (1, output.shape[0]):
            raise ValueError(
                f"mask batch size {m.shape[0]} does not match {_where(layer)} batch size {output.shape[0]}"
            )
        m = _resize_mask(m.to(output.device), output.shape[-2:])
        return m.to(output.dtype)


@dataclass
class Ablate(_UnitEdit):
    """Set the chosen units to zero (inside ``mask`` when given, else everywhere)."""

    units: Units
    mask: Optional[MaskLike] = None

    def __post_init__(self) -> None:
        _units_list(self.units)
        if self.mask is not None:
            _as_mask(self.mask)

    def apply(self, output: Tensor, layer: Optional[str] = None) -> Tensor:
        idx = self._indices(output, layer)
        ind = self._view(self._per_channel(1.0, idx, output, 0.0), output)
        m = self._spatial_mask(self.mask, output, layer)
        if m is None:
            return torch.where(ind.bool(), torch.zeros_like(output), output)
        return output * (1 - ind * m)


@dataclass
class Scale(_UnitEdit):
    """Multiply the chosen units by ``factors`` (a scalar or one per unit)."""

    units: Units
    factors: Values = 1.0

    def __post_init__(self) -> None:
        _check_values(self.factors, len(_units_list(self.units)), "factors")

    def apply(self, output: Tensor, layer: Optional[str] = None) -> Tensor:
        idx = self._indices(output, layer)
        return output * self._view(self._per_channel(self.factors, idx, output, 1.0), output)


@dataclass
class SetLevel(_UnitEdit):
    """Set the chosen units to ``levels`` inside a (soft) spatial ``mask``.

    ``mask`` has shape (H, W), (N, H, W) or (N, 1, H, W) with values in [0, 1]
    at any resolution; it is max-pooled down or nearest-upsampled to the layer
    size, and the result is ``out * (1 - m) + level * m``.  ``mask=None`` means
    everywhere.
    """

    units: Units
    levels: Values = 0.0
    mask: Optional[MaskLike] = None

    def __post_init__(self) -> None:
        _check_values(self.levels, len(_units_list(self.units)), "levels")
        if self.mask is not None:
            _as_mask(self.mask)

    def apply(self, output: Tensor, layer: Optional[str] = None) -> Tensor:
        idx = self._indices(output, layer)
        level = self._view(self._per_channel(self.levels, idx, output, 0.0), output)
        ind = self._view(self._per_channel(1.0, idx, output, 0.0), output)
        m = self._spatial_mask(self.mask, output, layer)
        if m is None:
            return torch.where(ind.bool(), level.expand_as(output), output)
        w = ind * m
        return output * (1 - w) + level * w


@dataclass
class Replace(Edit):
    """Replace the output with ``fn(output)``."""

    fn: Callable[[Any], Any]

    def apply(self, output: Any, layer: Optional[str] = None) -> Any:
        return self.fn(output)


class Compose(Edit):
    """Apply several edits in order; ``Compose(a, b)`` or ``Compose([a, b])``."""

    def __init__(self, *edits: EditSpec) -> None:
        flat: List[Edit] = []
        for e in edits:
            if isinstance(e, (list, tuple)):
                flat.extend(Compose(*e).edits)
            elif isinstance(e, Compose):
                flat.extend(e.edits)
            elif isinstance(e, Edit):
                flat.append(e)
            elif callable(e):
                flat.append(Replace(e))
            else:
                raise TypeError(f"not an edit: {e!r}")
        self.edits: List[Edit] = flat

    def apply(self, output: Any, layer: Optional[str] = None) -> Any:
        for e in self.edits:
            output = e.apply(output, layer)
        return output

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(map(repr, self.edits)) + ")"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Compose) and self.edits == other.edits


def as_edit(spec: EditSpec) -> Edit:
    """An :class:`Edit` from an edit, a callable or a sequence of them."""
    if isinstance(spec, Edit):
        return spec
    return Compose(spec)
