"""Read and edit the outputs of named layers inside any ``torch.nn.Module``.

This is the instrumentation core of ganviz.  Layers are addressed by the dotted names of ``model.named_modules()``
(``"features.3"``, ``"layer4.1.conv2"``).  A :class:`Trace` registers forward hooks (:mod:`ganviz.hooks`, kept
outside the modules) while it is active; it can keep layer inputs/outputs, rewrite outputs with small :class:`Edit` objects (:class:`Ablate`, :class:`Scale`,
:class:`SetLevel`, :class:`Replace`, :class:`Compose`) and stop the forward pass early once every requested layer
has run::

    with Trace(model, "layer3", edit={"layer3": Ablate([4, 17])}) as tr:
        y = tr.run(x)
    act = tr["layer3"].output          # the edited activation

Layers of any layout are presented as ``[B, C, H, W]`` maps (:mod:`ganviz.layouts`)::

    with Trace(vit, "blocks.5.mlp.act", edit=Ablate([7])) as tr:   # the layer gives [B, 1 + 14*14, 3072]
        tr.run(images)
    rec = tr["blocks.5.mlp.act"]       # .output [B, 3072, 14, 14], unit 7 zeroed at the patch tokens only;
                                       # .prefix [B, 1, 3072] the class token (never edited); .raw [B, 197, 3072]

The layout of a layer's tensor (the output, or the first tensor of a tuple / ``ModelOutput``) is, each pass: the
one declared by ``layouts={layer: ...}`` (a :class:`~ganviz.layouts.Layout` or a string; ``None`` keeps the output
as it is), else by ``model.layer_layouts()`` when the model has it (a grid named for another image size is
re-read from the shape), else inferred by :func:`~ganviz.layouts.infer_layout` for 3-D and 4-D tensors, with the
size of the model's input images (recorded as the model is called; none for a latent input).

* 4-D convolutional maps are inferred ``bchw``: output, edits and gradients are exactly the layer's own.
* 2-D ``[B, C]`` outputs (logits), other ranks and outputs without a tensor are kept and edited as they are
  (``layout`` None) unless a layout is declared (``'bc'``: ``[B, C]`` as a 1x1 map).
* Token and channels-last outputs: ``output`` is the map, ``prefix`` the prefix tokens, ``raw`` the layer's own
  tensor; edits act on the map and are written back in the layer's layout (prefix tokens unchanged).  With
  ``detach=False`` the passed-on tensor is rebuilt from the map (a view where possible), so gradients with
  respect to ``output`` work.

When the layout cannot be told (an ambiguous shape such as ``[B, 12, C]``: 3x4 or 4x3?, or a declared layout that
does not fit) tracing still works and keeps the output as it is: the :class:`~ganviz.layouts.LayoutError` naming
the shape and how to declare the layout is raised only where a map is needed -- an edit of that layer, and
``tr[layer].map`` (what dissection and Grad-CAM read).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["LayerNotFoundError", "StopForward", "get_module", "layer_names", "register_name_hint", "Edit", "Ablate",
           "Scale", "SetLevel", "Replace", "Compose", "LayerRecord", "Trace", "retain", "edited_forward", "count_hooks"]

from .edits import Ablate, Compose, Edit, EditSpec, Replace, Scale, SetLevel, as_edit
from .layernames import LayerNotFoundError, get_module, layer_names, register_name_hint
from .hooks import add_forward_hook, add_forward_pre_hook, hooks_on
from .layouts import LayoutError, Layout, LayoutSpec, infer_layout, parse_layout, primary_tensor, replace_primary

class StopForward(Exception):
    """Raised by a hook to end a forward pass early; swallowed by :class:`Trace`."""


# -- tracing -------------------------------------------------------------------------------------------------------


def _as_names(layers: Union[None, str, Iterable[str]]) -> List[str]:
    if layers is None:
        return []
    if isinstance(layers, str):
        return [layers]
    if not isinstance(layers, Iterable) or any(not isinstance(n, str) for n in layers):
        raise TypeError(f"layers must be a layer name or a list of names (strings such as 'layer4'), got "
                        f"{layers!r}")
    return list(dict.fromkeys(layers))


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
_UNDECLARED = object()
LayoutsArg = Optional[Mapping[str, Optional[LayoutSpec]]]


def _primary(output: Any) -> Optional[Tensor]:
    """The tensor a layer output stands for, or None when it holds none."""
    try:
        return primary_tensor(output)
    except TypeError:
        return None


def _image_hw_of(x: Any) -> Optional[Tuple[int, int]]:
    """``(H, W)`` of a batch of images ``[B, C, H, W]``; None for anything else (a latent, tokens, ``[B, z, 1, 1]``)."""
    ok = isinstance(x, Tensor) and x.ndim == 4 and min(x.shape[-2:]) > 1
    return (int(x.shape[-2]), int(x.shape[-1])) if ok else None


@dataclass
class _View:
    """A hooked output's primary tensor, its layout (or why there is none) and the map it was built from."""

    tensor: Optional[Tensor]
    layout: Optional[Layout] = None
    error: Optional[LayoutError] = None
    fmap: Any = None  # the map the passed-on tensor was rebuilt from (after an edit, or to keep it in the graph)


