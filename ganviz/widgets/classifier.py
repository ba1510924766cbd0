"""Classifier widgets: the top-activation grid, the dissection summary and the Grad-CAM view.

    TopActivationGrid(classifier, result, data)          # a ClassifierAdapter or a bare module (+ preprocess=)
    DissectionSummary(result)
    GradCamView(classifier, data, ["conv4_3", "conv5_3"], class_names=names)
"""
from __future__ import annotations

import html
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as W
import numpy as np
import torch
import traitlets
from PIL import Image, ImageDraw, ImageFont

from ..adapters import ClassifierAdapter, as_classifier
from ..dissect import DissectionResult, as_source
from ..gradcam import gradcam
from ..imaging import heatmap_overlay, make_grid, png_bytes, upscale
from ..trace import get_module
from ..charts import figure_array, figure_png
from ..unitviz import plot_unit_detail, unit_top_images
from ._base import ViewBase, ViewState, css, image_widget, hidden_until_set

__all__ = ["TopActivationGrid", "DissectionSummary", "GradCamView", "GridState", "SummaryState", "GradCamState",
           "ALL"]

ALL = "(all concepts)"
"""The grid's concept filter value that shows every unit."""

Preprocess = Callable[[torch.Tensor], torch.Tensor]


def _caption(image: np.ndarray, text: str, width: int = 190) -> np.ndarray:
    """Put ``text`` in a white box left of ``image`` (for saved PNGs)."""
    canvas = Image.new("RGB", (width + image.shape[1], max(image.shape[0], 16)), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (width, 0))
    ImageDraw.Draw(canvas).text((4, 4), text, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(canvas)


class GridState(ViewState):
    """What a :class:`TopActivationGrid` shows."""

    result = traitlets.Instance(DissectionResult, read_only=True, help="the dissection whose units are shown")
    concept = traitlets.Unicode(ALL, help=f"the concept filter ({ALL!r}: every unit)")
    unit = traitlets.Int(None, allow_none=True, help="the selected unit, whose detail is shown (None: none yet)")

    @traitlets.validate("concept")
    def _known_concept(self, proposal: dict[str, Any]) -> str:
        if proposal["value"] != ALL and proposal["value"] not in self.result.concept_names:
            raise traitlets.TraitError(f"no concept {proposal['value']!r}; concepts: "
                                       f"{', '.join(self.result.concept_names)}")
        return proposal["value"]

    @traitlets.validate("unit")
    def _unit_in_range(self, proposal: dict[str, Any]) -> int | None:
        unit = proposal["value"]
        if unit is not None and not 0 <= unit < self.result.num_units:
            raise traitlets.TraitError(f"{self.result.noun()} {unit} out of range (layer {self.result.layer} has "
                                       f"{self.result.num_units})")
        return unit


class TopActivationGrid(ViewBase):
    """Units of a dissected layer with their top images (top-quantile region highlighted), label and IoU.

    Sort by IoU or unit, filter by concept, page through the units; select a unit to see its full top-k, its
    activation distribution and its IoU with every concept.  ``classifier`` is a
    :class:`~ganviz.adapters.ClassifierAdapter` or a bare module (``preprocess`` maps images in [0, 1] to its input;
    default [-1, 1]); the layer is ``result.layer``.  ``state`` holds ``concept`` and the selected ``unit``.
    """

    def __init__(self, classifier: ClassifierAdapter | torch.nn.Module, result: DissectionResult, data: Any, *,
                 preprocess: Preprocess | None = None, per_page: int = 8, images_per_unit: int = 6,
                 detail_images: int = 24, zoom: int = 2, background: bool = True) -> None:
        super().__init__(background)
        self.classifier = as_classifier(classifier, preprocess=preprocess)
        self.model, self.preprocess = self.classifier.model, self.classifier.preprocess
        get_module(self.model, result.layer)
        self.result, self.source = result, as_source(data)
        self.per_page, self.images_per_unit, self.detail_images, self.zoom = per_page, images_per_unit, \
            detail_images, zoom
        self._strips: dict[int, np.ndarray] = {}
        self._build()
        self.state = GridState()
        self.state.set_trait("result", result)
        traitlets.link((self.concept, "value"), (self.state, "concept"))
        self.state.observe(lambda change: self._show_unit(change["new"]), names="unit")
        for w in (self.sort, self.concept, self.min_iou):
            w.observe(self.guard(lambda change: self._refresh(reset_page=True)), names="value")
        self.page.observe(self.guard(lambda change: self._show_page()), names="value")
        self.unit.observe(self.guard(lambda change: self.select(change["new"])), names="value")
        self._refresh(reset_page=True)

    def _build(self) -> None:
        noun = self.result.noun()
        self.sort = W.ToggleButtons(options=[("by IoU", "iou"), (f"by {noun}", "unit")], value="iou",
                                    description="Sort", layout=W.Layout(display="flex", align_items="center"))
        self.concept = W.Dropdown(options=[ALL] + list(self.result.concept_names), value=ALL, description="Concept")
        self.min_iou = W.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.01, description="Min IoU",
                                     continuous_update=False)
        self.page = W.IntSlider(value=1, min=1, max=1, description="Page", continuous_update=False)
        self.unit = W.Dropdown(options=[], description=noun.capitalize())
        self.rows = W.VBox()
        self.detail_images_w = image_widget(width=6 * 64 * self.zoom // 2)
        self.detail_plot = hidden_until_set(W.Image(format="png", layout=W.Layout(align_self="flex-start")))
        self.detail_title = W.HTML()
        controls = W.HBox([self.sort, self.concept, self.min_iou], layout=W.Layout(flex_flow="row wrap"))
        detail = W.VBox([self.unit, self.detail_title, self.detail_images_w, self.detail_plot])
        self.widget = W.VBox([controls, self.page, self.rows, W.HTML("<hr>"), detail, self.status])
        css(self.widget, "grid", self.rows, "grid-rows", self.unit, "unit-select", self.detail_title, "detail-title",
            self.detail_images_w, "detail-images", self.detail_plot, "detail-plot")

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
        return f"{self.result.noun()} {unit}: {self.result.label(unit).describe()}"

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
        self.say(f"{len(units)} {self.result.noun(2)} shown of {self.result.num_units} in "
                 f"{self.result.layer}; "
                 f"page {self.page.value} of {pages + 1}")

    def _show_page(self) -> None:
        rows = []
        for u in self.units_on_page():
            label = W.HTML(f"<b>{html.escape(self.caption(u))}</b>", layout=W.Layout(width="210px"))
            rows.append(W.HBox([label, image_widget(self.strip(u), width=self.strip(u).shape[1])],
                               layout=W.Layout(align_items="center")))
        if not rows:
            rows = [W.HTML(f"<i>no {self.result.noun()} matches this filter</i>")]
        self.rows.children = rows

    def select(self, unit: int | None) -> None:
        """Show one unit's full top-k, activation distribution and IoU per concept (sets ``state.unit``)."""
        if unit is None:
            return
        unit = int(unit)
        if not 0 <= unit < self.result.num_units:
            raise IndexError(f"{self.result.noun()} {unit} out of range (layer {self.result.layer} has "
                             f"{self.result.num_units})")
        if self.state.unit == unit:
            self._show_unit(unit)
        self.state.unit = unit  # its observer shows the unit

    def _show_unit(self, unit: int | None) -> None:
        if unit is None:
            return
        tiles = unit_top_images(self.model, self.result, self.source, unit, self.detail_images, self.preprocess)
        grid = upscale(make_grid(tiles, cols=min(8, len(tiles)), pad=1), self.zoom)
        self.detail_images_w.value = png_bytes(grid)
        self.detail_images_w.layout.width = f"{grid.shape[1]}px"
        lab = self.result.label(unit)
        others = ", ".join(f"{c} {v:.2f}" for c, v in lab.runners_up)
        self.detail_title.value = (f"<b>{self.result.noun()} {unit}</b>: "
                                   f"{html.escape(lab.describe(digits=3))}; "
                                   f"runners-up: {html.escape(others)}; threshold "
                                   f"{self.result.thresholds[unit]:.3f}")
        self.detail_plot.value = figure_png(plot_unit_detail(self.result, unit))

    def render(self) -> np.ndarray:
        rows = [_caption(self.strip(u), self.caption(u)) for u in self.units_on_page()]
        if not rows:
            return np.full((40, 400, 3), 255, np.uint8)
        return make_grid(np.stack(rows), cols=1, pad=4)


class SummaryState(ViewState):
    """What a :class:`DissectionSummary` shows."""

    result = traitlets.Instance(DissectionResult, read_only=True, help="the dissection summarised")
    min_iou = traitlets.Float(0.04, min=0.0, max=1.0, help="the IoU a unit needs to count for its concept")


class DissectionSummary(ViewBase):
    """Units per concept for a layer (bar chart) and a sortable table of every unit's label."""

    def __init__(self, result: DissectionResult, min_iou: float = 0.04, background: bool = True, *,
                 checks: Mapping[int, Any] | None = None) -> None:
        super().__init__(background)
        self.result = result
        self.checks = dict(checks or {})  # unit -> a causal check (ganviz.label_checks): a "when off" column
        self.min_iou = W.FloatSlider(value=min_iou, min=0.0, max=0.3, step=0.01, description="Min IoU",
                                     continuous_update=False)
        self.sort = W.Dropdown(options=[("IoU", "iou"), ("unit", "unit"), ("concept", "concept")], value="iou",
                               description="Sort by")
        self.chart = hidden_until_set(W.Image(format="png", layout=W.Layout(align_self="flex-start")))
        self.table = W.HTML(layout=W.Layout(max_height="360px", overflow="auto"))
        self.widget = W.VBox([W.HBox([self.min_iou, self.sort]), self.chart, self.table, self.status])
        css(self.widget, "summary", self.chart, "summary-chart", self.table, "summary-table")
        self.state = SummaryState(min_iou=min_iou)
        self.state.set_trait("result", result)
        traitlets.link((self.min_iou, "value"), (self.state, "min_iou"))
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
        def check(u: int) -> str:
            return f"<td>{html.escape(self.checks[u].text())}</td>" if u in self.checks else "<td></td>"

        extra = check if self.checks else (lambda u: "")
        body = "".join(f"<tr><td>{u}</td><td>{html.escape(c)}</td><td>{v:.3f}</td>{extra(u)}</tr>"
                       for u, c, v in self.rows())
        head = "<th>when off</th>" if self.checks else ""
        self.table.value = (f"<table class='ganviz-table'><tr><th>{self.result.noun()}</th>"
                            "<th>concept</th><th>IoU</th>"
                            f"{head}</tr>{body}</table>")
        self.say(f"{len(self.rows())} of {self.result.num_units} {self.result.noun(2)} reach IoU "
                 f"{self.min_iou.value:.2f}")

    def render(self) -> np.ndarray:
        return figure_array(self._fig)


class GradCamState(ViewState):
    """What a :class:`GradCamView` shows."""

    image = traitlets.Int(0, min=0, help="index of the image in the data")
    klass = traitlets.Int(-1, min=-1, help="the class explained (-1: each image's top class)")
    layer = traitlets.Unicode(help="the layer whose gradients weight the map")


class GradCamView(ViewBase):
    """Grad-CAM heatmap over an image for a chosen class and layer.

    ``classifier`` is a :class:`~ganviz.adapters.ClassifierAdapter` or a bare module; ``layers`` default to the
    adapter's layers, ``class_names`` and ``preprocess`` to the adapter's (a bare module without class names gets an
    error saying to pass them).  ``state`` holds ``image``, ``klass`` and ``layer``.
    """

    def __init__(self, classifier: ClassifierAdapter | torch.nn.Module, data: Any,
                 layers: Sequence[str] | None = None, *, class_names: Sequence[str] | None = None,
                 preprocess: Preprocess | None = None, zoom: int = 4, background: bool = True) -> None:
        super().__init__(background)
        clf = as_classifier(classifier, class_names, preprocess)
        clf.require_class_names("GradCamView")
        layers = list(layers if layers is not None else clf.layers)
        for layer in layers:
            get_module(clf.model, layer)
        self.classifier, self.model, self.class_names, self.preprocess = clf, clf.model, list(clf.class_names), \
            clf.preprocess
        self.source, self.zoom = as_source(data), zoom
        self.image_index = W.BoundedIntText(value=0, min=0, max=max(len(self.source) - 1, 0), description="Image")
        self.klass = W.Dropdown(options=[("top class", -1)] + [(n, i) for i, n in enumerate(self.class_names)],
                                value=-1, description="Class")
        self.layer = W.Dropdown(options=layers, value=layers[-1], description="Layer")
        self.picture = image_widget(width=64 * zoom * 2 + 8)
        self.widget = W.VBox([W.HBox([self.image_index, self.klass, self.layer]), self.picture, self.status])
        css(self.widget, "gradcam", self.klass, "class-select", self.picture, "gradcam-image")
        self.state = GradCamState(layer=layers[-1])
        for name, w in (("image", self.image_index), ("klass", self.klass), ("layer", self.layer)):
            traitlets.link((w, "value"), (self.state, name))
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
