"""Concept directions (ganviz.directions): planted directions are recovered by the probes, Net2Vec from
segmentations and CAV from example sets, and the result works as a basis."""
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganviz.basis import with_basis
from ganviz.dissect import GeneratorSource, TensorSource
from ganviz.directions import (cav_directions, cav_directions_from_labels, concept_maps, fit_linear_probes,
                               net2vec_directions)
from ganviz.edits import Ablate
from ganviz.preprocessing import identity
from ganviz.trace import count_hooks, edited_forward

from _factories import ConceptMaps

K = 4
NAMES = ("a", "b", "c", "d")


pytestmark = pytest.mark.usefixtures("one_thread")


def rotation(seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(seed)))
    return q[:K]  # K orthonormal concept directions in a 6-unit layer


def concept_net(r: torch.Tensor) -> nn.Module:
    """``mix``: units ``x = R^T c`` (6 units, each a mixture of the 4 concepts) plus a small unit-0 offset."""
    mix = nn.Conv2d(K, 6, 1)
    with torch.no_grad():
        mix.weight.copy_(r.T[:, :, None, None])
        mix.bias.copy_(torch.tensor([0.3, 0, 0, 0, 0, 0]))
    return nn.Sequential(OrderedDict(read=ConceptMaps(K), mix=mix, pool=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten())).eval()


def concept_data(n: int = 60, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((n, size, size), -1, dtype=torch.long)
    for i in range(n):
        for j in range(K):
            if torch.rand(1, generator=g) < 0.6:
                y0, x0 = torch.randint(0, size - 5, (2,), generator=g).tolist()
                labels[i, y0:y0 + 6, x0:x0 + 6] = j
    images = torch.zeros(n, 3, size, size)
    images[:, 0] = (labels + 1).float() / (K + 1)
    images[:, 1] = 0.5 + 0.5 * torch.rand(n, size, size, generator=g)
    return images, labels


def cosines(found: torch.Tensor, planted: torch.Tensor) -> torch.Tensor:
    return (F.normalize(found, dim=1) * F.normalize(planted, dim=1)).sum(1)


def test_a_probe_recovers_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    w = F.normalize(torch.randn(2, 8, generator=g), dim=1)
    x = torch.randn(3000, 8, generator=g) * torch.linspace(0.5, 3, 8) + 2  # unequal scales and an offset
    y = (((x - 2) @ w.T) > 0.3).float()
    found, b, acc = fit_linear_probes(x, y)
    assert (cosines(found, w) > 0.95).all() and (acc > 0.95).all()
    with pytest.raises(ValueError, match="no positive or no negative"):
        fit_linear_probes(x, torch.zeros(3000, 1))
    with pytest.raises(ValueError, match="same M"):
        fit_linear_probes(x, y[:10])


def test_net2vec_recovers_the_concept_directions_of_a_mixed_layer():
    r = rotation()
    model, (images, labels) = concept_net(r), concept_data()
    basis = net2vec_directions(model, "mix", TensorSource(images, labels, concept_names=NAMES),
                               preprocess=identity, progress=False)
    assert basis.names == NAMES and basis.n_features == K and basis.width == 6
    assert (cosines(basis.directions, r) > 0.9).all(), cosines(basis.directions, r)
    assert min(basis.scores.values()) > 0.9
    only = net2vec_directions(model, "mix", TensorSource(images, labels, concept_names=NAMES), concepts=["c"],
                              preprocess=identity, progress=False)
    assert only.names == ("c",) and float(cosines(only.directions, r[2:3])) > 0.9


def test_directions_work_as_a_basis():
    r = rotation()
    model, (images, labels) = concept_net(r), concept_data()
    basis = net2vec_directions(model, "mix", TensorSource(images, labels, concept_names=NAMES),
                               preprocess=identity, progress=False)
    x = images[(labels == 1).flatten(1).any(1)][:6]  # images that show concept b
    with torch.no_grad(), with_basis(model, "mix", basis) as view:
        y0 = model(x)
        assert torch.equal(model(x), y0)
        removed = edited_forward(model, x, {view.layer: Ablate([1])})
    assert count_hooks(model) == 0 and type(model.mix) is nn.Conv2d
    change = removed - y0  # the pooled change lies along b's dual vector: the least change that removes b
    assert float(cosines(change, basis.dual[1:2].expand_as(change)).abs().min()) > 0.99


def test_cav_recovers_a_planted_direction_from_example_sets():
    g = torch.Generator().manual_seed(1)
    w = F.normalize(torch.randn(8, generator=g), dim=0)
    model = nn.Sequential(OrderedDict(feat=nn.Identity(), flat=nn.Flatten())).eval()
    # overlapping sets (a separable pair has many separating directions); 5 x 5 maps (a last axis of 4 would read
    # as channels-last)
    without = torch.randn(400, 8, 1, 1, generator=g).expand(-1, -1, 5, 5)
    with_ = torch.randn(400, 8, 1, 1, generator=g).expand(-1, -1, 5, 5) + 1.5 * w[None, :, None, None]
    basis = cav_directions(model, "feat", {"planted": (with_, without)}, preprocess=identity)
    assert basis.names == ("planted",) and float(cosines(basis.directions, w[None])) > 0.9
    assert basis.scores["planted"] > 0.7
    with pytest.raises(ValueError, match="must be a pair"):
        cav_directions(model, "feat", {"x": (with_,)}, preprocess=identity)
    with pytest.raises(ValueError, match="empty"):
        cav_directions(model, "feat", {}, preprocess=identity)


def test_cav_from_labels_points_along_the_concepts():
    r = rotation()
    model, (images, labels) = concept_net(r), concept_data(120)
    source = TensorSource(images, labels, concept_names=NAMES)
    basis = cav_directions_from_labels(model, "mix", source, preprocess=identity, min_share=0.05, min_examples=5,
                                       progress=False)
    assert set(basis.names) <= set(NAMES) and len(basis.names) >= 3
    rows = torch.stack([r[NAMES.index(n)] for n in basis.names])
    assert (cosines(basis.directions, rows) > 0.7).all(), cosines(basis.directions, rows)


def test_concept_maps_and_bad_input():
    model, (images, labels) = concept_net(rotation()), concept_data(8)
    acts, shares = concept_maps(model, "mix", TensorSource(images, labels, concept_names=NAMES),
                                preprocess=identity, progress=False)
    assert acts.shape == (8, 6, 16, 16) and shares.shape == (8, K, 16, 16)
    assert torch.allclose(shares.sum(1), (labels >= 0).float())
    with pytest.raises(KeyError, match="unknown concepts 'zebra'"):
        net2vec_directions(model, "mix", TensorSource(images, labels, concept_names=NAMES), concepts=["zebra"],
                           preprocess=identity, progress=False)
    with pytest.raises(ValueError, match="needs segmenter="):
        net2vec_directions(nn.Sequential(OrderedDict(fc=nn.Linear(4, 4))), "fc", GeneratorSource(4, 4),
                           progress=False)
    with pytest.raises(ValueError, match="carries no labels"):
        net2vec_directions(model, "mix", TensorSource(images), concept_names=NAMES, preprocess=identity,
                           progress=False)
    assert math.isfinite(float(acts.sum()))
