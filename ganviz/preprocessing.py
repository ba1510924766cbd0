"""Image value ranges: every model-specific preprocessing is a :class:`Normalize` (a value with a stable
``repr``, so caches tell two preprocessings apart and two spellings of one share an entry).

    to_signed(images01)                   # [0, 1] -> [-1, 1], the toy models' input range
    Normalize((0, 1), IMAGENET_MEAN, IMAGENET_STD)(images01)
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD", "Normalize", "to_signed", "identity", "Range"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # OpenAI's CLIP, also open_clip's and Hugging Face's checkpoints
Range = Tuple[float, float]


class Normalize:
    """Images in [0, 1] -> ``input_range``, then ``(x - mean) / std`` per channel (when given).

    A plain object with a descriptive ``repr``, so dissection caches tell two normalisations apart.
    """

    def __init__(self, input_range: Range = (0.0, 1.0), mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None) -> None:
        if (mean is None) != (std is None):
            raise ValueError("pass both mean and std, or neither")
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)

    def __call__(self, images: Tensor) -> Tensor:
        lo, hi = self.input_range
        x = images * (hi - lo) + lo
        if self.mean is not None:
            m = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            s = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = (x - m) / s
        return x

    def inverse(self, x: Tensor) -> Tensor:
        """Model-range images back to [0, 1] (clamped)."""
        if self.mean is not None:
            m = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            s = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = x * s + m
        lo, hi = self.input_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Normalize) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        return f"Normalize(input_range={self.input_range}, mean={self.mean}, std={self.std})"


to_signed = Normalize((-1.0, 1.0))
"""[0, 1] -> [-1, 1]: the one spelling of the toy models' preprocessing (one cache identity)."""

identity = Normalize((0.0, 1.0))
"""Images passed through unchanged."""