@dataclass
class LayerRecord:
    """What a :class:`Trace` kept for one layer (from the latest forward pass).

    ``layout``: how the layer lays out its output (None: the output is kept as the layer gave it -- 2-D outputs,
    outputs whose layout cannot be told, non-tensors); ``layout_error``: why it cannot be told (raised by
    :attr:`map` and by edits).
    """

    name: str
    _output: Any = field(default=_MISSING, repr=False)
    _input: Any = field(default=_MISSING, repr=False)
    _raw: Any = field(default=_MISSING, repr=False)
    _prefix: Optional[Tensor] = field(default=None, repr=False)
    layout: Optional[Layout] = None
    layout_error: Optional[LayoutError] = field(default=None, repr=False)

    @property
    def has_output(self) -> bool:
        """Whether an output was recorded."""
        return self._output is not _MISSING

    @property
    def output(self) -> Any:
        """The (edited) output: a ``[B, C, H, W]`` map when :attr:`layout` is known, else as the layer gave it."""
        if self._output is _MISSING:
            raise RuntimeError(f"no output recorded for layer {self.name!r}: it has not run in this trace "
                               "(or retain_output=False, or the pass stopped before it)")
        return self._output

    @property
    def map(self) -> Tensor:
        """The output as a ``[B, C, H, W]`` map; raises :class:`LayoutError` when its layout cannot be told."""
        out = self.output
        if self.layout is not None:
            return out
        if self.layout_error is not None:
            raise self.layout_error
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise LayoutError(f"layer {self.name!r} gives {shape}, not a map; declare its layout to present it as one, "
                          f"e.g. Trace(..., layouts={{{self.name!r}: 'bc'}}) for a [B, C] output as a 1x1 map")

    @property
    def raw(self) -> Any:
        """The tensor the layer passed on (after edits) in its own layout (``[B, 1 + N, C]`` for ViT tokens)."""
        if self._raw is _MISSING:
            return self.output  # raises the "no output recorded" error
        return self._raw

    @property
    def prefix(self) -> Optional[Tensor]:
        """The prefix tokens ``[B, P, C]`` (class token, DeiT's distillation token) left out of the map, or None."""
        self.output  # noqa: B018 -- the "no output recorded" error
        return self._prefix

    @property
    def input(self) -> Any:
        """The first positional input of the layer from the latest forward pass."""
        if self._input is _MISSING:
            raise RuntimeError(f"no input recorded for layer {self.name!r}: pass retain_input=True and make sure "
                               "the layer ran")
        return self._input


