"""Vision Transformers and DeiT with timm's state-dict key names, in plain PyTorch (no timm, no torchvision).

    model = vit_from_state_dict(state)            # sizes read from the weights; num_heads by the rule below
    model = load_vit("deit_small_patch16_224.pth")   # a file (torch.save or safetensors), wrappers unwrapped
    logits = model(images)                        # images normalised as the checkpoint expects, [B, 3, H, W]
    model.layer_layouts()                         # {"blocks.0": Layout('tokens_cls', 14, 14, 1), ...}

Keys (timm ``vision_transformer.py`` / ``deit.py``): ``patch_embed.proj`` (a conv with stride = kernel = patch),
``cls_token`` ``[1, 1, D]``, optional ``dist_token`` (DeiT distilled), ``pos_embed`` ``[1, P + N, D]`` (or
``[1, N, D]`` when the position embedding skips the prefix tokens, as in DeiT-III), ``blocks.{i}.norm1``,
``blocks.{i}.attn.qkv`` (``[3D, D]``: q, k, v, each split into heads), ``blocks.{i}.attn.proj``, optional
``blocks.{i}.ls1.gamma`` / ``ls2.gamma`` (layer scale), ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1`` / ``fc2``
(GELU between), ``norm``, ``head`` and ``head_dist``; models pooled by averaging have ``fc_norm`` instead of
``norm``.  Every LayerNorm has eps 1e-6.  A block is ``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``;
the class token after ``norm`` feeds ``head`` (DeiT distilled: the mean of ``head`` on the class token and
``head_dist`` on the distillation token).

Layers worth hooking: ``blocks.{i}`` (the residual stream, ``[B, P + N, D]``), ``blocks.{i}.mlp.act`` (the MLP
neurons, ``[B, P + N, 4D]``), ``blocks.{i}.attn``, ``norm``.  :meth:`VisionTransformer.layer_layouts` gives their
layouts for :mod:`ganviz.layouts`.

Number of heads: it cannot be read from the weights.  ``num_heads`` wins; otherwise the standard sizes give it
(:data:`STANDARD_HEADS`: embed dim 192 -> 3 heads (Ti), 384 -> 6 (S), 768 -> 12 (B), 1024 -> 16 (L), 1280 -> 16
(H), 1408 -> 16 (g), 1664 -> 16 (G)), and any other width that is a multiple of 64 gets heads of 64 channels.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layouts import Layout

__all__ = ["VisionTransformer", "Block", "Attention", "Mlp", "PatchEmbed", "LayerScale", "STANDARD_HEADS",
           "LN_EPS", "vit_from_state_dict", "load_vit", "heads_for"]

LN_EPS = 1e-6
STANDARD_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1664: 16}
"""Embed dim -> number of heads of the published ViT / DeiT sizes."""

Pair = Tuple[int, int]


def _pair(v: Union[int, Sequence[int]]) -> Pair:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens ``[B, N, D]`` (row-major over the patch grid)."""

    def __init__(self, image_size: Pair, patch_size: Pair, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        if image_size[0] % patch_size[0] or image_size[1] % patch_size[1]:
            raise ValueError(f"image size {image_size} is not a whole number of {patch_size} patches")
        self.image_size, self.patch_size = image_size, patch_size
        self.grid_size = (image_size[0] // patch_size[0], image_size[1] // patch_size[1])
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"this ViT takes images of shape [B, {self.proj.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}] (its position embedding is fixed), got {tuple(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection and an output ``proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v, per head
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))``; hook ``act`` for the MLP neurons."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel scale ``gamma`` of a residual branch (DeiT-III, CaiT-style)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool = True,
                 layer_scale: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT / DeiT classifier with timm's module names; ``forward`` gives logits (or pooled features without a head).

    ``global_pool``: ``"token"`` (the class token, the default when there is one) or ``"avg"`` (mean of the patch
    tokens, with ``fc_norm`` instead of ``norm``).  ``distilled`` adds DeiT's ``dist_token`` and ``head_dist``.
    ``embed_prefix``: whether ``pos_embed`` covers the prefix tokens too (timm's default; DeiT-III: False).
    ``fc_norm``: normalise the pooled features (``fc_norm``) instead of the tokens (``norm``); default: when
    averaging.
    """

    def __init__(self, image_size: Union[int, Sequence[int]] = 224, patch_size: Union[int, Sequence[int]] = 16,
                 in_chans: int = 3, num_classes: int = 1000, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_hidden: Optional[int] = None, qkv_bias: bool = True,
                 class_token: bool = True, distilled: bool = False, global_pool: str = "token",
                 embed_prefix: bool = True, layer_scale: bool = False, fc_norm: Optional[bool] = None) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs a class token")
        if distilled and not class_token:
            raise ValueError("a distilled (DeiT) model has a class token")
        self.patch_embed = PatchEmbed(_pair(image_size), _pair(patch_size), in_chans, embed_dim)
        self.num_prefix_tokens = int(class_token) + int(distilled)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        n = self.patch_embed.grid_size[0] * self.patch_embed.grid_size[1]
        self.embed_prefix = embed_prefix
        self.pos_embed = nn.Parameter(torch.zeros(1, n + (self.num_prefix_tokens if embed_prefix else 0), embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_hidden or 4 * embed_dim, qkv_bias, layer_scale)
                                      for _ in range(depth)])
        use_fc_norm = global_pool == "avg" if fc_norm is None else fc_norm
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LN_EPS) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = (nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()) if distilled \
            else None
        self.global_pool, self.distilled = global_pool, distilled
        self.num_classes, self.embed_dim, self.num_heads, self.depth = num_classes, embed_dim, num_heads, depth
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for token in (self.cls_token, self.dist_token):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)

    @property
    def image_size(self) -> Pair:
        return self.patch_embed.image_size

    @property
    def grid_size(self) -> Pair:
        return self.patch_embed.grid_size

    def tokens(self, x: Tensor) -> Tensor:
        """The normalised token sequence ``[B, P + N, D]`` after the last block (``norm`` applied)."""
        x = self.patch_embed(x)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        if self.embed_prefix:
            x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        else:
            x = torch.cat(prefix + [x + self.pos_embed], dim=1)
        return self.norm(self.blocks(x))

    def features(self, x: Tensor) -> Tensor:
        """Pooled features ``[B, D]`` (DeiT distilled: the mean of the class and distillation tokens)."""
        t = self.tokens(x)
        if self.distilled:
            return (t[:, 0] + t[:, 1]) / 2
        pooled = t[:, 0] if self.global_pool == "token" else t[:, self.num_prefix_tokens:].mean(1)
        return self.fc_norm(pooled)

    def forward(self, x: Tensor) -> Tensor:
        t = self.tokens(x)
        if self.distilled:
            assert self.head_dist is not None
            return (self.head(t[:, 0]) + self.head_dist(t[:, 1])) / 2
        pooled = t[:, 0] if self.global_pool == "token" else t[:, self.num_prefix_tokens:].mean(1)
        return self.head(self.fc_norm(pooled))

    def layer_layouts(self) -> Dict[str, Layout]:
        """Layouts of the layers worth hooking: blocks, their attention and MLP neurons, the final norm."""
        h, w = self.grid_size
        p = self.num_prefix_tokens
        lay = Layout("tokens_cls", h, w, p) if p else Layout("tokens", h, w)
        out: Dict[str, Layout] = {}
        for i in range(len(self.blocks)):
            out[f"blocks.{i}"] = lay
            out[f"blocks.{i}.attn"] = lay
            out[f"blocks.{i}.mlp.act"] = lay
        if isinstance(self.norm, nn.LayerNorm):
            out["norm"] = lay
        return out

    def layer_names(self) -> List[str]:
        """Residual-stream layers ``blocks.{i}``, in forward order (MLP neurons: ``blocks.{i}.mlp.act``)."""
        return [f"blocks.{i}" for i in range(len(self.blocks))]


def heads_for(embed_dim: int) -> int:
    """Number of heads for ``embed_dim`` by the rule in the module docstring; raises if it gives none."""
    if embed_dim in STANDARD_HEADS:
        return STANDARD_HEADS[embed_dim]
    if embed_dim % 64 == 0:
        return embed_dim // 64
    raise ValueError(f"cannot tell the number of attention heads of a ViT with embed dim {embed_dim} (not a "
                     "standard size nor a multiple of 64): pass num_heads=")


_UNSUPPORTED = {"reg_token": "register tokens", "norm_pre": "a pre-norm (CLIP-style)",
                "attn_pool.": "attention pooling", ".attn.q_norm.": "query/key normalisation",
                "patch_embed.backbone.": "a hybrid CNN stem", ".attn.norm.": "attention output normalisation"}


def vit_from_state_dict(state: Mapping[str, Tensor], num_heads: Optional[int] = None,
                        image_size: Optional[Union[int, Sequence[int]]] = None) -> VisionTransformer:
    """Build the ViT / DeiT that a timm-layout state dict implies, load it strictly and return it in eval mode.

    Read from the weights: embed dim, depth, patch size, input channels, MLP width, qkv bias, classes, class and
    distillation tokens, layer scale, pooling (``fc_norm`` or no class token -> average, else the class token),
    and the image size (from ``pos_embed``:
    a square grid of patches; pass ``image_size`` for a non-square one).  ``num_heads``: see the module docstring.
    Raises :class:`~ganviz.checkpoints.CheckpointError` naming what does not fit.
    """
    from ..checkpoints import CheckpointError, load_into, strip_prefixes

    state = strip_prefixes(state)
    need = ("patch_embed.proj.weight", "pos_embed", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"not a timm-layout ViT state dict: no {', '.join(missing)} "
                              f"(found: {', '.join(list(state)[:6])})")
    for marker, what in _UNSUPPORTED.items():
        if any(marker in k if marker.startswith(".") else k.startswith(marker) for k in state):
            raise CheckpointError(f"this ViT has {what} ({marker.strip('.')} keys), which ganviz's ViT does not "
                                  "build")
    proj = state["patch_embed.proj.weight"]
    embed_dim, in_chans = int(proj.shape[0]), int(proj.shape[1])
    patch = (int(proj.shape[2]), int(proj.shape[3]))
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    class_token, distilled = "cls_token" in state, "dist_token" in state
    prefix = int(class_token) + int(distilled)
    tokens = int(state["pos_embed"].shape[1])
    if image_size is not None:
        size = _pair(image_size)
        n = (size[0] // patch[0]) * (size[1] // patch[1])
        if tokens not in (n, n + prefix):
            raise CheckpointError(f"pos_embed has {tokens} positions, which fits neither {n} patches of {patch} in "
                                  f"a {size} image nor {n} + {prefix} prefix tokens")
        embed_prefix = tokens == n + prefix and prefix > 0
    else:
        side_with, side_without = math.isqrt(max(tokens - prefix, 0)), math.isqrt(tokens)
        if prefix and side_with ** 2 == tokens - prefix and side_with > 0:
            side, embed_prefix = side_with, True
        elif side_without ** 2 == tokens:
            side, embed_prefix = side_without, False
        else:
            raise CheckpointError(f"pos_embed has {tokens} positions: not a square grid of patches (with or without "
                                  f"{prefix} prefix tokens); pass image_size=(height, width)")
        size = (side * patch[0], side * patch[1])
    num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 0
    fc_norm = "fc_norm.weight" in state
    global_pool = "avg" if fc_norm or not class_token else "token"
    model = VisionTransformer(
        image_size=size, patch_size=patch, in_chans=in_chans, num_classes=num_classes, embed_dim=embed_dim,
        depth=depth, num_heads=num_heads or heads_for(embed_dim),
        mlp_hidden=int(state["blocks.0.mlp.fc1.weight"].shape[0]), qkv_bias="blocks.0.attn.qkv.bias" in state,
        class_token=class_token, distilled=distilled, global_pool=global_pool, embed_prefix=embed_prefix,
        layer_scale="blocks.0.ls1.gamma" in state, fc_norm=fc_norm)
    kind = "DeiT distilled" if distilled else "ViT"
    return load_into(model, state, f"a timm-layout {kind} (embed dim {embed_dim}, depth {depth})").eval()


def load_vit(path: Union[str, "os.PathLike[str]"], num_heads: Optional[int] = None,
             image_size: Optional[Union[int, Sequence[int]]] = None) -> VisionTransformer:
    """:func:`vit_from_state_dict` of a checkpoint file, read safely (``model`` / ``state_dict`` wrappers unwrapped)."""
    from ..checkpoints import load_state

    state, _ = load_state(path)
    return vit_from_state_dict(state, num_heads=num_heads, image_size=image_size)
