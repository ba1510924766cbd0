"""Inception-v3 for FID: torchvision's and pytorch-fid's layouts, loaded from a weights file the user supplies.

Layouts are checked against pytorch/vision ``torchvision/models/inception.py`` and mseitzer/pytorch-fid
``src/pytorch_fid/inception.py`` (see docs/models.md); random weights in each layout stand in for the real files.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ganviz
from ganviz.checkpoints import CheckpointError, save_state
from ganviz.formats import save_random_checkpoint
from ganviz.fid_score import fid
from ganviz.formats import inception_features
from ganviz.models import inception

torch.set_num_threads(1)


def _meta_shapes(build):
    with torch.device("meta"):
        model = build()
        return model, {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _randomise(model, seed=0):
    """Random weights that keep activations in range through 20 layers (the default init lets them vanish)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.1 * torch.rand(m.running_var.shape, generator=g))
    return model.eval()


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g) * 2 - 1


# ------------------------------------------------------------------------------------------------------------------
# Layouts against the published ones
# ------------------------------------------------------------------------------------------------------------------
def test_inception_layouts_match_torchvision_and_pytorch_fid():
    # torchvision's Inception_V3_Weights.IMAGENET1K_V1 metadata: 27,161,264 parameters (with the aux head);
    # the aux head is 128*768 + 2*128 + 768*128*25 + 2*768 + 768*1000 + 1000 = 3,326,696 of them, and
    # pytorch-fid's 1008-class fc adds 8 * 2049 to the 1000-class network without it
    model, tv = _meta_shapes(inception.inception_v3)
    params = sum(p.numel() for p in model.parameters())
    assert params == 27_161_264
    _, no_aux = _meta_shapes(lambda: inception.inception_v3(aux_logits=False))
    fid_model, fid_shapes = _meta_shapes(inception.fid_inception_v3)
    assert sum(p.numel() for p in fid_model.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049 == 23_850_960
    assert set(tv) - set(no_aux) == {k for k in tv if k.startswith("AuxLogits.")}
    assert set(fid_shapes) == set(no_aux) and fid_shapes["fc.weight"] == (1008, 2048)
    assert list(tv)[:6] == ["Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.weight", "Conv2d_1a_3x3.bn.bias",
                            "Conv2d_1a_3x3.bn.running_mean", "Conv2d_1a_3x3.bn.running_var",
                            "Conv2d_1a_3x3.bn.num_batches_tracked"]
    expect = {"Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3), "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
              "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5), "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
              "Mixed_6b.branch7x7dbl_5.conv.weight": (192, 128, 1, 7),
              "Mixed_6e.branch7x7_3.conv.weight": (192, 192, 7, 1),
              "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
              "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
              "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1), "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
              "AuxLogits.fc.weight": (1000, 768), "fc.weight": (1000, 2048)}
    assert {k: tv[k] for k in expect} == expect
    assert not any(k.endswith(".conv.bias") for k in tv)
    assert all(m.eps == 0.001 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert (fid_model.Mixed_5b.pool, fid_model.Mixed_6e.pool, fid_model.Mixed_7b.pool, fid_model.Mixed_7c.pool) == \
        ("avg_tf", "avg_tf", "avg_tf", "max")
    assert {model.Mixed_5b.pool, model.Mixed_6b.pool, model.Mixed_7b.pool, model.Mixed_7c.pool} == {"avg"}


def test_feature_map_sizes_at_299():
    model = _randomise(inception.fid_inception_v3())
    x = torch.randn(1, 3, 299, 299)
    sizes = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[1:])))
             for n in ("maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c")]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    assert sizes == {"maxpool2": (192, 35, 35), "Mixed_5d": (288, 35, 35), "Mixed_6e": (768, 17, 17),
                     "Mixed_7c": (2048, 8, 8)}
    assert logits.shape == (1, 1008)


# ------------------------------------------------------------------------------------------------------------------
# Forward formulas against independent computations
# ------------------------------------------------------------------------------------------------------------------
def _conv_bn_relu_1x1(unit, x):
    w = unit.conv.weight[:, :, 0, 0]
    y = torch.einsum("oc,nchw->nohw", w, x)
    bn = unit.bn
    scale = bn.weight / torch.sqrt(bn.running_var + 0.001)
    return torch.relu((y - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None])


def test_fid_pool_branches_match_hand_computed_tensorflow_pooling():
    torch.manual_seed(0)
    x = torch.randn(2, 192, 7, 7)
    padded, ones = F.pad(x, (1, 1, 1, 1)), F.pad(torch.ones(1, 1, 7, 7), (1, 1, 1, 1))
    sums = sum(padded[:, :, i:i + 7, j:j + 7] for i in range(3) for j in range(3))
    counts = sum(ones[:, :, i:i + 7, j:j + 7] for i in range(3) for j in range(3))  # 4 in corners, 6 on edges
    assert counts[0, 0, 0, 0] == 4 and counts[0, 0, 0, 3] == 6 and counts[0, 0, 3, 3] == 9
    fid_block = _randomise(inception.InceptionA(192, 32, pool="avg_tf"))
    tv_block = _randomise(inception.InceptionA(192, 32, pool="avg"))
    with torch.no_grad():
        got = fid_block(x)[:, -32:]
        assert torch.allclose(got, _conv_bn_relu_1x1(fid_block.branch_pool, sums / counts), atol=1e-5)
        tv = tv_block(x)[:, -32:]  # same weights (same seed): zero padding counted, so only the border differs
        assert torch.allclose(tv, _conv_bn_relu_1x1(tv_block.branch_pool, sums / 9), atol=1e-5)
        assert torch.allclose(tv[..., 1:-1, 1:-1], got[..., 1:-1, 1:-1], atol=1e-5)
        assert not torch.allclose(tv[..., 0, :], got[..., 0, :], atol=1e-3)

        # pytorch-fid's last block (Mixed_7c) takes a 3x3 max in its pool branch
        y = torch.randn(1, 2048, 5, 5)
        neg = F.pad(y, (1, 1, 1, 1), value=float("-inf"))
        maxed = torch.stack([neg[:, :, i:i + 5, j:j + 5] for i in range(3) for j in range(3)]).amax(0)
        block = _randomise(inception.InceptionE(2048, pool="max"))
        assert torch.allclose(block(y)[:, -192:], _conv_bn_relu_1x1(block.branch_pool, maxed), atol=1e-4)
        assert block(y).shape == (1, 320 + 768 + 768 + 192, 5, 5)
    with pytest.raises(ValueError, match="unknown pool"):
        inception.InceptionA(192, 32, pool="median")


