"""CLIP with a ViT image tower in open_clip's (and OpenAI's) state-dict layout, in plain PyTorch (no open_clip).

    model = clip_from_state_dict(state)         # sizes read from the weights
    img = model.encode_image(normalised_images) # (N, 3, S, S) -> (N, D)
    txt = model.encode_text(token_ids)          # (N, 77) BPE ids, end-of-text the largest id -> (N, D)

Keys: ``visual.conv1`` (patch conv, no bias), ``visual.class_embedding`` ``[W]``, ``visual.positional_embedding``
``[1 + P, W]``, ``visual.ln_pre``, ``visual.transformer.resblocks.{i}`` (``ln_1``, ``attn.in_proj_weight``
``[3W, W]`` / ``in_proj_bias``, ``attn.out_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``), ``visual.ln_post``,
``visual.proj`` ``[W, D]``; the text tower: ``token_embedding``, ``positional_embedding`` ``[77, W]``,
``transformer.resblocks.{i}`` (causal attention), ``ln_final``, ``text_projection`` ``[W, D]``; ``logit_scale``.
The image embedding is ``ln_post(class token) @ proj``, the text embedding ``ln_final(x)[end-of-text] @
text_projection`` where end-of-text is the position of the largest token id (as in OpenAI's code).

Not readable from the weights: the number of heads (``width // 64``, as every published CLIP) and the MLP's
activation: QuickGELU (``x * sigmoid(1.702 x)``) for OpenAI's checkpoints and ``-quickgelu`` open_clip models,
GELU for the others (``quick_gelu=False``).  ResNet image towers (``visual.layer1`` ...) are not supported.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor, nn

__all__ = ["CLIP", "VisionTower", "Transformer", "ResidualBlock", "QuickGELU", "clip_from_state_dict"]


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, quick_gelu: bool):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))`` (``nn.MultiheadAttention`` key names)."""

    def __init__(self, width: int, heads: int, hidden: int, quick_gelu: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = _Mlp(width, hidden, quick_gelu)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, hidden: int, quick_gelu: bool):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualBlock(width, heads, hidden, quick_gelu) for _ in range(layers)])

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTower(nn.Module):
    def __init__(self, image_size: int, patch: int, width: int, layers: int, heads: int, hidden: int,
                 embed_dim: int, quick_gelu: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((image_size // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, hidden, quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, embed_dim))
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype))
        return self.ln_post(self.transformer(x)[:, 0]) @ self.proj


class CLIP(nn.Module):
    """An open_clip-layout CLIP (ViT image tower); ``forward`` is the image tower."""

    def __init__(self, embed_dim: int, image_size: int, patch: int, vision_width: int, vision_layers: int,
                 vocab_size: int, context_length: int, text_width: int, text_layers: int,
                 vision_heads: Optional[int] = None, text_heads: Optional[int] = None, quick_gelu: bool = True,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.visual = VisionTower(image_size, patch, vision_width, vision_layers,
                                  vision_heads or max(vision_width // 64, 1), int(vision_width * mlp_ratio),
                                  embed_dim, quick_gelu)
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, text_width))
        self.transformer = Transformer(text_width, text_layers, text_heads or max(text_width // 64, 1),
                                       int(text_width * mlp_ratio), quick_gelu)
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.zeros(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))
        self.register_buffer("attn_mask", torch.full((context_length, context_length), float("-inf")).triu(1),
                             persistent=False)

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    def encode_image(self, x: Tensor) -> Tensor:
        return self.visual(x)

    def encode_text(self, tokens: Tensor) -> Tensor:
        n = tokens.shape[1]
        if n > self.context_length:
            raise ValueError(f"texts of {n} tokens; this CLIP reads at most {self.context_length}")
        x = self.token_embedding(tokens) + self.positional_embedding[:n]
        x = self.ln_final(self.transformer(x, self.attn_mask[:n, :n]))
        return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ self.text_projection

    def forward(self, x: Tensor) -> Tensor:
        return self.encode_image(x)


def _count(state: Mapping[str, Tensor], prefix: str) -> int:
    blocks = {k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}
    return len(blocks)


def clip_from_state_dict(state: Mapping[str, Tensor], quick_gelu: bool = True, vision_heads: Optional[int] = None,
                         text_heads: Optional[int] = None) -> CLIP:
    """Build the CLIP that an open_clip-layout state dict implies, load it strictly and return it in eval mode."""
    from ..checkpoints import CheckpointError, load_into

    if "visual.layer1.0.conv1.weight" in state or "visual.attnpool.positional_embedding" in state:
        raise CheckpointError("this CLIP has a ResNet image tower (visual.layer1 ..., attnpool); only ViT image "
                              "towers (visual.conv1 + visual.transformer) are supported")
    needed = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
              "positional_embedding", "text_projection", "visual.transformer.resblocks.0.mlp.c_fc.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"not an open_clip-layout CLIP state dict: missing {', '.join(missing)} (found "
                              f"{', '.join(list(state)[:6])} ...)")
    conv = state["visual.conv1.weight"]
    vision_width, patch = int(conv.shape[0]), int(conv.shape[-1])
    grid = int(round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5))
    hidden = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    model = CLIP(embed_dim=int(state["visual.proj"].shape[1]), image_size=grid * patch, patch=patch,
                 vision_width=vision_width, vision_layers=_count(state, "visual.transformer.resblocks."),
                 vocab_size=int(state["token_embedding.weight"].shape[0]),
                 context_length=int(state["positional_embedding"].shape[0]),
                 text_width=int(state["token_embedding.weight"].shape[1]),
                 text_layers=_count(state, "transformer.resblocks."), vision_heads=vision_heads,
                 text_heads=text_heads, quick_gelu=quick_gelu, mlp_ratio=hidden / vision_width)
    state = {k: v for k, v in state.items() if k != "attn_mask" and not k.endswith(".attn_mask")}
    return load_into(model, state, f"an open_clip-layout CLIP (ViT width {vision_width}, patch {patch})").eval()
