"""Image conversions in one place: tensors <-> uint8 arrays and PIL images, label colouring, grids."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from .toyworld.concepts import LABEL_COLORS


def to_uint8(images: torch.Tensor | np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(N,3,H,W) or (3,H,W) float tensor in ``value_range`` -> (N,H,W,3) or (H,W,3) uint8 array."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    t = torch.as_tensor(images).detach().float().cpu()
    lo, hi = value_range
    t = ((t - lo) / (hi - lo)).clamp(0, 1).mul(255).round().byte()
    return t.movedim(-3, -1).numpy()


def from_uint8(images: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """(N,H,W,3) or (H,W,3) uint8 array -> float tensor (N,3,H,W) / (3,H,W) in ``value_range``."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div(255).movedim(-1, -3)
    lo, hi = value_range
    return t * (hi - lo) + lo


def colorize_labels(labels: np.ndarray | torch.Tensor, palette=LABEL_COLORS) -> np.ndarray:
    """Concept label map(s) (..., H, W) -> RGB uint8 (..., H, W, 3)."""
    pal = np.asarray(palette, np.uint8)
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    return pal[np.clip(lab, 0, len(pal) - 1)]


def make_grid(images: np.ndarray, cols: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile (N,H,W,3) uint8 images into one image with ``cols`` columns and ``pad`` pixels between tiles."""
    n, h, w, c = images.shape
    rows = max(int(np.ceil(n / cols)), 1)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
    return out


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an (H,W,3) uint8 image, so small images stay crisp on screen."""
    return np.repeat(np.repeat(image, factor, 0), factor, 1)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an (H,W,3) or (H,W,4) uint8 image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()
