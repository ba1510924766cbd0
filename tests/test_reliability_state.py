"""The user's model is exactly as before after any ganviz call: parameters, buffers, requires_grad, train/eval."""
from __future__ import annotations

import pytest
import torch

import ganviz
from ganviz.generator_units import GeneratorProbe
from ganviz.inversion import finetune, invert, reconstruct
from ganviz.omission import generated_statistics, missing_concepts, segment_statistics
from ganviz.paint import Painter, brush_mask
from _factories import generator, segmenter


def _snapshot(*models):
    return [({k: v.detach().clone() for k, v in m.state_dict().items()},
             [p.requires_grad for p in m.parameters()], [x.training for x in m.modules()]) for m in models]


def _assert_same(models, snap):
    for m, (state, grads, modes) in zip(models, snap):
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[k]), f"{type(m).__name__}.{k} changed"
        assert [p.requires_grad for p in m.parameters()] == grads
        assert [x.training for x in m.modules()] == modes


@pytest.fixture(scope="module")
def gan():
    gen, seg = generator(), segmenter()
    return gen, ganviz.dissect_generator(gen, "layer4", seg, n=8, progress=False), seg


def _calls(gen, result, seg):
    z = torch.randn(4, 128, generator=torch.Generator().manual_seed(0))
    probe = GeneratorProbe(gen, result.layer, seg, result)
    concept = result.concept_names[0]
    target = torch.rand(1, 3, 64, 64) * 2 - 1
    inv = invert(gen, target, z_dim=128, steps=2, layer=result.layer, layer_steps=2)
    return {
        "painter": lambda: Painter(gen, result.layer, result, z[:1]).image(),
        "probe.area": lambda: probe.area(concept, z),
        "probe.ablation_effect": lambda: probe.ablation_effect(concept, [0, 1], z),
        "probe.insertion_map": lambda: probe.insertion_map(concept, z[:1], units=[0], cells=1),
        "invert": lambda: invert(gen, target, z_dim=128, steps=2, layer=result.layer, layer_steps=2),
        "reconstruct": lambda: reconstruct(gen, inv),
        "finetune": lambda: finetune(gen, inv, steps=2),
        "generated_statistics": lambda: generated_statistics(gen, seg, result.concept_names, n=4, z_dim=128),
        "segment_statistics": lambda: segment_statistics(target, seg, result.concept_names),
        "missing_concepts": lambda: missing_concepts(seg, target[0], target[0], result.concept_names),
    }


CASES = ["painter", "probe.area", "probe.ablation_effect", "probe.insertion_map", "invert", "reconstruct",
         "finetune", "generated_statistics", "segment_statistics", "missing_concepts"]


@pytest.mark.parametrize("case", CASES)
def test_a_model_in_train_mode_is_unchanged(gan, case):
    gen, result, seg = gan
    models = [gen] + ([seg] if isinstance(seg, torch.nn.Module) else [])
    for m in models:
        m.train()
    try:
        call = _calls(gen, result, seg)[case]
        snap = _snapshot(*models)
        call()
        _assert_same(models, snap)
        assert ganviz.count_hooks(gen) == 0
    finally:
        for m in models:
            m.eval()


@pytest.mark.parametrize("points, radius, match", [
    ([(0, 0), (float("nan"), 3)], 4, "finite"),
    ([(0, 0), (1, 1)], float("inf"), "radius"),
    ([(0, 0), (1, 1)], -2, "radius"),
    ([(i % 64, i % 7) for i in range(100_001)], 3, "at most"),
])
def test_bad_strokes_get_clear_errors(points, radius, match):
    with pytest.raises(ValueError, match=match):
        brush_mask(points, radius, (64, 64))


def test_a_stroke_far_outside_the_image_costs_nothing():
    mask = brush_mask([(0, 10), (1e9, 10)], 3, (64, 64))
    assert mask[10].all() and mask.sum() < 64 * 8


def test_painter_refuses_a_latent_of_the_wrong_size_or_with_nans(gan):
    gen, result, _ = gan
    painter = Painter(gen, result.layer, result, torch.zeros(1, 128))
    with pytest.raises(ValueError, match="shape"):
        painter.set_latent(torch.zeros(1, 64))
    with pytest.raises(ValueError, match="NaN"):
        painter.set_latent(torch.full((1, 128), float("nan")))


def test_two_overlapping_inversions_leave_requires_grad_as_it_was(gan):
    import threading

    gen, result, _ = gan
    flags = [p.requires_grad for p in gen.parameters()]
    target = torch.rand(1, 3, 64, 64) * 2 - 1
    errors = []

    def run():
        try:
            invert(gen, target, z_dim=128, steps=3, layer=result.layer, layer_steps=3)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and [p.requires_grad for p in gen.parameters()] == flags


@pytest.mark.parametrize("layers", [42, [3], [None], 1.5])
def test_a_layer_name_of_the_wrong_type_gets_a_clear_error(gan, layers):
    with pytest.raises(TypeError, match="layer name"):
        ganviz.Trace(gan[0], layers)
    assert ganviz.count_hooks(gan[0]) == 0
