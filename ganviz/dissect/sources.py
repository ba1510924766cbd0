"""Data sources: what a dissection reads, ``len(source)`` items loaded by index.

    ToyWorldSource(n=2000, seed=1)                 # toy-world scenes with ground-truth concept labels
    TensorSource(images, labels, concept_names=names)
    DatasetSource(torch_dataset)                   # items: image, or (image, label map, ...)
    GeneratorSource(n=1000, z_dim=128, seed=1)     # reproducible latents for a generator
    as_source(images_or_dataset_or_source)         # any of the above from what the caller has

Any object with ``identity``, ``concept_names``, ``__len__`` and ``load(indices) -> (inputs, labels)`` works
(:class:`DataSource`).
"""
from __future__ import annotations

import hashlib
from typing import Any, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..plumbing import seeded_generator
from ..toyworld import CONCEPTS, RENDER_VERSION, WATERMARK_FRACTION, render_batch

__all__ = ["DataSource", "ToyWorldSource", "TensorSource", "DatasetSource", "GeneratorSource", "LatentSource",
           "as_source"]


@runtime_checkable
class DataSource(Protocol):
    """What a dissection reads: ``len(source)`` items, loaded by index.

    ``load(indices)`` returns ``(inputs, labels)``: for image sources ``inputs`` are float images in [0, 1]
    ``(N, 3, H, W)`` and ``labels`` a long ``(N, H, W)`` concept index per pixel (-1: no concept) or ``None``;
    for latent sources ``inputs`` are the generator's ``z``.  ``identity`` names the data exactly for caches
    (``''``: unknown, results are then not cached); ``concept_names`` names the label values (or ``None``).
    """

    identity: str
    concept_names: Optional[Sequence[str]]

    def __len__(self) -> int: ...

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]: ...


class ToyWorldSource:
    """Scenes ``0 .. n-1`` of toy world ``seed`` with their ground-truth concept labels (rendered on demand)."""

    def __init__(self, n: int = 5000, seed: int = 1, size: int = 64,
                 watermark_fraction: float = WATERMARK_FRACTION) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.seed, self.size, self.watermark_fraction = int(n), int(seed), int(size), watermark_fraction
        self.concept_names: Optional[Sequence[str]] = CONCEPTS

    def __len__(self) -> int:
        return self.n

    @property
    def identity(self) -> str:
        return (f"toyworld v{RENDER_VERSION} seed={self.seed} n={self.n} size={self.size} "
                f"watermark={self.watermark_fraction!r}")

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        images, labels, _ = render_batch(list(indices), self.seed, self.size, self.watermark_fraction)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
        return x, torch.from_numpy(labels).long()

    def __repr__(self) -> str:
        return f"ToyWorldSource(n={self.n}, seed={self.seed}, size={self.size})"


def _as_image_batch(x: Tensor) -> Tensor:
    """uint8 or float images, (N,H,W,C) or (N,C,H,W) -> float (N,C,H,W) in [0, 1]."""
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, 3, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    return x.float()


