"""GAN Paint without widgets: strokes of concepts turned into unit edits at one generator layer.

A :class:`Stroke` is a concept, a mode (``"draw"`` sets the concept's units to their high quantile level inside
the stroke, ``"remove"`` sets them to zero), a strength (how many of the concept's top units) and a mask at image
resolution.  :class:`Painter` keeps the strokes of one latent, with undo and reset, and renders the edited image.
The mask reaches the layer max-pooled (``SetLevel``); strokes apply in order, so two strokes of the same concept
and mode composite as ``1 - (1 - a)(1 - b)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .plumbing import eval_mode, model_device
from .dissect import DissectionResult
from .imaging import to_uint8
from .inversion import InversionResult, reconstruct
from .edits import Compose, Replace, SetLevel
from .trace import Trace, get_module

__all__ = ["STRENGTHS", "MODES", "brush_mask", "Stroke", "Painter"]

STRENGTHS: Dict[str, int] = {"low": 4, "med": 10, "high": 15}
"""Units per concept for each strength (the GANPaint client's top 4/10/15)."""

MODES = ("draw", "remove")


MAX_STROKE_POINTS = 10_000
"""Points one stroke may have (a mouse drag sends a few hundred)."""


def _clip_segment(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of segment ``a``-``b`` inside the box ``[lo, hi]`` (Liang-Barsky), or None when it misses it."""
    t0, t1, d = 0.0, 1.0, b - a
    for k in range(2):
        if d[k] == 0:
            if not lo[k] <= a[k] <= hi[k]:
                return None
            continue
        ta, tb = (lo[k] - a[k]) / d[k], (hi[k] - a[k]) / d[k]
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t0 > t1:
            return None
    return a + d * t0, a + d * t1


def brush_mask(points: Sequence[Tuple[float, float]], radius: float, size: Tuple[int, int]) -> np.ndarray:
    """A ``(H, W)`` float mask of discs of ``radius`` pixels along the polyline through ``points`` ``(x, y)``.

    Points must be finite and at most :data:`MAX_STROKE_POINTS`; the polyline is clipped to the image (plus the
    radius), so a point far outside costs nothing; the radius must be positive and at most the image's size.
    """
    h, w = size
    if not np.isfinite(radius) or not 0 < radius <= max(h, w):
        raise ValueError(f"brush radius must be a positive number of pixels up to {max(h, w)}, got {radius}")
    mask = np.zeros((h, w), np.float32)
    if not len(points):
        return mask
    if len(points) > MAX_STROKE_POINTS:
        raise ValueError(f"a stroke has at most {MAX_STROKE_POINTS:,} points, got {len(points):,}")
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise ValueError("stroke points must be finite numbers (x, y) in image pixels")
    lo, hi = np.array([-radius, -radius]), np.array([w + radius, h + radius])
    step = max(radius / 2, 0.5)  # sample segments every half radius so the stroke has no gaps
    pairs = zip(pts[:-1], pts[1:]) if len(pts) > 1 else [(pts[0], pts[0])]
    for a, b in pairs:
        clipped = _clip_segment(a, b, lo, hi)
        if clipped is None:
            continue
        a, b = clipped
        n = max(1, int(np.ceil(np.hypot(*(b - a)) / step)))
        for x, y in (a + (b - a) * t for t in np.linspace(0, 1, n + 1)):
            _disc(mask, x, y, radius)
    return mask


def _disc(mask: np.ndarray, x: float, y: float, radius: float) -> None:
    """Set the pixels whose centres lie within ``radius`` of ``(x, y)``, touching only the disc's window."""
    h, w = mask.shape
    x0, x1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)) + 1, w)
    y0, y1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    mask[y0:y1, x0:x1][(xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= radius ** 2] = 1.0


@dataclass(frozen=True)
class Stroke:
    """One paint stroke: ``concept``, ``mode`` (draw/remove), ``strength`` (name or unit count) and ``mask``."""

    concept: str
    mode: str
    strength: Union[str, int]
    mask: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mask.ndim != 2:
            raise ValueError(f"a stroke mask is (H, W), got shape {self.mask.shape}")


class Painter:
    """Paint concepts into ``generator(z)`` by editing ``layer`` (dissected in ``result``).

    ``ranking`` optionally overrides the per-concept unit order (default: by IoU, as in GANPaint); ``level_quantile``
    is the quantile whose activation value \"draw\" writes into the units (its threshold there); ``strengths`` maps strength names to unit counts.
    """

    def __init__(self, generator: nn.Module, layer: str, result: DissectionResult, z: Tensor, *,
                 level_quantile: float = 0.99, strengths: Optional[Mapping[str, int]] = None,
                 ranking: Optional[Mapping[str, Sequence[int]]] = None,
                 output_range: Tuple[float, float] = (-1.0, 1.0)) -> None:
        get_module(generator, layer)  # a clear error for a wrong name first
        if result.layer != layer:
            raise ValueError(f"the dissection is of {result.layer!r}, not of {layer!r}")
        self.generator = generator
        self.layer = layer
        self.result = result
        self.strengths = dict(STRENGTHS if strengths is None else strengths)
        self.ranking = {k: [int(u) for u in v] for k, v in (ranking or {}).items()}
        self.output_range = output_range
        self.device = model_device(generator)
        self.levels = torch.as_tensor(result.threshold_at(level_quantile))
        self.strokes: List[Stroke] = []
        self._redo: List[Stroke] = []
        self.z = self._check_z(z)
        self.inversion: Optional[InversionResult] = None
        self._original: Optional[np.ndarray] = None
        self._fold: Tuple[List[Stroke], Optional[Tensor], Optional[Tensor]] = ([], None, None)

    # -- concepts and units -------------------------------------------------------------------------------------
    def concepts(self, min_iou: float = 0.04) -> List[str]:
        """Concepts that some unit of the layer is labelled with (IoU >= ``min_iou``), most units first."""
        return list(self.result.concept_counts(min_iou))

    def units(self, concept: str, strength: Union[str, int] = "med") -> List[int]:
        """The top units of ``concept`` for ``strength``."""
        if isinstance(strength, str):
            if strength not in self.strengths:
                raise KeyError(f"no strength {strength!r}; strengths: {', '.join(self.strengths)}")
            n = self.strengths[strength]
        else:
            n = int(strength)
        if n < 1:
            raise ValueError(f"a stroke needs at least one unit, got strength {strength!r}")
        order = self.ranking.get(concept)
        if order is None:
            order = self.result.units_for(concept)
        return order[:n]

    # -- latent -------------------------------------------------------------------------------------------------
    def _check_z(self, z: Tensor) -> Tensor:
        z = torch.as_tensor(z)
        if z.ndim == 1:
            z = z[None]
        if z.shape[0] != 1:
            raise ValueError(f"a Painter paints one image: z must hold one latent, got shape {tuple(z.shape)}")
        if z.is_floating_point() and not bool(torch.isfinite(z).all()):
            raise ValueError("the latent holds NaN or infinite values")
        current = getattr(self, "z", None)
        if current is not None and tuple(z.shape) != tuple(current.shape):
            raise ValueError(f"the latent has shape {tuple(z.shape)}; this generator takes {tuple(current.shape)}")
        return z.to(self.device)

    def set_latent(self, z: Tensor) -> None:
        """Start over on a new latent (strokes are cleared)."""
        self.z = self._check_z(z)
        self.inversion = None
        self.strokes.clear()
        self._redo.clear()
        self._original = None

    def set_inversion(self, result: InversionResult) -> None:
        """Paint on an inverted image (its latent, layer features and fine-tuned generator); strokes are cleared.

        The inversion's features must be of this painter's layer (or absent), so that strokes edit them.
        """
        if result.layer is not None and result.layer != self.layer:
            raise ValueError(f"the inversion optimised {result.layer!r}; this painter paints {self.layer!r}: invert "
                             f"with layer={self.layer!r}")
        self.set_latent(result.z)
        self.inversion = result

    # -- strokes ------------------------------------------------------------------------------------------------
    def add(self, stroke: Stroke) -> None:
        if stroke.concept not in self.result.concept_names:
            raise KeyError(f"no concept {stroke.concept!r}; concepts: {', '.join(self.result.concept_names)}")
        self.units(stroke.concept, stroke.strength)  # validates the strength
        self.strokes.append(stroke)
        self._redo.clear()

    def paint(self, concept: str, points: Sequence[Tuple[float, float]], *, mode: str = "draw",
              strength: Union[str, int] = "med", radius: float = 4.0) -> Stroke:
        """Add a stroke along ``points`` (image pixel coordinates ``(x, y)``) and return it."""
        h, w = self.image_size
        stroke = Stroke(concept, mode, strength, brush_mask(points, radius, (h, w)))
        self.add(stroke)
        return stroke

    def undo(self) -> bool:
        """Remove the last stroke; False when there was none."""
        if not self.strokes:
            return False
        self._redo.append(self.strokes.pop())
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self.strokes.append(self._redo.pop())
        return True

    def reset(self) -> None:
        """Remove every stroke."""
        self.strokes.clear()
        self._redo.clear()

    # -- rendering ----------------------------------------------------------------------------------------------
    def _stroke_edit(self, s: Stroke) -> SetLevel:
        units = self.units(s.concept, s.strength)
        levels = self.levels[units] if s.mode == "draw" else torch.zeros(len(units))
        return SetLevel(units, levels.to(self.device), torch.as_tensor(s.mask, device=self.device))

    def edit(self, strokes: Optional[Sequence[Stroke]] = None) -> Optional[Compose]:
        """The layer edit of ``strokes`` (default: the current ones), one ``SetLevel`` per stroke; None when there
        are none."""
        edits = [self._stroke_edit(s) for s in (self.strokes if strokes is None else strokes)]
        return Compose(*edits) if edits else None

    def folded_edit(self, strokes: Optional[Sequence[Stroke]] = None) -> Optional[Replace]:
        """:meth:`edit` folded into one affine map of the layer's output, ``out * keep + written`` (every
        ``SetLevel`` is affine, so their composition is too): the cost of a redraw does not grow with the number of
        strokes.  Extending the previous strokes by new ones folds only the new ones."""
        strokes = list(self.strokes if strokes is None else strokes)
        done, keep, written = self._fold
        if len(done) > len(strokes) or any(a is not b for a, b in zip(done, strokes)):
            done, keep, written = [], None, None  # not an extension (undo, reset, another list): fold again
        shape = (1, self.result.num_units, *self.result.activation_size)
        for s in strokes[len(done):]:
            e = self._stroke_edit(s)
            zero = e.apply(torch.zeros(shape, device=self.device))
            one = e.apply(torch.ones(shape, device=self.device))
            keep, written = (one - zero, zero) if keep is None else (keep * (one - zero), written * (one - zero) + zero)
        self._fold = (strokes, keep, written)
        if keep is None:
            return None
        return Replace(lambda out, k=keep, w=written: (out * k + w).to(out.dtype))

    @torch.no_grad()
    def generate(self, strokes: Optional[Sequence[Stroke]] = None) -> Tensor:
        """The generator's raw output for the current latent with ``strokes`` applied."""
        edit = self.folded_edit(strokes)
        if self.inversion is not None:
            return reconstruct(self.generator, self.inversion, None if edit is None else {self.layer: edit})
        with eval_mode(self.generator), Trace(self.generator, [], retain_output=False,
                   edit=None if edit is None else {self.layer: edit}) as tr:
            return tr.run(self.z)

    def image(self, strokes: Optional[Sequence[Stroke]] = None) -> np.ndarray:
        """The painted image as ``(H, W, 3)`` uint8."""
        return to_uint8(self.generate(strokes)[0].float().cpu(), self.output_range)

    def original(self) -> np.ndarray:
        """The unpainted image (cached per latent)."""
        if self._original is None:
            self._original = self.image([])
        return self._original

    @property
    def image_size(self) -> Tuple[int, int]:
        return tuple(self.original().shape[:2])  # type: ignore[return-value]
