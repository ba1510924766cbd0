"""Read a layer in another basis -- its units, a sparse dictionary's features, or concept directions -- so that
every tool that takes units (dissection, ablation, ``SetLevel``, Grad-CAM) takes features unchanged.

    basis = DictionaryBasis(W_enc, b_enc, W_dec, b_dec, activation="topk", k=32)   # or train_sae(...) / load_dictionary
    with with_basis(model, "conv5_3", basis) as view:      # view.layer == "conv5_3.basis.features"
        result = dissect_classifier(model, view.layer, ToyWorldSource(1000))
        y = edited_forward(model, x, {view.layer: Ablate([12, 40])})   # two features removed, the rest kept

How: while the ``with`` block runs, the module at ``layer`` is replaced in its parent by a thin wrapper that calls
the original module, reads its output ``x`` in the basis, ``f = encode(x)`` (per position, over channels), passes
``f`` through an identity module named ``f"{layer}.basis.features"`` (:func:`feature_layer`; traced, edited and
dissected like any layer) and returns ``x + decode(f_edited) - decode(f)``: the reconstruction error is kept, so
an empty edit reproduces the model exactly (the output is ``x`` itself) and an edit changes only what the edited
features contribute.  The wrapper shows the original's parameters, buffers and children under their own names
(``conv5_3.conv`` still resolves), and the basis' weights under ``f"{layer}.basis.weights"`` (so caches keyed by
the model's weights tell two bases apart).  On leaving the block -- also after an exception or a
``KeyboardInterrupt`` -- the original module is put back: no wrapper, hook or basis weights are left behind.
Layers and traces must be looked up inside the block (``Trace(model, view.layer)`` resolves names when made).
While the block runs, every forward pass of the model (of any thread) goes through the wrapper; without an edit
its output is the layer's own.

The channel axis is dim 1 for ``[B, C, H, W]`` and ``[B, C]`` outputs and the last one for token outputs
``[B, N, C]``; the features keep the layer's layout (``channel_dim=`` declares another axis, e.g. ``-1`` for a
channels-last map).  A basis whose width does not match the layer raises :class:`BasisError` naming both sizes.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .layouts import primary_tensor, replace_primary
from .layernames import register_name_hint
from .trace import get_module

__all__ = ["BasisError", "Basis", "IdentityBasis", "DictionaryBasis", "DirectionsBasis", "BasisView", "with_basis",
           "feature_layer", "is_feature_layer", "unit_noun", "ACTIVATIONS"]

ACTIVATIONS = ("topk", "relu")
"""Activations of a :class:`DictionaryBasis`: ``"topk"`` keeps the ``k`` largest pre-activations per position
(after a ReLU), ``"relu"`` keeps every positive one."""

TAP = "basis"
"""Name of the child the wrapper adds to the layer; features are at ``f"{layer}.basis.features"``."""

Names = Optional[Sequence[str]]



def _feature_layer_hint(name: str) -> Optional[str]:
    """Why a feature layer's name is missing: its basis is not installed (features exist only while it is)."""
    if ".basis." not in name:
        return None
    return (f"{name!r} names the features of a basis, which exist only while it is installed: "
            f"view = ganviz.with_basis(model, {name.split('.basis.')[0]!r}, basis).install() (or a with block)")


register_name_hint(_feature_layer_hint)

class BasisError(ValueError):
    """A basis does not fit a layer (width, rank of the output), or cannot be installed there."""


def feature_layer(layer: str) -> str:
    """The name of the features of ``layer`` inside :func:`with_basis`: ``f"{layer}.basis.features"``."""
    return f"{layer}.{TAP}.features"


def is_feature_layer(layer: str) -> bool:
    """Whether ``layer`` names the features of a basis installed by :func:`with_basis`."""
    return layer.endswith(f".{TAP}.features")


def unit_noun(layer: str, n: int = 1, capital: bool = False) -> str:
    """What one channel of ``layer`` is called in what a user reads: "feature(s)" in a basis, "unit(s)" otherwise."""
    word = ("feature" if is_feature_layer(layer) else "unit") + ("" if n == 1 else "s")
    return word.capitalize() if capital else word


