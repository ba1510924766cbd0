"""VGG-16 with torchvision's module names (``features.N``, ``classifier.{0,3,6}``), built without torchvision.

A torchvision-format state dict (ImageNet, 1000 classes) or a Places365 one (365 classes) loads into it directly.
The Places365 VGG-16 of Network Dissection's PyTorch release (``vgg16_places365-0bafbc55.pth``, loaded by
``experiment/oldvgg16.py`` in davidbau/dissect) names the same modules ``features.conv1_1`` ... ``features.conv5_3``
and ``classifier.fc6`` / ``fc7`` / ``fc8a``; :func:`normalise_state_dict` renames them.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Tuple, Union

import torch
from torch import nn

__all__ = ["VGG16_CONFIG", "VGG", "vgg16", "conv_layer_names", "CLASSIFIER_NAMES", "normalise_state_dict"]

VGG16_CONFIG: Tuple[Union[int, str], ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                             512, 512, 512, "M", 512, 512, 512, "M")
"""Configuration "D" of Simonyan & Zisserman: conv widths, ``M`` = 2x2 max-pool."""


class VGG(nn.Module):
    """``features`` (convs, ReLUs, pools) -> ``avgpool`` (7x7) -> ``classifier`` (fc6, fc7, fc8)."""

    def __init__(self, config: Tuple[Union[int, str], ...] = VGG16_CONFIG, num_classes: int = 1000,
                 batch_norm: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        cin = 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(cin, int(v), kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU(inplace=True))
            cin = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(cin * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16(num_classes: int = 1000, batch_norm: bool = False) -> VGG:
    """VGG-16 (``vgg16`` / ``vgg16_bn`` of torchvision) with ``num_classes`` outputs (365 for Places365)."""
    return VGG(VGG16_CONFIG, num_classes, batch_norm)


def conv_layer_names(model: VGG) -> Dict[str, str]:
    """``{"conv1_1": "features.1", ...}``: each VGG conv's name mapped to its ReLU output's module name."""
    names: Dict[str, str] = {}
    block, k = 1, 0
    for i, m in enumerate(model.features):
        if isinstance(m, nn.MaxPool2d):
            block, k = block + 1, 0
        elif isinstance(m, nn.ReLU):
            k += 1
            names[f"conv{block}_{k}"] = f"features.{i}"
    return names


CLASSIFIER_NAMES = {"fc6": 0, "fc7": 3, "fc8": 6, "fc8a": 6}
"""Research names of the classifier's linear layers (davidbau/dissect ``oldvgg16``) -> torchvision indices."""


def normalise_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename ``features.conv{b}_{k}.*`` / ``classifier.fc6|fc7|fc8a.*`` to torchvision's indices (VGG-16, no BN);
    a torchvision-named state dict is returned unchanged."""
    if not any(re.match(r"features\.conv\d+_\d+\.", k) for k in state):
        return dict(state)
    index, i, block, k = {}, 0, 1, 0
    for v in VGG16_CONFIG:
        if v == "M":
            block, k, i = block + 1, 0, i + 1
        else:
            k += 1
            index[f"conv{block}_{k}"] = i
            i += 2  # conv, relu
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"(features|classifier)\.([a-z]+\d+(?:_\d+|a)?)\.(.*)$", key)
        table = index if m and m.group(1) == "features" else CLASSIFIER_NAMES
        if m and m.group(2) in table:
            key = f"{m.group(1)}.{table[m.group(2)]}.{m.group(3)}"
        out[key] = value
    return out
