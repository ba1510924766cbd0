"""The toy world as a torch Dataset."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .concepts import WATERMARK_FRACTION
from .render import render

__all__ = ["ToyWorld"]


class ToyWorld(Dataset):
    """``n`` scenes of world ``seed``: items are ``(image (3,H,W) float in [0,1], labels (H,W) long, class int)``.

    Scenes are rendered on access (about 2 ms each at 64x64), so the data set takes no memory.
    """

    def __init__(self, n: int = 10000, seed: int = 0, size: int = 64,
                 watermark_fraction: float = WATERMARK_FRACTION):
        if n < 1:
            raise ValueError(f"a toy world needs at least 1 scene, got n={n}")
        self.n, self.seed, self.size, self.watermark_fraction = int(n), int(seed), int(size), watermark_fraction

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        if not -self.n <= index < self.n:
            raise IndexError(f"scene {index} out of range for a toy world of {self.n} scenes")
        s = render(index % self.n, self.seed, self.size, self.watermark_fraction)
        image = torch.from_numpy(s.image).permute(2, 0, 1).float().div(255)
        return image, torch.from_numpy(s.labels).long(), s.scene_class

    @property
    def identity(self) -> str:
        """A string naming exactly this data (for caches)."""
        return f"toyworld(n={self.n}, seed={self.seed}, size={self.size}, watermark={self.watermark_fraction})"
