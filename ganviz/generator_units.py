"""Causal experiments on a generator's units, measured with a segmenter (GAN Dissection, section 3).

:class:`GeneratorProbe` generates with unit edits at one layer and measures concepts in the results: how much a
concept's area drops when units are removed, which units remove it most (ranking by causal effect), and where a
concept appears when its units are switched on at each location of the feature map in turn.  With ``cache_dir``
the three experiments are stored by everything they depend on (weights, layer, latents, units, settings), so that
running a notebook again costs no generation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .cache import cached_arrays, callable_id, make_key, weights_hash
from .dissect import DissectionResult
from .plumbing import eval_mode, model_device, segment
from .edits import Ablate, EditSpec, SetLevel
from .trace import Trace, get_module

__all__ = ["MIN_PIXELS", "AblationEffect", "InsertionMap", "GeneratorProbe"]

Concept = Union[str, int]

MIN_PIXELS = 4
"""New concept pixels in a patch that count as "the concept appeared there" (a toy-world door is about 15)."""


def _patch(i: int, cells: int, n: int, size: int) -> slice:
    """Image rows (or columns) under feature-map rows ``i .. i + cells - 1`` of ``n``, for an image of ``size``."""
    start = i * size // n
    return slice(start, max((i + cells) * size // n, start + 1))


@dataclass(frozen=True)
class AblationEffect:
    """A concept's mean area fraction per sample before and after an edit, over the same latents."""

    concept: str
    units: tuple
    before: np.ndarray
    after: np.ndarray

    @property
    def drop(self) -> float:
        """Relative drop of the concept's total area, 1.0 = gone, 0.0 = unchanged, negative = grew."""
        total = float(self.before.sum())
        return 0.0 if total == 0 else 1.0 - float(self.after.sum()) / total

    def removed_from(self, min_share: float) -> float:
        """Share of the samples with ``before >= min_share`` where ``after`` fell below ``min_share``."""
        had = self.before >= min_share
        return float("nan") if not had.any() else float((self.after[had] < min_share).mean())


@dataclass(frozen=True)
class InsertionMap:
    """Concept pixels added by switching units on at each feature-map location, per sample.

    ``added[n, i, j]``: the number of pixels of location ``(i, j)``'s image patch that show the concept after the
    edit but not before; ``context[n, i, j]``: the concept index the segmenter saw most in that patch before.
    """

    concept: str
    units: tuple
    added: np.ndarray
    context: np.ndarray
    concept_names: tuple

    def success(self, min_pixels: int = MIN_PIXELS) -> np.ndarray:
        """Boolean ``[N, H, W]``: the insertion added at least ``min_pixels`` concept pixels to the patch."""
        return self.added >= min_pixels

    def rate_in(self, context: Concept, min_pixels: int = MIN_PIXELS) -> float:
        """Share of trials in patches whose context was ``context`` where the concept appeared."""
        k = context if isinstance(context, (int, np.integer)) else self.concept_names.index(context)
        where = self.context == k
        return float("nan") if not where.any() else float(self.success(min_pixels)[where].mean())

    def trials_in(self, context: Concept) -> int:
        k = context if isinstance(context, (int, np.integer)) else self.concept_names.index(context)
        return int((self.context == k).sum())