class Trace:
    """Context manager that retains and/or edits the outputs of named layers.

    Hooks exist only between ``__enter__`` and ``__exit__``, and act only on forward passes of the thread that
    entered (a widget computing in the background does not edit a cell's forward pass).  Retained outputs
    are taken after edits.  With ``stop=True`` the forward pass is aborted
    (via :class:`StopForward`, swallowed on exit and by :meth:`run`) as soon as
    every listed layer has produced an output.  ``detach=False`` keeps the
    autograd graph so gradients with respect to ``tr[name].output`` work.
    ``layouts``: ``{layer: layout}`` (a :class:`~ganviz.layouts.Layout` or a string such as ``"tokens_cls"``;
    None keeps that layer's output as it is), over ``model.layer_layouts()`` when the model has it (module
    docstring).
    """

    def __init__(self, model: nn.Module, layers: Union[None, str, Iterable[str]] = None, retain_output: bool = True,
                 retain_input: bool = False, detach: bool = True, clone: bool = False,
                 edit: Union[None, EditSpec, Mapping[str, EditSpec]] = None, stop: bool = False,
                 layouts: LayoutsArg = None) -> None:
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
            edits = {str(k): as_edit(v) for k, v in edit.items()}
        else:
            if len(self.layers) != 1:
                raise ValueError("a single edit needs exactly one layer; pass a dict {layer: edit}")
            edits = {self.layers[0]: as_edit(edit)}
        self.edits = edits
        hooked = list(self.layers) + [n for n in edits if n not in self.layers]
        # Resolve every name before any hook exists.
        self._modules: Dict[str, nn.Module] = {n: get_module(model, n) for n in hooked}
        self._user_layouts = {str(k): None if v is None else parse_layout(v) for k, v in (layouts or {}).items()}
        for name in self._user_layouts:
            get_module(model, name)
        self._declared = self._declared_layouts(hooked)
        self._records: Dict[str, LayerRecord] = {n: LayerRecord(n) for n in self.layers}
        self._handles: List[Any] = []
        self._entered = False
        self._owner: Optional[int] = None
        self._seen: set = set()
        self._image_hw: Optional[Tuple[int, int]] = None

    def _declared_layouts(self, hooked: List[str]) -> Dict[str, Optional[Layout]]:
        """Layouts of the hooked layers declared by ``layouts=`` or, below them, by ``model.layer_layouts()``."""
        declared: Dict[str, Optional[Layout]] = {}
        own = getattr(self.model, "layer_layouts", None)
        if hooked and callable(own):
            model_layouts = own() or {}
            declared.update({n: parse_layout(model_layouts[n]) for n in hooked if n in model_layouts})
        declared.update({n: v for n, v in self._user_layouts.items() if n in hooked})
        return declared

    # -- layouts ----------------------------------------------------------
    def _view(self, name: str, output: Any) -> _View:
        """The layout of this output of ``name`` (rules in the module docstring)."""
        t = _primary(output)
        if t is None:
            return _View(None)
        declared = self._declared.get(name, _UNDECLARED)
        if declared is None or (declared is _UNDECLARED and t.ndim not in (3, 4)):
            return _View(t)
        try:
            if declared is _UNDECLARED:
                return _View(t, infer_layout(t.shape, self._image_hw))
            try:
                return _View(t, infer_layout(t.shape, self._image_hw, declared))
            except LayoutError:  # the model's own layout names the grid at its default image size: re-read it
                if name in self._user_layouts or declared.grid is None:
                    raise
                return _View(t, infer_layout(t.shape, self._image_hw, Layout(declared.kind,
                                                                             prefix_tokens=declared.prefix_tokens)))
        except LayoutError as err:
            return _View(t, error=LayoutError(f"layer {name!r}: {err}; pass the layout to the trace, e.g. "
                                              f"Trace(model, ..., layouts={{{name!r}: 'tokens_cls'}})"))

    @staticmethod
    def _edit(edit: Edit, name: str, output: Any, view: _View) -> Tuple[Any, _View]:
        """Apply ``edit`` on the layer's map and write it back in the layer's layout."""
        lay = view.layout
        if lay is None:
            if view.error is not None:
                raise view.error
            output = edit.apply(output, name)  # 2-D outputs, non-tensors: edited as they are
            return output, _View(_primary(output))
        fmap = edit.apply(lay.to_map(view.tensor), name)
        if lay.kind == "bchw":
            t = fmap
        else:
            t = lay.from_map(fmap, view.tensor)
        if not isinstance(t, Tensor):
            return replace_primary(output, t), _View(None)
        return replace_primary(output, t), _View(t, lay, fmap=fmap)

    @staticmethod
    def _relink(output: Any, view: _View) -> Tuple[Any, _View]:
        """Pass on the tensor rebuilt from its map (a view where possible) so the map is in the autograd graph."""
        assert view.layout is not None and view.tensor is not None
        fmap = view.layout.to_map(view.tensor)
        t = view.layout.from_map(fmap, view.tensor)
        return replace_primary(output, t), _View(t, view.layout, fmap=fmap)

    def _record(self, record: LayerRecord, output: Any, view: _View, args: tuple) -> None:
        record.layout, record.layout_error, record._prefix = view.layout, view.error, None
        if self.retain_output:
            lay = view.layout
            if lay is None:
                record._output = _keep(output, self.detach, self.clone)
                record._raw = record._output if view.tensor is None or view.tensor is output else \
                    _keep(view.tensor, self.detach, self.clone)
            else:
                raw = _keep(view.tensor, self.detach, self.clone)
                live = not self.detach and view.fmap is not None
                record._raw = raw
                record._output = _keep(view.fmap, False, self.clone) if live else lay.to_map(raw)
                record._prefix = lay.prefix(raw)
        if self.retain_input:
            record._input = _keep(args[0] if args else None, self.detach, self.clone)

    # -- hooks ------------------------------------------------------------
    def _make_hook(self, name: str) -> Callable[..., Any]:
        edit = self.edits.get(name)
        record = self._records.get(name)

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if threading.get_ident() != self._owner:  # another thread's forward pass (a widget computing in the
                return None                            # background while a cell runs): not ours to edit or record
            view = self._view(name, output)
            if edit is not None:
                output, view = self._edit(edit, name, output, view)
            elif (record is not None and self.retain_output and not self.detach and view.layout is not None
                  and view.layout.kind != "bchw"):
                output, view = self._relink(output, view)
            if record is not None:
                self._record(record, output, view, args)
                self._seen.add(name)
                if self.stop and len(self._seen) == len(self._records):
                    self._seen.clear()
                    raise StopForward(name)
            return output

        return hook

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: Optional[Dict[str, Any]] = None) -> None:
        """Record the size of the model's input images (``image_hw`` of :func:`~ganviz.layouts.infer_layout`)."""
        x = next((a for a in list(args) + list((kwargs or {}).values()) if isinstance(a, Tensor)), None)
        if threading.get_ident() == self._owner and x is not None:
            self._image_hw = _image_hw_of(x)

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
        self._image_hw = None
        try:
            if self._modules:  # hooks kept outside the modules: copies of the model never carry them
                self._handles.append(add_forward_pre_hook(self.model, self._pre_hook))
            for name, module in self._modules.items():
                self._handles.append(add_forward_hook(module, self._make_hook(name)))
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
        self._pre_hook(self.model, (), kwargs)  # inputs passed by keyword (the hook sees positional ones)
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
            raise LayerNotFoundError(f"layer {name!r} is not traced; traced layers: "
                                     f"{', '.join(self.layers) or '(none)'}") from None

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


