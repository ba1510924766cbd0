"""What a generator under- and over-produces, at the distribution level ("Seeing what a GAN cannot generate", §3).

Segment many generated and many real images with the same segmenter and compare, per concept, the mean area
fraction and the share of images that contain the concept; a Frechet distance between the two sets of per-image
area vectors summarises the gap in one number.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .cache import PathLike, cached_arrays, callable_id, make_key, weights_hash
from .plumbing import eval_mode, model_device, seeded_generator, segment, z_dim_of
from .metrics import frechet_distance

__all__ = ["MIN_PIXELS", "ConceptStats", "label_statistics", "segment_statistics", "generated_statistics",
           "OmissionReport", "compare", "missing_concepts"]

MIN_PIXELS = 4
"""Pixels of a concept that make an image "contain" it."""


@dataclass(frozen=True)
class ConceptStats:
    """Per-image concept area fractions ``per_image[N, K]`` of a set of segmented images."""

    concept_names: tuple
    per_image: np.ndarray
    presence_per_image: np.ndarray

    @property
    def n(self) -> int:
        return int(self.per_image.shape[0])

    @property
    def area(self) -> np.ndarray:
        """Mean area fraction of each concept ``[K]``."""
        return self.per_image.mean(0)

    @property
    def presence(self) -> np.ndarray:
        """Share of the images that contain each concept ``[K]``."""
        return self.presence_per_image.mean(0)


def label_statistics(labels: Tensor, concept_names: Sequence[str], min_pixels: int = MIN_PIXELS) -> ConceptStats:
    """:class:`ConceptStats` of label maps ``(N, H, W)`` with values ``0 .. K-1``."""
    labels = torch.as_tensor(labels).long().cpu()
    if labels.ndim != 3 or len(labels) == 0:
        raise ValueError(f"expected label maps (N, H, W) with N >= 1, got shape {tuple(labels.shape)}")
    k = len(concept_names)
    if int(labels.max()) >= k or int(labels.min()) < 0:
        raise ValueError(f"labels must lie in 0..{k - 1} for {k} concepts, found {int(labels.min())}.."
                         f"{int(labels.max())}")
    flat = labels.reshape(len(labels), -1)
    counts = torch.zeros(len(labels), k).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float))
    return ConceptStats(tuple(concept_names), (counts / flat.shape[1]).numpy(), (counts >= min_pixels).numpy())


def _cached(cache_dir: Optional[PathLike], concept_names: Sequence[str], compute: Callable[[], ConceptStats],
            key: Callable[[], Dict[str, Any]]) -> ConceptStats:
    """``compute()``, or with ``cache_dir`` the statistics stored under the parts ``key()`` names (computed and
    stored once)."""
    def arrays() -> Dict[str, np.ndarray]:
        stats = compute()
        return {"per_image": stats.per_image, "presence": stats.presence_per_image}

    out = cached_arrays(cache_dir, lambda: make_key(kind="concept statistics", concepts=list(concept_names), **key()),
                        arrays)
    return ConceptStats(tuple(concept_names), out["per_image"], out["presence"])


@torch.no_grad()
def segment_statistics(images: Tensor, segmenter: Callable[[Tensor], Any], concept_names: Sequence[str],
                       batch_size: int = 128, device: Optional[torch.device] = None,
                       cache_dir: Optional[PathLike] = None) -> ConceptStats:
    """Segment ``images`` (in the segmenter's input range) in batches and return their :class:`ConceptStats`
    (with ``cache_dir``: stored by the images' pixels and the segmenter, and loaded when both are the same)."""
    if len(images) == 0:
        raise ValueError("no images to segment")
    if device is None:
        device = model_device(segmenter) if isinstance(segmenter, nn.Module) else torch.device("cpu")

    def compute() -> ConceptStats:
        with eval_mode(segmenter):
            labels = [segment(segmenter, images[i:i + batch_size].to(device))[0].cpu()
                      for i in range(0, len(images), batch_size)]
        return label_statistics(torch.cat(labels), concept_names)

    return _cached(cache_dir, concept_names, compute,
                   lambda: dict(images=torch.as_tensor(images).detach().cpu(), segmenter=callable_id(segmenter)))


@torch.no_grad()
def generated_statistics(generator: nn.Module, segmenter: Callable[[Tensor], Any], concept_names: Sequence[str],
                         n: int = 1000, z_dim: Optional[int] = None, seed: int = 0, batch_size: int = 128,
                         segmenter_preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                         cache_dir: Optional[PathLike] = None) -> ConceptStats:
    """:class:`ConceptStats` of ``n`` samples ``generator(z)``, ``z`` standard normal drawn with ``seed`` (with
    ``cache_dir``: stored by the weights, the segmenter and the settings, and loaded when they are the same)."""
    z_dim = z_dim_of(generator, z_dim)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    prep = segmenter_preprocess or (lambda x: x)
    dev = model_device(generator)

    def compute() -> ConceptStats:
        g = seeded_generator(seed)
        labels = []
        with eval_mode(generator, segmenter):
            for i in range(0, n, batch_size):
                z = torch.randn(min(batch_size, n - i), z_dim, generator=g).to(dev)
                labels.append(segment(segmenter, prep(generator(z)))[0].cpu())
        return label_statistics(torch.cat(labels), concept_names)

    return _cached(cache_dir, concept_names, compute,
                   lambda: dict(generator=weights_hash(generator), segmenter=callable_id(segmenter),
                                preprocess=callable_id(segmenter_preprocess), n=n, z_dim=z_dim, seed=seed,
                                batch_size=batch_size))


@dataclass(frozen=True)
class OmissionReport:
    """Generated versus real concept statistics."""

    generated: ConceptStats
    real: ConceptStats

    def __post_init__(self) -> None:
        if self.generated.concept_names != self.real.concept_names:
            raise ValueError("generated and real statistics use different concept names")

    @property
    def concept_names(self) -> tuple:
        return self.generated.concept_names

    def relative_area(self, min_real_area: float = 0.001) -> dict:
        """``{concept: generated / real - 1}`` of the mean areas, for concepts covering >= ``min_real_area``."""
        g, r = self.generated.area, self.real.area
        return {c: float(g[k] / r[k] - 1) for k, c in enumerate(self.concept_names) if r[k] >= min_real_area}

    def under_produced(self, threshold: float = 0.35, min_real_area: float = 0.001) -> List[str]:
        """Concepts whose generated area falls short of the real one by more than ``threshold``, worst first."""
        rel = self.relative_area(min_real_area)
        return [c for c, v in sorted(rel.items(), key=lambda t: t[1]) if v < -threshold]

    def over_produced(self, threshold: float = 0.35, min_real_area: float = 0.001) -> List[str]:
        rel = self.relative_area(min_real_area)
        return [c for c, v in sorted(rel.items(), key=lambda t: -t[1]) if v > threshold]

    @property
    def frechet(self) -> float:
        """Frechet distance between the per-image area vectors (Gaussian fits) of generated and real images."""
        return frechet_distance(self.generated.per_image, self.real.per_image)

    def summary(self, threshold: float = 0.35) -> str:
        under, over = self.under_produced(threshold), self.over_produced(threshold)
        return (f"{self.generated.n} generated vs {self.real.n} real images; Frechet distance of concept areas "
                f"{self.frechet:.4f}\nunder-produced (area < -{threshold:.0%}): {', '.join(under) or 'none'}\n"
                f"over-produced (area > +{threshold:.0%}): {', '.join(over) or 'none'}")

    def plot(self, min_real_area: float = 0.001, ax: Any = None, title: Optional[str] = None) -> Any:
        """Bar chart of the relative area per concept (below zero: the generator draws too little of it)."""
        from .charts import figure

        rel = sorted(self.relative_area(min_real_area).items(), key=lambda t: t[1])
        if ax is None:
            fig = figure((max(4.0, 0.45 * len(rel) + 1.5), 3.2))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        values = [100 * v for _, v in rel]
        ax.bar(range(len(rel)), values, color=["#c44e52" if v < 0 else "#4c72b0" for v in values])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(rel)))
        ax.set_xticklabels([c for c, _ in rel], rotation=60, ha="right")
        ax.set_ylabel("generated vs real area (%)")
        ax.set_title(title or "what the generator under- and over-produces", fontsize=9)
        return fig


