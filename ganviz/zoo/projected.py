"""A discriminator that judges images in a frozen network's feature space (the Projected GAN idea, Sauer et al. 2021).

    D = ProjectedDiscriminator(load("toy-clip")[0].visual)   # toy-clip's image tower, frozen
    scores = D(images)                                       # (N, K) patch scores, images in [-1, 1]

Pretrained features give the generator useful gradients from the first steps, which is what a CPU run with a few
thousand steps needs.  Each tapped layer is mixed by a fixed random 1x1 conv (so no single feature channel can be
matched alone) and judged by a small spectrally normalised head; one more head judges the pixels, which the
feature network may be blind to (exact colours, the watermark's letters).  Only the heads are trained.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from .arch import MinibatchStd, ToyVGG

__all__ = ["ProjectedDiscriminator", "TAPS"]

TAPS = ("conv2_2", "conv3_3", "conv5_3")
"""The feature layers of a :class:`~ganviz.zoo.arch.ToyVGG` that are judged: 32x32, 16x16 and 8x8 maps."""


def _head(cin: int, downsamples: int, width: int = 128) -> nn.Sequential:
    """Stride-2 4x4 convs down to 8x8 (``downsamples`` of them), a minibatch-std channel (the batch's diversity: a
    head that sees one image at a time lets the generator collapse onto a few scenes), a 3x3 conv and a 1x1 conv to
    one score per cell."""
    layers: list[nn.Module] = []
    for _ in range(downsamples):
        layers += [spectral_norm(nn.Conv2d(cin, width, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        cin = width
    layers += [MinibatchStd(), spectral_norm(nn.Conv2d(cin + 1, width, 3, padding=1)), nn.LeakyReLU(0.2),
               spectral_norm(nn.Conv2d(width, 1, 1))]
    return nn.Sequential(*layers)


class ProjectedDiscriminator(nn.Module):
    """Patch scores of images in [-1, 1] from frozen ``features`` (a ToyVGG) at :data:`TAPS` plus the pixels."""

    def __init__(self, features: ToyVGG, taps: tuple[str, ...] = TAPS, mix: int = 64, seed: int = 0):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        names = [n for n, _ in features.named_children()]
        missing = set(taps) - set(names)
        if not taps or missing:
            raise KeyError(f"the feature network has no layer {sorted(missing)}; it has {names}")
        self.taps = tuple(sorted(taps, key=names.index))  # in the order the network computes them
        with torch.no_grad():
            sizes = {name: (x.shape[1], x.shape[2]) for name, x in self._tapped(torch.zeros(1, 3, 64, 64))}
        g = torch.Generator().manual_seed(seed)
        self.mix = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for name, (c, h) in sizes.items():
            conv = nn.Conv2d(c, mix, 1, bias=False)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / c ** 0.5)
            self.mix[name] = conv.requires_grad_(False)
            self.heads[name] = _head(mix, max(0, (h // 8).bit_length() - 1))
        self.pixels = _head(3, 3, width=64)

    def _tapped(self, x: torch.Tensor):
        for name, module in self.features.named_children():
            x = module(x)
            if name in self.taps:
                yield name, x
            if name == self.taps[-1]:
                return

    def train(self, mode: bool = True) -> "ProjectedDiscriminator":
        super().train(mode)
        self.features.eval()  # frozen: BatchNorm keeps its statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = [self.pixels(x).flatten(1)]
        for name, f in self._tapped(x):
            scores.append(self.heads[name](self.mix[name](f)).flatten(1))
        return torch.cat(scores, 1)
