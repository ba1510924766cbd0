"""Causal checks of labels on hand-built models where the answer is known: a unit that draws (or carries) its
concept is confirmed, a unit that only correlates with it is not."""
import torch
from torch import nn

import ganviz
from ganviz.generator_units import GeneratorProbe
from ganviz.label_checks import classifier_label_checks, generator_label_checks, summary
from ganviz.widgets import DissectionSummary

NAMES = ["none", "tree", "sky"]


class Halves(nn.Module):
    """Three units on a 4x4 map: 0 on the left half, 1 on the right half, 2 a copy of 0 (brightness from z)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        left = torch.zeros(1, 1, 4, 4)
        left[..., :2] = 1
        scale = 1 + z[:, :1, None, None].abs()
        return torch.cat([left * scale, (1 - left) * scale, left * scale], 1)


class Painter(nn.Module):
    """Draws tree where unit 0 is on and sky where unit 1 is on; unit 2 is never read."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = Halves()
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.feat(z)[:, :2])


def seg(images: torch.Tensor) -> torch.Tensor:
    labels = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.long)
    labels[images[:, 0] > 0.5] = 1
    labels[images[:, 1] > 0.5] = 2
    return labels


def test_generator_checks_confirm_drawing_units_and_not_a_mere_correlate():
    gen = Painter()
    result = ganviz.dissect_generator(gen, "feat", seg, n=16, z_dim=2, quantile=0.4, concept_names=NAMES,
                                      progress=False)
    assert [result.label(u).concept for u in range(3)] == ["tree", "sky", "tree"]  # unit 2 overlaps trees too
    checks = generator_label_checks(GeneratorProbe(gen, "feat", seg, result), torch.randn(8, 2))
    assert checks[0].change == -1.0 and checks[1].change == -1.0 and checks[2].change == 0.0
    assert [checks[u].confirmed() for u in range(3)] == [True, True, False]
    assert checks[0].text() == "tree: area -100% when off" and checks[2].text() == "tree: area +0% when off"
    assert summary(checks).startswith("2 of 3 labels confirmed")
    table = DissectionSummary(result, checks=checks, background=False).table.value
    assert "<th>when off</th>" in table and "tree: area -100% when off" in table


class Reader(nn.Module):
    """Class 1 (tree scene) reads unit 0's mean; unit 1 is never read."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feat(x[:, :2])
        tree = 8 * f[:, 0].mean((1, 2))
        return torch.stack([torch.zeros_like(tree) + 1, tree], 1)


def test_classifier_checks_measure_the_evidence_a_unit_carries():
    x = torch.zeros(6, 3, 8, 8)
    x[:, 0, :, :4] = 1  # trees on the left: unit 0 (read by the class) and unit 1 (ignored) both show them
    x[:, 1, :, :4] = 1
    labels = (x[:, 0] > 0.5).long()  # 1: tree
    result = ganviz.dissect_classifier(Reader(), "feat", ganviz.TensorSource(x, labels), quantile=0.4,
                                       concept_names=NAMES, preprocess=lambda t: t, progress=False)
    assert [result.label(u).concept for u in range(2)] == ["tree", "tree"]
    checks = classifier_label_checks(Reader(), "feat", result, x, labels)
    assert checks[0].confirmed() and not checks[1].confirmed()
    assert checks[0].measure == "p(class)" and checks[0].samples == 6 and checks[1].change == 0.0
