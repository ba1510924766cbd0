"""Architectures of the bundled toy-world models (small, but named like the real networks they stand in for)."""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from ..models.vit import VisionTransformer

__all__ = ["ToyVGG", "ToyGenerator", "ToyEncoder", "MinibatchStd", "ToyDiscriminator", "ToySegmenter", "toy_vit",
           "TOY_VIT", "ToyTextEncoder", "ToyCLIP"]


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                     bn=nn.BatchNorm2d(cout), relu=nn.ReLU(inplace=True)))


class ToyVGG(nn.Module):
    """A VGG-style scene classifier for 64x64 images with VGG's layer names (``conv1_1`` ... ``conv5_3``).

    Four blocks halve the resolution (64, 32, 16, 8); ``conv4_*`` and ``conv5_*`` both work at 8x8 so that the
    last conv layer (``conv5_3``, 192 units) has unit maps fine enough to dissect.  A global average pool and one
    linear layer (``fc``) give the class logits, so the logits are a linear read-out of conv5_3 units.
    """

    widths = {1: 16, 2: 32, 3: 64, 4: 128, 5: 192}
    depths = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}

    def __init__(self, num_classes: int = 8):
        super().__init__()
        cin = 3
        for b in range(1, 6):
            for k in range(1, self.depths[b] + 1):
                self.add_module(f"conv{b}_{k}", _conv_bn_relu(cin, self.widths[b]))
                cin = self.widths[b]
            if b <= 3:
                self.add_module(f"pool{b}", nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(cin, num_classes)

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """``conv5_3``'s output: everything before the average pool."""
        for name, module in self.named_children():
            if name == "avgpool":
                break
            x = module(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(self.conv_features(x)), 1)))


class ToyGenerator(nn.Module):
    """A Progressive-GAN-style generator: ``layer1`` ... ``layer8`` from a 128-d latent to a 64x64 RGB image.

    Resolutions 4, 4, 8, 8, 16, 16, 32, 64 with widths 256, 256, 256, 256, 128, 128, 96, 64 (BatchNorm + ReLU;
    upsampling is nearest-neighbour followed by the block's 3x3 conv, which avoids transposed-conv checkerboards);
    ``output`` is a 3x3 conv to RGB followed by tanh, so images are in [-1, 1].
    """

    resolutions = (4, 4, 8, 8, 16, 16, 32, 64)
    widths = (256, 256, 256, 256, 128, 128, 64, 32)

    def __init__(self, z_dim: int = 128, widths: tuple[int, ...] | None = None):
        super().__init__()
        self.z_dim = z_dim
        if widths is not None:
            self.widths = tuple(widths)
        w0 = self.widths[0]
        self.layer1 = nn.Sequential(OrderedDict(
            fc=nn.Linear(z_dim, w0 * 16, bias=False), unflatten=nn.Unflatten(1, (w0, 4, 4)),
            bn=nn.BatchNorm2d(w0), relu=nn.ReLU(inplace=True)))
        for i in range(1, len(self.widths)):
            block = _conv_bn_relu(self.widths[i - 1], self.widths[i])
            if self.resolutions[i] > self.resolutions[i - 1]:
                block = nn.Sequential(OrderedDict([("upsample", nn.Upsample(scale_factor=2, mode="nearest")),
                                                   *block.named_children()]))
            self.add_module(f"layer{i + 1}", block)
        self.output = nn.Sequential(OrderedDict(conv=nn.Conv2d(self.widths[-1], 3, 3, padding=1), tanh=nn.Tanh()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.reshape(z.shape[0], -1)
        for module in self.children():
            x = module(x)
        return x


class ToyEncoder(nn.Module):
    """Inverts :class:`ToyGenerator` in two parts, as the generator is built: ``features`` maps a 64x64 image to
    ``layer4``'s 256x8x8 feature map, ``latent`` maps that feature map to ``z``; ``forward`` is their composition.
    """

    feature_layer = "layer4"

    def __init__(self, z_dim: int = 128, widths: tuple[int, ...] = (32, 64, 128, 256), feature_channels: int = 256):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, widths[0])]
        for a, b in zip(widths[:-1], widths[1:]):  # 64 -> 32 -> 16 -> 8
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       _conv_bn_relu(b, b)]
        layers += [nn.Conv2d(widths[-1], feature_channels, 1), nn.ReLU()]  # layer4 features are post-ReLU
        self.features = nn.Sequential(*layers)
        self.latent = nn.Sequential(
            _conv_bn_relu(feature_channels, 256), nn.Conv2d(256, 256, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(256 * 16, z_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent(self.features(x))


class MinibatchStd(nn.Module):
    """Append the mean standard deviation of features across groups of samples as one channel (Progressive GAN):
    the discriminator sees the batch's diversity, which discourages the generator from dropping modes."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group, n)
        if n % g:
            g = 1
        y = x.float().reshape(g, -1, c, h, w)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # one value per group
        y = y.to(x.dtype).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], 1)


class ToyDiscriminator(nn.Module):
    """The generator's mirror for training: spectral-normalised convs with LeakyReLU, 64x64 -> one score.

    Options for longer runs (off by default, which is the discriminator the shipped toy-gan was trained with):
    ``deep`` adds a 3x3 conv before each stride-2 4x4 conv; ``mbstd`` appends a minibatch standard-deviation
    channel and one more 3x3 conv before the linear head at 4x4.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256, 256), mbstd: bool = False, deep: bool = False):
        super().__init__()
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, widths[0], 3, padding=1)), nn.LeakyReLU(0.2)]
        for a, b in zip(widths[:-1], widths[1:]):
            if deep:
                layers += [spectral_norm(nn.Conv2d(a, a, 3, padding=1)), nn.LeakyReLU(0.2)]
            layers += [spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        if mbstd:
            layers += [MinibatchStd(), spectral_norm(nn.Conv2d(widths[-1] + 1, widths[-1], 3, padding=1)),
                       nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(widths[-1] * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1)).squeeze(1)


class ToySegmenter(nn.Module):
    """A small U-Net-style encoder-decoder predicting a concept label for every pixel of a 64x64 image."""

    def __init__(self, num_concepts: int = 16, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        a, b, c = widths
        self.enc1 = nn.Sequential(_conv_bn_relu(3, a), _conv_bn_relu(a, a))
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), _conv_bn_relu(a, b), _conv_bn_relu(b, b))
        self.enc3 = nn.Sequential(nn.MaxPool2d(2), _conv_bn_relu(b, c), _conv_bn_relu(c, c))
        self.up3 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec2 = nn.Sequential(_conv_bn_relu(c + b, b), _conv_bn_relu(b, b))
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = nn.Sequential(_conv_bn_relu(b + a, a), _conv_bn_relu(a, a))
        self.classifier = nn.Conv2d(a, num_concepts, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([self.up3(e3), e2], 1))
        d1 = self.dec1(torch.cat([self.up2(d2), e1], 1))
        return self.classifier(d1)


