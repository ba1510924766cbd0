"""Causal checks of unit labels: switch a labelled unit off and measure what its label claims it does.

    checks = generator_label_checks(probe, z)                       # GAN: the labelled concept's area when off
    checks = classifier_label_checks(model, "conv5_3", result, x, labels)   # classifier: the top class's probability
    checks = classifier_label_checks(model, "conv5_3", {12: "tree"}, x, labels, concept_names=CONCEPTS)  # any labels
    checks[12].text()          # "tree: area -34% when off"
    DissectionSummary(result, checks=checks)                        # a column of the summary table

A dissection label says a unit's activations overlap a concept's pixels; it does not say the network uses the unit
for that concept.  The checks remove each labelled unit alone (set to zero everywhere) and measure:

* generators: the labelled concept's area in the segmented samples, relative to the intact samples (GAN Dissection's
  causal test, one unit at a time);
* classifiers: the probability of each image's predicted class, over the images where the labelled concept covers
  at least ``min_share`` of the pixels (the evidence the unit is supposed to carry).

A label is *confirmed* when the measured quantity falls by at least ``min_drop`` (default 5%).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .ablation import predict
from .dissect import DissectionResult
from .dissect.result import LABEL_MIN_IOU
from .edits import Ablate
from .generator_units import GeneratorProbe

__all__ = ["LabelCheck", "generator_label_checks", "classifier_label_checks", "class_check", "summary", "MIN_DROP"]

MIN_DROP = 0.05
"""Relative fall that confirms a label (5%)."""


@dataclass(frozen=True)
class LabelCheck:
    """What switching off one labelled ``unit`` did: ``measure`` went from ``before`` to ``after``."""

    unit: int
    concept: str
    measure: str  # "area" (generators), "p(class)" (classifiers) or "p(word)" (a word, via a text-image model)
    before: float
    after: float
    samples: int

    @property
    def change(self) -> float:
        """Relative change when the unit is off (-0.34: fell by 34%); 0 when there was nothing to measure."""
        return 0.0 if self.before <= 0 else self.after / self.before - 1.0

    def confirmed(self, min_drop: float = MIN_DROP) -> bool:
        return self.samples > 0 and self.change <= -min_drop

    def text(self) -> str:
        if self.samples == 0:
            return f"{self.concept}: no sample to measure"
        return f"{self.concept}: {self.measure} {self.change:+.0%} when off"


Labels = Union[DissectionResult, Mapping[int, str]]


def _labelled(result: Labels, units: Optional[Sequence[int]], min_iou: float) -> List[Tuple[int, str]]:
    """``(unit, concept)`` pairs to check: a dissection's labels at ``min_iou``, or given ``{unit: concept}``
    (e.g. open-vocabulary labels mapped to concepts)."""
    if isinstance(result, Mapping):
        return [(int(u), c) for u, c in result.items() if units is None or u in units]
    labels = result.labels(min_iou) if units is None else [result.label(u) for u in units]
    return [(lab.unit, lab.concept) for lab in labels if lab.iou >= min_iou]


def generator_label_checks(probe: GeneratorProbe, z: Tensor, units: Optional[Sequence[int]] = None,
                           min_iou: float = LABEL_MIN_IOU, labels: Optional[Mapping[int, str]] = None
                           ) -> Dict[int, LabelCheck]:
    """Switch each labelled unit of ``probe``'s layer off alone over latents ``z`` and measure its concept's area
    (``labels``: check these ``{unit: concept}`` instead of the probe's dissection labels)."""
    out: Dict[int, LabelCheck] = {}
    base: Dict[str, float] = {}
    for unit, concept in _labelled(probe.result if labels is None else labels, units, min_iou):
        if concept not in base:
            base[concept] = float(probe.area(concept, z).mean())
        after = float(probe.area(concept, z, Ablate([unit])).mean())
        out[unit] = LabelCheck(unit, concept, "area", base[concept], after, len(z))
    return out


@torch.no_grad()
def classifier_label_checks(model: nn.Module, layer: str, result: Labels, x: Tensor, labels: Tensor,
                            units: Optional[Sequence[int]] = None, min_iou: float = LABEL_MIN_IOU,
                            min_share: float = 0.01, max_images: int = 64,
                            concept_names: Optional[Sequence[str]] = None) -> Dict[int, LabelCheck]:
    """Switch each labelled unit of ``layer`` off alone and measure the predicted class's probability over the
    images ``x`` (model input) whose label maps ``labels`` (N, H, W) show the unit's concept.  ``result``: a
    dissection (its labels at ``min_iou``) or ``{unit: concept}`` with ``concept_names`` naming the label values."""
    names = list(result.concept_names if isinstance(result, DissectionResult) else concept_names or [])
    if not names:
        raise ValueError("checking {unit: concept} labels needs concept_names= (the concepts of the label maps)")
    if len(x) != len(labels):
        raise ValueError(f"{len(x)} images but {len(labels)} label maps")
    probs = predict(model, x)
    out: Dict[int, LabelCheck] = {}
    for unit, concept in _labelled(result, units, min_iou):
        if concept not in names:
            raise ValueError(f"unit {unit} is labelled {concept!r}, which the label maps do not have; concepts: "
                             f"{', '.join(names)}")
        k = names.index(concept)
        shows = ((labels == k).float().mean((1, 2)) >= min_share).nonzero().flatten()[:max_images]
        if len(shows) == 0:
            out[unit] = LabelCheck(unit, concept, "p(class)", 0.0, 0.0, 0)
            continue
        out[unit] = class_check(model, layer, x[shows], unit, concept, probs[shows])
    return out


@torch.no_grad()
def class_check(model: nn.Module, layer: str, x: Tensor, unit: int, label: str,
                probs: Optional[Tensor] = None) -> LabelCheck:
    """Switch ``unit`` off over images ``x`` (model input) and measure each image's predicted class's probability
    (``probs``: the intact model's class probabilities of ``x``, when already computed)."""
    probs = predict(model, x) if probs is None else probs
    top = probs.argmax(1)
    rows = torch.arange(len(x))
    after = predict(model, x, layer, Ablate([int(unit)]))[rows, top]
    return LabelCheck(int(unit), label, "p(class)", float(probs[rows, top].mean()), float(after.mean()), len(x))


def summary(checks: Dict[int, LabelCheck], min_drop: float = MIN_DROP) -> str:
    """One line: how many labels the checks confirm."""
    n = len(checks)
    ok = sum(c.confirmed(min_drop) for c in checks.values())
    return f"{ok} of {n} labels confirmed: switching the unit off lowers what it is labelled for by >= {min_drop:.0%}"
