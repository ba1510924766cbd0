"""GAN Paint core and causal experiments on a hand-made generator whose behaviour is known exactly."""
import numpy as np
import pytest
import torch

import ganviz
from ganviz.generator_units import GeneratorProbe
from ganviz.paint import Painter, Stroke, brush_mask
from ganviz.trace import LayerNotFoundError, count_hooks

from _factories import SceneGenerator, scene_dissection, scene_segmenter

DOOR, WALL, SKY = 0, 1, 2  # units of SceneGenerator.layer1


@pytest.fixture(scope="module")
def gen():
    return SceneGenerator()


@pytest.fixture(scope="module")
def result(gen):
    return scene_dissection(gen)


def _z(z0=-1.0, z1=0.0, z2=0.0):
    return torch.tensor([[z0, z1, z2]])


def test_the_dissection_finds_the_units(result):
    assert result.units_for("door")[0] == DOOR
    assert result.units_for("wall")[0] == WALL
    assert result.units_for("sky")[0] == SKY


def test_brush_mask_covers_the_stroke_without_gaps():
    m = brush_mask([(2, 16), (30, 16)], radius=2, size=(32, 32))
    assert m[16, 2:30].all()                      # the whole segment, not just the two end points
    assert not m[:12].any() and not m[21:].any()  # nothing beyond the radius
    assert brush_mask([], 3, (8, 8)).sum() == 0
    with pytest.raises(ValueError, match="radius"):
        brush_mask([(1, 1)], 0, (8, 8))


def test_draw_puts_the_concept_inside_the_stroke_only(gen, result):
    p = Painter(gen, "layer1", result, _z())
    before = p.original()
    assert (before[..., 0] == 0).all()                      # no door as generated
    p.paint("door", [(2, 4), (12, 4)], strength=1, radius=3)   # on the wall (left half), top rows
    after = p.image()
    door = after[..., 0] > 127
    assert door[:8, :16].sum() > 20                           # a door appeared under the stroke
    assert not door[12:].any() and not door[:, 16:].any()     # and nowhere else
    assert count_hooks(gen) == 0


def test_the_generator_decides_where_a_door_can_go(gen, result):
    p = Painter(gen, "layer1", result, _z())
    p.paint("door", [(20, 16), (30, 16)], strength=1, radius=3)  # in the sky (right half)
    assert (p.image()[..., 0] == 0).all()


def test_remove_erases_the_concept_and_strokes_composite(gen, result):
    p = Painter(gen, "layer1", result, _z())
    p.paint("wall", [(4, 4)], mode="remove", strength=1, radius=3)
    img = p.image()
    assert img[4, 4, 1] == 0 and img[28, 4, 1] == 255
    # two strokes of one concept and mode equal one stroke over the union of their masks
    a, b = brush_mask([(4, 4)], 3, (32, 32)), brush_mask([(8, 20)], 3, (32, 32))
    two = p.image([Stroke("door", "draw", 1, a), Stroke("door", "draw", 1, b)])
    one = p.image([Stroke("door", "draw", 1, np.maximum(a, b))])
    assert np.array_equal(two, one)


def test_undo_redo_reset_and_new_latent(gen, result):
    p = Painter(gen, "layer1", result, _z())
    original = p.image()
    p.paint("door", [(4, 4)], strength=1)
    one = p.image()
    p.paint("wall", [(4, 28)], mode="remove", strength=1)
    assert not np.array_equal(p.image(), one)
    assert p.undo() and np.array_equal(p.image(), one)
    assert p.redo() and len(p.strokes) == 2
    p.reset()
    assert np.array_equal(p.image(), original) and not p.undo()
    p.paint("door", [(4, 4)], strength=1)
    p.set_latent(_z(z0=2.0))
    assert p.strokes == [] and p.original()[..., 0].max() == 255  # this latent has a door everywhere on the wall


def test_painter_errors_say_what_was_expected(gen, result):
    with pytest.raises(LayerNotFoundError):
        Painter(gen, "layer9", result, _z())
    with pytest.raises(ValueError, match="one latent"):
        Painter(gen, "layer1", result, torch.zeros(2, 3))
    p = Painter(gen, "layer1", result, _z())
    with pytest.raises(KeyError, match="no concept 'dragon'"):
        p.paint("dragon", [(1, 1)])
    with pytest.raises(KeyError, match="no strength 'huge'"):
        p.paint("door", [(1, 1)], strength="huge")
    with pytest.raises(ValueError, match="mode"):
        p.paint("door", [(1, 1)], mode="erase")
    assert p.strokes == [] and count_hooks(gen) == 0


