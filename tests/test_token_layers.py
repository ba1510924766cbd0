"""Token and channels-last layers as [B, C, H, W] maps: dissection, ablation, Grad-CAM and loading, from a layer name.

Tiny models only: a ganviz ViT with random weights, hand-built modules whose layer gives ViT tokens or a Swin-style
channels-last map with known units (a unit that copies a colour plane must be labelled with that colour), and a
Hugging Face ViT written by transformers' own classes with ``save_pretrained``.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ganviz
from ganviz.checkpoints import read_checkpoint
from ganviz import ablation
from ganviz.edits import Ablate, SetLevel
from ganviz.gradcam import gradcam
from ganviz.layouts import Layout, LayoutError
from ganviz.models.vit import VisionTransformer
from ganviz.trace import Trace, count_hooks, edited_forward

QUIET = dict(progress=False)
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="needs the hf extra: pip install ganviz[hf]")


def tiny_vit(seed: int = 0, size: int = 32, classes: int = 4) -> VisionTransformer:
    """Patch 8: a 4x4 grid (8x8 at 64 pixels), 2 blocks of width 32, 64 MLP neurons; weights well away from zero."""
    torch.manual_seed(seed)
    model = VisionTransformer(image_size=size, patch_size=8, num_classes=classes, embed_dim=32, depth=2,
                              num_heads=2, mlp_hidden=64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


class Planes(nn.Module):
    """Unit 0 = the red plane, unit 1 = the blue plane, averaged over 8x8 patches; ``layout`` says how ``units``
    lays them out: ``"bhwc"`` (Swin-style channels last) or ``"tokens_cls"`` (a class token of 100s first)."""

    def __init__(self, layout: str) -> None:
        super().__init__()
        self.layout = layout
        self.units = nn.Identity()
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = F.avg_pool2d((x[:, [0, 2]] + 1) / 2, 8).permute(0, 2, 3, 1)  # [B, h, w, 2]; x is in [-1, 1]
        if self.layout == "tokens_cls":
            tokens = planes.flatten(1, 2)
            planes = torch.cat([torch.full_like(tokens[:, :1], 100.0), tokens], 1)
        out = self.units(planes)
        pooled = out.mean((1, 2)) if self.layout == "bhwc" else out[:, 0]
        return self.head(pooled)


def colour_blocks(n: int, hw: tuple, seed: int = 0) -> tuple:
    """Images in [0, 1] made of 8x8 blocks that are red, blue or grey, and their labels (0 red, 1 blue, 2 grey)."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, 3, (n, hw[0] // 8, hw[1] // 8), generator=g)
    labels = cells.repeat_interleave(8, 1).repeat_interleave(8, 2)
    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]])
    return colours[labels].permute(0, 3, 1, 2).contiguous(), labels


