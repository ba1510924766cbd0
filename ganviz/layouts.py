"""Layer outputs of any layout presented as ``[B, C, H, W]`` maps, and edits of those maps written back.

    lay = infer_layout(out.shape, image_hw=(224, 224))   # [2, 197, 768] -> tokens_cls 14x14, 1 prefix token
    fmap = lay.to_map(out)                               # [2, 768, 14, 14] (a view of ``out``)
    cls = lay.prefix(out)                                # [2, 1, 768]: the class token (it has no position)
    fmap = fmap.clone(); fmap[:, 5] = 0                  # an edit (ablate unit 5 everywhere on the grid)
    out2 = lay.from_map(fmap, out)                       # [2, 197, 768], the class token unchanged

Kinds (:data:`KINDS`): ``"bchw"`` (PyTorch's convolutional maps), ``"bhwc"`` (channels-last blocks: Swin,
ConvNeXt's inner MLP), ``"tokens"`` (``[B, H*W, C]``, row-major grid), ``"tokens_cls"`` (``[B, P+H*W, C]``:
``P`` prefix tokens -- a class token, DeiT's distillation token, registers -- then the grid), ``"bc"``
(``[B, C]``, shown as a 1x1 map).  Aliases: ``nchw``, ``nhwc``, ``nlc``/``blc``/``bnc``, ``nc``.

Inference rules of :func:`infer_layout` (it never guesses between two readings; it raises :class:`LayoutError`):

* 2-D ``[B, C]`` -> ``bc``.
* 4-D ``[B, d1, d2, d3]`` -> ``bchw``, unless ``(d1, d2)`` looks like the spatial grid and ``(d2, d3)`` does not,
  then ``bhwc``.  A pair "looks spatial" when it is square (no ``image_hw`` given) or, with ``image_hw``, when it
  fits the image's aspect ratio at some stride (within one cell of rounding) and is no larger than the image.
  Ties go to ``bchw`` (every CNN keeps working: ``[B, 64, 64, 64]`` is ``bchw``), so a channels-last map
  whose channel count also looks spatial must be declared ``"bhwc"``.
* 3-D ``[B, N, C]`` (the transformer convention: tokens, then channels) -> ``tokens`` when ``N`` is a grid,
  ``tokens_cls`` with one prefix token when ``N - 1`` is one.  A grid is square, or with ``image_hw`` any
  ``H x W`` that fits the image's aspect ratio.  Two readings (e.g. 3x4 or 4x3) raise; so do two or more prefix
  tokens (DeiT-distilled's ``[B, 2+H*W, C]``, registers): declare those, e.g. ``Layout("tokens_cls",
  prefix_tokens=2)``.
* Anything else raises :class:`LayoutError` naming the shape and how to declare the layout.

:func:`primary_tensor` / :func:`replace_primary` take the tensor out of (and put it back into) hooked outputs
that are tuples or ``ModelOutput`` dicts (some Hugging Face layers return ``(hidden_states,)``).
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, replace
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ["KINDS", "ALIASES", "Layout", "LayoutError", "LayoutSpec", "infer_layout", "parse_layout",
           "primary_tensor", "replace_primary"]

KINDS = ("bchw", "bhwc", "tokens", "tokens_cls", "bc")
"""Layout kinds, see the module docstring."""

ALIASES = {"nchw": "bchw", "nhwc": "bhwc", "nlc": "tokens", "blc": "tokens", "bnc": "tokens", "nc": "bc",
           "cls_tokens": "tokens_cls"}
"""Other spellings accepted for the kinds (timm writes ``NCHW`` / ``NHWC`` / ``NLC``)."""

_NDIM = {"bchw": 4, "bhwc": 4, "tokens": 3, "tokens_cls": 3, "bc": 2}
_SPEC = re.compile(r"^(?P<kind>[a-z_]+)(?::(?P<h>\d+)x(?P<w>\d+))?(?:\+(?P<p>\d+))?$")
_DECLARE_HINT = ("declare it, e.g. layout='tokens_cls' (prefix token(s) first, then a row-major H x W grid), "
                 "Layout('tokens_cls', height=14, width=14, prefix_tokens=2), 'tokens:14x20', or 'bhwc' for a "
                 "channels-last map")

ShapeLike = Union[Sequence[int], torch.Size, Tensor]
ImageHW = Optional[Union[int, Tuple[int, int], Sequence[int]]]


class LayoutError(ValueError):
    """A layer output's layout cannot be inferred, or does not fit the declared layout."""


