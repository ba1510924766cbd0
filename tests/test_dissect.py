"""Tests for ganviz.dissect: IoU numbers, planted concepts, sources, results, errors, hook hygiene, bundled models."""
from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ganviz
from ganviz import zoo
from ganviz.dissect import (DissectConfig, DissectionResult, GeneratorSource, Task, TensorSource, ToyWorldSource,
                            UnitLabel, dissect_classifier, dissect_generator, run_dissection)
from ganviz.dissect.engine import quantile_table
from ganviz.preprocessing import to_signed
from ganviz.stats import IoUTally, Quantile
from ganviz.toyworld import CONCEPTS
from ganviz.trace import LayerNotFoundError, count_hooks
from ganviz.zoo.arch import ToyGenerator, ToySegmenter, ToyVGG

torch.set_num_threads(1)
QUIET = dict(progress=False)


def _same(x: Tensor) -> Tensor:
    return x


class Pick(nn.Module):
    """Returns chosen input channels: a 'layer' whose output is a known map."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = list(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.channels]


def _map_model(channels: Sequence[int]) -> nn.Module:
    return nn.Sequential(OrderedDict(units=Pick(channels), head=nn.Flatten()))


# ------------------------------------------------------------------------------------------- IoU numbers
def test_iou_hand_computed_same_resolution():
    # unit 0: image 0 holds 0..15, image 1 holds 16..31 (row-major); unit 1 = 31 - unit 0.
    u0 = torch.arange(32, dtype=torch.float32).view(2, 4, 4)
    images = torch.stack([u0, 31 - u0, torch.zeros_like(u0)], 1)  # (2, 3, 4, 4)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[1, 2] = 1
    labels[1, 3] = torch.tensor([1, 1, 2, 2])
    src = TensorSource(images, labels, concept_names=("a", "b", "c"))
    r = dissect_classifier(_map_model([0, 1]), "units", src, quantile=0.75, preprocess=_same, **QUIET)
    # 0.75-quantile of 0..31 (linear interpolation): 23.25.  Unit 0 is active on image 1 rows 2-3 (8 px):
    # concept b has 6 px, all inside -> IoU 6/8; concept c 2 px inside -> 2/8; a: 0.
    # Unit 1 is active on image 0 rows 0-1, all concept a (24 px) -> IoU 8/24.
    np.testing.assert_allclose(r.thresholds, [23.25, 23.25])
    np.testing.assert_array_equal(r.unit_area, [8, 8])
    np.testing.assert_array_equal(r.concept_area, [24, 6, 2])
    np.testing.assert_array_equal(r.intersection, [[0, 6, 2], [8, 0, 0]])
    np.testing.assert_allclose(r.iou, [[0, 0.75, 0.25], [1 / 3, 0, 0]], rtol=1e-6)
    assert r.label(0) == UnitLabel(0, "b", pytest.approx(0.75), (("c", pytest.approx(0.25)), ("a", 0.0)))
    assert r.label(1).concept == "a"
    assert r.activation_size == (4, 4) and r.label_size == (4, 4) and r.pixels == 32 and r.num_images == 2


def test_iou_hand_computed_with_upsampling():
    # One 2x2 unit map [[0, 0], [0, 8]] upsampled bilinearly to 4x4 (align_corners=False): per axis the
    # weights of the second cell are 0, .25, .75, 1, so the map is 8 * outer([0,.25,.75,1], [0,.25,.75,1]).
    # The 0.75-quantile of the raw values {0, 0, 0, 8} is 2: active pixels (> 2) are the bottom-right 2x2
    # (8, 6, 6, 4.5); the pixel (3, 1) with value exactly 2 is not.
    images = torch.zeros(1, 3, 2, 2)
    images[0, 0, 1, 1] = 8.0
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 2:, 2:] = 1
    labels[0, 3, 1] = 1

    class Labels(nn.Module):  # the 'segmenter' returns the fixed 4x4 labels
        def forward(self, x: Tensor) -> Tensor:
            return labels.expand(x.shape[0], 4, 4)

    r = dissect_classifier(_map_model([0]), "units", TensorSource(images), segmenter=Labels(), quantile=0.75,
                           preprocess=_same, concept_names=("ground", "thing"), **QUIET)
    np.testing.assert_allclose(r.thresholds, [2.0])
    np.testing.assert_array_equal(r.unit_area, [4])
    np.testing.assert_array_equal(r.intersection, [[0, 4]])
    np.testing.assert_allclose(r.iou, [[0.0, 4 / 5]])
    assert r.activation_size == (2, 2) and r.label_size == (4, 4)


@pytest.mark.parametrize("shape", [(8, 8, 64, 64), (3, 5, 17, 12), (16, 16, 8, 8), (7, 7, 64, 64), (4, 4, 4, 4)])
def test_sparse_tally_matches_dense_interpolation(shape):
    """The tile-sparse tally (IoUTally.add_upsampled) equals thresholding F.interpolate's full upsampled maps
    (independent path)."""
    h, w, hh, ww = shape
    g = torch.Generator().manual_seed(sum(shape))
    acts = torch.randn(5, 7, h, w, generator=g)
    labels = torch.randint(-1, 6, (5, hh, ww), generator=g)
    thr = torch.quantile(acts.transpose(0, 1).reshape(7, -1), 0.8, dim=1)
    sparse = IoUTally(7, 6)
    sparse.add_upsampled(acts, labels, thr, max_values=500)  # small steps: exercises the chunk loop
    dense = IoUTally(7, 6)
    up = F.interpolate(acts, size=(hh, ww), mode="bilinear", align_corners=False)
    dense.add(up > thr.view(1, -1, 1, 1), labels)
    assert torch.equal(sparse.intersection, dense.intersection)
    assert torch.equal(sparse.unit_area, dense.unit_area)
    assert torch.equal(sparse.concept_area, dense.concept_area)
    assert sparse.pixels == dense.pixels


# ------------------------------------------------------------------------------------------ planted concept
class SkyChannel:
    """Toy-world scenes with a hidden 4th channel holding the sky mask."""

    def __init__(self, n: int) -> None:
        self.inner = ToyWorldSource(n, seed=1)
        self.identity, self.concept_names = "sky-channel " + self.inner.identity, CONCEPTS

    def __len__(self) -> int:
        return len(self.inner)

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        x, labels = self.inner.load(indices)
        return torch.cat([x, (labels == CONCEPTS.index("sky")).float()[:, None]], 1), labels


class Planted(nn.Module):
    """Unit 0 copies the hidden sky channel; unit 1 is deterministic pseudo-noise of the pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.units = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.frac(torch.sin(x[:, :3].sum(1) * 12.9898 + torch.arange(x.shape[-1]) * 78.233) * 43758.5453)
        return self.units(torch.stack([x[:, 3], noise], 1))


