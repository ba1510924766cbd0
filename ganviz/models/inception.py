"""Inception-v3 with torchvision's module names, built without torchvision; also the FID variant of pytorch-fid.

Module names follow ``torchvision/models/inception.py`` (``Conv2d_1a_3x3.conv`` / ``.bn``, ``Mixed_5b`` ...
``Mixed_7c`` with their ``branch*`` convs, optional ``AuxLogits``, ``avgpool``, ``dropout``, ``fc``), so a
torchvision-format ``inception_v3`` state dict loads directly, with or without its ``AuxLogits.*`` keys.

``fid=True`` builds the network of pytorch-fid (``src/pytorch_fid/inception.py``, weights
``pt_inception-2015-12-05``, converted from TensorFlow's FID Inception): the same modules with 1008 classes and
no auxiliary head, but the pool branches of ``Mixed_5b-5d``, ``Mixed_6b-6e`` and ``Mixed_7b`` average without
counting the zero padding (``count_include_pad=False``, TensorFlow's behaviour) and ``Mixed_7c``'s pool branch
takes a 3x3 max instead of an average.  ``Mixed_6a`` and ``Mixed_7a`` are unchanged.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["POOLS", "BasicConv2d", "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE",
           "InceptionAux", "Inception3", "inception_v3", "fid_inception_v3", "FID_CLASSES",
           "variant_from_state_dict"]

POOLS = ("avg", "avg_tf", "max")
"""Pool branches of blocks A, C and E: ``avg`` (torchvision, zero padding counted), ``avg_tf`` (padding not
counted, as TensorFlow) and ``max`` (pytorch-fid's last block); all 3x3, stride 1, padding 1."""


def _pool3x3(x: Tensor, kind: str) -> Tensor:
    if kind == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=(kind == "avg"))


def _check_pool(kind: str) -> str:
    if kind not in POOLS:
        raise ValueError(f"unknown pool {kind!r}; pools: {', '.join(POOLS)}")
    return kind


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU; modules ``conv`` and ``bn``."""

    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 (``pool_features`` channels)."""

    def __init__(self, cin: int, pool_features: int, pool: str = "avg") -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_pool3x3(x, self.pool))], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | max-pool 3x3/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convs (``channels_7x7`` inner width): 1x1 | 1x7-7x1 | 7x1-1x7-7x1-1x7 | pool."""

    def __init__(self, cin: int, channels_7x7: int, pool: str = "avg") -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        c7 = channels_7x7
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **row)
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_pool3x3(x, self.pool))], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max-pool 3x3/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with expanded filter banks: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1."""

    def __init__(self, cin: int, pool: str = "avg") -> None:
        super().__init__()
        self.pool = _check_pool(pool)
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, **row)
        self.branch3x3_2b = BasicConv2d(384, 384, **col)
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, **row)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, **col)
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
                          self.branch_pool(_pool3x3(x, self.pool))], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on ``Mixed_6e`` (used in training only): avg-pool 5x5/3 -> 1x1 -> 5x5 -> ``fc``."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Inception3(nn.Module):
    """Inception-v3 (Szegedy et al. 2016) with torchvision's module names; ``forward`` returns the logits.

    ``transform_input``: the input is ImageNet-normalised and is mapped back to [-1, 1] first (what torchvision
    does for its pretrained ``inception_v3``, whose weights expect [-1, 1] images).  ``fid``: pytorch-fid's
    pool branches (see the module docstring).  ``features(x)`` gives the 2048-d pooled features; the same values
    are the output of the ``avgpool`` module (``N x 2048 x 1 x 1``).
    """

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 fid: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes, self.aux_logits = num_classes, aux_logits
        self.transform_input, self.fid = transform_input, fid
        a = c = e1 = "avg_tf" if fid else "avg"
        e2 = "max" if fid else "avg"
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, 32, a)
        self.Mixed_5c = InceptionA(256, 64, a)
        self.Mixed_5d = InceptionA(288, 64, a)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, c)
        self.Mixed_6c = InceptionC(768, 160, c)
        self.Mixed_6d = InceptionC(768, 160, c)
        self.Mixed_6e = InceptionC(768, 192, c)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, e1)
        self.Mixed_7c = InceptionE(2048, e2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)

    def _transform(self, x: Tensor) -> Tensor:
        if not self.transform_input:
            return x
        mean = x.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = x.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5

    def feature_map(self, x: Tensor) -> Tensor:
        """``Mixed_7c``'s output (``N x 2048 x 8 x 8`` at 299x299)."""
        x = self._transform(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return x

    def features(self, x: Tensor) -> Tensor:
        """The 2048-d pooled features (the input of ``fc``)."""
        return torch.flatten(self.avgpool(self.feature_map(x)), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.features(x)))


def inception_v3(num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False) -> Inception3:
    """torchvision's ``inception_v3`` layout (27,161,264 parameters with the auxiliary head and 1000 classes)."""
    return Inception3(num_classes, aux_logits, transform_input)


def fid_inception_v3() -> Inception3:
    """pytorch-fid's FID Inception (``pt_inception-2015-12-05`` weights): 1008 classes, no aux head, TF pools."""
    return Inception3(FID_CLASSES, aux_logits=False, fid=True)


FID_CLASSES = 1008
"""Output classes of the TensorFlow FID Inception (``pt_inception-2015-12-05``); torchvision's has 1000."""


def variant_from_state_dict(state: Mapping[str, Tensor]) -> str:
    """``"fid"`` (pytorch-fid) or ``"torchvision"``, from the ``fc.weight`` shape (1008 vs 1000 classes)."""
    fc = state.get("fc.weight")
    if fc is None or "Conv2d_1a_3x3.conv.weight" not in state:
        keys = sorted(state)
        raise ValueError("not an Inception-v3 state dict (torchvision or pytorch-fid layout): it has no "
                         f"{'fc.weight' if fc is None else 'Conv2d_1a_3x3.conv.weight'}; its keys begin "
                         f"{', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}")
    if tuple(fc.shape) == (FID_CLASSES, 2048):
        return "fid"
    if tuple(fc.shape) == (1000, 2048):
        return "torchvision"
    raise ValueError(f"cannot tell the Inception variant from fc.weight of shape {tuple(fc.shape)} (expected "
                     f"(1000, 2048) for torchvision's or ({FID_CLASSES}, 2048) for pytorch-fid's); pass variant=")


__all__: List[str] = ["Inception3", "BasicConv2d", "InceptionA", "InceptionB", "InceptionC", "InceptionD",
                      "InceptionE", "InceptionAux", "inception_v3", "fid_inception_v3", "variant_from_state_dict",
                      "FID_CLASSES", "POOLS"]