def _tensor_digest(*tensors: Optional[Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


class TensorSource:
    """Images held in memory (``(N,3,H,W)`` float in [0,1] or uint8, or ``(N,H,W,3)``), optional labels ``(N,H,W)``.

    ``identity`` defaults to a hash of the tensors' contents.
    """

    def __init__(self, images: Union[Tensor, np.ndarray], labels: Union[Tensor, np.ndarray, None] = None, *,
                 identity: Optional[str] = None, concept_names: Optional[Sequence[str]] = None) -> None:
        self.images = torch.as_tensor(images)
        self.labels = None if labels is None else torch.as_tensor(labels)
        if self.labels is not None and self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} label maps")
        self.concept_names = tuple(concept_names) if concept_names is not None else None
        self._identity = identity

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = f"tensor sha256={_tensor_digest(self.images, self.labels)}"
        return self._identity

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        labels = None if self.labels is None else self.labels[idx].long()
        return _as_image_batch(self.images[idx]), labels


class DatasetSource:
    """A map-style dataset whose items are an image or a tuple ``(image, labels, ...)``.

    A second tuple element that is a 2-d tensor/array is taken as the label map.  ``identity`` defaults to the
    dataset's ``identity`` attribute; without one, results are not cached.
    """

    def __init__(self, dataset: Any, *, identity: Optional[str] = None,
                 concept_names: Optional[Sequence[str]] = None) -> None:
        self.dataset = dataset
        self.identity = identity if identity is not None else str(getattr(dataset, "identity", "") or "")
        if concept_names is None and type(dataset).__name__ == "ToyWorld":
            concept_names = CONCEPTS
        self.concept_names = tuple(concept_names) if concept_names is not None else None

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        images, labels = [], []
        for i in indices:
            item = self.dataset[int(i)]
            lab = None
            if isinstance(item, (tuple, list)):
                img = item[0]
                if len(item) > 1 and hasattr(item[1], "shape") and len(item[1].shape) == 2:
                    lab = torch.as_tensor(item[1])
            else:
                img = item
            img = torch.as_tensor(np.asarray(img)) if not isinstance(img, Tensor) else img
            if img.ndim == 3 and img.shape[-1] in (1, 3, 4) and img.shape[0] not in (1, 3, 4):
                img = img.permute(2, 0, 1)
            images.append(img)
            labels.append(lab)
        x = _as_image_batch(torch.stack(images))
        if all(lab is not None for lab in labels):
            return x, torch.stack(labels).long()
        return x, None


class GeneratorSource:
    """Latents ``z_0 .. z_{n-1}``: standard normal, reproducible per index (independent of batching).

    ``z_i`` is row ``i % 1024`` of a block drawn from a generator seeded with ``(seed, i // 1024)``.
    """

    block = 1024

    def __init__(self, n: int = 1000, z_dim: Union[int, Sequence[int]] = 128, seed: int = 1) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.seed = int(n), int(seed)
        self.shape = (int(z_dim),) if isinstance(z_dim, (int, np.integer)) else tuple(int(s) for s in z_dim)
        self.concept_names: Optional[Sequence[str]] = None

    def __len__(self) -> int:
        return self.n

    @property
    def identity(self) -> str:
        return f"gaussian z shape={self.shape} seed={self.seed} n={self.n}"

    def _block(self, b: int) -> Tensor:
        return torch.randn((self.block,) + self.shape, generator=seeded_generator(self.seed * 1_000_003 + b))

    def latents(self, indices: Sequence[int]) -> Tensor:
        """``z`` for the given sample indices, ``(N, *shape)`` float32 on the CPU."""
        idx = [int(i) for i in indices]
        blocks = {b: self._block(b) for b in sorted({i // self.block for i in idx})}
        if not idx:
            return torch.empty((0,) + self.shape)
        return torch.stack([blocks[i // self.block][i % self.block] for i in idx])

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        return self.latents(indices), None


class LatentSource:
    """Given latents ``z`` (a tensor ``(N, *z_shape)``) as a :class:`DataSource`; identity: a hash of ``z``."""

    concept_names = None

    def __init__(self, z: Tensor) -> None:
        self.z = torch.as_tensor(z)
        self.identity = f"latents sha256={_tensor_digest(self.z)}"

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        return self.z[torch.as_tensor(list(indices), dtype=torch.long)].float(), None


def as_source(data: Any, **kwargs: Any) -> DataSource:
    """Wrap ``data`` (a DataSource, an image tensor/array, or a torch Dataset) as a :class:`DataSource`."""
    if isinstance(data, (Tensor, np.ndarray)):
        return TensorSource(data, **kwargs)
    if hasattr(data, "load") and hasattr(data, "identity") and hasattr(data, "__len__"):
        return data
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return DatasetSource(data, **kwargs)
    raise TypeError(f"cannot read images from {type(data).__name__}; pass a DataSource, a tensor or a Dataset")
