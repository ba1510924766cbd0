"""Classifier widgets: top-activation grid, dissection summary, unit-ablation panel and Grad-CAM view."""
from __future__ import annotations

import html
from typing import Callable, Sequence

import ipywidgets as W
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .. import ablation
from ..dissect import DissectionResult, as_source
from ..gradcam import gradcam
from ..imaging import heatmap_overlay, load_image, make_grid, png_bytes, upscale
from ..trace import Ablate, get_module
from ..unitviz import figure_array, figure_png, plot_unit_detail, unit_top_images
from ._base import ViewBase, css as _css, image_widget

ALL = "(all concepts)"


def _signed(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


def _caption(image: np.ndarray, text: str, width: int = 190) -> np.ndarray:
    """Put ``text`` in a white box left of ``image`` (for saved PNGs)."""
    canvas = Image.new("RGB", (width + image.shape[1], max(image.shape[0], 16)), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (width, 0))
    ImageDraw.Draw(canvas).text((4, 4), text, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(canvas)


class TopActivationGrid(ViewBase):
    """Units of a dissected layer with their top images (top-quantile region highlighted), label and IoU.

    Sort by IoU or unit, filter by concept, page through the units; select a unit to see its full top-k, its
    activation distribution and its IoU with every concept.
    """

    def __init__(self, model: torch.nn.Module, result: DissectionResult, data, *,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] = _signed, per_page: int = 8,
                 images_per_unit: int = 6, detail_images: int = 24, zoom: int = 2, background: bool = True):
        super().__init__(background)
        get_module(model, result.layer)
        self.model, self.result, self.source, self.preprocess = model, result, as_source(data), preprocess
        self.per_page, self.images_per_unit, self.detail_images, self.zoom = per_page, images_per_unit, \
            detail_images, zoom
        self.sort = W.ToggleButtons(options=[("by IoU", "iou"), ("by unit", "unit")], value="iou",
                                    description="Sort", layout=W.Layout(display="flex", align_items="center"))
        self.concept = W.Dropdown(options=[ALL] + list(result.concept_names), value=ALL, description="Concept")
        self.min_iou = W.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.01, description="Min IoU",
                                     continuous_update=False)
        self.page = W.IntSlider(value=1, min=1, max=1, description="Page", continuous_update=False)
        self.unit = W.Dropdown(options=[], description="Unit")
        self.rows = W.VBox()
        self.detail_images_w = image_widget(width=6 * 64 * zoom // 2)
        self.detail_plot = W.Image(format="png", layout=W.Layout(align_self="flex-start"))
        self.detail_title = W.HTML()
        for w in (self.detail_images_w, self.detail_plot):
            w.layout.display = "none"      # no broken-image icons before a unit is selected
        controls = W.HBox([self.sort, self.concept, self.min_iou], layout=W.Layout(flex_flow="row wrap"))
        detail = W.VBox([self.unit, self.detail_title, self.detail_images_w, self.detail_plot])
        self.widget = W.VBox([controls, self.page, self.rows, W.HTML("<hr>"), detail, self.status])
        _css(self.widget, "grid", self.rows, "grid-rows", self.unit, "unit-select", self.detail_title, "detail-title",
             self.detail_images_w, "detail-images", self.detail_plot, "detail-plot")
        self._strips: dict[int, np.ndarray] = {}
        for w in (self.sort, self.concept, self.min_iou):
            w.observe(self.guard(lambda change: self._refresh(reset_page=True)), names="value")
        self.page.observe(self.guard(lambda change: self._show_page()), names="value")
        self.unit.observe(self.guard(lambda change: self.select(change["new"])), names="value")
        self._refresh(reset_page=True)

    # -- model of the view ---------------------------------------------------------------------------------
    def ordered_units(self) -> list[int]:
        """Units passing the concept / IoU filter, in the chosen order."""
        r = self.result
        if self.concept.value == ALL:
            units = [u for u in range(r.num_units) if r.best_iou[u] >= self.min_iou.value]
            if self.sort.value == "iou":
                units.sort(key=lambda u: (-r.best_iou[u], u))
        else:
            units = r.units_for(self.concept.value, labelled_only=True, min_iou=self.min_iou.value)
            if self.sort.value == "unit":
                units.sort()
        return units

    def units_on_page(self) -> list[int]:
        units = self.ordered_units()
        start = (self.page.value - 1) * self.per_page
        return units[start:start + self.per_page]

    def caption(self, unit: int) -> str:
        lab = self.result.label(unit)
        return f"unit {unit}: {lab.concept}, IoU {lab.iou:.2f}"

    def strip(self, unit: int) -> np.ndarray:
        if unit not in self._strips:
            tiles = unit_top_images(self.model, self.result, self.source, unit, self.images_per_unit,
                                    self.preprocess)
            self._strips[unit] = upscale(make_grid(tiles, cols=len(tiles), pad=1), self.zoom)
        return self._strips[unit]

    # -- events ---------------------------------------------------------------------------------------------
    def _refresh(self, reset_page: bool = False) -> None:
        units = self.ordered_units()
        pages = max((len(units) - 1) // self.per_page, 0)
        self.page.max = pages + 1
        if reset_page:
            self.page.value = 1
        self.unit.options = [(self.caption(u), u) for u in units[:500]]
        self._show_page()
        self.say(f"{len(units)} units shown of {self.result.num_units} in {self.result.layer}; "
                 f"page {self.page.value} of {pages + 1}")

    def _show_page(self) -> None:
        rows = []
        for u in self.units_on_page():
            label = W.HTML(f"<b>{html.escape(self.caption(u))}</b>", layout=W.Layout(width="210px"))
            rows.append(W.HBox([label, image_widget(self.strip(u), width=self.strip(u).shape[1])],
                               layout=W.Layout(align_items="center")))
        if not rows:
            rows = [W.HTML("<i>no unit matches this filter</i>")]
        self.rows.children = rows

    def select(self, unit: int | None) -> None:
        """Show one unit's full top-k, activation distribution and IoU per concept."""
        if unit is None:
            return
        unit = int(unit)
        if not 0 <= unit < self.result.num_units:
            raise IndexError(f"unit {unit} out of range (layer {self.result.layer} has {self.result.num_units})")
        tiles = unit_top_images(self.model, self.result, self.source, unit, self.detail_images, self.preprocess)
        grid = upscale(make_grid(tiles, cols=min(8, len(tiles)), pad=1), self.zoom)
        self.detail_images_w.value = png_bytes(grid)
        self.detail_images_w.layout.width = f"{grid.shape[1]}px"
        self.detail_images_w.layout.display = self.detail_plot.layout.display = None
        lab = self.result.label(unit)
        others = ", ".join(f"{c} {v:.2f}" for c, v in lab.runners_up)
        self.detail_title.value = (f"<b>unit {unit}</b>: {html.escape(lab.concept)} IoU {lab.iou:.3f}; "
                                   f"runners-up: {html.escape(others)}; threshold "
                                   f"{self.result.thresholds[unit]:.3f}")
        self.detail_plot.value = figure_png(plot_unit_detail(self.result, unit))
        self.selected = unit

    def render(self) -> np.ndarray:
        rows = [_caption(self.strip(u), self.caption(u)) for u in self.units_on_page()]
        if not rows:
            return np.full((40, 400, 3), 255, np.uint8)
        return make_grid(np.stack(rows), cols=1, pad=4)


class DissectionSummary(ViewBase):
    """Units per concept for a layer (bar chart) and a sortable table of every unit's label."""

    def __init__(self, result: DissectionResult, min_iou: float = 0.04, background: bool = True):
        super().__init__(background)
        self.result = result
        self.min_iou = W.FloatSlider(value=min_iou, min=0.0, max=0.3, step=0.01, description="Min IoU",
                                     continuous_update=False)
        self.sort = W.Dropdown(options=[("IoU", "iou"), ("unit", "unit"), ("concept", "concept")], value="iou",
                               description="Sort by")
        self.chart = W.Image(format="png", layout=W.Layout(align_self="flex-start"))
        self.table = W.HTML(layout=W.Layout(max_height="360px", overflow="auto"))
        self.widget = W.VBox([W.HBox([self.min_iou, self.sort]), self.chart, self.table, self.status])
        _css(self.widget, "summary", self.chart, "summary-chart", self.table, "summary-table")
        self.min_iou.observe(self.guard(lambda c: self._update()), names="value")
        self.sort.observe(self.guard(lambda c: self._update()), names="value")
        self._update()

    def rows(self) -> list[tuple[int, str, float]]:
        labs = [(lab.unit, lab.concept, lab.iou) for lab in self.result.labels(self.min_iou.value)]
        key = {"iou": lambda r: (-r[2], r[0]), "unit": lambda r: r[0], "concept": lambda r: (r[1], -r[2])}
        return sorted(labs, key=key[self.sort.value])

    def _update(self) -> None:
        self._fig = self.result.plot_concept_counts(self.min_iou.value)
        self.chart.value = figure_png(self._fig)
        body = "".join(f"<tr><td>{u}</td><td>{html.escape(c)}</td><td>{v:.3f}</td></tr>" for u, c, v in self.rows())
        self.table.value = ("<table class='ganviz-table'><tr><th>unit</th><th>concept</th><th>IoU</th></tr>"
                            f"{body}</table>")
        self.say(f"{len(self.rows())} of {self.result.num_units} units reach IoU {self.min_iou.value:.2f}")

    def render(self) -> np.ndarray:
        return figure_array(self._fig)


def _bars_html(probs: np.ndarray, names: Sequence[str], ref: np.ndarray | None = None, k: int = 5) -> str:
    order = np.argsort(-probs)[:k]
    rows = []
    for j in order:
        p = float(probs[j])
        was = "" if ref is None else f" <span style='color:#777'>(intact {ref[j]:.2f})</span>"
        rows.append(f"<div style='display:flex;align-items:center;gap:6px;font-family:monospace'>"
                    f"<span style='width:120px'>{html.escape(names[j])}</span>"
                    f"<span style='display:inline-block;height:12px;width:{int(200 * p)}px;background:#4c72b0'>"
                    f"</span><span>{p:.2f}{was}</span></div>")
    return "".join(rows)


class AblationPanel(ViewBase):
    """Remove or scale units of a classifier layer and watch its prediction change, live.

    ``data`` gives the images to pick from (a toy-world source, a tensor of images in [0, 1] or a Dataset);
    ``validation`` is ``(images in [0,1], labels)`` for the class view (accuracy with the units removed and
    the sparsity curve).  Per-unit sliders: 0 removes a unit, 1 keeps it, above 1 amplifies it.
    """

    def __init__(self, model: torch.nn.Module, layer: str, class_names: Sequence[str], data, *,
                 units: Sequence[int] = (), validation: tuple[torch.Tensor, torch.Tensor] | None = None,
                 result: DissectionResult | None = None,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] = _signed, resolution: int = 64,
                 background: bool = True):
        super().__init__(background)
        get_module(model, layer)
        self.model, self.layer, self.class_names = model, layer, list(class_names)
        self.source, self.validation, self.result = as_source(data), validation, result
        self.preprocess, self.resolution = preprocess, resolution
        self.scales: dict[int, float] = {}
        self.image_index = W.BoundedIntText(value=0, min=0, max=max(len(self.source) - 1, 0), description="Image")
        self.upload = W.FileUpload(accept="image/png,image/jpeg", multiple=False, description="Upload image")
        self.picture = image_widget(width=resolution * 3)
        self.bars = W.HTML()
        self.unit_text = W.Text(placeholder="e.g. 3, 17, 42", description="Units")
        self.add_button = W.Button(description="Show sliders")
        self.sliders = W.VBox()
        self.flip_button = W.Button(description="What flips this prediction?", button_style="info",
                                    layout=W.Layout(width="auto"))
        self.reset_button = W.Button(description="Restore all units")
        self.target = W.Dropdown(options=[(n, i) for i, n in enumerate(self.class_names)], description="Class")
        self.class_button = W.Button(description="Accuracy with units removed", layout=W.Layout(width="auto"))
        self.curve_button = W.Button(description="Sparsity curve")
        self.class_view = W.HTML()
        self.curve = W.Image(format="png", layout=W.Layout(align_self="flex-start"))
        left = W.VBox([self.image_index, self.upload, self.picture])
        right = W.VBox([self.bars, W.HBox([self.unit_text, self.add_button]), self.sliders,
                        W.HBox([self.flip_button, self.reset_button])])
        klass = W.VBox([W.HBox([self.target, self.class_button, self.curve_button]), self.class_view, self.curve])
        self.widget = W.VBox([W.HBox([left, right], layout=W.Layout(align_items="flex-start")), klass, self.status])
        _css(self.widget, "ablation", self.picture, "ablation-image", self.bars, "bars", self.sliders, "unit-sliders",
             self.class_view, "class-view", self.curve, "curve")
        self.image_index.observe(self.guard(lambda c: self.show_image(c["new"])), names="value")
        self.upload.observe(self.guard(self._on_upload), names="value")
        self.add_button.on_click(self.guard(lambda b: self.set_units(self._parse_units(self.unit_text.value))))
        self.flip_button.on_click(self.guard(lambda b: self.find_flip()))
        self.reset_button.on_click(self.guard(lambda b: self.set_units(list(self.scales), reset=True)))
        self.class_button.on_click(self.guard(lambda b: self.measure_class()))
        self.curve_button.on_click(self.guard(lambda b: self.measure_curve()))
        self.set_units(units)
        if len(self.source):
            self.show_image(0)

    # -- inputs ---------------------------------------------------------------------------------------------
    def _parse_units(self, text: str) -> list[int]:
        try:
            units = [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"units must be whole numbers separated by commas, got {text!r}") from None
        n = ablation._num_units(self.model, self.layer, self.preprocess(self.image))
        bad = [u for u in units if not 0 <= u < n]
        if bad:
            raise IndexError(f"unit {bad[0]} out of range for layer {self.layer!r} with {n} units "
                             f"(expected 0..{n - 1})")
        return units

    def show_image(self, index: int) -> None:
        images, _ = self.source.load([int(index)])
        self.image = images[:1]
        self.image_label = f"image {index}"
        self._after_image()

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        arr = load_image(bytes(item["content"]), self.resolution)
        self.image = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
        self.image_label = item.get("name", "upload")
        self._after_image()

    def _after_image(self) -> None:
        pic = (self.image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        self.picture.value = png_bytes(upscale(pic, 3))
        self.intact = ablation.predict(self.model, self.preprocess(self.image))[0].numpy()
        self.update()

    # -- units ----------------------------------------------------------------------------------------------
    def set_units(self, units: Sequence[int], reset: bool = False) -> None:
        """Show a slider (and an on/off toggle) for each of ``units``; ``reset`` puts all back to 1."""
        keep = {} if reset else dict(self.scales)
        self.scales = {int(u): keep.get(int(u), 1.0) for u in units}
        rows = []
        self._slider: dict[int, W.FloatSlider] = {}
        for u in self.scales:
            name = f"unit {u}"
            if self.result is not None:
                lab = self.result.label(u)
                name += f" ({lab.concept} {lab.iou:.2f})"
            s = W.FloatSlider(value=self.scales[u], min=0.0, max=3.0, step=0.05, description=name,
                              style={"description_width": "150px"}, layout=W.Layout(width="420px"))
            t = W.ToggleButton(value=self.scales[u] != 0, description="on", layout=W.Layout(width="50px"))
            s.observe(self.guard(lambda c, u=u: self.set_scale(u, c["new"])), names="value")
            s.observe(lambda c, t=t: t.set_trait("value", c["new"] != 0), names="value")  # "on" follows the slider
            t.observe(self.guard(lambda c, u=u: self._toggle(u, c["new"])), names="value")
            s.add_class("ganviz-unit-slider")
            self._slider[u] = s
            rows.append(W.HBox([s, t]))
        self.sliders.children = rows
        if hasattr(self, "image"):
            self.update()

    def _toggle(self, unit: int, on: bool) -> None:
        slider = self._slider[unit]
        if on and slider.value == 0:
            slider.value = 1.0
        elif not on and slider.value != 0:
            slider.value = 0.0

    def set_scale(self, unit: int, value: float) -> None:
        self.scales[int(unit)] = float(value)
        self.update()

    def edit(self):
        return ablation.unit_scales(self.scales)

    # -- compute --------------------------------------------------------------------------------------------
    def update(self) -> None:
        """Recompute the prediction with the current unit scales (coalesced: latest state wins)."""
        self.compute(self._predict, dict(self.scales))

    def _predict(self, scales: dict[int, float]) -> None:
        probs = ablation.predict(self.model, self.preprocess(self.image), self.layer, ablation.unit_scales(scales))
        self.probs = probs[0].numpy()
        self.bars.value = _bars_html(self.probs, self.class_names, self.intact if scales else None)
        removed = [u for u, s in scales.items() if s == 0]
        top = self.class_names[int(self.probs.argmax())]
        self.say(f"{self.image_label}: predicted {top}" + (f"; units removed: {removed}" if removed else ""))

    def find_flip(self, max_units: int = 5) -> ablation.FlipResult:
        """Search a small set of units whose removal changes the top class; set their sliders to 0."""
        self.wait()
        self.say("searching for units to remove ...")
        res = ablation.find_flip(self.model, self.layer, self.preprocess(self.image), max_units=max_units)
        self.set_units(res.units, reset=True)
        for u in res.units:
            self._slider[u].value = 0.0
        self.wait()
        names = ""
        if self.result is not None:
            names = " (" + ", ".join(self.result.label(u).concept for u in res.units) + ")"
        verdict = (f"removing units {res.units}{names} turns {self.class_names[res.original_class]} into "
                   f"{self.class_names[res.new_class]}" if res.flipped else
                   f"removing {len(res.units)} units did not change {self.class_names[res.original_class]}")
        self.flip_result = res
        self.say(verdict)
        return res

    def measure_class(self) -> np.ndarray:
        """Per-class accuracy over the validation set with the current units removed/scaled, versus intact."""
        if self.validation is None:
            raise ValueError("pass validation=(images, labels) to measure class accuracy")
        x, y = self.validation
        x = self.preprocess(x)
        base = ablation.class_accuracy(self.model, x, y, len(self.class_names))
        edited = ablation.class_accuracy(self.model, x, y, len(self.class_names), self.layer, self.edit())
        rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{b:.3f}</td><td>{e:.3f}</td><td>{e - b:+.3f}</td></tr>"
                       for n, b, e in zip(self.class_names, base, edited))
        self.class_view.value = ("<table class='ganviz-table'><tr><th>class</th><th>intact</th><th>edited</th>"
                                 f"<th>change</th></tr>{rows}</table>")
        self.class_result = (base, edited)
        return edited - base

    def measure_curve(self, max_units: int = 8) -> ablation.SparsityCurve:
        """Accuracy of the chosen class and of all others as its most important units are removed."""
        if self.validation is None:
            raise ValueError("pass validation=(images, labels) to draw a sparsity curve")
        from matplotlib.figure import Figure

        x, y = self.validation
        c = int(self.target.value)
        curve = ablation.sparsity_curve(self.model, self.layer, self.preprocess(x), y, c, len(self.class_names),
                                        max_units=max_units)
        fig = Figure(figsize=(5, 2.8), layout="constrained")
        ax = fig.add_subplot()
        ks = np.arange(len(curve.class_accuracy))
        ax.plot(ks, curve.class_accuracy, "o-", label=self.class_names[c])
        ax.plot(ks, curve.other_accuracy, "s--", label="other classes (mean)")
        ax.set_xlabel("top units removed")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        ax.set_title(f"units ranked by effect on {self.class_names[c]}: {curve.units[:5]}...", fontsize=8)
        self.curve.value = figure_png(fig)
        self.curve_result = curve
        return curve

    def render(self) -> np.ndarray:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 2.4), layout="constrained")
        a1, a2 = fig.subplots(1, 2, width_ratios=[1, 1.6])
        a1.imshow((self.image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), interpolation="nearest")
        a1.axis("off")
        order = np.argsort(-self.probs)[:5][::-1]
        a2.barh([self.class_names[j] for j in order], self.probs[order], color="#4c72b0", label="edited")
        a2.barh([self.class_names[j] for j in order], self.intact[order], fill=False, edgecolor="#333",
                label="intact")
        a2.set_xlim(0, 1)
        a2.legend(fontsize=7, loc="lower right")
        removed = [u for u, s in self.scales.items() if s != 1]
        a2.set_title(f"{self.layer}: units changed {removed}", fontsize=8)
        return figure_array(fig)


