"""ResNets with torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1`` ..., ``fc``), no torchvision.

``replace_stride_with_dilation`` works as in torchvision (the DeepLabV3 backbone uses ``[False, True, True]``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Type, Union

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "DEPTHS", "resnet", "depth_from_state_dict"]


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, "ResNet v1.5") -> 1x1 convs with a shortcut (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


Block = Type[Union[BasicBlock, Bottleneck]]


class ResNet(nn.Module):
    """Stem (``conv1``, ``bn1``, ``relu``, ``maxpool``), ``layer1`` ... ``layer4``, ``avgpool``, ``fc``."""

    def __init__(self, block: Block, depths: Sequence[int], num_classes: int = 1000,
                 replace_stride_with_dilation: Sequence[bool] = (False, False, False)) -> None:
        super().__init__()
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation needs 3 booleans (for layer2, layer3, layer4)")
        self.inplanes, self.dilation = 64, 1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(block, 64, depths[0])
        self.layer2 = self._stage(block, 128, depths[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._stage(block, 256, depths[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._stage(block, 512, depths[3], 2, replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self.num_classes = num_classes

    def _stage(self, block: Block, planes: int, n: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        before = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        blocks: List[nn.Module] = [block(self.inplanes, planes, stride, downsample, before)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``layer4`` feature map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
          101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}


def resnet(depth: int = 50, num_classes: int = 1000,
           replace_stride_with_dilation: Sequence[bool] = (False, False, False)) -> ResNet:
    """ResNet-``depth`` (18, 34, 50, 101 or 152) with torchvision's layout."""
    if depth not in DEPTHS:
        raise ValueError(f"no ResNet-{depth}; depths: {', '.join(map(str, DEPTHS))}")
    block, depths = DEPTHS[depth]
    return ResNet(block, depths, num_classes, replace_stride_with_dilation)


def depth_from_state_dict(state: dict) -> int:
    """The ResNet depth a torchvision-format state dict implies (from its block counts and block type)."""
    counts = []
    for stage in range(1, 5):
        idx = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.")}
        counts.append(max(idx) + 1 if idx else 0)
    bottleneck = any(k.endswith(".conv3.weight") for k in state)
    for depth, (block, d) in DEPTHS.items():
        if tuple(counts) == d and (block is Bottleneck) == bottleneck:
            return depth
    raise ValueError(f"the state dict's blocks per stage {counts} match no ResNet (18, 34, 50, 101, 152)")