def test_planted_sky_unit_is_found():
    src = SkyChannel(48)
    sky_fraction = float(torch.cat([src.load(range(48))[1].flatten()]).eq(0).float().mean())
    # The unit is a binary mask, so any level below the sky's share thresholds it at 0: active = sky.
    q = 1 - sky_fraction - 0.01
    r = dissect_classifier(Planted(), "units", src, quantile=q, preprocess=_same, batch_size=16, **QUIET)
    assert r.label(0).concept == "sky"
    assert r.iou[0, CONCEPTS.index("sky")] > 0.99
    assert r.best_iou[1] < 0.3  # noise matches nothing well
    assert r.units_for("sky")[0] == 0
    assert 0 in r.units_for("sky", labelled_only=True)


# ---------------------------------------------------------------------------------------- engine behaviour
def _classifier() -> ToyVGG:
    torch.manual_seed(0)
    return ToyVGG(8).eval()


def test_activation_cache_and_streaming_agree():
    """Pass 2 from kept activations equals pass 2 recomputing them (and different chunkings do too)."""
    src = ToyWorldSource(40, seed=1)
    kept = dissect_classifier(_classifier(), "conv4_3", src, batch_size=8, chunk_size=16, **QUIET)
    streamed = dissect_classifier(_classifier(), "conv4_3", src, batch_size=8, chunk_size=16,
                                  activation_cache_bytes=0, **QUIET)
    for name in ("thresholds", "iou", "intersection", "unit_area", "topk_values", "topk_indices"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(streamed, name))
    assert kept.topk_indices.shape == (128, 40)  # k capped at the number of images
    vals = kept.topk_values
    assert (np.diff(vals, axis=1) <= 0).all()