class GradCamView(ViewBase):
    """Grad-CAM heatmap over an image for a chosen class and layer."""

    def __init__(self, model: torch.nn.Module, class_names: Sequence[str], data, layers: Sequence[str], *,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] = _signed, zoom: int = 4,
                 background: bool = True):
        super().__init__(background)
        for layer in layers:
            get_module(model, layer)
        self.model, self.class_names, self.source, self.preprocess, self.zoom = model, list(class_names), \
            as_source(data), preprocess, zoom
        self.image_index = W.BoundedIntText(value=0, min=0, max=max(len(self.source) - 1, 0), description="Image")
        self.klass = W.Dropdown(options=[("top class", -1)] + [(n, i) for i, n in enumerate(self.class_names)], value=-1,
                                description="Class")
        self.layer = W.Dropdown(options=list(layers), value=layers[-1], description="Layer")
        self.picture = image_widget(width=64 * zoom * 2 + 8)
        self.widget = W.VBox([W.HBox([self.image_index, self.klass, self.layer]), self.picture, self.status])
        _css(self.widget, "gradcam", self.klass, "class-select", self.picture, "gradcam-image")
        for w in (self.image_index, self.klass, self.layer):
            w.observe(self.guard(lambda c: self.update()), names="value")
        self.update()

    def update(self) -> None:
        self.compute(self._draw, int(self.image_index.value), int(self.klass.value), self.layer.value)

    def _draw(self, index: int, klass: int, layer: str) -> None:
        images, _ = self.source.load([index])
        cam, used = gradcam(self.model, self.preprocess(images), layer, None if klass < 0 else klass)
        pic = (images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        self.view = make_grid(np.stack([upscale(pic, self.zoom), upscale(heatmap_overlay(pic, cam[0]), self.zoom)]),
                              cols=2, pad=4)
        self.picture.value = png_bytes(self.view)
        self.cam = cam[0]
        self.say(f"image {index}: Grad-CAM for '{self.class_names[used]}' at {layer}")

    def render(self) -> np.ndarray:
        return self.view
