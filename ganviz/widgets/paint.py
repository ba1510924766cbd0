"""The concept paint canvas (GAN Paint): draw or remove concepts in a generated image with the mouse.

    canvas = PaintCanvas(generator, result)             # a GeneratorAdapter or a bare module; layer: result.layer
    canvas.stroke([(10, 30), (50, 30)], "tree")         # what a drag does
    canvas.state.observe(fn, names="strokes")           # concept, mode, strokes, seed are declared traits
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import ipywidgets as W
import numpy as np
import torch
import traitlets
from ipycanvas import Canvas

from ..adapters import GeneratorAdapter, as_generator
from ..dissect import DissectionResult
from ..imaging import concept_color, load_photo, upscale
from ..inversion import InversionResult, Inverter
from ..paint import STRENGTHS, Painter, Stroke, brush_mask
from ._base import ViewBase, ViewState, css

if TYPE_CHECKING:  # pragma: no cover
    from .inversion import InversionView

PREVIEW_BUDGET = 0.1
"""Seconds a generation may take for the image to also update during a drag (otherwise only on mouse-up)."""


PALETTE_ORDER = ("tree", "grass", "door", "dome", "sky", "cloud", "wall", "window", "roof", "water")
"""Concepts shown first in the palette when the layer has units for them (GANPaint's palette, then ours)."""

PALETTE_MIN_IOU = 0.01
"""A palette concept needs a unit with at least this IoU (below the 0.04 of a label: a dome is small, yet its
top units still draw domes on walls)."""

__all__ = ["PaintCanvas", "PaintState", "PALETTE_ORDER", "PALETTE_MIN_IOU", "PREVIEW_BUDGET"]


def _rgba(image: np.ndarray) -> np.ndarray:
    """RGB -> RGBA, so ipycanvas sends exact pixels (PNG) instead of JPEG."""
    return np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)


class PaintState(ViewState):
    """What a :class:`PaintCanvas` shows."""

    result = traitlets.Instance(DissectionResult, read_only=True, help="the dissection of the painted layer")
    palette = traitlets.List(traitlets.Unicode(), read_only=True, help="the concepts that can be painted")
    concept = traitlets.Unicode(help="the concept a stroke draws or removes (one of the palette)")
    mode = traitlets.Enum(("draw", "remove"), "draw", help="whether a stroke draws or removes the concept")
    strokes = traitlets.Int(0, read_only=True, help="strokes on the current image")
    seed = traitlets.Int(None, allow_none=True, read_only=True,
                         help="the seed of the generated sample painted on (None: an uploaded photo)")

    @traitlets.validate("concept")
    def _in_palette(self, proposal: dict[str, Any]) -> str:
        if proposal["value"] not in self.palette:
            raise traitlets.TraitError(f"{proposal['value']!r} is not in the palette: {', '.join(self.palette)}")
        return proposal["value"]


