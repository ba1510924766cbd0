"""StyleGAN2 generator in the checkpoint layout of rosinality's ``stylegan2-pytorch`` (``model.py``), pure PyTorch.

Keys: ``style.{1..n_mlp}.weight|bias`` (mapping MLP after a pixel norm at ``style.0``), ``input.input``
(constant 4x4), ``conv1.*`` and ``to_rgb1.*`` at 4x4, then per resolution 8 ... size two ``convs.{2k}`` (upsampling)
and ``convs.{2k+1}`` with one ``to_rgbs.{k}``; each styled conv has ``conv.weight`` ``(1, out, in, 3, 3)``,
``conv.modulation.weight|bias``, ``noise.weight`` and ``activate.bias``; upsampling convs keep their blur kernel
``conv.blur.kernel`` and ``to_rgbs.{k}.upsample.kernel``; ``noises.noise_{i}`` are the fixed noise maps.
Training checkpoints wrap it as ``{"g_ema": ..., "g": ..., "d": ..., "args": ...}``; converted official weights
as ``{"g_ema": ..., "latent_avg": ...}``.

Forward semantics follow the port: equalised learning rate (weights scaled by ``1/sqrt(fan_in)``, the mapping
network's by ``lr_mul = 0.01``), modulated convolution with demodulation, noise injection, bias + leaky ReLU
(0.2) times ``sqrt(2)``, transposed-conv upsampling followed by a [1, 3, 3, 1] blur (FIR filtering), and skip
to-RGB outputs.  ``forward(z)`` maps ``z`` through the MLP, truncates towards the mean latent when
``truncation < 1``, and synthesises with the stored noise maps (deterministic) unless ``randomize_noise``.
The synthesis layers ``conv1``, ``convs.0`` ... are the units to dissect and paint.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import CheckpointError

__all__ = ["SQRT2", "channel_table", "blur_kernel_2d", "upfirdn2d", "PixelNorm", "EqualLinear", "Blur", "Upsample",
           "ModulatedConv2d", "NoiseInjection", "FusedLeakyReLU", "StyledConv", "ToRGB", "ConstantInput",
           "StyleGAN2Generator", "config_from_state_dict", "from_state_dict"]

SQRT2 = math.sqrt(2.0)


def channel_table(channel_multiplier: int = 2) -> Dict[int, int]:
    """Widths per resolution of the official configuration (``channel_multiplier`` 2 for config-f)."""
    cm = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}


def blur_kernel_2d(taps: Sequence[float]) -> Tensor:
    """Separable FIR kernel from 1-d ``taps``, normalised to sum 1."""
    k = torch.tensor(list(taps), dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad ``(before, after)`` on both axes, FIR-filter with ``kernel``, downsample."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = int(pad[0]), int(pad[1])
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0):x.shape[2] - max(-p1, 0), max(-p0, 0):x.shape[3] - max(-p1, 0)]
    k = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; ``activation=True`` adds the scaled leaky ReLU."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(cin), lr_mul, activation

    def forward(self, x: Tensor) -> Tensor:
        if self.activation:
            return F.leaky_relu(F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul, 0.2) * SQRT2
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """FIR blur after a transposed conv (kernel scaled by ``factor**2`` to keep the gain)."""

    def __init__(self, taps: Sequence[float], pad: Sequence[int], factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel_2d(taps) * factor ** 2)
        self.pad = tuple(pad)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip path."""

    def __init__(self, taps: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel_2d(taps) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.factor, self.pad = factor, ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per sample by a style (and demodulated to unit output variance)."""

    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.cin, self.cout, self.kernel_size = cin, cout, kernel
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.scale = 1 / math.sqrt(cin * kernel ** 2)
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            p = (len(taps) - 2) - (kernel - 1)
            self.blur = Blur(taps, ((p + 1) // 2 + 1, p // 2 + 1), factor=2)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        n, _, h, w = x.shape
        s = self.modulation(style).view(n, 1, self.cin, 1, 1)
        weight = self.weight * self.scale * s  # (N, out, in, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8).view(n, self.cout, 1, 1, 1)
        k = self.kernel_size
        x = x.reshape(1, n * self.cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * self.cin, self.cout, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=n)
            return self.blur(out.view(n, self.cout, out.shape[-2], out.shape[-1]))
        out = F.conv2d(x, weight.reshape(n * self.cout, self.cin, k, k), padding=k // 2, groups=n)
        return out.view(n, self.cout, out.shape[-2], out.shape[-1])


class NoiseInjection(nn.Module):
    """Add per-pixel noise times a learned scalar ``weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Bias, leaky ReLU (0.2), times sqrt(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * SQRT2


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + activation; its output is the feature map dissected and painted."""

    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool = False,
                 taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample=upsample, taps=taps)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x: Tensor, style: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB plus bias, added to the upsampled skip image."""

    def __init__(self, cin: int, style_dim: int, upsample: bool = True, taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(taps)
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Optional[Tensor] = None) -> Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator of ``size`` x ``size`` images in [-1, 1] (unclamped), rosinality's module names.

    ``channels`` maps resolution to width (default: the official table for ``channel_multiplier``).  ``z_dim`` is
    ``style_dim``.  ``truncation`` (default 1, none) and the mean latent ``w_avg`` (not in the state dict; set by
    :meth:`compute_mean_latent` or from a checkpoint's ``latent_avg``) apply in :meth:`forward`.
    """

    def __init__(self, size: int = 256, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channels: Optional[Mapping[int, int]] = None, lr_mlp: float = 0.01,
                 taps: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        log_size = int(math.log2(size))
        if size < 8 or 2 ** log_size != size:
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        table = dict(channel_table(channel_multiplier)) if channels is None else {int(k): int(v) for k, v in
                                                                                   channels.items()}
        self.size, self.style_dim, self.z_dim, self.log_size = size, style_dim, style_dim, log_size
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                                                  for _ in range(n_mlp)])
        self.input = ConstantInput(table[4])
        self.conv1 = StyledConv(table[4], table[4], style_dim, taps=taps)
        self.to_rgb1 = ToRGB(table[4], style_dim, upsample=False)
        self.num_layers = (log_size - 2) * 2 + 1
        self.n_latent = log_size * 2 - 2
        self.convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        cin = table[4]
        for res in (2 ** i for i in range(3, log_size + 1)):
            self.convs.append(StyledConv(cin, table[res], style_dim, upsample=True, taps=taps))
            self.convs.append(StyledConv(table[res], table[res], style_dim, taps=taps))
            self.to_rgbs.append(ToRGB(table[res], style_dim, taps=taps))
            cin = table[res]
        self.register_buffer("w_avg", torch.zeros(style_dim), persistent=False)
        self.truncation = 1.0
        self.randomize_noise = False

    # -- latents ------------------------------------------------------------------------------------------------
    def mapping(self, z: Tensor) -> Tensor:
        """``w = style(z)``."""
        return self.style(z.reshape(z.shape[0], -1))

    @torch.no_grad()
    def compute_mean_latent(self, n: int = 4096, seed: int = 0) -> Tensor:
        """Set ``w_avg`` to the mean of ``mapping(z)`` over ``n`` standard-normal ``z`` (seeded) and return it."""
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        w = torch.cat([self.mapping(c.to(self.w_avg.device)) for c in z.split(1024)]).mean(0)
        self.w_avg.copy_(w)
        return self.w_avg

    def truncate(self, w: Tensor, truncation: Optional[float] = None) -> Tensor:
        """``w_avg + t (w - w_avg)``."""
        t = self.truncation if truncation is None else float(truncation)
        return w if t >= 1 else self.w_avg + t * (w - self.w_avg)

    # -- synthesis ----------------------------------------------------------------------------------------------
    def synthesis(self, w: Tensor) -> Tensor:
        """Images from ``w`` of shape ``(N, style_dim)`` (one style for every layer) or ``(N, n_latent, style_dim)``."""
        if w.ndim == 2:
            w = w[:, None].expand(-1, self.n_latent, -1)
        noise: List[Optional[Tensor]] = ([None] * self.num_layers if self.randomize_noise else
                                         [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)])
        out = self.conv1(self.input(w.shape[0]), w[:, 0], noise[0])
        skip = self.to_rgb1(out, w[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, w[:, i], noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, w[:, i + 1], noise[2 * k + 2])
            skip = to_rgb(out, w[:, i + 2], skip)
            i += 2
        return skip

    def forward(self, z: Tensor, truncation: Optional[float] = None) -> Tensor:
        return self.synthesis(self.truncate(self.mapping(z), truncation))

    def layer_resolutions(self) -> Dict[str, int]:
        """``{"conv1": 4, "convs.0": 8, "convs.1": 8, ...}``."""
        out = {"conv1": 4}
        out.update({f"convs.{j}": 2 ** (3 + j // 2) for j in range(len(self.convs))})
        return out


def config_from_state_dict(state: Mapping[str, Tensor]) -> Dict:
    """``size``, ``style_dim``, ``n_mlp`` and per-resolution ``channels`` implied by a rosinality state dict."""
    if "input.input" not in state or "conv1.conv.weight" not in state:
        raise CheckpointError("not a StyleGAN2 (rosinality) state dict: expected keys input.input, "
                              f"conv1.conv.weight, convs.0..., to_rgbs.0... (found: {', '.join(list(state)[:6])})")
    mlp = sorted(int(m.group(1)) for k in state for m in [re.match(r"style\.(\d+)\.weight$", k)] if m)
    if not mlp:
        raise CheckpointError("the StyleGAN2 state dict has no mapping network keys style.1.weight ...")
    n_rgb = len({int(m.group(1)) for k in state for m in [re.match(r"to_rgbs\.(\d+)\.", k)] if m})
    channels = {4: int(state["input.input"].shape[1])}
    for k in range(n_rgb):
        key = f"convs.{2 * k}.conv.weight"
        if key not in state:
            raise CheckpointError(f"the StyleGAN2 state dict has to_rgbs.{k} but no {key}")
        channels[2 ** (k + 3)] = int(state[key].shape[1])
    return {"size": 2 ** (n_rgb + 2), "style_dim": int(state[f"style.{mlp[0]}.weight"].shape[1]),
            "n_mlp": len(mlp), "channels": channels}


def from_state_dict(state: Mapping[str, Tensor], latent_avg: Optional[Tensor] = None) -> StyleGAN2Generator:
    """Build the generator the state dict implies, load it (keys and shapes checked), set ``w_avg``."""
    from ..checkpoints import load_into

    cfg = config_from_state_dict(state)
    model = StyleGAN2Generator(**cfg)
    load_into(model, state, f"a {cfg['size']}x{cfg['size']} StyleGAN2 generator")
    if latent_avg is not None:
        model.w_avg.copy_(torch.as_tensor(latent_avg).reshape(-1)[:model.style_dim])
    else:
        model.compute_mean_latent()
    return model