def test_run_dissection_with_a_config_equals_the_entry_point():
    src = ToyWorldSource(12, seed=2)
    config = DissectConfig(batch_size=4, chunk_size=8, k=5, quantile=0.95, progress=False)
    a = run_dissection(Task(_classifier(), "conv4_3", "classifier", src, preprocess=to_signed), config)
    b = dissect_classifier(_classifier(), "conv4_3", src, batch_size=4, chunk_size=8, k=5, quantile=0.95, **QUIET)
    for name in ("thresholds", "quantile_values", "iou", "intersection", "topk_values", "topk_indices"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.params == b.params == config.key_params(12) and config.chunk == 8


def test_topk_is_spatial_max_ranking():
    torch.manual_seed(1)
    images = torch.rand(12, 3, 4, 4)
    r = dissect_classifier(_map_model([0, 2]), "units", TensorSource(images, torch.zeros(12, 4, 4, dtype=torch.long),
                                                                    concept_names=["x"]),
                           k=5, preprocess=_same, batch_size=5, **QUIET)
    maxes = images[:, [0, 2]].amax((2, 3)).t()  # [C, N]
    expect = maxes.argsort(dim=1, descending=True)[:, :5].numpy()
    np.testing.assert_array_equal(r.topk_indices, expect)
    np.testing.assert_allclose(r.topk_values, maxes.sort(dim=1, descending=True).values[:, :5].numpy())


def test_quantile_table_matches_the_sketch():
    g = torch.Generator().manual_seed(0)
    q = Quantile(64)
    for _ in range(7):
        q.add(torch.randn(300, 5, generator=g))
    quantiles = torch.linspace(0, 1, 21)
    # the dissection reads quantiles a few units at a time: same numbers
    np.testing.assert_array_equal(quantile_table(q, quantiles.double().numpy(), units_per_step=2),
                                  q.quantiles(quantiles).float().numpy())


def test_generator_dissection_and_sources():
    torch.manual_seed(0)
    gen, seg = ToyGenerator(128).eval(), ToySegmenter(16).eval()
    r = dissect_generator(gen, "layer6", seg, n=24, batch_size=8, chunk_size=8, **QUIET)
    assert r.model_kind == "generator" and r.concept_names == CONCEPTS
    assert r.iou.shape == (128, 16) and r.activation_size == (16, 16) and r.label_size == (64, 64)
    assert r.topk_indices.min() >= 0 and r.topk_indices.max() < 24
    assert r.concept_area.sum() == r.pixels == 24 * 64 * 64
    src = GeneratorSource(3000, 128, seed=1)
    # z_i does not depend on how indices are grouped
    torch.testing.assert_close(src.latents([5, 1030, 2100]), torch.cat([src.latents([5]), src.latents([1030]),
                                                                        src.latents([2100])]))
    assert not torch.equal(src.latents([0]), GeneratorSource(10, 128, seed=2).latents([0]))


def test_generator_activations_are_not_changed_by_later_inplace_ops():
    """The full pass (needed for the image) runs an in-place ReLU after the layer; the statistics must still
    see the layer's own (negative) values."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 2 * 4 * 4)
    nn.init.constant_(lin.bias, -3.0)
    gen = nn.Sequential(OrderedDict(fc=lin, unflatten=nn.Unflatten(1, (2, 4, 4)), layer=nn.Identity(),
                                    relu=nn.ReLU(inplace=True), out=nn.Conv2d(2, 3, 1)))

    def segment(images: Tensor) -> Tensor:
        return torch.zeros(images.shape[0], 4, 4, dtype=torch.long)

    src = GeneratorSource(12, 4, seed=3)
    for budget in (0, 1 << 20):  # pass 2 recomputing, and pass 2 from kept activations
        r = dissect_generator(gen, "layer", segment, latents=src, concept_names=["x"], k=12, batch_size=4,
                              activation_cache_bytes=budget, **QUIET)
        with torch.no_grad():
            acts = gen[:3](src.latents(range(12)))
        expect = acts.amax((2, 3)).t().sort(dim=1, descending=True).values
        assert (expect < 0).any()
        np.testing.assert_allclose(r.topk_values, expect.numpy(), rtol=1e-6)


def test_dataset_source_with_toyworld_dataset():
    from ganviz.toyworld import ToyWorld

    ds = ToyWorld(16, seed=1)
    a = dissect_classifier(_classifier(), "conv5_3", ds, batch_size=8, **QUIET)
    b = dissect_classifier(_classifier(), "conv5_3", ToyWorldSource(16, seed=1), batch_size=8, **QUIET)
    np.testing.assert_array_equal(a.intersection, b.intersection)
    assert a.concept_names == CONCEPTS


def test_model_mode_and_device_kept():
    model = _classifier().train()
    model.fc.eval()  # a mixed state must come back as it was
    dissect_classifier(model, "conv5_3", ToyWorldSource(4), batch_size=4, **QUIET)
    assert model.training and model.conv1_1.training and not model.fc.training


# ----------------------------------------------------------------------------------------------- results
def _result() -> DissectionResult:
    iou = np.array([[0.1, 0.02, 0.05], [0.01, 0.03, 0.2], [0.0, 0.5, 0.1], [0.06, 0.0, 0.0]], np.float32)
    c, k = iou.shape
    return DissectionResult(
        layer="l", model_kind="classifier", concept_names=("sky", "tree", "door"), quantile=0.99,
        thresholds=np.ones(c, np.float32), quantile_levels=np.array([0.0, 0.5, 1.0]),
        quantile_values=np.tile(np.array([0.0, 1.0, 3.0], np.float32), (c, 1)), iou=iou,
        intersection=np.zeros((c, k), np.int64), unit_area=np.zeros(c, np.int64), concept_area=np.zeros(k, np.int64),
        topk_values=np.zeros((c, 2), np.float32), topk_indices=np.zeros((c, 2), np.int64), num_images=2, pixels=8,
        activation_size=(2, 2), label_size=(2, 2), data="d", params={"k": 2})


def test_result_queries():
    r = _result()
    assert [u.unit for u in r.labels()] == [0, 1, 2, 3]
    assert [u.unit for u in r.labels(min_iou=0.1)] == [0, 1, 2]
    assert r.label(2) == UnitLabel(2, "tree", 0.5, (("door", pytest.approx(0.1)), ("sky", 0.0)))
    assert r.concept_counts() == {"sky": 2, "door": 1, "tree": 1}
    assert list(r.concept_counts()) == ["sky", "tree", "door"]
    assert r.concept_counts(0.15) == {"door": 1, "tree": 1}
    assert r.units_for("door") == [1, 2, 0, 3]
    assert r.units_for("door", labelled_only=True) == [1]
    assert r.units_for(0, n=2) == [0, 3]
    with pytest.raises(KeyError, match="no concept 'cat'"):
        r.units_for("cat")
    np.testing.assert_allclose(r.threshold_at(0.75), [2.0] * 4)
    assert "2 units" not in r.summary() and "sky" in r.summary()


def test_result_save_load_roundtrip_without_pickle(tmp_path):
    r = _result()
    path = tmp_path / "r.npz"
    r.save(path)
    with np.load(path, allow_pickle=False) as z:  # loads without pickle
        assert "meta" in z.files
    back = DissectionResult.load(path)
    for name in ("iou", "thresholds", "quantile_values", "topk_indices"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    assert back.concept_names == r.concept_names and back.params == r.params and back.label_size == (2, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]


def test_plot_is_a_figure_without_pyplot_that_a_notebook_shows_as_a_picture():
    from IPython.core.formatters import format_display_data
    from matplotlib.figure import Figure

    fig = _result().plot_concept_counts()
    assert isinstance(fig, Figure)
    data, _ = format_display_data(fig)  # what a notebook cell ending in the figure displays
    assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n", sorted(data)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["sky", "tree", "door"]  # most units first, ties in concept order
    assert [p.get_height() for p in fig.axes[0].patches] == [2, 1, 1]


def test_import_pulls_no_widgets():
    code = ("import sys, ganviz.dissect, ganviz.cache, ganviz.progress, ganviz.__main__;"
            "bad=[m for m in ('ipywidgets','ipycanvas','matplotlib.pyplot') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------------------------------ errors
class Counting(nn.Module):
    """Counts calls; raises ``exc`` at call number ``fail_at`` (1-based) when given."""

    def __init__(self, fail_at: Optional[int] = None, exc: type = RuntimeError) -> None:
        super().__init__()
        self.calls, self.fail_at, self.exc = 0, fail_at, exc

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise self.exc("boom")
        return x


class CountingSource(ToyWorldSource):
    loads = 0

    def load(self, indices):
        CountingSource.loads += 1
        return super().load(indices)


def test_bad_layer_fails_before_any_work():
    model = _classifier()
    model.conv1_1.relu = Counting()
    CountingSource.loads = 0
    with pytest.raises(LayerNotFoundError, match="conv5_3"):
        dissect_classifier(model, "conv5_33", CountingSource(8), **QUIET)
    assert model.conv1_1.relu.calls == 0 and CountingSource.loads == 0
    with pytest.raises(LayerNotFoundError):
        dissect_generator(ToyGenerator(), "layer99", ToySegmenter(16), n=4, **QUIET)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "expected at least 1 image"),
    (dict(quantile=0.0), "strictly between 0 and 1"),
    (dict(quantile=1.0), "strictly between 0 and 1"),
    (dict(quantile=1.5), "strictly between 0 and 1"),
    (dict(k=0), "k must be"),
    (dict(n=100), "only 8 items"),
])
def test_argument_errors(kwargs, match):
    CountingSource.loads = 0
    with pytest.raises(ValueError, match=match):
        dissect_classifier(_classifier(), "conv5_3", CountingSource(8), **kwargs, **QUIET)
    assert CountingSource.loads == 0


def test_empty_data_and_missing_labels():
    with pytest.raises(ValueError, match="expected at least 1 image"):
        dissect_classifier(_classifier(), "conv5_3", ToyWorldSource(0), **QUIET)
    with pytest.raises(ValueError, match="expected at least 1 image"):
        dissect_generator(ToyGenerator(), "layer4", ToySegmenter(16), n=0, **QUIET)
    with pytest.raises(ValueError, match="no labels"):
        dissect_classifier(_classifier(), "conv5_3", TensorSource(torch.rand(2, 3, 64, 64)),
                           concept_names=CONCEPTS, **QUIET)
    with pytest.raises(ValueError, match="outside 0..1"):
        dissect_classifier(_map_model([0]), "units", TensorSource(torch.rand(2, 3, 4, 4), torch.full((2, 4, 4), 3),
                                                                  concept_names=["a", "b"]), **QUIET)
    with pytest.raises(ValueError, match="spatial layer output"):
        dissect_classifier(_classifier(), "fc", ToyWorldSource(2), **QUIET)


# ------------------------------------------------------------------------------------------ hook hygiene
def _run_entry(entry: str, scenario: str) -> nn.Module:
    torch.manual_seed(0)
    if entry == "classifier":
        model: nn.Module = ToyVGG(8)
        inner, layer = model.conv3_1, "conv4_1"
        call = lambda lay: dissect_classifier(model, lay, ToyWorldSource(8), batch_size=4, **QUIET)  # noqa: E731
    else:
        model = ToyGenerator(128)
        inner, layer = model.layer3, "layer4"
        seg = ToySegmenter(16)
        call = lambda lay: dissect_generator(model, lay, seg, n=8, batch_size=4, **QUIET)  # noqa: E731
    if scenario == "normal":
        call(layer)
    elif scenario == "bad_layer":
        with pytest.raises(LayerNotFoundError):
            call(layer + "x")
    elif scenario == "raises":
        inner.add_module("relu", Counting(fail_at=2))
        with pytest.raises(RuntimeError, match="boom"):
            call(layer)
    else:
        inner.add_module("relu", Counting(fail_at=2, exc=KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            call(layer)
    return model


@pytest.mark.parametrize("scenario", ["normal", "bad_layer", "raises", "interrupt"])
@pytest.mark.parametrize("entry", ["classifier", "generator"])
def test_no_hooks_left(entry, scenario):
    model = _run_entry(entry, scenario)
    assert count_hooks(model) == 0
    assert model.training  # the caller's mode is restored even after an error


# ---------------------------------------------------------------------------------------- bundled models
def _bundled(name: str) -> Tuple[nn.Module, object]:
    """A bundled model; all three ship with the package, so a missing one is a failure, not a skip."""
    return zoo.load(name)


@pytest.mark.bundled
def test_bundled_classifier_units_cover_many_concepts():
    model, info = _bundled("toy-classifier")
    r = dissect_classifier(model, "conv5_3", ToyWorldSource(2000, seed=1), **QUIET)
    counts = r.concept_counts(0.04)
    assert len(counts) >= 8, r.summary()


@pytest.mark.bundled
def test_adapter_and_dissect_classifier_share_a_cache_entry(tmp_path):
    """The bundled classifier's adapter preprocesses with ``Normalize((-1, 1))``, the same value as
    ``dissect_classifier``'s default (``ganviz.preprocessing.to_signed``): both spellings name one cache entry."""
    adapter = zoo.adapter("toy-classifier")
    kw = dict(batch_size=8, cache_dir=tmp_path, **QUIET)
    CountingSource.loads = 0
    first = adapter.dissect(CountingSource(8, seed=1), "conv3_1", **kw)
    assert CountingSource.loads > 0  # computed
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".npz") and not files[0].endswith(".pass1.npz"), files
    CountingSource.loads = 0
    second = ganviz.dissect_classifier(adapter.model, "conv3_1", CountingSource(8, seed=1), **kw)
    assert CountingSource.loads == 0  # loaded from the cache: no image was read
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    for name in ("thresholds", "iou", "intersection", "topk_indices"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


GAN_LAYER = "layer4"  # the 8x8 layer, where GAN Dissection finds object units in Progressive GANs


@pytest.mark.bundled
def test_bundled_generator_units_for_scene_concepts():
    """Small concepts (doors, windows) get units at the top-1% threshold; a top-1% mask covers 1% of the pixels, so
    its IoU with sky (a third of the pixels) cannot exceed 0.03: large concepts need a lower threshold, as GAN
    Dissection's per-concept thresholds give them.  Units of both kinds must exist in the layer."""
    gen, info = _bundled("toy-gan")
    seg, _ = _bundled("toy-segmenter")
    found = set()
    for q in (0.99, 0.9):
        r = dissect_generator(gen, GAN_LAYER, seg, n=1000, seed=1, quantile=q, **QUIET)
        found |= set(r.concept_counts(0.04))
    assert {"tree", "sky", "grass"} <= found, found
    assert found & {"wall", "roof"}, found
    assert found & {"dome", "door", "window"}, found


def test_thresholds_on_raw_or_upsampled_maps_match_exact_quantiles():
    """threshold_on="raw" reads the quantile over the feature map's values, "upsampled" over the upsampled maps."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4, padding=1), torch.nn.ReLU())
    images = torch.rand(24, 3, 32, 32)
    labels = (torch.rand(24, 32, 32) * 3).long()
    src = ganviz.TensorSource(images, labels)
    same = ganviz.Normalize((0.0, 1.0))
    with torch.no_grad():
        acts = model(images)
    up = F.interpolate(acts, size=(32, 32), mode="bilinear", align_corners=False)
    for where, maps in (("raw", acts), ("upsampled", up)):
        r = dissect_classifier(model, "1", src, preprocess=same, quantile=0.9, threshold_on=where,
                               concept_names=["a", "b", "c"], **QUIET)
        exact = torch.quantile(maps.transpose(0, 1).reshape(4, -1), 0.9, dim=1)
        np.testing.assert_allclose(r.thresholds, exact.numpy(), rtol=2e-2, atol=1e-4)
    with pytest.raises(ValueError, match="threshold_on"):
        dissect_classifier(model, "1", src, preprocess=same, threshold_on="smooth", **QUIET)


def test_a_unit_below_the_labelling_threshold_is_unlabelled():
    from ganviz.dissect import UnitLabel

    weak, strong = UnitLabel(77, "hat", 0.019), UnitLabel(3, "hat", 0.21)
    assert (weak.name(), strong.name()) == ("unlabelled", "hat")
    assert weak.describe() == "unlabelled (best: hat, IoU 0.02)" and strong.describe() == "hat, IoU 0.21"
    assert weak.name(min_iou=0.01) == "hat"
