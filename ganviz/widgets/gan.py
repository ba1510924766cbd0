"""GAN widgets: the unit switchboard (turn a concept's units off and on over many samples) and "where can it go?".

    UnitSwitchboard(generator, segmenter, result, concept="tree")   # a GeneratorAdapter or a bare module
    WhereCanItGo(generator, segmenter, result, concept="door")      # the layer is result.layer
"""
from __future__ import annotations

import html
from typing import Any, Callable

import ipywidgets as W
import numpy as np
import torch
import traitlets

from ..adapters import GeneratorAdapter, as_generator
from ..dissect import DissectionResult
from ..generator_units import MIN_PIXELS, GeneratorProbe
from ..imaging import highlight_region, make_grid, png_bytes, to_uint8, upscale
from ..trace import Scale
from ._base import ViewBase, ViewState, close_tree, css, hidden_until_set

__all__ = ["UnitSwitchboard", "WhereCanItGo", "ConceptState", "SwitchboardState", "RANKINGS"]

RANKINGS = (("by IoU", "iou"), ("by causal effect", "effect"))
"""The switchboard's unit orders: (label, value)."""

Segmenter = Callable[[torch.Tensor], Any]
Preprocess = Callable[[torch.Tensor], torch.Tensor]


class ConceptState(ViewState):
    """What a generator view shows: a concept of its dissection (validated against its concept names)."""

    result = traitlets.Instance(DissectionResult, read_only=True, help="the dissection of the generator's layer")
    concept = traitlets.Unicode(help="the concept whose units are switched or inserted")

    @traitlets.validate("concept")
    def _known_concept(self, proposal: dict[str, Any]) -> str:
        if proposal["value"] not in self.result.concept_names:
            raise traitlets.TraitError(f"no concept {proposal['value']!r}; concepts: "
                                       f"{', '.join(self.result.concept_names)}")
        return proposal["value"]


class SwitchboardState(ConceptState):
    """What a :class:`UnitSwitchboard` shows."""

    scales = traitlets.Dict(read_only=True, help="unit -> scale of the listed units: 0 off, 1 as generated")


def _state(result: DissectionResult, concept: str, kind: type[ConceptState] = ConceptState) -> ConceptState:
    if concept not in result.concept_names:
        raise KeyError(f"no concept {concept!r}; concepts: {', '.join(result.concept_names)}")
    state = kind()
    state.set_trait("result", result)
    state.concept = concept
    return state


def _probe(gen: GeneratorAdapter, segmenter: Segmenter, result: DissectionResult,
           segmenter_preprocess: Preprocess | None) -> GeneratorProbe:
    pre = segmenter_preprocess if segmenter_preprocess is not None else gen.segmenter_preprocess()
    return GeneratorProbe(gen.model, result.layer, segmenter, result, segmenter_preprocess=pre)


