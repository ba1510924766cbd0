"""The talk in one place: ``ganviz talk`` serves it (Voila), ``ganviz talk --export deck.html`` writes it as slides.

    talk = Talk()            # the bundled models, loaded when a section first needs them
    talk.widget              # one section at a time: its claim, the live widget showing it, the measured number
    talk.export("deck.html") # every section's claim, number and current picture, for a lecturer without a kernel

Each :class:`Section` builds its view and measures its number on the bundled models when first shown (a few
seconds each on a CPU; the dissections ship with the package).
"""
from __future__ import annotations

import base64
import html
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["Section", "Models", "SECTIONS", "Talk"]

Number = Union[str, Callable[[], str]]
Built = Tuple[Any, Number]  # a ganviz view, and the measured number as a sentence (or what measures it, later)


@dataclass(frozen=True)
class Section:
    """One step of the talk: a title, the claim it makes, and ``build(models) -> (view, number)``."""

    key: str
    title: str
    claim: str
    build: Callable[["Models"], Built]


class Models:
    """The bundled models, their shipped dissections and held-out data, loaded once on first use."""

    n_latents = 24  # latents that rank units, and as many again that measure them

    @cached_property
    def classifier(self) -> Any:
        from ..zoo import adapter

        return adapter("toy-classifier")

    @cached_property
    def classifier_result(self) -> Any:
        from ..zoo import dissection

        return dissection("toy-classifier", "conv5_3", self.classifier.model, progress=False)

    @cached_property
    def data(self) -> Any:
        from ..dissect import ToyWorldSource

        return ToyWorldSource(400, seed=1)  # scenes the classifier never saw (it trained on world 0)

    @cached_property
    def validation(self) -> Tuple[torch.Tensor, torch.Tensor]:
        from ..zoo.evaluate import held_out

        x, _, y = held_out(400, seed=3)
        return (x + 1) / 2, y

    @cached_property
    def generator(self) -> Any:
        from ..zoo import adapter

        return adapter("toy-gan")

    @cached_property
    def segmenter(self) -> Any:
        from ..zoo import load

        return load("toy-segmenter")[0]

    @cached_property
    def gan_result(self) -> Any:
        from ..zoo import dissection

        return dissection("toy-gan", "layer4", self.generator.model, progress=False)

    @cached_property
    def probe(self) -> Any:
        from ..generator_units import GeneratorProbe

        return GeneratorProbe(self.generator.model, "layer4", self.segmenter, self.gan_result)

    def latents(self, seed: int, n: Optional[int] = None) -> torch.Tensor:
        from ..plumbing import seeded_latents

        return seeded_latents(n or self.n_latents, self.generator.z_dim, seed)

    def class_index(self, name: str) -> int:
        return list(self.classifier.class_names).index(name)

    def first_image_of(self, name: str) -> int:
        """The first scene of :attr:`data` of class ``name`` that the classifier gets right."""
        from ..ablation import predict

        from ..toyworld import render_batch

        images, _ = self.data.load(range(len(self.data)))
        pred = predict(self.classifier.model, self.classifier.preprocess(images)).argmax(1)
        truth = render_batch(range(len(self.data)), 1)[2]
        c = self.class_index(name)
        return next(i for i in range(len(truth)) if truth[i] == c and pred[i] == c)


# -- the sections, in the talk's order ------------------------------------------------------------------------------
def _gradcam(m: Models) -> Built:
    from ..toyworld import CONCEPTS, render_batch
    from ..widgets import GradCamView

    i = m.first_image_of("church")
    view = GradCamView(m.classifier, m.data, ["conv4_3", "conv5_3"], zoom=4)
    view.image_index.value = i
    view.wait()
    labels = torch.from_numpy(render_batch([i], 1)[1][0])
    building = torch.isin(labels, torch.tensor([CONCEPTS.index(c) for c in ("wall", "roof", "dome", "door",
                                                                              "window")]))
    cam = torch.as_tensor(np.asarray(view.cam, np.float64))
    share, area = float(cam[building].sum() / cam.sum()), float(building.float().mean())
    return view, f"{share:.0%} of the Grad-CAM heat for 'church' lies on the building, which covers {area:.0%} " \
                 "of the picture"


