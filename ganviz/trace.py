"""Read and edit the outputs of named layers inside any ``torch.nn.Module``.

This is the instrumentation core of ganviz.  Layers are addressed by the
dotted names of ``model.named_modules()`` (``"features.3"``,
``"layer4.1.conv2"``).  A :class:`Trace` registers forward hooks while it is
active; it can keep layer inputs/outputs, rewrite outputs with small
:class:`Edit` objects (:class:`Ablate`, :class:`Scale`, :class:`SetLevel`,
:class:`Replace`, :class:`Compose`) and stop the forward pass early once every
requested layer has run.

Example::

    with Trace(model, "layer3", edit={"layer3": Ablate([4, 17])}) as tr:
        y = tr.run(x)
    act = tr["layer3"].output          # the edited activation
"""
from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LayerNotFoundError",
    "StopForward",
    "get_module",
    "layer_names",
    "Edit",
    "Ablate",
    "Scale",
    "SetLevel",
    "Replace",
    "Compose",
    "LayerRecord",
    "Trace",
    "retain",
    "edited_forward",
    "count_hooks",
]

Units = Union[int, Sequence[int], Tensor, np.ndarray, range]
Values = Union[float, Sequence[float], Tensor, np.ndarray]
MaskLike = Union[Tensor, np.ndarray]
EditSpec = Union["Edit", Callable[[Tensor], Tensor], Sequence[Any]]


# --------------------------------------------------------------------------
# Addressing layers
# --------------------------------------------------------------------------