def compare(generated: ConceptStats, real: ConceptStats) -> OmissionReport:
    """The :class:`OmissionReport` of two sets of statistics over the same concepts."""
    return OmissionReport(generated, real)


@torch.no_grad()
def missing_concepts(segmenter: Callable[[Tensor], Any], target: Tensor, reconstruction: Tensor,
                     concept_names: Sequence[str], min_pixels: int = MIN_PIXELS, keep: float = 0.5) -> List[str]:
    """Concepts the segmenter finds in ``target`` (>= ``min_pixels``) of which the reconstruction keeps less than
    ``keep`` of the pixels: what the generator could not reproduce in this image (instance-level omission)."""
    pair = torch.cat([torch.as_tensor(target).reshape(1, *target.shape[-3:]),
                      torch.as_tensor(reconstruction).reshape(1, *reconstruction.shape[-3:])])
    dev = model_device(segmenter) if isinstance(segmenter, nn.Module) else torch.device("cpu")
    with eval_mode(segmenter):
        labels = segment(segmenter, pair.to(dev))[0].cpu()
    stats = label_statistics(labels, concept_names, min_pixels=1)
    before, after = stats.per_image[0], stats.per_image[1]
    pixels = labels[0].numel()
    return [c for k, c in enumerate(concept_names)
            if before[k] * pixels >= min_pixels and after[k] < keep * before[k]]
