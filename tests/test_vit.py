"""timm-layout ViT / DeiT: ganviz's module against a naive transcription of timm's forward, on random weights.

The reference below works from the state dict alone, one image, one patch, one head at a time, with hand-written
LayerNorm, softmax and GELU (erf form), following timm's ``vision_transformer.py`` (``_pos_embed``, ``Block``,
``Attention``: qkv rows are [q | k | v], each split into heads of ``dim // heads``) and ``deit.py`` (distilled
head: the mean of ``head(x[:, 0])`` and ``head_dist(x[:, 1])``).
"""
from __future__ import annotations

import math

import pytest
import torch

from ganviz.checkpoints import CheckpointError, save_state
from ganviz.layouts import Layout
from ganviz.models.vit import STANDARD_HEADS, VisionTransformer, heads_for, load_vit, vit_from_state_dict


def random_state(seed: int = 0, dim: int = 48, depth: int = 2, patch: int = 8, grid=(4, 4), classes: int = 7,
                 mlp: int = 96, cls: bool = True, dist: bool = False, qkv_bias: bool = True,
                 embed_prefix: bool = True, layer_scale: bool = False, fc_norm: bool = False,
                 in_chans: int = 3) -> dict:
    """A timm-layout state dict of random tensors (built without ganviz's model)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    def ln(prefix):
        return {f"{prefix}.weight": 1 + r(dim, scale=0.1), f"{prefix}.bias": r(dim, scale=0.1)}

    s = {"patch_embed.proj.weight": r(dim, in_chans, patch, patch, scale=0.1), "patch_embed.proj.bias": r(dim)}
    prefix = int(cls) + int(dist)
    if cls:
        s["cls_token"] = r(1, 1, dim, scale=1.0)
    if dist:
        s["dist_token"] = r(1, 1, dim, scale=1.0)
    s["pos_embed"] = r(1, grid[0] * grid[1] + (prefix if embed_prefix else 0), dim, scale=0.5)
    for i in range(depth):
        b = f"blocks.{i}"
        s.update(ln(f"{b}.norm1"))
        s[f"{b}.attn.qkv.weight"] = r(3 * dim, dim)
        if qkv_bias:
            s[f"{b}.attn.qkv.bias"] = r(3 * dim)
        s[f"{b}.attn.proj.weight"], s[f"{b}.attn.proj.bias"] = r(dim, dim), r(dim)
        s.update(ln(f"{b}.norm2"))
        s[f"{b}.mlp.fc1.weight"], s[f"{b}.mlp.fc1.bias"] = r(mlp, dim), r(mlp)
        s[f"{b}.mlp.fc2.weight"], s[f"{b}.mlp.fc2.bias"] = r(dim, mlp), r(dim)
        if layer_scale:
            s[f"{b}.ls1.gamma"], s[f"{b}.ls2.gamma"] = r(dim, scale=0.5), r(dim, scale=0.5)
    s.update(ln("fc_norm" if fc_norm else "norm"))
    s["head.weight"], s["head.bias"] = r(classes, dim), r(classes)
    if dist:
        s["head_dist.weight"], s["head_dist.bias"] = r(classes, dim), r(classes)
    return s


# -- the naive reference ----------------------------------------------------------------------------------------
def _layer_norm(v, w, b, eps=1e-6):
    mean = sum(v) / len(v)
    var = sum((t - mean) ** 2 for t in v) / len(v)
    return (v - mean) / math.sqrt(var + eps) * w + b


def _gelu(v):
    return 0.5 * v * (1 + torch.erf(v / math.sqrt(2)))


def _softmax(v):
    e = torch.exp(v - v.max())
    return e / e.sum()


def reference_forward(s: dict, image: torch.Tensor, heads: int) -> torch.Tensor:
    """Logits of one image ``[C, H, W]``, float64, token by token and head by head."""
    s = {k: v.double() for k, v in s.items()}
    image = image.double()
    w_patch = s["patch_embed.proj.weight"]
    dim, p = w_patch.shape[0], w_patch.shape[2]
    gh, gw = image.shape[1] // p, image.shape[2] // p
    patches = []
    for i in range(gh):
        for j in range(gw):
            piece = image[:, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(-1)
            patches.append(w_patch.reshape(dim, -1) @ piece + s["patch_embed.proj.bias"])
    prefix = [s[k][0, 0] for k in ("cls_token", "dist_token") if k in s]
    pos = s["pos_embed"][0]
    if len(pos) == len(patches):  # position embedding skips the prefix tokens (DeiT-III)
        tokens = prefix + [t + pos[n] for n, t in enumerate(patches)]
    else:
        tokens = [t + pos[n] for n, t in enumerate(prefix + patches)]
    hd = dim // heads
    depth = 1 + max(int(k.split(".")[1]) for k in s if k.startswith("blocks."))
    for i in range(depth):
        b = f"blocks.{i}."
        normed = [_layer_norm(t, s[b + "norm1.weight"], s[b + "norm1.bias"]) for t in tokens]
        wqkv = s[b + "attn.qkv.weight"]
        bqkv = s.get(b + "attn.qkv.bias", torch.zeros(3 * dim, dtype=torch.float64))
        head_outs = [[None] * heads for _ in tokens]
        for h in range(heads):
            rows = [slice(part * dim + h * hd, part * dim + (h + 1) * hd) for part in range(3)]
            q = [wqkv[rows[0]] @ t + bqkv[rows[0]] for t in normed]
            k = [wqkv[rows[1]] @ t + bqkv[rows[1]] for t in normed]
            v = [wqkv[rows[2]] @ t + bqkv[rows[2]] for t in normed]
            for a in range(len(tokens)):
                scores = torch.stack([torch.dot(q[a], k[c]) / math.sqrt(hd) for c in range(len(tokens))])
                weights = _softmax(scores)
                head_outs[a][h] = sum(weights[c] * v[c] for c in range(len(tokens)))
        attn = [s[b + "attn.proj.weight"] @ torch.cat(o) + s[b + "attn.proj.bias"] for o in head_outs]
        if b + "ls1.gamma" in s:
            attn = [a * s[b + "ls1.gamma"] for a in attn]
        tokens = [t + a for t, a in zip(tokens, attn)]
        mlp = []
        for t in tokens:
            u = _layer_norm(t, s[b + "norm2.weight"], s[b + "norm2.bias"])
            hidden = _gelu(s[b + "mlp.fc1.weight"] @ u + s[b + "mlp.fc1.bias"])
            m = s[b + "mlp.fc2.weight"] @ hidden + s[b + "mlp.fc2.bias"]
            mlp.append(m * s[b + "ls2.gamma"] if b + "ls2.gamma" in s else m)
        tokens = [t + m for t, m in zip(tokens, mlp)]
    if "fc_norm.weight" in s or "cls_token" not in s:
        body = tokens[len(prefix):]
        pooled = sum(body) / len(body)
        if "fc_norm.weight" in s:
            pooled = _layer_norm(pooled, s["fc_norm.weight"], s["fc_norm.bias"])
        return s["head.weight"] @ pooled + s["head.bias"]
    tokens = [_layer_norm(t, s["norm.weight"], s["norm.bias"]) for t in tokens]
    logits = s["head.weight"] @ tokens[0] + s["head.bias"]
    if "dist_token" in s:
        logits = (logits + s["head_dist.weight"] @ tokens[1] + s["head_dist.bias"]) / 2
    return logits


def _images(n: int, hw=(32, 32), chans: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, chans, *hw, generator=torch.Generator().manual_seed(seed))


def _check(state: dict, heads: int, images: torch.Tensor, **kwargs) -> VisionTransformer:
    model = vit_from_state_dict(state, **kwargs)
    with torch.no_grad():
        out = model(images)
    ref = torch.stack([reference_forward(state, im, heads) for im in images]).float()
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=0), (out - ref).abs().max()
    assert ref.abs().max() > 0.1  # the comparison is not between near-zero numbers
    return model


CASES = {
    "vit": dict(),
    "deit_distilled": dict(dist=True),
    "deit3_layer_scale_no_qkv_bias": dict(embed_prefix=False, layer_scale=True, qkv_bias=False),
    "avg_pool_fc_norm": dict(fc_norm=True),
    "no_class_token": dict(cls=False, fc_norm=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_reference_transcription(case: str) -> None:
    state = random_state(**CASES[case])
    model = _check(state, 4, _images(2), num_heads=4)
    assert model.num_heads == 4 and model.depth == 2 and model.image_size == (32, 32)
    assert model.num_prefix_tokens == int("cls" not in CASES[case]) + int(CASES[case].get("dist", False))


def test_standard_width_gets_its_heads_and_the_head_count_matters() -> None:
    state = random_state(dim=192, depth=1, mlp=384, seed=3)
    model = _check(state, 3, _images(1))
    assert model.num_heads == STANDARD_HEADS[192] == 3
    wrong = vit_from_state_dict(state, num_heads=6)
    with torch.no_grad():
        assert not torch.allclose(wrong(_images(1)), model(_images(1)), atol=1e-3)


def test_non_square_images_and_other_sizes() -> None:
    state = random_state(grid=(2, 5), patch=4, in_chans=1, classes=3)
    with pytest.raises(CheckpointError, match="pass image_size"):
        vit_from_state_dict(state, num_heads=4)
    model = _check(state, 4, _images(2, hw=(8, 20), chans=1), num_heads=4, image_size=(8, 20))
    assert model.grid_size == (2, 5)
    with pytest.raises(ValueError, match=r"images of shape \[B, 1, 8, 20\]"):
        model(_images(1, hw=(20, 8), chans=1))


def test_layer_layouts_present_hooked_blocks_as_maps() -> None:
    state = random_state(dist=True)
    model = vit_from_state_dict(state, num_heads=4)
    layouts = model.layer_layouts()
    assert layouts["blocks.1"] == Layout("tokens_cls", 4, 4, 2)
    seen = {}
    names = ["blocks.0", "blocks.1.mlp.act", "blocks.1.attn", "norm"]
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o))
             for n in names]
    with torch.no_grad():
        model(_images(2))
    for h in hooks:
        h.remove()
    for n in names:
        fmap = layouts[n].to_map(seen[n])
        assert fmap.shape == (2, seen[n].shape[-1], 4, 4)
        # grid cell (1, 2) is token prefix + 1 * 4 + 2
        assert torch.equal(fmap[:, :, 1, 2], seen[n][:, 2 + 1 * 4 + 2])
    assert seen["blocks.1.mlp.act"].shape[-1] == 96
    assert model.layer_names() == ["blocks.0", "blocks.1"]


def test_files_wrappers_and_bad_state_dicts(tmp_path) -> None:
    state = random_state(dist=True, seed=5)
    path = save_state({f"module.{k}": v for k, v in state.items()}, tmp_path / "deit.pth", wrap="model")
    model = load_vit(path, num_heads=4)
    again = vit_from_state_dict(state, num_heads=4)
    images = _images(1)
    with torch.no_grad():
        assert torch.equal(model(images), again(images))
    with pytest.raises(CheckpointError, match="not a timm-layout ViT state dict: no pos_embed"):
        vit_from_state_dict({k: v for k, v in state.items() if k != "pos_embed"})
    with pytest.raises(CheckpointError, match="register tokens"):
        vit_from_state_dict({**state, "reg_token": torch.zeros(1, 4, 48)}, num_heads=4)
    with pytest.raises(CheckpointError, match="missing keys .*blocks.1.norm2.bias"):
        vit_from_state_dict({k: v for k, v in state.items() if k != "blocks.1.norm2.bias"}, num_heads=4)
    with pytest.raises(CheckpointError, match="shape mismatches .*head_dist.weight"):
        vit_from_state_dict({**state, "head_dist.weight": torch.zeros(3, 48)}, num_heads=4)
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        vit_from_state_dict(state, num_heads=5)


def test_heads_rule() -> None:
    assert [heads_for(d) for d in (192, 384, 768, 1024, 1280, 512)] == [3, 6, 12, 16, 16, 8]
    with pytest.raises(ValueError, match="pass num_heads"):
        heads_for(100)