class LayerNotFoundError(KeyError, ValueError):
    """Raised when a dotted layer name does not exist in a model."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class StopForward(Exception):
    """Raised by a hook to end a forward pass early; swallowed by :class:`Trace`."""


def layer_names(model: nn.Module) -> List[str]:
    """Return every addressable dotted submodule name of ``model`` (not ``''``)."""
    return [name for name, _ in model.named_modules() if name]


def _not_found(model: nn.Module, name: str) -> LayerNotFoundError:
    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if close:
        hint = "closest: " + ", ".join(close)
    elif names:
        hint = "valid names include: " + ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    else:
        hint = "the model has no submodules"
    return LayerNotFoundError(f"no layer {name!r} in {type(model).__name__}; {hint}")


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule of ``model`` at dotted path ``name`` (``''`` is the model).

    Raises :class:`LayerNotFoundError` listing the closest valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"layer names must be str, got {type(name).__name__}")
    if name == "":
        return model
    module: Any = model
    for part in name.split("."):
        child = getattr(module, "_modules", {}).get(part) if isinstance(module, nn.Module) else None
        if child is None:
            raise _not_found(model, name)
        module = child
    return module


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


def _as_edit(spec: EditSpec) -> Edit:
    if isinstance(spec, Edit):
        return spec
    return Compose(spec)


# --------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------


def _as_names(layers: Union[None, str, Iterable[str]]) -> List[str]:
    if layers is None:
        return []
    if isinstance(layers, str):
        return [layers]
    names: List[str] = []
    for n in layers:
        if n not in names:
            names.append(n)
    return names


def _keep(value: Any, detach: bool, clone: bool) -> Any:
    """Detach/clone every tensor inside ``value`` (tensors, tuples, lists, dicts)."""
    if isinstance(value, Tensor):
        if detach:
            value = value.detach()
        return value.clone() if clone else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_keep(v, detach, clone) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_keep(v, detach, clone) for v in value)
    if isinstance(value, dict):
        return {k: _keep(v, detach, clone) for k, v in value.items()}
    return value


_MISSING = object()


@dataclass
class LayerRecord:
    """What a :class:`Trace` kept for one layer."""

    name: str
    _output: Any = field(default=_MISSING, repr=False)
    _input: Any = field(default=_MISSING, repr=False)

    @property
    def has_output(self) -> bool:
        """Whether an output was recorded."""
        return self._output is not _MISSING

    @property
    def output(self) -> Any:
        """The (edited) output of the layer from the latest forward pass."""
        if self._output is _MISSING:
            raise RuntimeError(
                f"no output recorded for layer {self.name!r}: it has not run in this trace "
                "(or retain_output=False, or the pass stopped before it)"
            )
        return self._output

    @property
    def input(self) -> Any:
        """The first positional input of the layer from the latest forward pass."""
        if self._input is _MISSING:
            raise RuntimeError(
                f"no input recorded for layer {self.name!r}: pass retain_input=True "
                "and make sure the layer ran"
            )
        return self._input


class Trace:
    """Context manager that retains and/or edits the outputs of named layers.

    Hooks exist only between ``__enter__`` and ``__exit__``, and act only on forward passes of the thread that
    entered (a widget computing in the background does not edit a cell's forward pass).  Retained outputs
    are taken after edits.  With ``stop=True`` the forward pass is aborted
    (via :class:`StopForward`, swallowed on exit and by :meth:`run`) as soon as
    every listed layer has produced an output.  ``detach=False`` keeps the
    autograd graph so gradients with respect to ``tr[name].output`` work.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Union[None, str, Iterable[str]] = None,
        retain_output: bool = True,
        retain_input: bool = False,
        detach: bool = True,
        clone: bool = False,
        edit: Union[None, EditSpec, Mapping[str, EditSpec]] = None,
        stop: bool = False,
    ) -> None:
        self.model = model
        self.layers: List[str] = _as_names(layers)
        self.retain_output = retain_output
        self.retain_input = retain_input
        self.detach = detach
        self.clone = clone
        self.stop = stop
        if edit is None:
            edits: Dict[str, Edit] = {}
        elif isinstance(edit, Mapping):
            edits = {str(k): _as_edit(v) for k, v in edit.items()}
        else:
            if len(self.layers) != 1:
                raise ValueError("a single edit needs exactly one layer; pass a dict {layer: edit}")
            edits = {self.layers[0]: _as_edit(edit)}
        self.edits = edits
        hooked = list(self.layers) + [n for n in edits if n not in self.layers]
        # Resolve every name before any hook exists.
        self._modules: Dict[str, nn.Module] = {n: get_module(model, n) for n in hooked}
        self._records: Dict[str, LayerRecord] = {n: LayerRecord(n) for n in self.layers}
        self._handles: List[Any] = []
        self._entered = False
        self._owner: Optional[int] = None
        self._seen: set = set()

    # -- hooks ------------------------------------------------------------
    def _make_hook(self, name: str) -> Callable[..., Any]:
        edit = self.edits.get(name)
        record = self._records.get(name)

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if threading.get_ident() != self._owner:  # another thread's forward pass (a widget computing in the
                return None                            # background while a cell runs): not ours to edit or record
            if edit is not None:
                output = edit.apply(output, name)
            if record is not None:
                if self.retain_output:
                    record._output = _keep(output, self.detach, self.clone)
                if self.retain_input:
                    record._input = _keep(args[0] if args else None, self.detach, self.clone)
                self._seen.add(name)
                if self.stop and len(self._seen) == len(self._records):
                    self._seen.clear()
                    raise StopForward(name)
            return output

        return hook

    def _remove_hooks(self) -> None:
        handles, self._handles = self._handles, []
        self._entered = False
        for h in handles:
            h.remove()

    def __enter__(self) -> "Trace":
        if self._entered:
            raise RuntimeError("this Trace is already active")
        self._seen.clear()
        self._entered = True
        self._owner = threading.get_ident()
        try:
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self._remove_hooks()
        self._seen.clear()
        return exc_type is not None and issubclass(exc_type, StopForward)

    def close(self) -> None:
        """Remove all hooks now (same as leaving the ``with`` block)."""
        self._remove_hooks()

    @property
    def active(self) -> bool:
        """Whether the trace is entered (its hooks, if any, are registered)."""
        return self._entered

    # -- running ----------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model; return its output, or ``None`` if the pass was stopped.

        Works inside the ``with`` block, or outside it (hooks live for the call).
        """
        if not self.active:
            with self:
                return self.run(*args, **kwargs)
        self._seen.clear()
        try:
            return self.model(*args, **kwargs)
        except StopForward:
            return None
        finally:
            self._seen.clear()

    # -- access -----------------------------------------------------------
    def __getitem__(self, name: str) -> LayerRecord:
        try:
            return self._records[name]
        except KeyError:
            raise LayerNotFoundError(
                f"layer {name!r} is not traced; traced layers: {', '.join(self.layers) or '(none)'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def output(self, name: str) -> Any:
        """Retained output of ``name``."""
        return self[name].output

    def input(self, name: str) -> Any:
        """Retained input of ``name``."""
        return self[name].input

    def outputs(self) -> Dict[str, Any]:
        """All retained outputs, by layer name (layers that did not run are left out)."""
        return {n: r.output for n, r in self._records.items() if r.has_output}


# --------------------------------------------------------------------------
# Convenience functions
# --------------------------------------------------------------------------


def retain(
    model: nn.Module,
    x: Any,
    layers: Union[str, Iterable[str]],
    *,
    stop: bool = True,
    grad: bool = False,
    detach: Optional[bool] = None,
    clone: bool = False,
    edit: Union[None, Mapping[str, EditSpec]] = None,
) -> Dict[str, Tensor]:
    """Run ``model(x)`` once and return ``{layer: output}`` for ``layers``.

    Stops after the last requested layer unless ``stop=False``.  Runs under
    ``torch.no_grad()`` unless ``grad=True`` (then outputs keep their graph
    unless ``detach=True``).
    """
    names = _as_names(layers)
    if detach is None:
        detach = not grad
    tr = Trace(model, names, detach=detach, clone=clone, edit=edit, stop=stop)
    with (torch.enable_grad() if grad else torch.no_grad()):
        tr.run(x)
    missing = [n for n in names if not tr[n].has_output]
    if missing:
        raise RuntimeError(f"layers did not run during the forward pass: {', '.join(missing)}")
    return {n: tr[n].output for n in names}


def edited_forward(model: nn.Module, x: Any, edits: Mapping[str, EditSpec]) -> Any:
    """Return ``model(x)`` with ``edits`` ({layer: edit or list of edits}) applied."""
    with Trace(model, [], retain_output=False, edit=edits) as tr:
        return tr.run(x)


def count_hooks(model: nn.Module) -> int:
    """Count forward, forward-pre and backward hooks on ``model`` and its submodules."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, k, None) or {}) for m in model.modules() for k in kinds)