class UnitSwitchboard(ViewBase):
    """A grid of generated samples and switches for a concept's top units; every sample updates live.

    ``generator`` is a :class:`~ganviz.adapters.GeneratorAdapter` or a bare module (``z_dim`` and ``output_range``
    default to the adapter's, or ``generator.z_dim`` and (-1, 1)); the layer is ``result.layer``.  Units are
    ranked by IoU with the concept, or by causal effect (how much the concept's segmented area drops when the unit
    alone is removed, measured over ``rank_samples`` latents).  A unit's slider scales it (0 = off, 1 = as
    generated, 2 = doubled).  The line under the grid gives the concept's area before and after.  ``state`` holds
    ``concept`` and ``scales``.
    """

    def __init__(self, generator: GeneratorAdapter | torch.nn.Module, segmenter: Segmenter,
                 result: DissectionResult, *,
                 concept: str = "tree", samples: int = 8, seed: int = 0, n_units: int = 12, rank_samples: int = 32,
                 zoom: int | None = None, segmenter_preprocess: Preprocess | None = None, z_dim: int | None = None,
                 output_range: tuple[float, float] | None = None, background: bool = True) -> None:
        super().__init__(background)
        self.generator = as_generator(generator, z_dim, output_range)
        self.probe = _probe(self.generator, segmenter, result, segmenter_preprocess)
        if samples < 1:
            raise ValueError(f"samples must be at least 1, got {samples}")
        self.state = _state(result, concept, SwitchboardState)
        self.z = self.generator.sample_latents(samples, seed)
        self.z_rank = self.generator.sample_latents(rank_samples, seed + 1)
        self.n_units, self.output_range = n_units, self.generator.output_range
        self.zoom = zoom or max(1, 128 // self.generator.resolution)
        self.scales: dict[int, float] = {}
        self.effects: dict[str, list[tuple[int, float]]] = {}
        self.concept = W.Dropdown(options=list(result.concept_names), value=concept, description="Concept")
        self.ranking = W.ToggleButtons(options=RANKINGS, value="iou", description="Rank")
        self.all_off = W.Button(description="All off")
        self.all_on = W.Button(description="All on")
        self.grid = hidden_until_set(W.Image(format="png", layout=W.Layout(width="auto")))
        self.grid.add_class("ganviz-pixelated")
        self.readout = W.HTML()
        self.switches = W.VBox(layout=W.Layout(max_height="520px", overflow="auto", min_width="330px"))
        left = W.VBox([W.HBox([self.concept, self.ranking]), self.grid, self.readout])
        right = W.VBox([W.HBox([self.all_off, self.all_on]), self.switches])
        self.widget = W.VBox([W.HBox([left, right], layout=W.Layout(align_items="flex-start")), self.status])
        css(self.widget, "switchboard", self.grid, "switchboard-grid", self.readout, "switchboard-readout",
            self.switches, "unit-switches", self.all_off, "all-off", self.all_on, "all-on")
        traitlets.link((self.concept, "value"), (self.state, "concept"))
        self.concept.observe(self.guard(lambda c: self.show_concept(c["new"])), names="value")
        self.ranking.observe(self.guard(lambda c: self.show_concept(self.concept.value)), names="value")
        self.all_off.on_click(self.guard(lambda b: self.set_all(0.0)))
        self.all_on.on_click(self.guard(lambda b: self.set_all(1.0)))
        self.show_concept(concept)

    # -- units --------------------------------------------------------------------------------------------------
    def ranked_units(self, concept: str) -> list[tuple[int, float]]:
        """``[(unit, score)]``: IoU, or the causal drop of the concept's area (computed once per concept)."""
        if self.ranking.value == "effect":
            if concept not in self.effects:
                self.say(f"ranking {self.probe.result.noun(2)} by their effect on {concept} over "
                         f"{len(self.z_rank)} samples ...")
                self.effects[concept] = self.probe.rank_by_effect(concept, self.z_rank)
            return self.effects[concept][:self.n_units]
        j = self.probe.concept_index(concept)
        return [(u, float(self.probe.result.iou[u, j])) for u in self.probe.result.units_for(j, self.n_units)]

    def show_concept(self, concept: str) -> None:
        """Switches for ``concept``'s top units (all on), and a fresh grid."""
        ranked = self.ranked_units(concept)
        self.scales = {u: 1.0 for u, _ in ranked}
        self.state.set_trait("scales", dict(self.scales))
        self._before = self._areas(None)
        what = "IoU" if self.ranking.value == "iou" else "area drop"
        old = self.switches.children
        self.switches.children = [self._switch(u, score, what) for u, score in ranked]
        close_tree(*old)
        self.update()

    def _switch(self, u: int, score: float, what: str) -> W.HBox:
        label = self.probe.result.label(u)
        toggle = W.ToggleButton(value=True, description=f"{self.probe.result.noun()} {u}",
                                layout=W.Layout(width="100px"),
                                tooltip=label.describe(digits=3))
        slider = W.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, readout_format=".2f",
                               layout=W.Layout(width="170px"))
        toggle.observe(self.guard(lambda c, s=slider: setattr(s, "value", 1.0 if c["new"] else 0.0)), names="value")
        slider.observe(self.guard(lambda c, u=u: self.set_scale(u, c["new"])), names="value")
        note = W.HTML(f"<small>{html.escape(label.concept)} &middot; {what} {score:.3f}</small>")
        row = W.HBox([toggle, slider, note])
        row.add_class("ganviz-unit-switch")
        return row

    def set_scale(self, unit: int, value: float) -> None:
        self.scales[int(unit)] = float(value)
        self.state.set_trait("scales", dict(self.scales))
        self.update()

    def set_all(self, value: float) -> None:
        """Turn every listed unit off (0) or on (1)."""
        for row in self.switches.children:
            row.children[1].value = value  # the sliders' observers update the scales
        for u in self.scales:
            self.scales[u] = value
        self.state.set_trait("scales", dict(self.scales))
        self.update()

    def edit(self) -> Scale | None:
        changed = {u: s for u, s in self.scales.items() if s != 1.0}
        return Scale(list(changed), list(changed.values())) if changed else None

    # -- compute ------------------------------------------------------------------------------------------------
    def _areas(self, edit: Scale | None) -> np.ndarray:
        return self.probe.area(self.concept.value, self.z, edit)

    def update(self) -> None:
        self.compute(self._draw, self.edit(), self.concept.value)

    def _draw(self, edit: Scale | None, concept: str) -> None:
        images = to_uint8(self.probe.generate(self.z, edit).float().cpu(), self.output_range)
        self.images = images
        self.grid.value = png_bytes(upscale(make_grid(images, cols=4), self.zoom))
        after = self.probe.area(concept, self.z, edit) if edit is not None else self._before
        before_total, after_total = float(self._before.sum()), float(after.sum())
        change = "" if before_total == 0 or edit is None else f" ({(after_total / before_total - 1) * 100:+.0f}%)"
        off = 0 if edit is None else sum(1 for f in edit.factors if f == 0)  # what this picture shows, not the
        self.after = after                                                    # switches' state meanwhile
        self.readout.value = (f"<b>{html.escape(concept)}</b> covers {before_total / len(after) * 100:.1f}% of "
                              f"the pixels as generated, {after_total / len(after) * 100:.1f}% now{change}; "
                              f"{off} {self.probe.result.noun(off)} off")
        self.say("")

    def render(self) -> np.ndarray:
        self.wait()
        return upscale(make_grid(self.images, cols=4), self.zoom)