def _units(m: Models) -> Built:
    from ..widgets import TopActivationGrid

    r = m.classifier_result
    counts = r.concept_counts(0.04)
    grid = TopActivationGrid(m.classifier, r, m.data, per_page=4, zoom=3)
    grid.concept.value = "dome" if "dome" in counts else next(iter(counts))
    return grid, f"{sum(counts.values())} of {r.num_units} conv5_3 units match a concept (IoU >= 0.04), " \
                 f"{len(counts)} concepts in all; most: {', '.join(list(counts)[:3])}"


def _flip(m: Models) -> Built:
    from ..widgets import AblationPanel

    clf = m.classifier
    panel = AblationPanel(clf, m.data, layer="conv5_3", result=m.classifier_result, validation=m.validation)
    panel.show_image(m.first_image_of("baseball_field"))

    def measure() -> str:
        flip = panel.find_flip(max_units=3)
        names = ", ".join(m.classifier_result.label(u).name() for u in flip.units)
        verdict = (f"turns it into {clf.class_names[flip.new_class]}" if flip.flipped else "does not change the "
                   "prediction")
        return f"removing {len(flip.units)} unit(s) ({names}) from a baseball field {verdict}"

    return panel, measure


def _sparsity(m: Models) -> Built:
    from ..widgets import AblationPanel

    panel = AblationPanel(m.classifier, m.data, layer="conv5_3", result=m.classifier_result,
                          validation=m.validation)
    panel.target.value = m.class_index("baseball_field")

    def measure() -> str:
        own, others = panel.measure_curve(max_units=3).drop(3)
        return f"removing the 3 units that matter most for baseball fields costs the class {own:.0%} of its " \
               f"accuracy and the other classes {others:.1%}"

    return panel, measure


def _gan_units(m: Models) -> Built:
    from ..widgets import DissectionSummary

    r = m.gan_result
    counts = r.concept_counts(0.04)
    return DissectionSummary(r), (
        f"{sum(counts.values())} of the GAN's {r.num_units} layer4 units match a concept in what it draws; "
        f"most: {', '.join(list(counts)[:3])}")


def _switch_off(concept: str, n_units: int, candidates: int) -> Callable[[Models], Built]:
    """A switchboard for ``concept``; the number: the area it loses with ``n_units`` units off (ranked by effect
    among ``candidates`` on one set of latents, measured on another)."""

    def build(m: Models) -> Built:
        from ..widgets import UnitSwitchboard
        from ..zoo.evaluate import WATERMARK_MIN_SHARE

        board = UnitSwitchboard(m.generator, m.segmenter, m.gan_result, concept=concept, samples=4, seed=5, zoom=4,
                                n_units=n_units)

        def measure() -> str:
            ranked = m.probe.rank_by_effect(concept, m.latents(101), n_candidates=candidates)
            effect = m.probe.ablation_effect(concept, [u for u, _ in ranked[:n_units]], m.latents(202))
            if concept != "watermark":
                return f"switching off {n_units} {concept} units removes {effect.drop:.0%} of the {concept} area " \
                       f"in {m.n_latents} new samples"
            had = int((effect.before >= WATERMARK_MIN_SHARE).sum())
            return f"switching off {n_units} watermark units removes the banner from " \
                   f"{effect.removed_from(WATERMARK_MIN_SHARE):.0%} of the {had} new samples that carried it"

        return board, measure

    return build


def _doors(m: Models) -> Built:
    from ..widgets import WhereCanItGo

    def house_on_grass(seed: int) -> bool:  # a scene with some wall and a lawn, as in examples/03
        z = m.latents(seed, 1)
        return 0.08 < m.probe.area("wall", z)[0] < 0.3 and m.probe.area("grass", z)[0] > 0.25

    house = next((s for s in range(200) if house_on_grass(s)), 0)
    view = WhereCanItGo(m.generator, m.segmenter, m.gan_result, concept="door", seed=house, zoom=4)

    def measure() -> str:
        insertion = m.probe.insertion_map("door", m.latents(303, 6), n_units=20, level_quantile=0.995, cells=3)
        return f"door units switched on add a door in {insertion.rate_in('wall'):.0%} of places on a wall and " \
               f"{insertion.rate_in('sky'):.0%} in the sky"

    return view, measure