@dataclass(frozen=True)
class Layout:
    """How a layer output lays out batch, channels and positions; :meth:`to_map` gives ``[B, C, H, W]``.

        Layout("bhwc").to_map(x)                         # x: [B, H, W, C]
        Layout("tokens_cls", 14, 14).to_map(x)           # x: [B, 1 + 196, C]
        Layout("tokens_cls", prefix_tokens=2)            # DeiT-distilled: class + distillation token

    ``height``/``width`` (the grid) may be left out: they are then read from each tensor's shape (square grids,
    or the declared one of the two); ``prefix_tokens`` defaults to 1 for ``tokens_cls`` and is 0 otherwise.
    """

    kind: str = "bchw"
    height: Optional[int] = None
    width: Optional[int] = None
    prefix_tokens: Optional[int] = None

    def __post_init__(self) -> None:
        kind = str(self.kind).strip().lower()
        kind = ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise ValueError(f"unknown layout kind {self.kind!r}; kinds: {', '.join(KINDS)} "
                             f"(aliases: {', '.join(ALIASES)})")
        object.__setattr__(self, "kind", kind)
        p = self.prefix_tokens
        if p is None:
            p = 1 if kind == "tokens_cls" else 0
        p = int(p)
        if kind == "tokens_cls" and p < 1:
            raise ValueError("a 'tokens_cls' layout has at least one prefix token; use 'tokens' for none")
        if kind != "tokens_cls" and p != 0:
            raise ValueError(f"only 'tokens_cls' layouts have prefix tokens (got {p} for {kind!r})")
        object.__setattr__(self, "prefix_tokens", p)
        for name in ("height", "width"):
            v = getattr(self, name)
            if v is not None:
                if int(v) < 1:
                    raise ValueError(f"layout {name} must be positive, got {v}")
                object.__setattr__(self, name, int(v))
        if kind == "bc" and (self.height or 1) * (self.width or 1) != 1:
            raise ValueError("a 'bc' layout is a 1x1 map")

    # -- description ------------------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Dimensions of a tensor in this layout (batch included)."""
        return _NDIM[self.kind]

    @property
    def is_tokens(self) -> bool:
        return self.kind in ("tokens", "tokens_cls")

    @property
    def grid(self) -> Optional[Tuple[int, int]]:
        """``(height, width)`` when both are known."""
        return (self.height, self.width) if self.height is not None and self.width is not None else None

    def __str__(self) -> str:
        grid = f":{self.height}x{self.width}" if self.grid else ""
        extra = f"+{self.prefix_tokens}" if self.kind == "tokens_cls" and self.prefix_tokens != 1 else ""
        return f"{self.kind}{grid}{extra}"

    # -- resolution against a shape ---------------------------------------------------------------------------
    def resolve(self, shape: ShapeLike, image_hw: ImageHW = None) -> "Layout":
        """This layout with the grid read from ``shape``; raises :class:`LayoutError` if ``shape`` does not fit."""
        shape = _shape(shape)
        if len(shape) != self.ndim:
            raise LayoutError(f"a layer output of shape {shape} is {len(shape)}-D but layout {str(self)!r} is "
                              f"{self.ndim}-D ({_describe(self.kind)})")
        if self.kind == "bc":
            return replace(self, height=1, width=1)
        if self.kind in ("bchw", "bhwc"):
            h, w = shape[2:4] if self.kind == "bchw" else shape[1:3]
            if (self.height is not None and self.height != h) or (self.width is not None and self.width != w):
                raise LayoutError(f"a layer output of shape {shape} has a {h}x{w} grid in layout {self.kind!r}, "
                                  f"not the declared {self.height}x{self.width}")
            return replace(self, height=h, width=w)
        n = shape[1] - self.prefix_tokens
        if n < 1:
            raise LayoutError(f"a layer output of shape {shape} has {shape[1]} tokens, no more than the "
                              f"{self.prefix_tokens} prefix token(s) of layout {str(self)!r}")
        if self.height is not None or self.width is not None:
            h = self.height if self.height is not None else (n // self.width if n % self.width == 0 else None)
            w = self.width if self.width is not None else (n // self.height if n % self.height == 0 else None)
            if h is None or w is None or h * w != n:
                raise LayoutError(f"a layer output of shape {shape} has {n} grid tokens after "
                                  f"{self.prefix_tokens} prefix token(s), which is not the declared "
                                  f"{self.height or '?'}x{self.width or '?'} grid")
            return replace(self, height=h, width=w)
        grids = _token_grids(n, _image_hw(image_hw))
        if len(grids) != 1:
            why = ("it is neither square nor (without image_hw) of a known aspect ratio" if not grids else
                   "it could be " + " or ".join(f"{a}x{b}" for a, b in grids))
            raise LayoutError(f"cannot tell the grid of {n} tokens in a layer output of shape {shape}: {why}; "
                              f"declare it, e.g. Layout({self.kind!r}, height=..., width=...)")
        (h, w), = grids
        return replace(self, height=h, width=w)

    def map_shape(self, shape: ShapeLike) -> Tuple[int, int, int, int]:
        """``(B, C, H, W)`` of the map of a tensor of ``shape``."""
        shape = _shape(shape)
        lay = self.resolve(shape)
        c = shape[1] if self.kind in ("bchw", "bc") else shape[-1]
        return (shape[0], c, lay.height, lay.width)  # type: ignore[return-value]

    # -- conversions ------------------------------------------------------------------------------------------
    def to_map(self, x: Tensor) -> Tensor:
        """``x`` in this layout -> ``[B, C, H, W]`` (a view where possible, differentiable, prefix tokens left out)."""
        lay = self.resolve(x.shape)
        if lay.kind == "bchw":
            return x
        if lay.kind == "bc":
            return x[:, :, None, None]
        if lay.kind == "bhwc":
            return x.permute(0, 3, 1, 2)
        body = x[:, lay.prefix_tokens:]
        return body.reshape(x.shape[0], lay.height, lay.width, x.shape[-1]).permute(0, 3, 1, 2)

    def from_map(self, fmap: Tensor, original: Tensor) -> Tensor:
        """A ``[B, C, H, W]`` map (e.g. edited) back in this layout, shaped like ``original`` (contiguous).

        Prefix tokens are taken unchanged from ``original`` (cast to the map's dtype and device).  A map of several
        images may go back into the output of one image (each gets its prefix tokens): trials fanned out at a layer.
        """
        expected = self.map_shape(original.shape)
        fanned = original.shape[0] == 1 and tuple(fmap.shape[1:]) == expected[1:]
        if tuple(fmap.shape) != expected and not fanned:
            raise LayoutError(f"a map of shape {tuple(fmap.shape)} cannot go back into a layer output of shape "
                              f"{tuple(original.shape)} in layout {str(self)!r}: expected a map of shape {expected}")
        if self.kind == "bchw":
            return fmap
        if self.kind == "bc":
            return fmap[:, :, 0, 0]
        if self.kind == "bhwc":
            return fmap.permute(0, 2, 3, 1).contiguous()
        b, c = fmap.shape[:2]
        body = fmap.permute(0, 2, 3, 1).reshape(b, -1, c)
        p = int(self.prefix_tokens or 0)
        if p:
            prefix = original[:, :p].to(device=fmap.device, dtype=fmap.dtype).expand(b, -1, -1)
            body = torch.cat([prefix, body], dim=1)
        return body.contiguous()

    def prefix(self, x: Tensor) -> Optional[Tensor]:
        """The prefix tokens ``[B, P, C]`` (class token, distillation token, registers), or None if there are none."""
        lay = self.resolve(x.shape)
        return x[:, : lay.prefix_tokens] if lay.prefix_tokens else None


LayoutSpec = Union[str, Layout]


def parse_layout(spec: LayoutSpec) -> Layout:
    """A :class:`Layout` from itself or a string ``kind[:HxW][+P]``: ``"bhwc"``, ``"tokens:14x20"``,
    ``"tokens_cls:14x14+2"`` (two prefix tokens), ``"NCHW"``."""
    if isinstance(spec, Layout):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a layout is a Layout or a string such as 'tokens_cls', not {type(spec).__name__}")
    m = _SPEC.match(spec.strip().lower().replace(" ", ""))
    if not m:
        raise ValueError(f"cannot read layout {spec!r}: expected 'kind', 'kind:HxW' or 'kind:HxW+P' with kind "
                         f"one of {', '.join(KINDS)}")
    h, w, p = m.group("h"), m.group("w"), m.group("p")
    return Layout(m.group("kind"), int(h) if h else None, int(w) if w else None, int(p) if p else None)


def infer_layout(shape: ShapeLike, image_hw: ImageHW = None, declared: Optional[LayoutSpec] = None) -> Layout:
    """The layout (grid resolved) of a layer output of ``shape``: ``declared`` if given, else inferred.

        infer_layout((2, 197, 384))                         # tokens_cls 14x14
        infer_layout((2, 7, 7, 768))                        # bhwc 7x7
        infer_layout((2, 280, 384), image_hw=(224, 320))    # tokens 14x20
        infer_layout((2, 198, 384), declared="tokens_cls+2")

    ``image_hw`` is the size of the image the model saw (an int for square images); it allows non-square grids
    and makes the 4-D rule aware of the image's shape.  Rules in the module docstring; raises
    :class:`LayoutError` naming the shape and how to declare it when two readings fit or none does.
    """
    shape = _shape(shape)
    hw = _image_hw(image_hw)
    if declared is not None:
        return parse_layout(declared).resolve(shape, hw)
    if len(shape) == 2:
        return Layout("bc", 1, 1)
    if len(shape) == 4:
        _, d1, d2, d3 = shape
        if _looks_spatial(d1, d2, hw) and not _looks_spatial(d2, d3, hw):
            return Layout("bhwc", d1, d2)
        return Layout("bchw", d2, d3)
    if len(shape) == 3:
        n = shape[1]
        found: List[Layout] = []
        for p in (0, 1):
            if n - p >= 1:
                kind = "tokens_cls" if p else "tokens"
                found += [Layout(kind, h, w, p) for h, w in _token_grids(n - p, hw)]
        if len(found) == 1:
            return found[0]
        if not found:
            why = (f"neither {n} tokens nor {n - 1} after a class token form a square grid" + (
                "" if hw is None else f" or one of the {hw[0]}x{hw[1]} image's aspect ratio"))
        else:
            why = "it could be " + " or ".join(f"{lay.kind} {lay.height}x{lay.width}" for lay in found)
        raise LayoutError(f"cannot tell the layout of a layer output of shape {shape} "
                          f"(read as [batch, tokens, channels]): {why}; {_DECLARE_HINT}")
    raise LayoutError(f"cannot present a {len(shape)}-D layer output of shape {shape} as a [B, C, H, W] map: "
                      f"layouts are 2-D [B, C], 3-D [B, tokens, C] or 4-D [B, C, H, W] / [B, H, W, C]")


# -- hooked outputs that are not plain tensors ------------------------------------------------------------------
def _first_key(output: Any) -> Any:
    if isinstance(output, Tensor):
        return None
    if isinstance(output, Mapping):
        for key, value in output.items():
            if isinstance(value, Tensor):
                return key
    elif isinstance(output, (tuple, list)):
        for i, value in enumerate(output):
            if isinstance(value, Tensor):
                return i
    raise TypeError(f"a layer output of type {type(output).__name__} holds no tensor to present as a map")


def primary_tensor(output: Any) -> Tensor:
    """The tensor a layer output stands for: itself, or the first tensor of a tuple / list / ``ModelOutput``."""
    key = _first_key(output)
    return output if key is None else output[key]


def replace_primary(output: Any, tensor: Tensor) -> Any:
    """``output`` with its :func:`primary_tensor` replaced by ``tensor`` (same container type; not in place)."""
    key = _first_key(output)
    if key is None:
        return tensor
    if isinstance(output, Mapping):
        new = copy.copy(output)
        new[key] = tensor  # ModelOutput's __setitem__ updates the attribute too
        return new
    items = list(output)
    items[key] = tensor
    if isinstance(output, list):
        return items
    return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)


# -- helpers ----------------------------------------------------------------------------------------------------
def _shape(shape: ShapeLike) -> Tuple[int, ...]:
    if isinstance(shape, Tensor):
        shape = shape.shape
    try:
        return tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"expected a shape (a sequence of ints) or a tensor, not {type(shape).__name__}") from None


