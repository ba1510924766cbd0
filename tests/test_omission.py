"""Distribution-level omissions: concept statistics of generated versus real images."""
import numpy as np
import pytest
import torch

import ganviz
from ganviz.omission import compare, generated_statistics, label_statistics, segment_statistics

NAMES = ("sky", "grass", "door")


def test_label_statistics_counts_areas_and_presence():
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, 2:] = 1            # image 0: half grass
    labels[1, 0, :3] = 2         # image 1: 3 door pixels (below the 4 that count as present)
    s = label_statistics(labels, NAMES)
    assert np.allclose(s.per_image, [[0.5, 0.5, 0], [13 / 16, 0, 3 / 16]])
    assert np.allclose(s.area, [(0.5 + 13 / 16) / 2, 0.25, 3 / 32]) and np.allclose(s.presence, [1, 0.5, 0])
    with pytest.raises(ValueError, match="0..2"):
        label_statistics(labels + 1, NAMES)
    with pytest.raises(ValueError, match="N >= 1"):
        label_statistics(torch.zeros(0, 4, 4), NAMES)


def test_report_names_what_is_missing():
    real = torch.zeros(10, 8, 8, dtype=torch.long)
    real[:, :2] = 2                      # every real image has a door band (25%)
    real[:, 4:] = 1
    fake = real.clone()
    fake[:5, :2] = 0                     # half the generated images lack it
    report = compare(label_statistics(fake, NAMES), label_statistics(real, NAMES))
    assert report.relative_area()["door"] == pytest.approx(-0.5)
    assert report.under_produced() == ["door"] and report.over_produced() == ["sky"]
    assert report.frechet > 0 and compare(report.real, report.real).frechet == pytest.approx(0, abs=1e-6)
    assert "under-produced (area < -35%): door" in report.summary()
    assert report.plot().axes[0].get_xticklabels()[0].get_text() == "door"
    assert report.plot()._repr_png_().startswith(b"\x89PNG")  # a picture in a notebook, not "<Figure size ...>"
    with pytest.raises(ValueError, match="different concept names"):
        compare(label_statistics(fake, NAMES), label_statistics(real, ("a", "b", "c")))


def test_statistics_are_loaded_from_the_cache_when_nothing_changed(tmp_path):
    class RedIsSky(torch.nn.Module):
        def forward(self, x):
            return (x[:, 0] > 0).long()

    calls = []
    segmenter = RedIsSky()
    segmenter.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))   # counts; not part of the key
    gen = torch.nn.Sequential(torch.nn.Linear(4, 3 * 8 * 8), torch.nn.Unflatten(1, (3, 8, 8)))
    first = generated_statistics(gen, segmenter, NAMES, n=10, z_dim=4, seed=1, cache_dir=tmp_path)
    again = generated_statistics(gen, segmenter, NAMES, n=10, z_dim=4, seed=1, cache_dir=tmp_path)
    assert len(calls) == 1 and np.array_equal(again.per_image, first.per_image)
    assert np.array_equal(again.presence_per_image, first.presence_per_image) and again.concept_names == NAMES
    generated_statistics(gen, segmenter, NAMES, n=10, z_dim=4, seed=2, cache_dir=tmp_path)   # other latents
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real = segment_statistics(images, segmenter, NAMES, cache_dir=tmp_path)
    assert np.array_equal(segment_statistics(images, segmenter, NAMES, cache_dir=tmp_path).per_image, real.per_image)
    segment_statistics(-images, segmenter, NAMES, cache_dir=tmp_path)                       # other pixels
    assert len(calls) == 4 and len(list(tmp_path.glob("*.npz"))) == 4


@pytest.mark.bundled
def test_the_bundled_gan_under_produces_small_building_parts():
    """The toy GAN draws houses, but too little of their roofs and doors (both about half the real area)."""
    from ganviz.zoo.evaluate import held_out

    generator, _ = ganviz.load("toy-gan")
    segmenter, _ = ganviz.load("toy-segmenter")
    fake = generated_statistics(generator, segmenter, ganviz.CONCEPTS, n=400, seed=3)
    real_images, _, _ = held_out(400, seed=4)
    real = segment_statistics(real_images, segmenter, ganviz.CONCEPTS)
    report = compare(fake, real)
    assert {"roof", "door"} <= set(report.under_produced(threshold=0.35)), report.relative_area()
    assert report.generated.n == report.real.n == 400
    assert abs(report.relative_area()["sky"]) < 0.2   # the big concepts match


def test_missing_concepts_names_what_the_reconstruction_lost():
    from ganviz.omission import missing_concepts

    def seg(images):                      # red channel > 0: door (2), green > 0: grass (1), else sky (0)
        labels = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.long)
        labels[images[:, 1] > 0] = 1
        labels[images[:, 0] > 0] = 2
        return labels

    target = -torch.ones(3, 8, 8)
    target[1, 4:] = 1                     # grass in the bottom half
    target[0, 2:4, 2:4] = 1               # a 4-pixel door
    recon = target.clone()
    recon[0] = -1                         # the reconstruction lost the door, kept the grass
    assert missing_concepts(seg, target, recon, NAMES) == ["door"]
    assert missing_concepts(seg, target, target, NAMES) == []