def test_probe_measures_removal_ranking_and_insertion(gen, result):
    probe = GeneratorProbe(gen, "layer1", scene_segmenter, result)
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    effect = probe.ablation_effect("wall", [WALL], z)
    assert effect.before.mean() > 0.3 and effect.drop == pytest.approx(1.0)
    assert effect.removed_from(0.01) == 1.0
    ranking = probe.rank_by_effect("wall", z, candidates=[DOOR, WALL, SKY])
    assert ranking[0] == (WALL, pytest.approx(1.0))
    # only the samples that show the concept are generated again for each candidate
    mixed = torch.cat([_z(-1.0).repeat(4, 1), _z(2.0).repeat(4, 1)])
    assert (probe.area("door", mixed) > 0).tolist() == [False] * 4 + [True] * 4
    rows, generate = [], probe.generate
    probe.generate = lambda z, edit=None: rows.append(len(z)) or generate(z, edit)
    try:
        doors = probe.rank_by_effect("door", mixed, candidates=[DOOR, WALL, SKY])
    finally:
        del probe.generate
    assert sum(rows) == 8 + 4 * 3 and doors[0] == (DOOR, pytest.approx(1.0))
    m = probe.insertion_map("door", _z(), units=[DOOR], level_quantile=0.99, cells=1)
    assert m.added.shape == (1, 8, 8)
    assert m.rate_in("wall") == 1.0 and m.trials_in("wall") == 32
    assert m.rate_in("sky") == 0.0 and m.trials_in("sky") == 32
    assert count_hooks(gen) == 0


def test_probe_experiments_are_cached_by_what_they_depend_on(gen, result, tmp_path):
    probe = GeneratorProbe(gen, "layer1", scene_segmenter, result, cache_dir=tmp_path)
    z = torch.cat([_z(-1.0).repeat(3, 1), _z(2.0).repeat(3, 1)])
    runs = [probe.rank_by_effect("door", z, candidates=[DOOR, WALL]), probe.ablation_effect("wall", [WALL], z),
            probe.insertion_map("door", z[:2], units=[DOOR], cells=2)]
    rows, generate = [], probe.generate
    probe.generate = lambda z, edit=None: rows.append(len(z)) or generate(z, edit)
    again = [probe.rank_by_effect("door", z, candidates=[DOOR, WALL]), probe.ablation_effect("wall", [WALL], z),
             probe.insertion_map("door", z[:2], units=[DOOR], cells=2)]
    assert rows == []  # all three from the cache
    assert again[0] == runs[0] and again[0][0] == (DOOR, pytest.approx(1.0))
    assert np.array_equal(again[1].after, runs[1].after) and again[1].drop == pytest.approx(1.0)
    assert np.array_equal(again[2].added, runs[2].added) and again[2].rate_in("wall") == runs[2].rate_in("wall")
    probe.ablation_effect("wall", [WALL], z[:4])   # other latents, other units: computed
    probe.rank_by_effect("door", z, candidates=[DOOR])
    assert sum(rows) == 4 + 4 + 6 + 3 and len(list(tmp_path.rglob("*.npz"))) == 5
    del probe.generate


@pytest.mark.bundled
def test_folded_strokes_equal_the_composed_edits_and_redraws_stay_flat():
    import time

    from ganviz.trace import Trace

    generator, _ = ganviz.load("toy-gan")
    result = ganviz.zoo.dissection("toy-gan", "layer4", generator, progress=False)
    painter = Painter(generator, "layer4", result, torch.randn(1, 128, generator=torch.Generator().manual_seed(4)))
    concepts = painter.concepts()
    times = []
    for i in range(60):
        painter.paint(concepts[i % len(concepts)], [(i % 50, 10 + i % 40), (10 + i % 50, 20 + i % 40)],
                      mode="remove" if i % 3 == 0 else "draw", strength="high", radius=5)
        t = time.perf_counter()
        painter.image()
        times.append(time.perf_counter() - t)
    with torch.no_grad(), Trace(generator, [], edit={"layer4": painter.edit()}) as tr:
        composed = tr.run(painter.z)
    assert (painter.generate() - composed).abs().max() <= 1e-5
    assert np.median(times[-10:]) < 2 * np.median(times[:10]) + 0.005  # redraw cost does not grow with strokes
    painter.undo()
    with torch.no_grad(), Trace(generator, [], edit={"layer4": painter.edit()}) as tr:
        assert (painter.generate() - tr.run(painter.z)).abs().max() <= 1e-5  # after an undo, folded again