# ------------------------------------------------------------------------------------------------------------------
# inception_features from a weights file
# ------------------------------------------------------------------------------------------------------------------
def _write(tmp_path, variant, aux=True, drop_counters=False):
    model = inception.fid_inception_v3() if variant == "fid" else inception.inception_v3(aux_logits=aux)
    state = _randomise(model, seed=1).state_dict()
    if drop_counters:  # like torchvision's inception_v3_google file, saved before PyTorch 0.4.1
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return save_state(state, tmp_path / f"{variant}.pth"), state


@pytest.mark.slow
@pytest.mark.parametrize("variant, aux", [("fid", False), ("torchvision", True), ("torchvision", False)])
def test_inception_features_load_either_layout_and_give_fid(tmp_path, variant, aux):
    path, state = _write(tmp_path, variant, aux, drop_counters=variant == "torchvision")
    ext = inception_features(path)
    model = ext.model
    assert model.fid == (variant == "fid") and model.transform_input == (variant == "torchvision")
    assert (model.AuxLogits is not None) == aux and not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())

    x, y = _images(2, 0), _images(2, 1)
    f = ext(torch.cat([x, y]))
    assert f.shape == (4, 2048) and torch.isfinite(f).all() and f.std() > 1e-3
    # the network sees the images resized to 299 (bilinear) in [-1, 1]: pytorch-fid's input, and what torchvision's
    # ImageNet normalisation plus transform_input gives back
    resized = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    model.transform_input = False
    with torch.no_grad():
        assert torch.allclose(f[:2], model.features(resized), rtol=1e-4, atol=1e-4)
    model.transform_input = variant == "torchvision"

    if variant == "torchvision" and not aux:
        return  # the same network as with aux: skip the 2048-d Frechet distances (about 1.5 s each on one core)
    assert fid(x, x, ext) == pytest.approx(0, abs=1e-6 * float((f ** 2).sum()))
    different = fid(x, y, ext)
    assert different > 0.01 * float(f.var(0).sum())
    assert different == pytest.approx(float(((f[:2].mean(0) - f[2:].mean(0)) ** 2).sum()) + _trace_term(f), rel=1e-3)


def _trace_term(f):
    """tr(A) + tr(B) - 2 tr((A B)^1/2) for two rank-1 covariances A = a a^T, B = b b^T: |a|^2 + |b|^2 - 2 |a.b|."""
    a = (f[0] - f[1]).double() / 2 ** 0.5
    b = (f[2] - f[3]).double() / 2 ** 0.5
    return float(a @ a + b @ b - 2 * (a @ b).abs())


def test_inception_variant_is_forced_or_detected_from_the_classifier(tmp_path):
    path, _ = _write(tmp_path, "fid")
    assert inception_features(path, variant="torchvision").model.fid is False  # forced: same keys, other pools
    assert inception.variant_from_state_dict({"Conv2d_1a_3x3.conv.weight": torch.zeros(1),
                                              "fc.weight": torch.zeros(1000, 2048)}) == "torchvision"
    with pytest.raises(ValueError, match="unknown variant"):
        inception_features(path, variant="tf")
    state = _randomise(inception.inception_v3(num_classes=10, aux_logits=False)).state_dict()
    odd = save_state(state, tmp_path / "ten.pth")
    with pytest.raises(CheckpointError, match=r"fc.weight of shape \(10, 2048\).*pass variant="):
        inception_features(odd)
    assert inception_features(odd, variant="torchvision").model.num_classes == 10


def test_inception_features_refuse_wrong_files_naming_the_keys(tmp_path):
    resnet_file = save_random_checkpoint("resnet", tmp_path / "resnet18.pth", depth=18)
    with pytest.raises(CheckpointError, match=r"not an Inception-v3 state dict.*no Conv2d_1a_3x3.conv.weight"):
        inception_features(resnet_file)
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): Conv2d_1a_3x3.conv.weight.*unexpected keys"):
        inception_features(resnet_file, variant="fid")

    _, state = _write(tmp_path, "fid")
    broken = dict(state)
    del broken["Mixed_6c.branch7x7_2.conv.weight"]
    broken["Mixed_7c.branch_pool.conv.weight"] = torch.zeros(192, 1280, 1, 1)
    with pytest.raises(CheckpointError, match=r"pytorch-fid's FID Inception-v3: missing keys \(1\): "
                                              r"Mixed_6c.branch7x7_2.conv.weight; shape mismatches \(1\): "
                                              r"Mixed_7c.branch_pool.conv.weight \(file \(192, 1280, 1, 1\)"):
        inception_features(save_state(broken, tmp_path / "broken.pth"))
    with pytest.raises(FileNotFoundError):
        inception_features(tmp_path / "pt_inception-2015-12-05-6726825d.pth")


def test_inception_features_is_exported_next_to_fid():
    assert ganviz.inception_features is inception_features and "inception_features" in ganviz.__all__
