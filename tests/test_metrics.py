"""Frechet distance and FID with a pluggable feature extractor."""
import numpy as np
import pytest
import torch
from torch import nn

import ganviz
from ganviz.fid_score import fid
from ganviz.metrics import frechet_distance, layer_features


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20000, 2))
    b = rng.normal(0, 2, (20000, 2)) + [3, 0]
    # |mu|^2 + tr(I + 4I - 2*2I) = 9 + 2
    assert frechet_distance(a, b) == pytest.approx(11.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="equal D"):
        frechet_distance(a, b[:, :1])


class Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x)


def test_layer_features_resize_normalise_and_pool():
    x = torch.rand(5, 3, 8, 8) * 2 - 1
    f = layer_features(Pool(), "conv", size=4, mean=(0, 0, 0), std=(1, 1, 1), batch=2)(x)
    expect = torch.nn.functional.interpolate((x + 1) / 2, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(f, expect.mean((2, 3)), atol=1e-6)
    with pytest.raises(ganviz.LayerNotFoundError):
        layer_features(Pool(), "nope")


def test_fid_takes_any_extractor_and_refuses_bad_images():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(300, 3, 4, 4, generator=g) * 2 - 1
    close = torch.rand(300, 3, 4, 4, generator=g) * 2 - 1
    far = close * 0.3 + 0.5
    means = lambda images: images.mean((2, 3))  # noqa: E731
    assert fid(real, close, means) < fid(real, far, means)
    assert fid(real, far, means) == pytest.approx(frechet_distance(means(real), means(far)))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fid(real[0], close, means)


@pytest.mark.bundled
def test_default_fid_uses_the_bundled_classifier_and_ranks_the_trained_gan_closer():
    from ganviz.zoo.arch import ToyGenerator
    from ganviz.zoo.evaluate import generate, held_out

    real, _, _ = held_out(300, seed=3)
    other, _, _ = held_out(300, seed=4)
    trained, _ = ganviz.load("toy-gan")
    torch.manual_seed(0)
    untrained = ToyGenerator(128).eval()
    f_real = fid(real, other)
    f_trained = fid(real, generate(trained, 300, seed=1))
    f_untrained = fid(real, generate(untrained, 300, seed=1))
    assert f_real < f_trained < f_untrained / 3, (f_real, f_trained, f_untrained)


def test_two_sample_probe_is_at_chance_on_one_distribution_and_sees_a_shift():
    from ganviz.metrics import two_sample_accuracy

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(800, 32, generator=g), torch.randn(800, 32, generator=g)
    assert 0.44 <= two_sample_accuracy(a, b) <= 0.56
    shifted = b.clone()
    shifted[:, 3] += 1.5  # one feature moved by 1.5 standard deviations: the probe finds it on held-out rows
    assert two_sample_accuracy(a, shifted) >= 0.7
    with pytest.raises(ValueError, match="at least 4 samples"):
        two_sample_accuracy(a[:3], b)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        two_sample_accuracy(a, b[:, :5])