# ----------------------------------------------------------------------------------------------- dissection
@pytest.mark.parametrize("layout, hw", [("bhwc", (32, 48)), ("tokens_cls", (32, 32))])
def test_dissecting_known_units_from_a_layer_name(layout, hw):
    """The red unit is labelled red and the blue one blue: the map is oriented right and the class token left out."""
    images, labels = colour_blocks(12, hw)
    source = ganviz.TensorSource(images, labels, concept_names=("red", "blue", "grey"))
    result = ganviz.dissect_classifier(Planes(layout), "units", source, batch_size=5, k=3, quantile=0.5, **QUIET)
    assert result.activation_size == (hw[0] // 8, hw[1] // 8) and result.num_units == 2
    assert [(lab.unit, lab.concept) for lab in result.labels()] == [(0, "red"), (1, "blue")]
    assert result.iou[0, 0] > 0.6 and result.iou[1, 1] > 0.6 and result.iou[[0, 1], [1, 0]].max() < 0.1
    assert result.topk_values.max() <= 1.0  # never the class token's 100


def test_dissecting_a_vit_mlp_from_its_layer_name():
    """blocks.1.mlp.act ([B, 1 + 64, 64]): each unit's top images rank the patch tokens' maxima, class token apart."""
    model = tiny_vit(size=64)
    source = ganviz.ToyWorldSource(8, seed=1)
    result = ganviz.dissect_classifier(model, "blocks.1.mlp.act", source, batch_size=4, k=3, **QUIET)
    assert result.num_units == 64 and result.activation_size == (8, 8)
    assert result.iou.shape == (64, len(ganviz.CONCEPTS))
    images, _ = source.load(range(8))
    seen = {}
    handle = model.blocks[1].mlp.act.register_forward_hook(lambda m, i, o: seen.setdefault("t", o))
    with torch.no_grad():
        model(images * 2 - 1)
    handle.remove()
    grid_max = seen["t"][:, 1:].amax(1)  # [8 images, 64 units], the class token left out
    top = grid_max.topk(3, dim=0)
    np.testing.assert_allclose(result.topk_values, top.values.t().numpy(), rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------------------------------- ablation
def test_ablating_a_token_layer_changes_the_right_channels_at_the_patch_tokens_only():
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), Trace(model, "blocks.0") as plain:
        y0 = plain.run(x)
    with torch.no_grad(), Trace(model, "blocks.0", edit=Ablate([3, 17])) as tr:
        y = tr.run(x)
    rec, ref = tr["blocks.0"], plain["blocks.0"]
    assert rec.layout == Layout("tokens_cls", 4, 4, 1) and rec.output.shape == (2, 32, 4, 4)
    assert (rec.output[:, [3, 17]] == 0).all()
    keep = [c for c in range(32) if c not in (3, 17)]
    assert torch.equal(rec.output[:, keep], ref.output[:, keep])
    assert rec.raw.shape == (2, 17, 32) and (rec.raw[:, 1:, [3, 17]] == 0).all()
    assert torch.equal(rec.prefix, ref.prefix) and torch.equal(rec.raw[:, :1], ref.raw[:, :1])
    assert (ref.prefix[:, 0, [3, 17]] != 0).all()  # the class token kept its values in the ablated channels

    def by_hand(m, i, o):
        o = o.clone()
        o[:, 1:, [3, 17]] = 0
        return o

    handle = model.blocks[0].register_forward_hook(by_hand)
    with torch.no_grad():
        expected = model(x)
    handle.remove()
    torch.testing.assert_close(y, expected)
    assert not torch.allclose(y, y0)
    assert count_hooks(model) == 0


def test_a_masked_edit_on_a_channels_last_layer_acts_on_its_cells():
    model = Planes("bhwc")
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    mask = torch.zeros(32, 48)
    mask[:8, 40:] = 1  # the top-right cell of the 4x6 grid
    with torch.no_grad(), Trace(model, "units", edit=SetLevel([1], 7.0, mask=mask)) as tr:
        tr.run(x)
    raw = tr["units"].raw  # [1, 4, 6, 2], channels last
    assert raw[0, 0, 5, 1] == 7.0 and (raw[0, ..., 1] == 7.0).sum() == 1
    assert torch.equal(tr["units"].output, raw.permute(0, 3, 1, 2))


# --------------------------------------------------------------------------------------------- layout errors
def test_an_ambiguous_shape_gets_a_clear_error_only_where_a_map_is_needed():
    """25 tokens of a 32x48 image: a 5x5 grid, or a class token and a 4x6 grid?"""
    model = nn.Sequential(nn.Conv2d(3, 8, 8, 8), nn.Flatten(2), Prepend(), nn.Linear(8, 1), nn.Flatten(1))
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad(), Trace(model, "2") as tr:  # tracing alone still works: the output is kept as it is
        tr.run(x)
    assert tr["2"].output.shape == (2, 25, 8) and tr["2"].layout is None
    with pytest.raises(LayoutError, match=r"layer '2': .*shape \(2, 25, 8\).*tokens 5x5 or tokens_cls 4x6.*declare"):
        tr["2"].map
    with pytest.raises(LayoutError, match=r"\(2, 25, 8\).*layouts=\{'2'"):
        edited_forward(model, x, {"2": Ablate([0])})
    assert count_hooks(model) == 0
    with pytest.raises(LayoutError, match=r"\(\d+, 25, 8\)"):
        ganviz.dissect_classifier(model, "2", ganviz.TensorSource(torch.rand(2, 3, 32, 48), torch.zeros(2, 32, 48),
                                                                  concept_names=["a"]), **QUIET)
    with torch.no_grad(), Trace(model, "2", layouts={"2": "tokens_cls"}, edit=Ablate([0])) as tr:
        tr.run(x)
    assert tr["2"].layout == Layout("tokens_cls", 4, 6, 1) and tr["2"].output.shape == (2, 8, 4, 6)


class Prepend(nn.Module):
    """``[B, C, N]`` -> ``[B, 1 + N, C]`` with a zero first token."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.transpose(1, 2)
        return torch.cat([torch.zeros_like(t[:, :1]), t], 1)


# --------------------------------------------------------------------------------------------------- Grad-CAM
def reference_cam(model: VisionTransformer, x: torch.Tensor, block: int, target: int) -> tuple:
    """Grad-CAM with the reshape written by hand: ``t[:, 1:].reshape(B, h, w, C).permute(0, 3, 1, 2)``."""
    seen = {}
    handle = model.blocks[block].register_forward_hook(lambda m, i, o: seen.setdefault("t", o))
    logits = model(x)
    handle.remove()
    t = seen["t"]
    (g,) = torch.autograd.grad(logits[:, target].sum(), t)
    b, (h, w), c = t.shape[0], model.grid_size, t.shape[-1]
    to_map = lambda v: v[:, 1:].reshape(b, h, w, c).permute(0, 3, 1, 2)  # noqa: E731
    fmap, gmap = to_map(t.detach()), to_map(g)
    cam = F.relu((gmap.mean((2, 3), keepdim=True) * fmap).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.flatten(1).max(1).values[:, None, None], gmap


def test_gradcam_on_a_vit_token_layer_matches_a_hand_reshaped_reference():
    model = tiny_vit()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    cam, cls = gradcam(model, x, "blocks.0", target=2)
    want, gmap = reference_cam(model, x, 0, 2)
    assert cls == 2 and cam.shape == (3, 32, 32)
    torch.testing.assert_close(cam, want, rtol=1e-4, atol=1e-5)
    assert cam.amax((1, 2)).allclose(torch.ones(3))
    with Trace(model, "blocks.0", detach=False) as tr:  # gradients w.r.t. the map itself
        logits = tr.run(x)
    (g,) = torch.autograd.grad(logits[:, 2].sum(), tr["blocks.0"].output)
    torch.testing.assert_close(g, gmap)
    assert count_hooks(model) == 0


# ---------------------------------------------------------------------------------------- checkpoint formats
def test_a_timm_layout_vit_file_loads_in_one_line(tmp_path):
    from ganviz.formats import detect_format, save_random_checkpoint

    path = save_random_checkpoint("vit", tmp_path / "vit.pth", image_size=32, patch_size=8, embed_dim=64, depth=2,
                                  num_heads=1, num_classes=3)
    adapter = ganviz.load_checkpoint(path)
    assert isinstance(adapter, ganviz.ClassifierAdapter) and detect_format(read_checkpoint(path)) == "vit"
    assert adapter.layers == ("blocks.0.mlp.act", "blocks.0", "blocks.1.mlp.act", "blocks.1")
    assert adapter.default_layer == "blocks.0" and adapter.resolution == 32 and len(adapter.class_names) == 3
    images = torch.rand(2, 3, 32, 32)
    assert torch.allclose(adapter.preprocess(images), (images - torch.tensor(ganviz.preprocessing.IMAGENET_MEAN)
                                                       .view(3, 1, 1)) / torch.tensor(
        ganviz.preprocessing.IMAGENET_STD).view(3, 1, 1), atol=1e-6)
    half = ganviz.load_checkpoint(path, preprocess=ganviz.Normalize((0, 1), (0.5,) * 3, (0.5,) * 3))
    assert torch.allclose(half.preprocess(images), images * 2 - 1, atol=1e-6)


@pytest.fixture(scope="module")
def hf_vit_dir(tmp_path_factory):
    T = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, id2label={0: "church", 1: "forest", 2: "lake"}, label2id=None)
    model = T.ViTForImageClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    path = tmp_path_factory.mktemp("hf") / "tiny-vit"
    model.save_pretrained(path)
    return path


@needs_transformers
def test_a_hugging_face_vit_loads_in_one_line_and_runs_through_dissection_ablation_and_gradcam(hf_vit_dir):
    adapter = ganviz.load_checkpoint(hf_vit_dir)
    assert isinstance(adapter, ganviz.ClassifierAdapter)
    assert adapter.class_names == ("church", "forest", "lake") and adapter.resolution == 32
    model, mlp = adapter.model, adapter.model.mlp_layers[0]
    result = adapter.dissect(ganviz.ToyWorldSource(6, seed=1, size=32), layer=mlp, batch_size=3, k=2, **QUIET)
    assert result.num_units == 64 and result.activation_size == (4, 4)

    x = adapter.preprocess(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad(), Trace(model, mlp, edit=Ablate([5])) as tr:
        tr.run(x)
    assert tr[mlp].output.shape == (2, 64, 4, 4) and (tr[mlp].output[:, 5] == 0).all()
    assert (tr[mlp].raw[:, 0, 5] != 0).all() and (tr[mlp].raw[:, 1:, 5] == 0).all()
    edited = ablation.predict(model, x, mlp, Ablate(list(range(0, 64, 2))))
    assert edited.shape == (2, 3) and not torch.allclose(edited, ablation.predict(model, x))
    effects = ablation.single_unit_effects(model, mlp, x, 0, units=[1, 5, 9])
    assert effects.shape == (64,) and effects[[1, 5, 9]].abs().sum() > 0
    cam, cls = gradcam(model, x, adapter.layers[0])
    assert cam.shape == (2, 32, 32) and 0 <= cls < 3 and cam.min() >= 0 and cam.amax((1, 2)).allclose(torch.ones(2))
    assert count_hooks(model) == 0
