"""GAN Dissection's findings reproduced on the bundled toy GAN, measured with the bundled segmenter.

Units are ranked on one set of latents and evaluated on another (200 samples each), so the numbers are not fitted
to the samples they are measured on.  The same experiments run in examples/03 and 04.
"""
import pytest
import torch

import ganviz
from ganviz.generator_units import GeneratorProbe
from ganviz.zoo.evaluate import WATERMARK_MIN_SHARE

pytestmark = [pytest.mark.bundled, pytest.mark.slow]

LAYER = "layer4"
TREE_UNITS = 25       # units turned off to remove trees (of the 60 with the highest IoU, ranked by effect)
WATERMARK_UNITS = 50  # units turned off to remove the banner (of 100 candidates: the banner is drawn by many)
DOOR_UNITS = 20       # GAN Dissection's insertion: the top-20 door units at their 0.995-quantile level
DOOR_CELLS = 3        # ... switched on in a 3x3 block of layer4 (24x24 image pixels)


@pytest.fixture(scope="module")
def probe():
    generator, _ = ganviz.load("toy-gan")
    segmenter, _ = ganviz.load("toy-segmenter")
    result = ganviz.zoo.dissection("toy-gan", LAYER, generator, progress=False)
    return GeneratorProbe(generator, LAYER, segmenter, result)


def latents(n, seed):
    return torch.randn(n, 128, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def z_rank():
    return latents(100, 1001)


@pytest.fixture(scope="module")
def z_eval():
    return latents(200, 2002)


def test_turning_off_tree_units_removes_trees(probe, z_rank, z_eval):
    units = [u for u, _ in probe.rank_by_effect("tree", z_rank, n_candidates=60)[:TREE_UNITS]]
    effect = probe.ablation_effect("tree", units, z_eval)
    assert effect.before.mean() > 0.02, "too few trees generated to measure"
    assert effect.drop >= 0.70, f"tree area dropped by {effect.drop:.0%} with {len(units)} units off"


def test_turning_off_watermark_units_removes_the_banner(probe, z_rank, z_eval):
    units = [u for u, _ in probe.rank_by_effect("watermark", z_rank, n_candidates=100)[:WATERMARK_UNITS]]
    effect = probe.ablation_effect("watermark", units, z_eval)
    had = int((effect.before >= WATERMARK_MIN_SHARE).sum())
    assert had >= 20, f"only {had} of {len(z_eval)} samples carry the banner"
    gone = effect.removed_from(WATERMARK_MIN_SHARE)
    assert gone >= 0.80, f"the banner vanished from {gone:.0%} of the {had} samples that had it"


def test_doors_appear_in_walls_not_in_the_sky(probe, z_eval):
    m = probe.insertion_map("door", z_eval, n_units=DOOR_UNITS, level_quantile=0.995, cells=DOOR_CELLS)
    wall, sky = m.rate_in("wall"), m.rate_in("sky")
    assert m.trials_in("wall") >= 100 and m.trials_in("sky") >= 100
    assert wall >= 0.60, f"door units set in a wall added a door in {wall:.0%} of {m.trials_in('wall')} trials"
    assert sky <= 0.5 * wall, f"in the sky they did in {sky:.0%} (walls: {wall:.0%})"