def _omission(m: Models) -> Built:
    from ..inversion import Inverter
    from ..omission import compare, generated_statistics, segment_statistics
    from ..widgets import InversionGrid
    from ..zoo import load
    from ..zoo.evaluate import held_out

    names = m.gan_result.concept_names
    real, _, _ = held_out(300, seed=4)
    photos = ((real[:4].permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    latent_only = Inverter(m.generator.model, load("toy-encoder")[0], steps=100)
    grid = InversionGrid(latent_only, photos, m.segmenter, names)

    def measure() -> str:
        report = compare(generated_statistics(m.generator.model, m.segmenter, names, n=300, seed=12),
                         segment_statistics(real, m.segmenter, names))
        return f"concepts the GAN under-produces by 30% or more: " \
               f"{', '.join(report.under_produced(threshold=0.30)) or 'none'}"

    return grid, measure


def _paint(m: Models) -> Built:
    from ..inversion import Inverter
    from ..widgets import PaintCanvas
    from ..zoo import load

    encoder, _ = load("toy-encoder")
    inverter = Inverter(m.generator.model, encoder, layer="layer4", steps=60, layer_steps=60)
    canvas = PaintCanvas(m.generator, m.gan_result, seed=3, inverter=inverter)
    t0 = time.perf_counter()
    canvas.stroke([(12, 40), (28, 40)], concept="tree", mode="draw", strength="high", radius=6)
    canvas.wait()
    ms = (time.perf_counter() - t0) * 1000
    return canvas, f"a stroke is redrawn in {ms:.0f} ms on this machine; upload a photo to paint on it"


SECTIONS: List[Section] = [
    Section("gradcam", "What a classifier looks at",
            "Grad-CAM weighs a layer's maps by the gradient of a class score: the heat sits on the evidence.",
            _gradcam),
    Section("units", "Units and their concepts",
            "Network Dissection: a unit's top 1% activations, thresholded, overlap one concept's pixels.", _units),
    Section("flip", "Removing units flips a prediction",
            "A few units carry a class: switch them off and a baseball field becomes another scene.", _flip),
    Section("sparsity", "A class depends on few units",
            "Remove a class's most important units one by one: its accuracy falls, the others barely move.",
            _sparsity),
    Section("gan-units", "A GAN has units too",
            "GAN Dissection: segment what the generator draws; layer4's units match trees, walls, sky ...",
            _gan_units),
    Section("trees", "Trees off", "Switching a concept's units off removes the concept from the scene.",
            _switch_off("tree", 20, 60)),
    Section("watermark", "The watermark", "A GAN learns the banner its training set carried; its units remove it.",
            _switch_off("watermark", 20, 40)),
    Section("doors", "Doors on, and where a door can go",
            "Switching door units on adds doors where a door fits (walls), not where it does not (sky).", _doors),
    Section("omission", "What a GAN cannot generate",
            "Compare what the GAN draws with real scenes, and invert real scenes: what comes back is missing.",
            _omission),
    Section("paint", "Painting", "GAN Paint: a stroke switches a concept's units on under it; the GAN redraws.",
            _paint),
]


class Talk:
    """The talk as one widget: a section at a time (its view built on first visit, its number measured in the
    background meanwhile), Previous / Next and a section menu."""

    def __init__(self, sections: Optional[List[Section]] = None, models: Optional[Models] = None) -> None:
        import ipywidgets as W

        self.sections = list(SECTIONS if sections is None else sections)
        self.models = models or Models()
        self.built: dict[str, Built] = {}
        self.numbers: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ganviz-talk")
        self.menu = W.Dropdown(options=[(f"{i + 1}. {s.title}", i) for i, s in enumerate(self.sections)], value=0,
                               layout=W.Layout(width="360px"))
        self.prev = W.Button(description="Previous", icon="arrow-left")
        self.next = W.Button(description="Next", icon="arrow-right")
        self.heading, self.number = W.HTML(), W.HTML()
        self.body = W.Box([], layout=W.Layout(min_height="300px"))
        self.widget = W.VBox([W.HBox([self.prev, self.menu, self.next]), self.heading, self.body, self.number])
        self.widget.add_class("ganviz-talk")
        self.number.add_class("ganviz-talk-number")
        self.prev.on_click(lambda _: self.show(max(self.menu.value - 1, 0)))
        self.next.on_click(lambda _: self.show(min(self.menu.value + 1, len(self.sections) - 1)))
        self.menu.observe(lambda c: self.show(c["new"]), names="value")
        self.show(0)

    def build(self, i: int) -> Built:
        """Section ``i``'s view and number (built once; the number's measurement starts in the background)."""
        s = self.sections[i]
        if s.key not in self.built:
            view, number = self.built[s.key] = s.build(self.models)
            if callable(number):
                self.numbers[s.key] = self._pool.submit(number)
            else:
                self.numbers[s.key] = Future()
                self.numbers[s.key].set_result(number)
        return self.built[s.key]

    def measured(self, i: int, timeout: Optional[float] = None) -> str:
        """Section ``i``'s number, waiting for its measurement."""
        self.build(i)
        return self.numbers[self.sections[i].key].result(timeout)

    def show(self, i: int) -> None:
        s = self.sections[i]
        self.menu.value = i
        self.heading.value = (f"<h2 style='margin:6px 0'>{i + 1}. {html.escape(s.title)}</h2>"
                              f"<p style='font-size:1.15em;margin:0 0 8px 0'>{html.escape(s.claim)}</p>")
        try:
            view, _ = self.build(i)
        except Exception as err:  # noqa: BLE001 - the talk goes on; the section says what went wrong
            self.body.children, self.number.value = (), f"<b style='color:#b00020'>{html.escape(str(err))}</b>"
            return
        self.body.children = (view.widget,)
        self.number.value = "<p style='font-size:1.3em'><i>measuring ...</i></p>"
        self.numbers[s.key].add_done_callback(lambda f, i=i: self._show_number(i, f))

    def _show_number(self, i: int, future: Future) -> None:
        if self.menu.value != i:
            return
        err = future.exception()
        text = f"<b style='color:#b00020'>{html.escape(str(err))}</b>" if err else \
            f"<b>Measured:</b> {html.escape(future.result())}"
        self.number.value = f"<p style='font-size:1.3em'>{text}</p>"

    def export(self, path: str | Path) -> Path:
        """Write every section (claim, number, the view's current picture) as one self-contained HTML deck."""
        from ..imaging import png_bytes

        slides = []
        for i, s in enumerate(self.sections):
            view, _ = self.build(i)
            number = self.measured(i)
            view.wait()
            img = base64.b64encode(png_bytes(view.render())).decode()
            slides.append(_SLIDE.format(n=i + 1, title=html.escape(s.title), claim=html.escape(s.claim),
                                        number=html.escape(number), img=img))
        path = Path(path)
        path.write_text(_DECK.format(slides="\n".join(slides)), encoding="utf-8")
        return path


_SLIDE = """<section><h2>{n}. {title}</h2><p class="claim">{claim}</p>
<img alt="{title}" src="data:image/png;base64,{img}"><p class="number"><b>Measured:</b> {number}</p></section>"""

_DECK = """<!doctype html><html><head><meta charset="utf-8"><title>ganviz: looking inside vision networks</title>
<style>body{{font-family:sans-serif;margin:0;background:#fafafa}} section{{display:none;padding:2vh 4vw}}
section.on{{display:block}} img{{image-rendering:pixelated;max-width:92vw;max-height:68vh;min-width:50vw;
object-fit:contain}} .claim{{font-size:1.4em}} .number{{font-size:1.5em}} nav{{position:fixed;bottom:1vh;right:2vw}}
</style></head><body>
{slides}
<nav><button onclick="go(-1)">&larr;</button> <span id="at"></span> <button onclick="go(1)">&rarr;</button></nav>
<script>var s=document.querySelectorAll('section'),i=0;function go(d){{s[i].classList.remove('on');
i=Math.max(0,Math.min(s.length-1,i+d));s[i].classList.add('on');document.getElementById('at').textContent=
(i+1)+' / '+s.length}} document.onkeydown=function(e){{if(e.key=='ArrowRight'||e.key==' ')go(1);
if(e.key=='ArrowLeft')go(-1)}}; go(0);</script></body></html>"""
