"""Progressive GAN generator in the layout of GAN Dissection's PyTorch conversion of the original checkpoints.

Keys: ``layer{i}.conv.weight`` (no bias) and ``layer{i}.wscale.b`` for ``i = 1 .. N``, then
``output_{R}x{R}.conv.weight`` / ``output_{R}x{R}.wscale.b`` (a 1x1 conv to RGB).  ``layer1`` maps the latent
(as a 1x1 map) to 4x4 with a 4x4 conv (padding 3); odd layers from ``layer3`` on double the resolution (nearest)
before their 3x3 conv.  Every block is pixel norm -> conv -> equalised-lr scale and bias -> leaky ReLU (0.2);
the scale is ``sqrt(2) / k / sqrt(C_in)`` (the output block: ``1 / sqrt(C_in)``, no activation), so the
output is unclamped, nominally in [-1, 1].  Source: ``netdissect/proggan.py`` in CSAILVision/gandissect.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..checkpoints import CheckpointError

__all__ = ["published_sizes", "PixelNorm", "WScale", "Upscale", "ConvBlock", "OutputBlock", "ProgressiveGenerator",
           "progan", "normalise_state_dict", "sizes_from_state_dict", "from_state_dict"]

def published_sizes(resolution: int, fmap_base: int = 8192, fmap_max: int = 512) -> List[int]:
    """``[z_dim, width at 4x4, 8x8, ..., resolution]`` of the original ProGAN configuration
    (``min(fmap_base / 2**stage, fmap_max)``; 512, 512, 512, 512, 512, 256, 128, 64 at 256x256, about 23M weights).
    """
    log2 = int(math.log2(resolution))
    if resolution < 8 or 2 ** log2 != resolution:
        raise ValueError(f"a ProGAN resolution is a power of two >= 8, got {resolution}")
    return [fmap_max] + [min(fmap_base // 2 ** (res - 1), fmap_max) for res in range(2, log2 + 1)]


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit root-mean-square."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class WScale(nn.Module):
    """Equalised learning rate: multiply by a constant, add the per-channel bias ``b``."""

    def __init__(self, channels: int, fan_in: int, gain: float) -> None:
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.b.view(1, -1, 1, 1)


class Upscale(nn.Module):
    """Double the resolution (nearest neighbour)."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


class ConvBlock(nn.Module):
    """``norm`` -> (``up``) -> ``conv`` -> ``wscale`` -> ``relu`` (leaky, 0.2)."""

    def __init__(self, cin: int, cout: int, kernel: int, padding: int, upscale: bool = False) -> None:
        super().__init__()
        self.norm = PixelNorm()
        if upscale:
            self.up = Upscale()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, padding, bias=False)
        self.wscale = WScale(cout, cin, math.sqrt(2) / kernel)
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        if hasattr(self, "up"):
            x = self.up(x)
        return self.relu(self.wscale(self.conv(x)))


