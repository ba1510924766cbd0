"""Segmentation networks: DeepLabV3 with torchvision's module names, and a colour segmenter for smoke tests.

DeepLabV3 keys: ``backbone.*`` (a ResNet without ``fc``, layer3 and layer4 dilated), ``classifier.0.convs.{0..4}``
(ASPP: a 1x1 branch, three 3x3 branches at rates 12/24/36, image pooling), ``classifier.0.project.*``,
``classifier.{1,2,4}`` (3x3 conv, BN, 1x1 to classes), and optionally ``aux_classifier.{0,1,4}`` (an FCN head on
layer3, used only in training).  Source: ``torchvision/models/segmentation/deeplabv3.py`` and ``fcn.py``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import resnet

__all__ = ["VOC_CLASSES", "ASPPPooling", "ASPP", "DeepLabV3", "deeplabv3_from_state_dict", "ColorSegmenter"]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
"""The 21 classes of torchvision's DeepLabV3 weights (COCO images, Pascal VOC labels), in output order."""


def _conv_bn_relu(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class ASPPPooling(nn.Sequential):
    """Image-level features: global average, 1x1 conv, BN, ReLU, broadcast back to the map's size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel branches, concatenated and projected to ``cout`` channels."""

    def __init__(self, cin: int, rates: Sequence[int] = (12, 24, 36), cout: int = 256) -> None:
        super().__init__()
        branches = [_conv_bn_relu(cin, cout, 1)] + [_conv_bn_relu(cin, cout, 3, r) for r in rates]
        self.convs = nn.ModuleList(branches + [ASPPPooling(cin, cout)])
        self.project = nn.Sequential(nn.Conv2d(len(self.convs) * cout, cout, 1, bias=False), nn.BatchNorm2d(cout),
                                     nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))


class _Backbone(nn.Module):
    """A ResNet trunk keeping torchvision's names (``conv1`` ... ``layer4``), without ``avgpool``/``fc``."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        net = resnet(depth, replace_stride_with_dilation=(False, True, True))
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))

    def forward(self, x: Tensor) -> Tensor:
        for m in self.children():
            x = m(x)
        return x


class DeepLabV3(nn.Module):
    """DeepLabV3 on a dilated ResNet (output stride 8); ``forward`` returns logits at the input's size."""

    def __init__(self, num_classes: int = 21, depth: int = 50, aux: bool = False) -> None:
        super().__init__()
        self.backbone = _Backbone(depth)
        self.classifier = nn.Sequential(ASPP(2048), nn.Conv2d(256, 256, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(256), nn.ReLU(), nn.Conv2d(256, num_classes, 1))
        if aux:
            self.aux_classifier = nn.Sequential(nn.Conv2d(1024, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256),
                                                nn.ReLU(), nn.Dropout(0.1), nn.Conv2d(256, num_classes, 1))
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def deeplabv3_from_state_dict(state: dict) -> DeepLabV3:
    """Build the DeepLabV3 (ResNet-50 or -101, with or without aux head) the state dict implies, and load it."""
    from ..checkpoints import CheckpointError, load_into

    if "classifier.4.weight" not in state or "backbone.conv1.weight" not in state:
        raise CheckpointError("not a torchvision DeepLabV3 state dict: expected backbone.conv1.weight and "
                              f"classifier.4.weight (found: {', '.join(list(state)[:6])})")
    blocks3 = {int(k.split(".")[2]) for k in state if k.startswith("backbone.layer3.")}
    depth = 101 if len(blocks3) == 23 else 50
    model = DeepLabV3(int(state["classifier.4.weight"].shape[0]), depth, aux="aux_classifier.4.weight" in state)
    return load_into(model, state, f"DeepLabV3-ResNet{depth}")


class ColorSegmenter(nn.Module):
    """A crude stand-in segmenter: every pixel labelled by colour (dark, bright, red, green, blue, grey).

    For smoke tests and demos on untrained weights only; images are expected in [-1, 1].
    """

    concept_names = ("dark", "bright", "red", "green", "blue", "grey")

    def forward(self, images: Tensor) -> Tensor:
        x = ((images.float() + 1) / 2).clamp(0, 1)
        lum = x.mean(1)
        labels = torch.full(lum.shape, 5, dtype=torch.long, device=x.device)
        dominant = x.argmax(1)
        chroma = x.max(1).values - x.min(1).values
        colourful = chroma > 0.15
        labels[colourful] = 2 + dominant[colourful]
        labels[lum < 0.25] = 0
        labels[lum > 0.8] = 1
        return labels