# -- convenience functions -----------------------------------------------------------------------------------------


def retain(model: nn.Module, x: Any, layers: Union[str, Iterable[str]], *, stop: bool = True, grad: bool = False,
           detach: Optional[bool] = None, clone: bool = False, edit: Union[None, Mapping[str, EditSpec]] = None,
           layouts: LayoutsArg = None) -> Dict[str, Tensor]:
    """Run ``model(x)`` once and return ``{layer: output}`` for ``layers`` (maps for token layers, see
    :class:`Trace`; ``layouts`` as there).

    Stops after the last requested layer unless ``stop=False``.  Runs under
    ``torch.no_grad()`` unless ``grad=True`` (then outputs keep their graph
    unless ``detach=True``).
    """
    names = _as_names(layers)
    if detach is None:
        detach = not grad
    tr = Trace(model, names, detach=detach, clone=clone, edit=edit, stop=stop, layouts=layouts)
    with (torch.enable_grad() if grad else torch.no_grad()):
        tr.run(x)
    missing = [n for n in names if not tr[n].has_output]
    if missing:
        raise RuntimeError(f"layers did not run during the forward pass: {', '.join(missing)}")
    return {n: tr[n].output for n in names}


def edited_forward(model: nn.Module, x: Any, edits: Mapping[str, EditSpec], layouts: LayoutsArg = None) -> Any:
    """Return ``model(x)`` with ``edits`` ({layer: edit or list of edits}) applied (on maps, see :class:`Trace`)."""
    with Trace(model, [], retain_output=False, edit=edits, layouts=layouts) as tr:
        return tr.run(x)


def count_hooks(model: nn.Module) -> int:
    """Count forward, forward-pre and backward hooks on ``model`` and its submodules, ganviz's own included."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, k, None) or {}) for m in model.modules() for k in kinds) + hooks_on(model)