class OutputBlock(nn.Module):
    """``norm`` -> 1x1 ``conv`` to RGB -> ``wscale`` (gain 1)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.conv = nn.Conv2d(cin, 3, 1, bias=False)
        self.wscale = WScale(3, cin, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.wscale(self.conv(self.norm(x)))


class ProgressiveGenerator(nn.Sequential):
    """``layer1`` ... ``layerN`` and ``output_RxR``; ``forward(z)`` takes ``z`` of shape ``(N, z_dim)``.

    ``sizes`` is ``[z_dim, width at 4x4, width at 8x8, ...]``; the resolution is ``2 ** len(sizes)``.
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"sizes needs the latent width and at least one stage width, got {sizes}")
        seq: List = [("layer1", ConvBlock(sizes[0], sizes[1], 4, 3)), ("layer2", ConvBlock(sizes[1], sizes[1], 3, 1))]
        for cin, cout in zip(sizes[1:-1], sizes[2:]):
            seq.append((f"layer{len(seq) + 1}", ConvBlock(cin, cout, 3, 1, upscale=True)))
            seq.append((f"layer{len(seq) + 1}", ConvBlock(cout, cout, 3, 1)))
        res = 4 * 2 ** (len(sizes) - 2)
        seq.append((f"output_{res}x{res}", OutputBlock(sizes[-1])))
        super().__init__(OrderedDict(seq))
        self.sizes, self.z_dim, self.resolution = sizes, sizes[0], res
        self.num_layers = len(seq) - 1

    def forward(self, z: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(z.reshape(z.shape[0], -1, 1, 1))

    def layer_resolutions(self) -> Dict[str, int]:
        """``{"layer1": 4, "layer2": 4, "layer3": 8, ...}``."""
        return {f"layer{i}": 4 * 2 ** ((i - 1) // 2) for i in range(1, self.num_layers + 1)}


def progan(resolution: int = 256) -> ProgressiveGenerator:
    """A generator with the original configuration's widths for ``resolution`` (see :func:`published_sizes`)."""
    return ProgressiveGenerator(published_sizes(resolution))


def _renumber_old(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """The older conversion's names (``features.{i}.*``, ``output.*``) -> ``layer{i+1}.*``, ``output_RxR.*``."""
    out: Dict[str, Tensor] = {}
    n = 0
    for k, v in state.items():
        m = re.match(r"features\.(\d+)\.(.*)$", k)
        if m:
            out[f"layer{int(m.group(1)) + 1}.{m.group(2)}"] = v
            n = max(n, int(m.group(1)) + 1)
        elif not k.startswith("output."):
            out[k] = v
    res = 4 * 2 ** ((n - 1) // 2)
    out.update({f"output_{res}x{res}." + k[len("output."):]: v for k, v in state.items() if k.startswith("output.")})
    return out


def _fold_stored_scales(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Fold stored ``*.wscale.scale`` values into the conv weights and drop them.

    The older PyTorch port (``features.{i}`` / ``output`` naming, ptrblck/prog_gans_pytorch_inference) keeps the
    equalised-lr scale as a parameter ``wscale.scale`` (shape ``(1,)``); here it is the constant
    ``gain / sqrt(C_in)``.  Since the scale multiplies the bias-free conv output, ``conv(x, W) * stored`` equals
    ``conv(x, W * stored / constant) * constant``: the file's own scale is kept exactly.
    """
    for key in [k for k in state if k.endswith(".wscale.scale")]:
        prefix = key[:-len("wscale.scale")]
        stored = state.pop(key)
        w = state.get(prefix + "conv.weight")
        if w is None or w.ndim != 4 or stored.numel() != 1:
            raise CheckpointError(f"{key} should be a one-element scale next to a 4-d {prefix}conv.weight")
        gain = 1.0 if prefix.startswith("output") else math.sqrt(2) / w.shape[-1]
        state[prefix + "conv.weight"] = w * (stored.reshape(()).to(w.dtype) / (gain / math.sqrt(w.shape[1])))
    return state


def normalise_state_dict(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Accept the older ``features.{i}`` naming and a bare ``output.`` prefix; return ``layer{i}`` naming.

    Stored ``wscale.scale`` parameters (older port) are folded into the conv weights (see
    :func:`_fold_stored_scales`).
    """
    state = dict(state)
    if "features.0.conv.weight" in state:
        return _fold_stored_scales(_renumber_old(state))
    if any(k.startswith("output.") for k in state):
        n = sum(1 for k in state if re.match(r"layer\d+\.conv\.weight$", k))
        res = 4 * 2 ** ((n - 1) // 2)
        state = {(f"output_{res}x{res}." + k[len("output."):] if k.startswith("output.") else k): v
                 for k, v in state.items()}
    return _fold_stored_scales(state)


def sizes_from_state_dict(state: Mapping[str, Tensor]) -> List[int]:
    """``[z_dim, widths...]`` read from the conv weights ``layer{i}.conv.weight`` (one width per two layers)."""
    sizes: List[int] = []
    i = 0
    while f"layer{i + 1}.conv.weight" in state:
        w = state[f"layer{i + 1}.conv.weight"]
        if w.ndim != 4:
            raise CheckpointError(f"layer{i + 1}.conv.weight should be a conv weight (4-d), got shape {tuple(w.shape)}")
        if i == 0:
            sizes.append(int(w.shape[1]))
        if i % 2 == 0:
            sizes.append(int(w.shape[0]))
        i += 1
    if i < 2:
        raise CheckpointError("not a ProGAN state dict: expected keys layer1.conv.weight, layer2.conv.weight, ... "
                              f"(found: {', '.join(list(state)[:6])})")
    if i % 2:
        raise CheckpointError(f"a ProGAN has an even number of layers; the state dict has layer1 ... layer{i}")
    return sizes


def from_state_dict(state: Mapping[str, Tensor]) -> ProgressiveGenerator:
    """Build the generator the state dict implies and load it (keys and shapes checked)."""
    from ..checkpoints import load_into

    state = normalise_state_dict(state)
    model = ProgressiveGenerator(sizes_from_state_dict(state))
    return load_into(model, state, f"a {model.resolution}x{model.resolution} ProGAN generator")