class GeneratorProbe:
    """Generate with edits at ``layer`` and measure concepts with ``segmenter``.

    ``result`` is a dissection of that layer (concept names, unit levels); ``segmenter`` maps generator outputs
    to logits ``(N,K,H,W)`` or labels ``(N,H,W)`` (``segmenter_preprocess`` adapts the generator's output first).
    Work runs on the generator's device in batches of ``batch_size``.  ``cache_dir``: keep the results of
    :meth:`ablation_effect`, :meth:`rank_by_effect` and :meth:`insertion_map` there and reuse them for identical
    calls.
    """

    def __init__(self, generator: nn.Module, layer: str, segmenter: Callable[[Tensor], Any],
                 result: DissectionResult, *, segmenter_preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                 batch_size: int = 64, cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None) -> None:
        get_module(generator, layer)  # a clear error for a wrong name, before any work
        if result.layer != layer:
            raise ValueError(f"the dissection is of {result.layer!r}, not of {layer!r}")
        self.generator = generator
        self.layer = layer
        self.segmenter = segmenter
        self.result = result
        self.preprocess = segmenter_preprocess or (lambda x: x)
        self.batch_size = batch_size
        self.device = model_device(generator)
        self.cache_dir = cache_dir

    def _cached(self, kind: str, params: Dict[str, Any], compute: Callable[[], Dict[str, np.ndarray]]
                ) -> Dict[str, np.ndarray]:
        """``compute()`` (named arrays), or what an identical call stored in the cache."""
        return cached_arrays(self.cache_dir, lambda: make_key(
            kind=f"generator-probe-{kind}", generator=weights_hash(self.generator), layer=self.layer,
            segmenter=callable_id(self.segmenter), preprocess=callable_id(self.preprocess), **params), compute)

    # -- basics -------------------------------------------------------------------------------------------------
    @property
    def concept_names(self) -> tuple:
        return tuple(self.result.concept_names)

    def concept_index(self, concept: Concept) -> int:
        return self.result._concept_index(concept)

    @torch.no_grad()
    def generate(self, z: Tensor, edit: Optional[EditSpec] = None) -> Tensor:
        """Images for latents ``z`` with ``edit`` applied at the layer (one batch; on the generator's device)."""
        z = z.to(self.device)
        with eval_mode(self.generator), Trace(self.generator, [], retain_output=False,
                   edit=None if edit is None else {self.layer: edit}) as tr:
            return tr.run(z)

    @torch.no_grad()
    def segment(self, images: Tensor) -> Tensor:
        """Label maps ``(N, H, W)`` of generated images."""
        with eval_mode(self.segmenter):
            labels, _ = segment(self.segmenter, self.preprocess(images))
        return labels

    def _areas(self, z: Tensor, edit: Optional[EditSpec], k: int) -> np.ndarray:
        out = []
        for i in range(0, len(z), self.batch_size):
            labels = self.segment(self.generate(z[i:i + self.batch_size], edit))
            out.append((labels == k).float().mean((1, 2)).cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def area(self, concept: Concept, z: Tensor, edit: Optional[EditSpec] = None) -> np.ndarray:
        """Per-sample area fraction of ``concept`` in ``G(z)`` (with ``edit``)."""
        return self._areas(z, edit, self.concept_index(concept))

    # -- removal ------------------------------------------------------------------------------------------------
    def ablation_effect(self, concept: Concept, units: Sequence[int], z: Tensor) -> AblationEffect:
        """The concept's area with and without ``units`` (set to zero everywhere)."""
        units = [int(u) for u in units]
        k = self.concept_index(concept)

        def compute() -> Dict[str, np.ndarray]:
            before = self._areas(z, None, k)
            return {"before": before, "after": self._areas(z, Ablate(units), k) if units else before}

        out = self._cached("ablation", dict(concept=k, units=units, z=z), compute)
        return AblationEffect(self.concept_names[k], tuple(units), out["before"], out["after"])

    def rank_by_effect(self, concept: Concept, z: Tensor, candidates: Optional[Sequence[int]] = None,
                       n_candidates: int = 40) -> List[tuple]:
        """Units ordered by how much removing each one alone shrinks ``concept``: ``[(unit, drop), ...]``.

        Candidates default to the ``n_candidates`` units with the highest IoU for the concept (as in GAN
        Dissection, whose causal ranking refines the IoU ranking).  Only the samples of ``z`` that show the concept
        are generated again (removing a unit cannot shrink what is not there).
        """
        k = self.concept_index(concept)
        if candidates is None:
            candidates = self.result.units_for(k, n_candidates)
        candidates = [int(u) for u in candidates]

        def compute() -> Dict[str, np.ndarray]:
            areas = self._areas(z, None, k)
            shown = z[torch.from_numpy(np.flatnonzero(areas > 0))]
            before = float(areas.sum())
            after = [float(self._areas(shown, Ablate([u]), k).sum()) for u in candidates]
            return {"drops": np.array([0.0 if before == 0 else 1.0 - a / before for a in after])}

        drops = self._cached("rank", dict(concept=k, candidates=candidates, z=z), compute)["drops"]
        return sorted(zip(candidates, (float(d) for d in drops)), key=lambda t: (-t[1], t[0]))

    # -- insertion ----------------------------------------------------------------------------------------------
    def levels(self, units: Sequence[int], level_quantile: float = 0.99) -> np.ndarray:
        """The units' activation values at ``level_quantile`` over the dissection's samples (their thresholds there)."""
        return self.result.threshold_at(level_quantile)[np.asarray(units, dtype=int)]

    def insertion_map(self, concept: Concept, z: Tensor, units: Optional[Sequence[int]] = None, n_units: int = 20,
                      level_quantile: float = 0.995, cells: int = 1) -> InsertionMap:
        """Switch ``units`` (default: the concept's top ``n_units`` by IoU) on at their ``level_quantile`` value in a
        ``cells x cells`` block at every location of the feature map in turn, and measure the concept added in
        that block's image patch."""
        k = self.concept_index(concept)
        units = [int(u) for u in (self.result.units_for(k, n_units) if units is None else units)]
        levels = [float(v) for v in self.levels(units, level_quantile)]
        params = dict(concept=k, units=units, levels=levels, cells=int(cells), z=z)
        out = self._cached("insertion", params, lambda: self._insert(z, k, units, torch.as_tensor(levels), int(cells)))
        return InsertionMap(self.concept_names[k], tuple(units), out["added"], out["context"], self.concept_names)

    def _insert(self, z: Tensor, k: int, units: List[int], levels: Tensor, cells: int) -> Dict[str, np.ndarray]:
        """``added`` and ``context`` of :class:`InsertionMap` (see :meth:`insertion_map`)."""
        h, w = self.result.activation_size
        locs = [(i, j) for i in range(0, h - cells + 1) for j in range(0, w - cells + 1)]
        gh, gw = h - cells + 1, w - cells + 1
        added = np.zeros((len(z), gh, gw), np.int64)
        context = np.zeros((len(z), gh, gw), np.int64)
        masks = torch.zeros(len(locs), h, w)
        for t, (i, j) in enumerate(locs):
            masks[t, i:i + cells, j:j + cells] = 1
        for n in range(len(z)):
            base = self.segment(self.generate(z[n:n + 1]))[0].cpu()
            H, W = base.shape
            for s in range(0, len(locs), self.batch_size):
                m = masks[s:s + self.batch_size]
                zz = z[n:n + 1].expand(len(m), *z.shape[1:])
                labels = self.segment(self.generate(zz, SetLevel(units, levels, m.to(self.device)))).cpu()
                for t in range(len(m)):
                    i, j = locs[s + t]
                    ys, xs = _patch(i, cells, h, H), _patch(j, cells, w, W)
                    new = (labels[t, ys, xs] == k) & (base[ys, xs] != k)
                    added[n, i, j] = int(new.sum())
                    context[n, i, j] = int(torch.bincount(base[ys, xs].reshape(-1)).argmax())
        return {"added": added, "context": context}