def _as_matrix(t: Any, name: str, shape: Tuple[Optional[int], ...]) -> Tensor:
    """``t`` as a float32 tensor of ``shape`` (None: any size), or a :class:`BasisError` naming ``name``."""
    t = torch.as_tensor(t).detach()
    if not t.is_floating_point():
        t = t.float()
    ok = t.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, t.shape))
    if not ok:
        want = "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"
        raise BasisError(f"{name} must have shape {want}, got {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise BasisError(f"{name} holds NaN or infinite values")
    return t.to(torch.float32).contiguous()


# -- bases ----------------------------------------------------------------------------------------------------------


class Basis(nn.Module):
    """A way to read ``width`` channels as ``n_features`` features, per position.

    Subclasses implement :meth:`encode_vectors` ``[..., C] -> [..., F]`` and :meth:`decode_vectors`
    ``[..., F] -> [..., C]``; :meth:`encode` / :meth:`decode` apply them along a channel axis (dim 1 by default:
    ``[B, C, H, W] -> [B, F, H, W]``).  ``names`` (optional) label the features.  Weights are buffers, so they
    follow ``.to(device)`` and are part of ``state_dict()``.
    """

    def __init__(self, width: int, n_features: int, names: Names = None) -> None:
        super().__init__()
        if int(width) <= 0 or int(n_features) <= 0:
            raise BasisError(f"a basis needs a positive width and number of features, got {width} and {n_features}")
        self.width, self.n_features = int(width), int(n_features)
        self.names: Optional[Tuple[str, ...]] = None
        self.set_names(names)

    def set_names(self, names: Names) -> "Basis":
        """Label the features (``None`` clears the labels); returns the basis."""
        if names is not None:
            names = tuple(str(n) for n in names)
            if len(names) != self.n_features:
                raise BasisError(f"{len(names)} names for {self.n_features} features")
        self.names = names
        return self

    def name(self, i: int) -> str:
        """The label of feature ``i`` (``"feature i"`` when unnamed)."""
        return self.names[i] if self.names is not None else f"feature {int(i)}"

    def encode_vectors(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def decode_vectors(self, f: Tensor) -> Tensor:
        raise NotImplementedError

    def decode_delta_vectors(self, new: Tensor, old: Tensor) -> Tensor:
        """``decode(new) - decode(old)`` (linear decoders compute it without the bias)."""
        return self.decode_vectors(new) - self.decode_vectors(old)

    def check_width(self, x: Tensor, dim: int = 1, where: str = "the input") -> None:
        """Raise :class:`BasisError` unless ``x`` has ``width`` channels along ``dim``."""
        if x.ndim == 0 or x.shape[dim] != self.width:
            have = "no channel axis" if x.ndim == 0 else f"{x.shape[dim]} channels along dim {dim}"
            raise BasisError(f"the basis reads {self.width} channels but {where} has {have} (shape "
                             f"{list(x.shape)}); use a basis made for this layer")

    def encode(self, x: Tensor, dim: int = 1) -> Tensor:
        """Features of ``x`` along channel axis ``dim``: ``[B, C, H, W] -> [B, F, H, W]``."""
        self.check_width(x, dim)
        return self.encode_vectors(x.movedim(dim, -1)).movedim(-1, dim)

    def decode(self, f: Tensor, dim: int = 1) -> Tensor:
        """Channels from features along ``dim``: ``[B, F, H, W] -> [B, C, H, W]``."""
        return self.decode_vectors(f.movedim(dim, -1)).movedim(-1, dim)

    def reconstruct(self, x: Tensor, dim: int = 1) -> Tensor:
        """``decode(encode(x))``: what the basis keeps of ``x``."""
        return self.decode(self.encode(x, dim), dim)

    def apply_edit(self, x: Tensor, f: Tensor, f_edited: Tensor, dim: int = 1) -> Tensor:
        """The layer output for features ``f_edited`` read from output ``x`` as ``f``: ``x + decode(f_edited) -
        decode(f)`` (the reconstruction error ``x - decode(f)`` is kept)."""
        delta = self.decode_delta_vectors(f_edited.movedim(dim, -1), f.movedim(dim, -1)).movedim(-1, dim)
        return x + delta.to(x.dtype)

    def extra_repr(self) -> str:
        return f"width={self.width}, n_features={self.n_features}" + (", named" if self.names else "")


class IdentityBasis(Basis):
    """The units themselves (``F = C``): today's behaviour, and the reference every other basis is compared to."""

    def __init__(self, width: int, names: Names = None) -> None:
        super().__init__(width, width, names)

    def encode_vectors(self, v: Tensor) -> Tensor:
        return v

    def decode_vectors(self, f: Tensor) -> Tensor:
        return f

    def apply_edit(self, x: Tensor, f: Tensor, f_edited: Tensor, dim: int = 1) -> Tensor:
        return f_edited


class DictionaryBasis(Basis):
    """A sparse dictionary (an SAE): ``f = act((x - b_dec) @ W_enc + b_enc)``, ``decode(f) = f @ W_dec + b_dec``.

    Shapes (the SAELens / Gao et al. convention): ``W_enc [C, F]``, ``b_enc [F]``, ``W_dec [F, C]`` (one row per
    feature: its direction in the layer), ``b_dec [C]``.  ``activation``: ``"topk"`` (keep the ``k`` largest
    pre-activations per position, ReLU'd) or ``"relu"``.  ``report`` holds training statistics when the basis
    came from :func:`ganviz.sae.train_sae`.
    """

    def __init__(self, W_enc: Any, b_enc: Any, W_dec: Any, b_dec: Any, activation: str = "topk",
                 k: Optional[int] = None, names: Names = None) -> None:
        W_enc = torch.as_tensor(W_enc)
        if W_enc.ndim != 2:
            raise BasisError(f"W_enc must be a matrix [C, F], got shape {list(W_enc.shape)}")
        c, f = int(W_enc.shape[0]), int(W_enc.shape[1])
        super().__init__(c, f, names)
        if activation not in ACTIVATIONS:
            raise BasisError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if activation == "topk" and (k is None or not 1 <= int(k) <= f):
            raise BasisError(f"a topk dictionary needs 1 <= k <= {f} (its features), got k={k}")
        self.activation, self.k = activation, None if k is None else int(k)
        self.register_buffer("W_enc", _as_matrix(W_enc, "W_enc", (c, f)))
        self.register_buffer("b_enc", _as_matrix(b_enc, "b_enc", (f,)))
        self.register_buffer("W_dec", _as_matrix(W_dec, f"W_dec (for W_enc {[c, f]})", (f, c)))
        self.register_buffer("b_dec", _as_matrix(b_dec, f"b_dec (for W_enc {[c, f]})", (c,)))
        # the activation is part of the state, so weights hashes (and dissection caches) tell k=16 from k=32
        self.register_buffer("config", torch.tensor([ACTIVATIONS.index(activation), self.k or 0]))
        self.report: Any = None

    def pre_activations(self, v: Tensor) -> Tensor:
        """``(v - b_dec) @ W_enc + b_enc`` for vectors ``[..., C]``."""
        w = self.W_enc.to(v)
        return (v - self.b_dec.to(v)) @ w + self.b_enc.to(v)

    def encode_vectors(self, v: Tensor) -> Tensor:
        pre = self.pre_activations(v)
        if self.activation == "relu":
            return torch.relu(pre)
        vals, idx = pre.topk(int(self.k or 1), dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))

    def decode_vectors(self, f: Tensor) -> Tensor:
        return f @ self.W_dec.to(f) + self.b_dec.to(f)

    def decode_delta_vectors(self, new: Tensor, old: Tensor) -> Tensor:
        return (new - old) @ self.W_dec.to(new)

    def extra_repr(self) -> str:
        act = f"topk k={self.k}" if self.activation == "topk" else "relu"
        return f"width={self.width}, n_features={self.n_features}, {act}"


class DirectionsBasis(Basis):
    """Concept directions: ``f = (x - center) @ D.T`` with unit-norm rows ``D [F, C]`` (one per concept).

    ``decode(f) = center + f @ pinv(D).T`` is the least-squares (minimum-norm) way back: for independent
    directions, ``encode(decode(f)) == f``, and an edit inside :func:`with_basis` moves the layer's output by the
    smallest change that sets the edited read-outs to their new values (removing a feature sets ``x``'s
    component along that concept to the center's, leaving the other read-outs as they were).  Dependent
    directions are decoded in the least-squares sense; the span of the directions is all they can write.
    ``center`` defaults to zero; :mod:`ganviz.directions` passes the mean activation.
    """

    def __init__(self, directions: Any, names: Names = None, center: Any = None) -> None:
        d = torch.as_tensor(directions)
        if d.ndim != 2:
            raise BasisError(f"directions must be a matrix [F, C], got shape {list(d.shape)}")
        super().__init__(int(d.shape[1]), int(d.shape[0]), names)
        d = _as_matrix(d, "directions", (None, None))
        norms = d.norm(dim=1, keepdim=True)
        if bool((norms < 1e-12).any()):
            raise BasisError(f"direction {int((norms[:, 0] < 1e-12).nonzero()[0])} is zero")
        d = d / norms
        c = torch.zeros(self.width) if center is None else _as_matrix(center, "center", (self.width,))
        self.register_buffer("directions", d)
        self.register_buffer("center", c)
        self.register_buffer("dual", torch.linalg.pinv(d.double()).T.float().contiguous())  # [F, C]
        self.scores: Optional[Dict[str, float]] = None  # probe quality per direction, when fitted

    def encode_vectors(self, v: Tensor) -> Tensor:
        return (v - self.center.to(v)) @ self.directions.to(v).T

    def decode_vectors(self, f: Tensor) -> Tensor:
        return f @ self.dual.to(f) + self.center.to(f)

    def decode_delta_vectors(self, new: Tensor, old: Tensor) -> Tensor:
        return (new - old) @ self.dual.to(new)


# -- installing a basis in a model ----------------------------------------------------------------------------------


class _Tap(nn.Module):
    """``f"{layer}.basis"``: the basis' weights and the ``features`` identity that tools hook."""

    def __init__(self, basis: Basis, layer: str, channel_dim: Optional[int]) -> None:
        super().__init__()
        self.weights, self.features = basis, nn.Identity()
        self.layer, self.channel_dim = layer, channel_dim

    def _dim(self, y: Tensor) -> int:
        if self.channel_dim is not None:
            if not -y.ndim <= self.channel_dim < y.ndim:
                raise BasisError(f"channel_dim {self.channel_dim} is out of range for layer {self.layer!r}'s "
                                 f"{y.ndim}-D output {list(y.shape)}")
            return self.channel_dim % y.ndim
        dims = {2: 1, 3: 2, 4: 1}
        if y.ndim not in dims:
            raise BasisError(f"layer {self.layer!r} gives a {y.ndim}-D output {list(y.shape)}; a basis reads "
                             "[B, C, H, W], [B, C] or tokens [B, N, C] (pass channel_dim= for other layouts)")
        return dims[y.ndim]

    def forward(self, y: Tensor) -> Tensor:
        dim = self._dim(y)
        self.weights.check_width(y, dim, where=f"layer {self.layer!r}")
        f = self.weights.encode(y, dim)
        f_in = f.view_as(f)  # a node of its own: gradients w.r.t. the features are decode's, the rest cancels
        f_out = self.features(f_in)
        if f_out is f_in and not torch.is_grad_enabled():
            return y
        if not isinstance(f_out, Tensor) or f_out.shape != f.shape:
            got = list(f_out.shape) if isinstance(f_out, Tensor) else type(f_out).__name__
            raise BasisError(f"an edit of {feature_layer(self.layer)!r} must keep the features' shape "
                             f"{list(f.shape)}, got {got}")
        return self.weights.apply_edit(y, f, f_out, dim)


class _BasisLayer(nn.Module):
    """Stands in for a layer inside :func:`with_basis`: the original's own parameters, buffers and children under
    their names, plus the :class:`_Tap` named ``basis``; its forward is the original's, read through the tap."""

    def __init__(self, original: nn.Module, tap: _Tap) -> None:
        super().__init__()
        self.__dict__["original"] = original  # not a child: its children are shown directly
        self._parameters = original._parameters
        self._buffers = original._buffers
        self._non_persistent_buffers_set = original._non_persistent_buffers_set
        for name, child in original._modules.items():
            self._modules[name] = child
        self._modules[TAP] = tap
        self.training = original.training

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.original(*args, **kwargs)
        try:
            y = primary_tensor(out)
        except TypeError:
            raise BasisError(f"layer {self._modules[TAP].layer!r} returned {type(out).__name__}, which holds no "
                             "tensor to read in a basis") from None
        new = self._modules[TAP](y)
        return out if new is y else replace_primary(out, new)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "training" and "original" in self.__dict__:  # train(), eval() and eval_mode's restore
            self.__dict__["original"].training = value

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = self.__dict__.get("original")
            if original is None:
                raise
            return getattr(original, name)  # the original's plain attributes (out_channels, z_dim ...)

    def extra_repr(self) -> str:
        return f"wraps {type(self.original).__name__}"


class BasisView:
    """``layer`` of ``model`` read in ``basis`` while active (a context manager; see the module docstring).

    ``view.layer`` names the features (``f"{layer}.basis.features"``); ``install()`` / ``remove()`` do what
    entering and leaving do, for code that cannot use ``with``.
    """

    def __init__(self, model: nn.Module, layer: str, basis: Basis, channel_dim: Optional[int] = None) -> None:
        if not isinstance(basis, Basis):
            raise TypeError(f"basis must be a ganviz.basis.Basis, got {type(basis).__name__}")
        if not isinstance(layer, str) or not layer:
            raise BasisError("with_basis needs the dotted name of a submodule, e.g. 'conv5_3' (not the model)")
        get_module(model, layer)  # LayerNotFoundError with the closest names
        self.model, self.base_layer, self.basis, self.channel_dim = model, layer, basis, channel_dim
        self._wrapper: Optional[_BasisLayer] = None

    @property
    def layer(self) -> str:
        """The features' layer name, for ``Trace``, ``dissect_*``, ``gradcam``, ``GeneratorProbe`` ..."""
        return feature_layer(self.base_layer)

    @property
    def n_features(self) -> int:
        return self.basis.n_features

    @property
    def names(self) -> Optional[Tuple[str, ...]]:
        return self.basis.names

    @property
    def active(self) -> bool:
        return self._wrapper is not None

    def _parent(self) -> Tuple[nn.Module, str]:
        path = self.base_layer.split(".")
        module: nn.Module = self.model
        for part in path:
            if isinstance(module, (_BasisLayer, _Tap)):
                raise BasisError(f"{self.base_layer!r} lies inside a layer already read in a basis; "
                                 "leave that with_basis block first")
            parent, module = module, module._modules[part]  # type: ignore[assignment]
        if isinstance(module, _BasisLayer) or TAP in module._modules:
            raise BasisError(f"layer {self.base_layer!r} is already read in a basis (or has a child named "
                             f"{TAP!r}); leave that with_basis block first")
        return parent, path[-1]

    def install(self) -> "BasisView":
        """Put the wrapper in place (entering the ``with`` block does this)."""
        if self._wrapper is not None:
            raise RuntimeError("this basis view is already active")
        parent, name = self._parent()
        original = parent._modules[name]
        assert original is not None
        wrapper = _BasisLayer(original, _Tap(self.basis, self.base_layer, self.channel_dim))
        parent._modules[name] = wrapper
        self._wrapper = wrapper
        return self

    def remove(self) -> None:
        """Put the original module back (with the train/eval flag the model gave the layer meanwhile)."""
        wrapper, self._wrapper = self._wrapper, None
        if wrapper is None:
            return
        parent, name = self._parent_of_wrapper(wrapper)
        if parent is not None:
            parent._modules[name] = wrapper.original

    def _parent_of_wrapper(self, wrapper: _BasisLayer) -> Tuple[Optional[nn.Module], str]:
        path = self.base_layer.split(".")
        module: Optional[nn.Module] = self.model
        for part in path[:-1]:
            module = module._modules.get(part) if module is not None else None
        if module is None or module._modules.get(path[-1]) is not wrapper:
            return None, path[-1]  # the caller replaced the layer meanwhile: leave their module in place
        return module, path[-1]

    def __enter__(self) -> "BasisView":
        return self.install()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"BasisView({self.base_layer!r}, {type(self.basis).__name__}, {self.n_features} features, {state})"


def with_basis(model: nn.Module, layer: str, basis: Union[Basis, int], *,
               channel_dim: Optional[int] = None) -> BasisView:
    """Read ``layer`` of ``model`` in ``basis`` inside a ``with`` block (an int: ``IdentityBasis(int)``).

    ``with with_basis(model, "conv5_3", basis) as view: dissect_classifier(model, view.layer, source)``.
    """
    if isinstance(basis, int) and not isinstance(basis, bool):
        basis = IdentityBasis(basis)
    return BasisView(model, layer, basis, channel_dim)
