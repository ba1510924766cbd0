"""The unit-ablation panel: remove or scale units of a classifier layer and watch its prediction change, live.

    AblationPanel(classifier, data, result=result, validation=(images01, labels))   # layer: result.layer
    AblationPanel(model, data, layer="conv5_3", class_names=names)                  # a bare module, with hints
"""
from __future__ import annotations

import html
from typing import Any, Callable, Sequence

import ipywidgets as W
import numpy as np
import torch
import traitlets

from .. import ablation
from ..adapters import ClassifierAdapter, as_classifier
from ..basis import unit_noun
from ..dissect import DissectionResult, as_source
from ..imaging import load_image, png_bytes, upscale
from ..plumbing import model_device
from ..trace import get_module, retain
from ..charts import figure_array, figure_png
from ._base import ViewBase, ViewState, close_tree, css, image_widget, hidden_until_set

__all__ = ["AblationPanel", "AblationState"]


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


class AblationState(ViewState):
    """What an :class:`AblationPanel` shows."""

    layer = traitlets.Unicode(read_only=True, help="the classifier layer whose units are scaled")
    result = traitlets.Instance(DissectionResult, allow_none=True, read_only=True,
                                help="the dissection naming the units (None: units are unnamed)")
    scales = traitlets.Dict(read_only=True, help="unit -> scale of the listed units: 0 removes, 1 keeps, 2 doubles")
    prediction = traitlets.Unicode(read_only=True, help="the top class with the current scales")


