"""Inversion views: target, reconstruction and difference with live progress; a grid naming what was lost.

    InversionView(inverter, segmenter=segmenter, concept_names=names)   # or InversionView(generator_adapter)
    InversionGrid(inverter, images_uint8, segmenter, names)
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

import ipywidgets as W
import numpy as np
import torch
import traitlets

from ..adapters import GeneratorAdapter
from ..charts import figure, figure_png
from ..imaging import diff_heatmap, load_photo, make_grid, png_bytes, to_uint8, upscale
from ..inversion import InversionResult, Inverter
from ..omission import missing_concepts
from ._base import ViewBase, ViewState, css, image_widget, hidden_until_set

__all__ = ["InversionView", "InversionGrid", "InversionState", "loss_curve", "PROGRESS_INTERVAL"]

PROGRESS_INTERVAL = 0.25
"""Seconds between two progress redraws (current reconstruction, loss curve) during an inversion."""


def loss_curve(losses: Sequence[float], total: int, marks: Sequence[int] = (),
               size: tuple[float, float] = (3.2, 2.0), phases: Sequence[str] = ()) -> bytes:
    """A small log-scale loss plot as PNG bytes; ``marks`` are steps where a new phase began, ``phases`` the
    phases' names (one more than ``marks``), written above the plot."""
    fig = figure(size, dpi=80, layout=None)  # no pyplot: the notebook's backend is left alone
    ax = fig.add_subplot(111)
    if len(losses):
        ax.semilogy(np.arange(len(losses)), np.maximum(np.asarray(losses, float), 1e-8), lw=1.2, color="#1f5fa8")
    for m in marks:
        ax.axvline(m, color="#999", lw=0.8, ls="--")
    ax.set_xlim(0, max(total, 1))
    edges = [0, *marks, max(total, 1)]
    for name, a, b in zip(phases, edges[:-1], edges[1:]):
        ax.text((a + b) / 2, 1.02, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout(pad=0.3)
    return figure_png(fig, dpi=80)


class InversionState(ViewState):
    """What an :class:`InversionView` shows."""

    result = traitlets.Instance(InversionResult, allow_none=True, read_only=True,
                                help="the last finished (or stopped) inversion (None: none yet)")
    running = traitlets.Bool(False, read_only=True, help="whether an inversion is running")


class InversionView(ViewBase):
    """Invert the generator on an image: target, reconstruction and per-pixel difference, with a live loss curve,
    the current reconstruction while it runs, a progress bar and a stop button (stopping keeps the best so far).

    ``inverter`` holds the generator and the settings (see :class:`ganviz.inversion.Inverter`); a
    :class:`~ganviz.adapters.GeneratorAdapter` instead gets its default inverter (at its default layer, with
    fine-tuning).  ``segmenter`` and ``concept_names`` (optional) name the concepts the reconstruction lost.  Upload
    a PNG/JPEG or call :meth:`set_target`; :meth:`run` starts (the Invert button does the same); ``on_result(fn)``
    registers ``fn(result)`` to be called with every finished inversion (e.g. a paint canvas's ``set_inversion``).
    ``state`` holds ``result`` and ``running``.
    """

    def __init__(self, inverter: Inverter | GeneratorAdapter, *, target: np.ndarray | None = None,
                 segmenter: Callable[[torch.Tensor], Any] | None = None, concept_names: Sequence[str] = (),
                 width: int | None = None, background: bool = True) -> None:
        super().__init__(background)
        if isinstance(inverter, GeneratorAdapter):
            inverter = inverter.inverter(finetune_steps=300)
        elif not isinstance(inverter, Inverter):
            raise TypeError(f"expected an Inverter or a GeneratorAdapter, got {type(inverter).__name__}: pass "
                            "Inverter(generator, layer=...) for a bare generator")
        self.inverter = inverter
        self.segmenter, self.concept_names = segmenter, tuple(concept_names)
        self.result: InversionResult | None = None
        self.losses: list[float] = []
        self.target: np.ndarray | None = None
        self._stop = threading.Event()
        self._listeners: list[Callable[[InversionResult], None]] = []
        self._last_draw = 0.0
        self._finetune_steps = inverter.finetune_steps or 300
        self.state = InversionState()
        self._build(width or max(192, min(self.size, 384)))
        self.watch_upload(self.upload, self._take_upload)
        self.run_button.on_click(self.guard(lambda b: self.run()))
        self.stop_button.on_click(self.guard(lambda b: self.stop()))
        self.plot.value = loss_curve([], inverter.total_steps)  # empty axes until an inversion runs
        if target is not None:
            self.set_target(target)
        else:  # blank pictures until an upload (an empty image widget shows a broken-image icon)
            blank = png_bytes(np.full((self.size, self.size, 3), 235, np.uint8))
            self.target_image.value = self.recon_image.value = self.diff_image.value = blank
            self.say("upload an image (PNG or JPEG) to see what the generator can reproduce of it")

    def _build(self, width: int) -> None:
        inverter = self.inverter
        self.target_image = image_widget(width=width)
        self.recon_image = image_widget(width=width)
        self.diff_image = image_widget(width=width)
        self.plot = hidden_until_set(W.Image(format="png", layout=W.Layout(width="256px")))
        self.progress = W.IntProgress(value=0, min=0, max=max(inverter.total_steps, 1), description="Steps")
        self.upload = W.FileUpload(accept="image/png,image/jpeg", multiple=False, description="Upload image")
        self.finetune = W.Checkbox(value=inverter.finetune_steps > 0, description="Fine-tune generator",
                                   disabled=inverter.layer is None, indent=False)
        self.run_button = W.Button(description="Invert", icon="play", button_style="primary")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.missing = W.HTML(value="")

        def column(title: str, image: W.Image) -> W.VBox:
            return W.VBox([W.HTML(f"<b>{title}</b>"), image])

        images = W.HBox([column("Target", self.target_image), column("Reconstruction", self.recon_image),
                         column("Difference", self.diff_image), column("Loss", self.plot)],
                        layout=W.Layout(align_items="flex-start"))
        controls = W.HBox([self.upload, self.finetune, self.run_button, self.stop_button, self.progress])
        self.widget = W.VBox([controls, images, self.missing, self.status])
        css(self.widget, "inversion", self.target_image, "inv-target", self.recon_image, "inv-recon",
            self.diff_image, "inv-diff", self.plot, "inv-loss", self.progress, "inv-progress", self.upload,
            "inv-upload", self.run_button, "inv-run", self.stop_button, "inv-stop", self.missing, "inv-missing")

    # -- inputs -------------------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.inverter.resolution

    def set_target(self, image: np.ndarray) -> None:
        """The image to invert: ``(H, W, 3)`` uint8 at the generator's resolution."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
        if image.shape[:2] != (self.size, self.size):
            raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]}; the generator makes "
                             f"{self.size}x{self.size} (upload it, or resize it with ganviz.imaging.load_photo)")
        self.target = image
        self.result = None
        self.state.set_trait("result", None)
        self.losses = []
        self.target_image.value = png_bytes(image)
        self.recon_image.value = self.diff_image.value = png_bytes(np.full_like(image, 235))  # blank until run
        self.missing.value = ""
        self.progress.value = 0
        self.say("press Invert")

    def _take_upload(self, data: bytes, name: str) -> None:
        photo, note = load_photo(data, size=self.size)
        self.set_target(photo)
        self.say(f"{name}: {note or 'loaded'}; inverting ...")
        self.run()

    def on_result(self, fn: Callable[[InversionResult], None]) -> None:
        """Call ``fn(result)`` after every finished (or stopped) inversion."""
        self._listeners.append(fn)

    # -- running ------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Invert the current target (in the background; the Stop button ends it and keeps the best so far)."""
        if self.target is None:
            raise ValueError("no target yet: upload an image or call set_target(image)")
        self._stop.clear()
        self.stop_button.disabled = False
        self.run_button.disabled = True
        self.state.set_trait("running", True)
        self.compute(self._invert, self.target)

    def stop(self) -> None:
        """Stop the running inversion; the best reconstruction so far is kept."""
        self._stop.set()

    def _settings(self) -> Inverter:
        inv = self.inverter
        steps = self._finetune_steps if self.finetune.value and inv.layer is not None else 0
        if steps == inv.finetune_steps:
            return inv
        return replace(inv, finetune_steps=steps)

    def _invert(self, target: np.ndarray) -> None:
        inverter = self._settings()
        self.losses = []
        self.progress.max = inverter.total_steps
        marks, phases = [], ["latent"]
        if inverter.layer is not None:
            marks, phases = [inverter.steps], ["latent", inverter.layer]
        if inverter.finetune_steps:
            marks, phases = marks + [inverter.steps + inverter.layer_steps], phases + ["fine-tune"]
        self._phases = phases
        t0 = time.perf_counter()

        def progress(step: int, loss: float, image: torch.Tensor) -> None:
            self.losses.append(loss)
            now = time.perf_counter()
            if now - self._last_draw >= PROGRESS_INTERVAL:
                self._last_draw = now
                self.progress.value = step + 1
                self.recon_image.value = png_bytes(to_uint8(image[0].float().cpu(), inverter.output_range))
                self.plot.value = loss_curve(self.losses, inverter.total_steps, marks, phases=phases)
                self.say(f"step {step + 1} of {inverter.total_steps}: loss {loss:.4f}")

        try:
            result = inverter(target, stop=self._stop.is_set, callback=progress)
        finally:
            self.stop_button.disabled = True
            self.run_button.disabled = False
            self.state.set_trait("running", False)
        self.result = result
        self.state.set_trait("result", result)
        self.progress.value = result.steps
        self._show(result, inverter, time.perf_counter() - t0, marks)
        for fn in self._listeners:
            fn(result)

    def _show(self, result: InversionResult, inverter: Inverter, seconds: float, marks: list[int]) -> None:
        recon = to_uint8(result.image[0].float().cpu(), inverter.output_range)
        self.recon_image.value = png_bytes(recon)
        self.diff_image.value = png_bytes(diff_heatmap(self.target, recon))
        self.plot.value = loss_curve(result.losses, inverter.total_steps, marks, phases=self._phases)
        lost = self.lost_concepts(result)
        if lost is not None:
            self.missing.value = ("<b>Missing in the reconstruction:</b> " + ", ".join(lost)) if lost else \
                "<b>Missing in the reconstruction:</b> nothing the segmenter can name"
        how = "stopped early; best so far" if result.interrupted else "done"
        tuned = f", generator fine-tuned (weights moved {result.drift:.1%})" if result.generator is not None else ""
        self.say(f"{how}: PSNR {result.psnr:.1f} dB after {result.steps} steps in {seconds:.1f} s{tuned}")

    def lost_concepts(self, result: InversionResult | None = None) -> list[str] | None:
        """Concepts the segmenter finds in the target but (mostly) not in the reconstruction (None: no segmenter)."""
        result = result or self.result
        if self.segmenter is None or result is None:
            return None
        return missing_concepts(self.segmenter, result.target, result.image, self.concept_names)

    # -- output -------------------------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """Target, reconstruction and difference side by side, enlarged."""
        if self.target is None:
            raise ValueError("nothing to render: no target yet")
        blank = np.full_like(self.target, 255)
        recon = to_uint8(self.result.image[0].float().cpu(), self.inverter.output_range) if self.result else blank
        diff = diff_heatmap(self.target, recon) if self.result else blank
        return make_grid(np.stack([upscale(x, 3) for x in (self.target, recon, diff)]), cols=3, pad=6)


class InversionGrid(ViewBase):
    """Invert many images and show, per image, target | reconstruction | difference and the concepts present in
    the target's segmentation but missing in the reconstruction (what the generator cannot generate there)."""

    def __init__(self, inverter: Inverter, images: np.ndarray, segmenter: Callable[[torch.Tensor], Any],
                 concept_names: Sequence[str], *, names: Sequence[str] | None = None, background: bool = True,
                 scale: int = 2) -> None:
        super().__init__(background)
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
        if len(images) == 0:
            raise ValueError("no images to invert")
        self.inverter, self.images = inverter, images
        self.segmenter, self.concept_names = segmenter, tuple(concept_names)
        self.names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        self.scale = scale
        self.results: list[InversionResult | None] = [None] * len(images)
        self.lost: list[list[str] | None] = [None] * len(images)
        self._stop = threading.Event()
        self.progress = W.IntProgress(value=0, min=0, max=len(images), description="Images")
        self.stop_button = W.Button(description="Stop", icon="stop")
        self.rows = W.VBox([])
        self.widget = W.VBox([W.HBox([self.progress, self.stop_button]), self.rows, self.status])
        css(self.widget, "inversion-grid", self.rows, "inv-grid-rows")
        self.stop_button.on_click(self.guard(lambda b: self._stop.set()))
        self.compute(self._run_all)

    def _row(self, i: int) -> W.HBox:
        result = self.results[i]
        recon = to_uint8(result.image[0].float().cpu(), self.inverter.output_range)
        tiles = [upscale(x, self.scale) for x in (self.images[i], recon, diff_heatmap(self.images[i], recon))]
        lost = self.lost[i]
        text = (f"<b>{self.names[i]}</b>: PSNR {result.psnr:.1f} dB<br>missing: "
                + (", ".join(lost) if lost else "nothing named"))
        strip = np.concatenate([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles], axis=1)
        row = W.HBox([image_widget(strip, width=strip.shape[1]), W.HTML(text)], layout=W.Layout(align_items="center"))
        row.add_class("ganviz-inv-grid-row")
        return row

    def _run_all(self) -> None:
        for i, image in enumerate(self.images):
            if self._stop.is_set():
                self.say(f"stopped after {i} of {len(self.images)} images")
                return
            self.say(f"inverting {self.names[i]} ({i + 1} of {len(self.images)}) ...")
            self.results[i] = self.inverter(image, stop=self._stop.is_set)
            self.lost[i] = missing_concepts(self.segmenter, self.results[i].target, self.results[i].image,
                                            self.concept_names)
            self.rows.children = self.rows.children + (self._row(i),)
            self.progress.value = i + 1
        done = [r.psnr for r in self.results if r is not None]
        self.say(f"{len(done)} images: mean PSNR {np.mean(done):.1f} dB")

    def render(self) -> np.ndarray:
        """Every finished row (target | reconstruction | difference) stacked."""
        tiles = []
        for i, r in enumerate(self.results):
            if r is None:
                continue
            recon = to_uint8(r.image[0].float().cpu(), self.inverter.output_range)
            tiles += [self.images[i], recon, diff_heatmap(self.images[i], recon)]
        if not tiles:
            raise ValueError("nothing to render: no image inverted yet")
        return make_grid(np.stack([upscale(t, self.scale) for t in tiles]), cols=3, pad=4)