class WhereCanItGo(ViewBase):
    """Switch a concept's units on at every location of the feature map in turn and show where it appears.

    ``generator`` is a :class:`~ganviz.adapters.GeneratorAdapter` or a bare module (as for
    :class:`UnitSwitchboard`); the layer is ``result.layer``.  The right image keeps the blocks where switching the
    units on made the segmenter find the concept (the rest is dimmed); the line below gives the success rate per
    context (what the patch showed before): the generator's sense of where the concept belongs.  ``state`` holds
    ``concept``.
    """

    def __init__(self, generator: GeneratorAdapter | torch.nn.Module, segmenter: Segmenter,
                 result: DissectionResult, *,
                 concept: str = "door", seed: int = 0, n_units: int = 20, level_quantile: float = 0.995, cells: int = 3,
                 min_pixels: int = MIN_PIXELS, zoom: int | None = None,
                 segmenter_preprocess: Preprocess | None = None, z_dim: int | None = None,
                 output_range: tuple[float, float] | None = None, background: bool = True) -> None:
        super().__init__(background)
        self.generator = as_generator(generator, z_dim, output_range)
        self.probe = _probe(self.generator, segmenter, result, segmenter_preprocess)
        self.state = _state(result, concept)
        self.n_units, self.level_quantile, self.cells, self.min_pixels = n_units, level_quantile, cells, min_pixels
        self.zoom, self.output_range = zoom or max(1, 256 // self.generator.resolution), self.generator.output_range
        self.concept = W.Dropdown(options=list(result.concept_names), value=concept, description="Concept")
        self.seed = W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="Seed",
                                     layout=W.Layout(width="170px"))
        self.picture = hidden_until_set(W.Image(format="png", layout=W.Layout(width="auto")))
        self.picture.add_class("ganviz-pixelated")
        self.readout = W.HTML()
        self.widget = W.VBox([W.HBox([self.concept, self.seed]), self.picture, self.readout, self.status])
        css(self.widget, "where", self.picture, "where-image", self.readout, "where-readout")
        traitlets.link((self.concept, "value"), (self.state, "concept"))
        self.concept.observe(self.guard(lambda c: self.update()), names="value")
        self.seed.observe(self.guard(lambda c: self.update()), names="value")
        self.update()

    def update(self) -> None:
        self.say(f"inserting {self.concept.value} at every location ...")
        self.compute(self._run, self.concept.value, int(self.seed.value))

    def _run(self, concept: str, seed: int) -> None:
        z = self.generator.sample_latents(1, seed)
        m = self.probe.insertion_map(concept, z, n_units=self.n_units, level_quantile=self.level_quantile,
                                      cells=self.cells)
        image = to_uint8(self.probe.generate(z)[0].float().cpu(), self.output_range)
        hit = m.success(self.min_pixels)[0]
        area = np.zeros(self.probe.result.activation_size, bool)  # a hit marks the block it was tried in
        for i, j in zip(*np.nonzero(hit)):
            area[i:i + self.cells, j:j + self.cells] = True
        big = upscale(image, self.zoom)
        mask = np.kron(area, np.ones((big.shape[0] // area.shape[0], big.shape[1] // area.shape[1]), bool))
        self.map = m
        gap = np.full((big.shape[0], 8, 3), 255, np.uint8)
        self.view = np.concatenate([big, gap, highlight_region(big, mask, dim=0.35)], axis=1)
        self.picture.value = png_bytes(self.view)
        self.readout.value = self._rates(concept, m.context[0], hit)
        self.say("")

    def _rates(self, concept: str, context: np.ndarray, hit: np.ndarray) -> str:
        names = self.probe.concept_names
        rates = []
        for k in np.unique(context):
            where = context == k
            rates.append((int(where.sum()), names[k], float(hit[where].mean())))
        rates.sort(reverse=True)
        return f"<b>{html.escape(concept)}</b> appeared at " + ", ".join(
            f"{r * 100:.0f}% of {html.escape(n)} locations ({c})" for c, n, r in rates)

    def render(self) -> np.ndarray:
        self.wait()
        return self.view
