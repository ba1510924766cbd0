"""The toy world: determinism, documented frequencies, labels aligned with pixels, data set access."""
import numpy as np
import pytest
import torch

from ganviz.toyworld import (CONCEPT_FREQUENCY, CONCEPTS, SCENE_CLASSES, ToyWorld, render, render_batch)

C = {n: i for i, n in enumerate(CONCEPTS)}


@pytest.fixture(scope="module")
def world():
    return render_batch(range(3000), seed=5)


def test_same_seed_and_index_render_identical_scenes():
    a, b = render(17, seed=3), render(17, seed=3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.scene_class == b.scene_class
    c = render(18, seed=3)
    d = render(17, seed=4)
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.image, d.image)


def test_shapes_and_sizes():
    s = render(0)
    assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
    assert s.labels.shape == (64, 64) and s.labels.max() < len(CONCEPTS)
    big = render(0, size=128)
    assert big.image.shape == (128, 128, 3) and big.labels.shape == (128, 128)
    assert big.scene_class == s.scene_class
    with pytest.raises(ValueError, match="even number"):
        render(0, size=63)
    with pytest.raises(ValueError, match="watermark_fraction"):
        render(0, watermark_fraction=1.5)


def test_enough_concepts_and_classes():
    assert len(CONCEPTS) >= 14 and len(SCENE_CLASSES) >= 7
    assert set(CONCEPT_FREQUENCY) == set(CONCEPTS)


def test_classes_appear_uniformly(world):
    _, _, classes = world
    shares = np.bincount(classes, minlength=len(SCENE_CLASSES)) / len(classes)
    assert np.all(np.abs(shares - 1 / len(SCENE_CLASSES)) < 0.03), shares


def test_concepts_appear_with_documented_frequencies(world):
    _, labels, _ = world
    for name, freq in CONCEPT_FREQUENCY.items():
        share = (labels == C[name]).any(axis=(1, 2)).mean()
        assert abs(share - freq) < 0.04, (name, share, freq)


def test_small_concepts_decide_classes(world):
    _, labels, classes = world
    has = lambda name: (labels == C[name]).any(axis=(1, 2))  # noqa: E731
    church, house = classes == SCENE_CLASSES.index("church"), classes == SCENE_CLASSES.index("house")
    baseball, soccer = classes == SCENE_CLASSES.index("baseball_field"), classes == SCENE_CLASSES.index("soccer_field")
    assert not has("dome")[house].any()
    # every church has a dome, unless the watermark banner hides it
    assert (has("dome") | has("watermark"))[church].all() and has("dome")[church].mean() > 0.9
    assert has("hat")[baseball].mean() > 0.98 and not has("hat")[soccer].any()
    # the fields share everything else: sand patches and lines appear in both at similar rates
    assert abs(has("sand")[baseball].mean() - has("sand")[soccer].mean()) < 0.1


def test_watermark_fraction_is_settable():
    labels = render_batch(range(400), seed=9, watermark_fraction=0.0)[1]
    assert not (labels == C["watermark"]).any()
    labels = render_batch(range(400), seed=9, watermark_fraction=1.0)[1]
    assert (labels == C["watermark"]).any(axis=(1, 2)).all()


def test_label_maps_align_with_pixels(world):
    images, labels, _ = world
    img = images[:800].astype(np.float32)
    lab = labels[:800]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    sky = lab == C["sky"]
    grass = lab == C["grass"]
    snow = lab == C["snow"]
    water = lab == C["water"]
    # sky is bluish or sunset/overcast-bright; grass is green-dominant; snow is bright; water is blue-dominant
    assert (b[sky] >= r[sky] - 10).mean() > 0.7
    assert (g[grass] > b[grass]).mean() > 0.95 and (g[grass] > r[grass]).mean() > 0.9
    bright = img[snow].mean(-1) > 140
    grey = img[snow].max(-1) - img[snow].min(-1) < 60
    assert (bright & grey).mean() > 0.95
    assert (b[water] > r[water]).mean() > 0.95
    # shifting the label map by a few pixels makes these relations weaker: labels are aligned, not approximate
    shifted = np.roll(lab, 6, axis=1) == C["grass"]
    assert (g[grass] > b[grass]).mean() > (g[shifted] > b[shifted]).mean()


def test_dataset_items():
    ds = ToyWorld(10, seed=2)
    image, labels, cls = ds[3]
    s = render(3, seed=2)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert torch.equal((image * 255).round().byte().permute(1, 2, 0), torch.from_numpy(s.image))
    assert torch.equal(labels, torch.from_numpy(s.labels).long()) and cls == s.scene_class
    assert len(ds) == 10
    with pytest.raises(IndexError, match="out of range"):
        ds[10]
    with pytest.raises(ValueError, match="at least 1"):
        ToyWorld(0)