class PaintCanvas(ViewBase):
    """Paint concepts into generated scenes: choose a concept, draw or remove, and the image regenerates.

    ``generator`` is a :class:`~ganviz.adapters.GeneratorAdapter` or a bare module (``z_dim`` and ``output_range``
    default to the adapter's, or ``generator.z_dim`` and (-1, 1)); ``result`` is a dissection of the layer to paint
    (``result.layer``).  The palette holds the concepts some unit is labelled with (or ``concepts``), each drawn in
    its own colour (:func:`ganviz.imaging.concept_color`).  Strength low/med/high uses the top 4/10/15 units of the
    concept (``strengths``); the brush radius is in image pixels; ``scale`` (default: about 384 pixels wide)
    enlarges the canvas.  ``inverter`` (a :class:`ganviz.inversion.Inverter` of the same layer) reconstructs
    uploaded photos (inversion, then generator fine-tuning) so that they can be painted; without it an upload gets
    a message.  Methods ``stroke``, ``undo``, ``reset``, ``new_sample`` and ``paint_photo`` do from Python what the
    buttons and the mouse do; ``state`` holds ``concept``, ``mode``, ``strokes`` and ``seed``.
    """

    def __init__(self, generator: GeneratorAdapter | torch.nn.Module, result: DissectionResult, *, seed: int = 0,
                 scale: int | None = None, brush: int = 4, level_quantile: float = 0.99,
                 strengths: Mapping[str, int] | None = None, ranking: Mapping[str, Sequence[int]] | None = None,
                 concepts: Sequence[str] | None = None, inverter: Inverter | None = None,
                 z_dim: int | None = None, output_range: tuple[float, float] | None = None,
                 background: bool = True) -> None:
        super().__init__(background)
        self.generator = as_generator(generator, z_dim, output_range)
        self.painter = Painter(self.generator.model, result.layer, result, self.generator.sample_latents(1, seed),
                               level_quantile=level_quantile, strengths=strengths, ranking=ranking, output_range=self.generator.output_range)
        if inverter is not None and inverter.layer != result.layer:
            raise ValueError(f"the inverter optimises {inverter.layer!r}; strokes edit {result.layer!r}: invert "
                             f"with layer={result.layer!r} so painting applies to the reconstruction")
        self.scale = int(scale or max(1, 384 // self.generator.resolution))
        self.inverter = inverter
        palette = list(concepts) if concepts is not None else self._palette()
        if not palette:
            raise ValueError(f"no concept has a labelled {result.noun()} in {result.layer!r}; pass "
                             "concepts=[...] to paint "
                             "anyway")
        unknown = [c for c in palette if c not in result.concept_names]
        if unknown:
            raise KeyError(f"unknown concepts {unknown}; the dissection knows {', '.join(result.concept_names)}")
        self.state = PaintState()
        self.state.set_trait("result", result)
        self.state.set_trait("palette", palette)
        self._build(palette, seed, brush, list(strengths or STRENGTHS))
        self._points: list[tuple[float, float]] | None = None
        self._gen_seconds = 0.0
        self.photo: np.ndarray | None = None  # the uploaded photo being painted (None: a generated sample)
        self._inversion_view: InversionView | None = None
        self.image = self.painter.original()
        self._connect()
        self._show(self.image)
        self.say(self._summary())

    def _build(self, palette: list[str], seed: int, brush: int, strengths: list[str]) -> None:
        h, w = self.painter.image_size
        self.canvas = Canvas(width=w * self.scale, height=h * self.scale,
                             layout=W.Layout(width=f"{w * self.scale}px", height=f"{h * self.scale}px",
                                             min_width=f"{w * self.scale}px", flex="0 0 auto"))
        self._draw_lock = threading.Lock()  # the image (worker thread) and brush dabs (kernel thread) share a canvas
        self.concept = W.ToggleButtons(options=palette, value=palette[0], description="Concept",
                                       style={"button_width": "76px"})
        self.mode = W.ToggleButtons(options=["draw", "remove"], value="draw", description="Mode")
        self.strength = W.ToggleButtons(options=strengths, value="med" if "med" in strengths else strengths[0],
                                        description="Strength")
        self.brush = W.IntSlider(value=brush, min=1, max=max(16, brush), description="Brush")
        self.undo_button = W.Button(description="Undo", icon="undo")
        self.reset_button = W.Button(description="Reset")
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="Seed",
                                     layout=W.Layout(width="170px"))
        self.new_button = W.Button(description="New sample")
        self.upload = W.FileUpload(accept="image/png,image/jpeg", multiple=False, description="Upload photo")
        controls = W.VBox([self.concept, self.mode, self.strength, self.brush,
                           W.HBox([self.undo_button, self.reset_button]), W.HBox([self.seed, self.new_button]),
                           self.upload])
        self.widget = W.VBox([W.HBox([self.canvas, controls], layout=W.Layout(align_items="flex-start")),
                              self.status])
        css(self.widget, "paint", self.canvas, "paint-canvas", self.concept, "palette", self.mode, "paint-mode",
            self.strength, "paint-strength", self.undo_button, "undo", self.reset_button, "reset",
            self.new_button, "new-sample", self.upload, "paint-upload")

    def _connect(self) -> None:
        traitlets.link((self.concept, "value"), (self.state, "concept"))
        traitlets.link((self.mode, "value"), (self.state, "mode"))
        self.state.set_trait("seed", int(self.seed.value))
        self.canvas.on_mouse_down(self.guard(self._down))
        self.canvas.on_mouse_move(self.guard(self._move))
        self.canvas.on_mouse_up(self.guard(self._up))
        self.canvas.on_mouse_out(self.guard(self._up))
        self.canvas.on_client_ready(self.guard(self._repaint))
        self.undo_button.on_click(self.guard(lambda b: self.undo()))
        self.reset_button.on_click(self.guard(lambda b: self.reset()))
        self.new_button.on_click(self.guard(lambda b: self.new_sample(self.seed.value)))
        self.watch_upload(self.upload, self._take_upload)

    def _palette(self) -> list[str]:
        """Concepts with labelled units, after the GANPaint palette's concepts that have units with some IoU."""
        result = self.painter.result
        best = dict(zip(result.concept_names, result.iou.max(0)))
        labelled = self.painter.concepts()
        first = [c for c in PALETTE_ORDER if c in labelled or best.get(c, 0.0) >= PALETTE_MIN_IOU]
        return first + [c for c in labelled if c not in first]

    # -- state --------------------------------------------------------------------------------------------------
    def _summary(self) -> str:
        n = len(self.painter.strokes)
        if self.photo is not None:
            return f"{n} stroke{'s' if n != 1 else ''} on the uploaded photo" if n else \
                "the uploaded photo: choose a concept and drag on it"
        return f"{n} stroke{'s' if n != 1 else ''} on seed {self.seed.value}" if n else \
            f"seed {self.seed.value}: choose a concept and drag on the image"

    def _show(self, image: np.ndarray) -> None:
        """Send the image at its own size (a small PNG); the canvas enlarges it ``scale`` times with crisp pixels
        (set on every draw: a browser that connects late has missed earlier settings)."""
        with self._draw_lock:
            self.canvas.save()
            self.canvas.image_smoothing_enabled = False
            self.canvas.scale(self.scale)
            self.canvas.put_image_data(_rgba(image), 0, 0)
            self.canvas.restore()

    def _repaint(self) -> None:
        """A browser connected (late, or after a reload): its canvas is blank, so draw the current image again."""
        self.canvas._canvas_manager._current_canvas = None  # make the next command re-target this canvas
        self._show(self.image)

    def _regenerate(self, strokes: Sequence[Stroke], final: bool = True) -> None:
        t = time.perf_counter()
        image = self.painter.image(strokes)
        self._gen_seconds = time.perf_counter() - t
        self.image = image
        self._show(image)
        if final:
            self.state.set_trait("strokes", len(strokes))
            self.say(self._summary())

    def refresh(self) -> None:
        """Regenerate the image from the current strokes (coalesced with other requests)."""
        self.compute(self._regenerate, list(self.painter.strokes))

    # -- actions ------------------------------------------------------------------------------------------------
    def stroke(self, points: Sequence[tuple[float, float]], concept: str | None = None, mode: str | None = None,
               strength: str | None = None, radius: float | None = None) -> Stroke:
        """Add a stroke along ``points`` in image pixels (defaults: the controls' values) and regenerate."""
        s = self.painter.paint(concept or self.concept.value, points, mode=mode or self.mode.value,
                               strength=strength or self.strength.value,
                               radius=float(radius if radius is not None else self.brush.value))
        self.refresh()
        return s

    def undo(self) -> None:
        if not self.painter.undo():
            self.say("nothing to undo")
            return
        self.refresh()

    def reset(self) -> None:
        self.painter.reset()
        self.refresh()

    def new_sample(self, seed: int) -> None:
        """Paint on a new generated sample (strokes are cleared)."""
        self.photo = None
        self.seed.value = int(seed)
        self.state.set_trait("seed", int(seed))
        self.painter.set_latent(self.generator.sample_latents(1, seed))
        self.refresh()

    def _take_upload(self, data: bytes, name: str) -> None:
        h, w = self.painter.image_size
        photo, note = load_photo(data, size=h)  # clear errors for files that are no usable image
        if self.inverter is None:
            self.say(f"{name} is a valid {h}x{w} image, but painting on a photo needs GAN inversion, which this "
                     "canvas was not given (inverter=...); paint on generated samples for now")
            return
        if self._inversion_view is not None:  # show the inversion's progress, difference and stop button there
            self._inversion_view.set_target(photo)
            self.say(f"{name}: {note or 'loaded'}; reconstructing it with the generator (progress below) ...")
            self._inversion_view.run()
            return
        self.say(f"{name}: {note or 'loaded'}; reconstructing it with the generator ...")
        self.compute(self.paint_photo, photo, name)

    def attach(self, view: InversionView) -> None:
        """Let ``view`` (an InversionView with the same generator and layer) invert uploaded photos, showing its
        progress, difference map and stop button; every inversion it finishes becomes the image to paint."""
        if view.inverter.layer != self.painter.layer:
            raise ValueError(f"the view inverts {view.inverter.layer!r}; strokes edit {self.painter.layer!r}")
        self._inversion_view = view
        if self.inverter is None:
            self.inverter = view.inverter

        def take(result: InversionResult) -> None:
            self.painter.set_inversion(result)
            self.photo = view.target
            self.state.set_trait("seed", None)
            self.state.set_trait("strokes", len(self.painter.strokes))
            self.compute(self._regenerate, [], False)
            self.say(f"reconstructed at PSNR {result.psnr:.1f} dB"
                     + (" (generator fine-tuned)" if result.generator is not None else "")
                     + ": choose a concept and drag on it")

        view.on_result(self.guard(take))

    def paint_photo(self, photo: np.ndarray, name: str = "the photo") -> InversionResult:
        """Reconstruct an ``(H, W, 3)`` uint8 photo (inversion + fine-tuning) and paint on the reconstruction."""
        if self.inverter is None:
            raise ValueError("this canvas has no inverter (pass inverter=...)")
        total = self.inverter.total_steps
        last = [0.0]

        def progress(step: int, loss: float, image: torch.Tensor) -> None:
            if time.perf_counter() - last[0] > 0.5:
                last[0] = time.perf_counter()
                self.say(f"reconstructing {name}: step {step + 1} of {total}, loss {loss:.4f}")

        result = self.inverter(photo, callback=progress)
        self.painter.set_inversion(result)
        self.photo = photo
        self.state.set_trait("seed", None)
        self._regenerate([])
        self.say(f"{name} reconstructed at PSNR {result.psnr:.1f} dB"
                 + (" (generator fine-tuned)" if result.generator is not None else "")
                 + ": choose a concept and drag on it")
        return result

    # -- mouse --------------------------------------------------------------------------------------------------
    def _to_image(self, x: float, y: float) -> tuple[float, float]:
        return x / self.scale, y / self.scale

    def _down(self, x: float, y: float) -> None:
        self._points = [self._to_image(x, y)]
        self._drag_mask: np.ndarray | None = None
        self._dab(x, y)

    def _dab(self, x: float, y: float) -> None:
        r, g, b = concept_color(self.concept.value)
        with self._draw_lock:
            self.canvas.fill_style = f"rgba({r},{g},{b},0.5)" if self.mode.value == "draw" else "rgba(0,0,0,0.5)"
            self.canvas.fill_circle(x, y, self.brush.value * self.scale)

    def _move(self, x: float, y: float) -> None:
        if self._points is None:
            return
        self._points.append(self._to_image(x, y))
        self._dab(x, y)
        if self._gen_seconds < PREVIEW_BUDGET:  # fast enough: show the edit during the drag (throttled)
            h, w = self.painter.image_size
            segment = brush_mask(self._points[-2:], self.brush.value, (h, w))  # only the newest piece: O(1) a move
            mask = segment if getattr(self, "_drag_mask", None) is None else np.maximum(self._drag_mask, segment)
            self._drag_mask = mask
            partial = Stroke(self.concept.value, self.mode.value, self.strength.value, mask.copy())
            self.compute(self._regenerate, list(self.painter.strokes) + [partial], False)

    def _up(self, x: float, y: float) -> None:
        if self._points is None:
            return
        points, self._points = self._points, None
        self.stroke(points)

    # -- output -------------------------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The original (for a photo: the photo and its reconstruction) and the painted image, enlarged."""
        gap = np.full((self.image.shape[0] * 4, 8, 3), 255, np.uint8)
        panels = ([self.photo] if self.photo is not None else []) + [self.painter.original(), self.image]
        parts = [p for x in panels for p in (upscale(x, 4), gap)][:-1]
        return np.concatenate(parts, axis=1)