class AblationPanel(ViewBase):
    """Remove or scale units of a classifier layer and watch its prediction change, live.

    ``classifier`` is a :class:`~ganviz.adapters.ClassifierAdapter` or a bare module; ``class_names``,
    ``preprocess`` and ``resolution`` (of uploaded images) default to the adapter's (a bare module without class
    names gets an error saying to pass them).  ``layer`` defaults to ``result.layer`` when a dissection is given,
    else the adapter's default layer.  ``data`` gives the images to pick from (a toy-world source, a tensor of
    images in [0, 1] or a Dataset); ``validation`` is ``(images in [0,1], labels)`` for the class view (accuracy
    with the units removed and the sparsity curve).  Per-unit sliders: 0 removes a unit, 1 keeps it, above 1
    amplifies it.  ``state`` holds ``scales`` and ``prediction``.
    """

    def __init__(self, classifier: ClassifierAdapter | torch.nn.Module, data: Any, *, layer: str | None = None,
                 class_names: Sequence[str] | None = None, result: DissectionResult | None = None,
                 units: Sequence[int] = (), validation: tuple[torch.Tensor, torch.Tensor] | None = None,
                 preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None, resolution: int | None = None,
                 background: bool = True) -> None:
        super().__init__(background)
        clf = as_classifier(classifier, class_names, preprocess, resolution=resolution)
        clf.require_class_names("AblationPanel")
        if result is not None and layer is not None and layer != result.layer:
            raise ValueError(f"the dissection is of {result.layer!r}, not {layer!r}: leave layer= out")
        self.layer = layer or (result.layer if result is not None else clf.default_layer)
        get_module(clf.model, self.layer)
        self.classifier, self.model, self.class_names = clf, clf.model, list(clf.class_names)
        self.source, self.validation, self.result = as_source(data), validation, result
        self.preprocess, self.resolution = clf.preprocess, clf.resolution
        self.scales: dict[int, float] = {}
        self._n_units: int | None = None
        self.state = AblationState()
        self.state.set_trait("layer", self.layer)
        self.state.set_trait("result", result)
        self._build()
        self.set_units(units)
        if len(self.source):
            self.show_image(0)

    def _noun(self, n: int = 1, capital: bool = False) -> str:
        return unit_noun(self.layer, n, capital)

    def _build(self) -> None:
        self.image_index = W.BoundedIntText(value=0, min=0, max=max(len(self.source) - 1, 0), description="Image")
        self.upload = W.FileUpload(accept="image/png,image/jpeg", multiple=False, description="Upload image")
        self.picture = image_widget(width=self.resolution * 3)
        self.bars = W.HTML()
        self.unit_text = W.Text(placeholder="e.g. 3, 17, 42", description=self._noun(2, capital=True))
        self.add_button = W.Button(description="Show sliders")
        self.sliders = W.VBox()
        self.flip_button = W.Button(description="What flips this prediction?", button_style="info",
                                    layout=W.Layout(width="auto"))
        self.reset_button = W.Button(description=f"Restore all {self._noun(2)}")
        self.target = W.Dropdown(options=[(n, i) for i, n in enumerate(self.class_names)], description="Class")
        self.class_button = W.Button(description=f"Accuracy with {self._noun(2)} removed",
                                     layout=W.Layout(width="auto"))
        self.curve_button = W.Button(description="Sparsity curve")
        self.class_view = W.HTML()
        self.curve = hidden_until_set(W.Image(format="png", layout=W.Layout(align_self="flex-start")))
        left = W.VBox([self.image_index, self.upload, self.picture])
        right = W.VBox([self.bars, W.HBox([self.unit_text, self.add_button]), self.sliders,
                        W.HBox([self.flip_button, self.reset_button])])
        klass = W.VBox([W.HBox([self.target, self.class_button, self.curve_button]), self.class_view, self.curve])
        self.widget = W.VBox([W.HBox([left, right], layout=W.Layout(align_items="flex-start")), klass, self.status])
        css(self.widget, "ablation", self.picture, "ablation-image", self.bars, "bars", self.sliders, "unit-sliders",
            self.class_view, "class-view", self.curve, "curve")
        self.image_index.observe(self.guard(lambda c: self.show_image(c["new"])), names="value")
        self.watch_upload(self.upload, self._take_upload)
        self.add_button.on_click(self.guard(lambda b: self.set_units(self._parse_units(self.unit_text.value))))
        self.flip_button.on_click(self.guard(lambda b: self.find_flip()))
        self.reset_button.on_click(self.guard(lambda b: self.set_units(list(self.scales), reset=True)))
        self.class_button.on_click(self.guard(lambda b: self.measure_class()))
        self.curve_button.on_click(self.guard(lambda b: self.measure_curve()))

    # -- inputs ---------------------------------------------------------------------------------------------
    @property
    def num_units(self) -> int:
        """Units of the layer (measured once with one image)."""
        if self._n_units is None and self.result is not None and self.result.layer == self.layer:
            self._n_units = int(self.result.num_units)
        if self._n_units is None:
            image = self.image[:1] if hasattr(self, "image") else self.source.load([0])[0]
            x = self.preprocess(image).to(model_device(self.model))
            self._n_units = int(retain(self.model, x, self.layer)[self.layer].shape[1])
        return self._n_units

    def _parse_units(self, text: str) -> list[int]:
        try:
            units = [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"{self._noun(2)} must be whole numbers separated by commas, got {text!r}") from None
        n = self.num_units
        bad = [u for u in units if not 0 <= u < n]
        if bad:
            raise IndexError(f"{self._noun()} {bad[0]} out of range for layer {self.layer!r} with {n} "
                             f"{self._noun(n)} "
                             f"(expected 0..{n - 1})")
        return units

    def show_image(self, index: int) -> None:
        images, _ = self.source.load([int(index)])
        self.image = images[:1]
        self.image_label = f"image {index}"
        self._after_image()

    def _take_upload(self, data: bytes, name: str) -> None:
        arr = load_image(data, self.resolution)
        self.image = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
        self.image_label = name
        self._after_image()

    def _after_image(self) -> None:
        pic = (self.image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        self.picture.value = png_bytes(upscale(pic, 3))
        self.intact = ablation.predict(self.model, self.preprocess(self.image))[0].numpy()
        self.update()

    # -- units ----------------------------------------------------------------------------------------------
    def set_units(self, units: Sequence[int], reset: bool = False) -> None:
        """Show a slider (and an on/off toggle) for each of ``units``; ``reset`` puts all back to 1."""
        bad = [u for u in units if isinstance(u, bool) or not isinstance(u, (int, np.integer))
               or not 0 <= int(u) < self.num_units]
        if bad:
            raise ValueError(f"{self._noun(2)} must be integers from 0 to {self.num_units - 1} (layer "
                             f"{self.layer!r} has {self.num_units} {self._noun(2)}); got {bad[:5]}")
        keep = {} if reset else dict(self.scales)
        self.scales = {int(u): keep.get(int(u), 1.0) for u in units}
        self._slider: dict[int, W.FloatSlider] = {}
        old = self.sliders.children
        self.sliders.children = [self._unit_row(u) for u in self.scales]
        close_tree(*old)
        self.state.set_trait("scales", dict(self.scales))
        if hasattr(self, "image"):
            self.update()

    def _unit_row(self, u: int) -> W.HBox:
        name = f"{self._noun()} {u}"
        if self.result is not None:
            lab = self.result.label(u)
            name += f" ({lab.name()} {lab.iou:.2f})"
        s = W.FloatSlider(value=self.scales[u], min=0.0, max=3.0, step=0.05, description=name,
                          style={"description_width": "150px"}, layout=W.Layout(width="420px"))
        t = W.ToggleButton(value=self.scales[u] != 0, description="on", layout=W.Layout(width="50px"))
        s.observe(self.guard(lambda c, u=u: self.set_scale(u, c["new"])), names="value")
        s.observe(lambda c, t=t: t.set_trait("value", c["new"] != 0), names="value")  # "on" follows the slider
        t.observe(self.guard(lambda c, u=u: self._toggle(u, c["new"])), names="value")
        s.add_class("ganviz-unit-slider")
        self._slider[u] = s
        return W.HBox([s, t])

    def _toggle(self, unit: int, on: bool) -> None:
        slider = self._slider[unit]
        if on and slider.value == 0:
            slider.value = 1.0
        elif not on and slider.value != 0:
            slider.value = 0.0

    def set_scale(self, unit: int, value: float) -> None:
        self.scales[int(unit)] = float(value)
        self.state.set_trait("scales", dict(self.scales))
        self.update()

    def edit(self) -> Any:
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
        self.state.set_trait("prediction", top)
        self.say(f"{self.image_label}: predicted {top}"
                 + (f"; {self._noun(2)} removed: {removed}" if removed else ""))

    def find_flip(self, max_units: int = 5) -> ablation.FlipResult:
        """Search a small set of units whose removal changes the top class; set their sliders to 0."""
        self.wait()
        self.say(f"searching for {self._noun(2)} to remove ...")
        res = ablation.find_flip(self.model, self.layer, self.preprocess(self.image), max_units=max_units)
        self.set_units(res.units, reset=True)
        for u in res.units:
            self._slider[u].value = 0.0
        self.wait()
        names = ""
        if self.result is not None:
            names = " (" + ", ".join(self.result.label(u).name() for u in res.units) + ")"
        verdict = (f"removing {self._noun(2)} {res.units}{names} turns {self.class_names[res.original_class]} "
                   "into "
                   f"{self.class_names[res.new_class]}" if res.flipped else
                   f"removing {len(res.units)} {self._noun(len(res.units))} did not change "
                   f"{self.class_names[res.original_class]}")
        self.flip_result = res
        self.say(verdict)
        return res

    def _validation(self, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.validation is None:
            raise ValueError(f"pass validation=(images, labels) to {what}")
        return self.validation

    def measure_class(self) -> np.ndarray:
        """Per-class accuracy over the validation set with the current units removed/scaled, versus intact."""
        x, y = self._validation("measure class accuracy")
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
        from ..charts import figure

        x, y = self._validation("draw a sparsity curve")
        c = int(self.target.value)
        curve = ablation.sparsity_curve(self.model, self.layer, self.preprocess(x), y, c, len(self.class_names),
                                        max_units=max_units)
        fig = figure((5, 2.8))
        ax = fig.add_subplot()
        ks = np.arange(len(curve.class_accuracy))
        ax.plot(ks, curve.class_accuracy, "o-", label=self.class_names[c])
        ax.plot(ks, curve.other_accuracy, "s--", label="other classes (mean)")
        ax.set_xlabel(f"top {self._noun(2)} removed")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        ax.set_title(f"{self._noun(2)} ranked by effect on {self.class_names[c]}: {curve.units[:5]}...", fontsize=8)
        self.curve.value = figure_png(fig)
        self.curve_result = curve
        return curve

    def render(self) -> np.ndarray:
        from ..charts import figure

        fig = figure((6, 2.4))
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
        a2.set_title(f"{self.layer}: {self._noun(2)} changed {removed}", fontsize=8)
        return figure_array(fig)