def _image_hw(image_hw: ImageHW) -> Optional[Tuple[int, int]]:
    if image_hw is None:
        return None
    if isinstance(image_hw, int):
        return (image_hw, image_hw)
    hw = tuple(int(v) for v in image_hw)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"image_hw must be an int or (height, width) of positive ints, got {image_hw!r}")
    return hw  # type: ignore[return-value]


def _fits_image(a: int, b: int, hw: Tuple[int, int]) -> bool:
    """An ``a x b`` grid is the image ``hw`` at some stride, within one cell of rounding."""
    img_h, img_w = hw
    if a > img_h or b > img_w:
        return False
    stride = math.sqrt(img_h * img_w / (a * b))
    return abs(a - img_h / stride) <= 1 and abs(b - img_w / stride) <= 1


def _looks_spatial(a: int, b: int, hw: Optional[Tuple[int, int]]) -> bool:
    return a == b if hw is None else _fits_image(a, b, hw)


def _token_grids(n: int, hw: Optional[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Grids ``(h, w)`` with ``h * w == n``: the square one, and with ``hw`` those of the image's aspect ratio."""
    grids = set()
    r = math.isqrt(n)
    if r * r == n:
        grids.add((r, r))
    if hw is not None:
        for h in range(1, r + 1):
            if n % h == 0:
                for a, b in ((h, n // h), (n // h, h)):
                    if _fits_image(a, b, hw):
                        grids.add((a, b))
    return sorted(grids)


def _describe(kind: str) -> str:
    return {"bchw": "[B, C, H, W]", "bhwc": "[B, H, W, C]", "tokens": "[B, H*W, C]",
            "tokens_cls": "[B, P + H*W, C]", "bc": "[B, C]"}[kind]