TOY_VIT = dict(image_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4)
"""The toy ViT's size: 8x8 patches of a 64x64 image (an 8x8 token grid, like ``conv5_3``'s maps), 4 blocks."""


def toy_vit(num_classes: int = 8) -> VisionTransformer:
    """A small ViT scene classifier with timm's layer names (``blocks.{i}``, ``blocks.{i}.mlp.act``), class token."""
    return VisionTransformer(num_classes=num_classes, **TOY_VIT)


class ToyTextEncoder(nn.Module):
    """Words -> one embedding: token and position embeddings, pre-norm transformer blocks, a final LayerNorm,
    the mean over the non-padding tokens and a linear projection (CLIP's text tower, small)."""

    def __init__(self, vocab_size: int, width: int = 128, depth: int = 2, heads: int = 4, max_len: int = 32,
                 embed_dim: int = 128):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width, padding_idx=0)
        self.positional_embedding = nn.Parameter(torch.randn(max_len, width) * 0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        self.projection = nn.Linear(width, embed_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = tokens != 0
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        x = self.ln_final(self.transformer(x, src_key_padding_mask=~keep))
        w = keep.unsqueeze(-1).to(x.dtype)
        return self.projection((x * w).sum(1) / w.sum(1).clamp(min=1))


class ToyCLIP(nn.Module):
    """A toy text-image model trained contrastively (CLIP): ``visual`` is a :class:`ToyVGG` whose ``fc`` gives
    the image embedding (its conv layers keep VGG's names), ``text`` a :class:`ToyTextEncoder`, ``dense`` a 1x1
    conv that maps ``conv5_3`` at each place to that place's embedding (it starts as ``fc``; the image embedding
    does not use it).  ``forward`` is the image tower, so the model can be traced and dissected like a
    classifier."""

    def __init__(self, vocab_size: int, embed_dim: int = 128):
        super().__init__()
        self.visual = ToyVGG(embed_dim)
        self.text = ToyTextEncoder(vocab_size, embed_dim=embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.dense = nn.Conv2d(self.visual.fc.in_features, embed_dim, 1)
        self.reset_dense()

    @torch.no_grad()
    def reset_dense(self) -> None:
        """Make ``dense`` apply ``fc`` at every place (MaskCLIP's local embeddings: their average over the places is
        what the image embedding is made from, as the average pool comes before ``fc``)."""
        self.dense.weight.copy_(self.visual.fc.weight[:, :, None, None])
        self.dense.bias.copy_(self.visual.fc.bias)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> unit-length embeddings."""
        return nn.functional.normalize(self.visual(x).float(), dim=-1)

    def encode_image_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> local embeddings ``(N, D, h, w)`` before normalisation: ``dense`` at every place of
        ``conv5_3`` (an 8x8 grid for 64x64 images)."""
        return self.dense(self.visual.conv_features(x))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (0 pads) -> unit-length embeddings."""
        return nn.functional.normalize(self.text(tokens).float(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)
