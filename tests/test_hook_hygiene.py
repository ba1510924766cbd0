"""Every public entry point that hooks a model leaves no hook behind: normally, with an unknown layer, with a
module that raises, and with a KeyboardInterrupt inside the forward pass."""
import pytest
import torch
from torch import nn

import numpy as np

from ganviz import ablation
from ganviz.generator_units import GeneratorProbe
from ganviz.dissect import DissectionResult
from ganviz.paint import Painter, Stroke
from ganviz.dissect import TensorSource
from ganviz.gradcam import gradcam
from ganviz.trace import LayerNotFoundError, count_hooks
from ganviz.unitviz import images_and_maps
from ganviz.zoo.evaluate import classifier_features

from _factories import Bomb


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Bomb(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def fake_dissection(layer: str, units: int = 4) -> DissectionResult:
    """A dissection of ``layer`` with made-up numbers (enough for painting and probing)."""
    rng = np.random.default_rng(0)
    z = np.zeros(units)
    return DissectionResult(
        layer=layer, model_kind="generator", concept_names=("a", "b"), quantile=0.99, thresholds=z,
        quantile_levels=np.linspace(0, 1, 5), quantile_values=np.ones((units, 5)), iou=rng.random((units, 2)),
        intersection=np.zeros((units, 2)), unit_area=z, concept_area=np.zeros(2), topk_values=np.zeros((units, 1)),
        topk_indices=np.zeros((units, 1), int), num_images=1, pixels=64, activation_size=(8, 8), label_size=(8, 8))


def segment_nothing(y):
    return torch.zeros(len(y), 2, 2, dtype=torch.long)


X = torch.rand(4, 3, 8, 8)
ENTRY_POINTS = {
    "painter": lambda m, layer: Painter(m, layer, fake_dissection(layer), X[:1]).generate(
        [Stroke("a", "draw", 2, np.ones((8, 8), np.float32))]),
    "probe_ablation": lambda m, layer: GeneratorProbe(m, layer, segment_nothing, fake_dissection(layer))
    .ablation_effect("a", [0], X),
    "probe_insertion": lambda m, layer: GeneratorProbe(m, layer, segment_nothing, fake_dissection(layer))
    .insertion_map("a", X[:1], units=[0], cells=4),
    "predict": lambda m, layer: ablation.predict(m, X, layer, ablation.unit_scales({0: 0.0})),
    "single_unit_effects": lambda m, layer: ablation.single_unit_effects(m, layer, X[:2], 0),
    "find_flip": lambda m, layer: ablation.find_flip(m, layer, X[:1], max_units=2),
    "sparsity_curve": lambda m, layer: ablation.sparsity_curve(m, layer, X, torch.tensor([0, 1, 2, 0]), 0, 3,
                                                               max_units=1),
    "gradcam": lambda m, layer: gradcam(m, X, layer),
    "classifier_features": lambda m, layer: classifier_features(m, X, layer),
    "images_and_maps": lambda m, layer: images_and_maps(m, layer, TensorSource(X), [0, 1], [0]),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("case", ["normal", "unknown layer", "raises", "interrupt"])
def test_no_hook_left(entry, case):
    model = tiny()
    layer = "3"
    run = ENTRY_POINTS[entry]
    if case == "normal":
        run(model, layer)
    elif case == "unknown layer":
        with pytest.raises(LayerNotFoundError):
            run(model, "33")
    else:
        model[2].error = RuntimeError("boom") if case == "raises" else KeyboardInterrupt()
        with pytest.raises(RuntimeError if case == "raises" else KeyboardInterrupt):
            run(model, layer)
    assert count_hooks(model) == 0
