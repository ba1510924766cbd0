"""Layers addressed by dotted names (``"features.3"``, ``"layer4.1.conv2"``): lookup, listing, helpful errors."""
from __future__ import annotations

import difflib
from typing import Any, Callable, List, Optional

from torch import nn

__all__ = ["LayerNotFoundError", "layer_names", "get_module", "register_name_hint"]


class LayerNotFoundError(KeyError, ValueError):
    """Raised when a dotted layer name does not exist in a model."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


def layer_names(model: nn.Module) -> List[str]:
    """Return every addressable dotted submodule name of ``model`` (not ``''``)."""
    return [name for name, _ in model.named_modules() if name]


_NAME_HINTS: List[Callable[[str], Optional[str]]] = []


def register_name_hint(hint: Callable[[str], Optional[str]]) -> None:
    """Let a module explain missing layer names it makes (``hint(name)``: a message or None; :mod:`ganviz.basis`)."""
    _NAME_HINTS.extend([hint] if hint not in _NAME_HINTS else [])


def _not_found(model: nn.Module, name: str) -> LayerNotFoundError:
    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = ("closest: " + ", ".join(close) if close else "valid names include: " + ", ".join(names[:5])
            + (", ..." if len(names) > 5 else "") if names else "the model has no submodules")
    hint = next((h for h in (fn(name) for fn in _NAME_HINTS) if h), hint)
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
