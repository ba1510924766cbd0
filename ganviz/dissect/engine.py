"""The two-pass dissection engine, with its result cache and pass-1 checkpoint (resume).

    task = Task(model, "conv5_3", "classifier", ToyWorldSource(2000), preprocess=to_signed)
    result = run_dissection(task, DissectConfig(quantile=0.99, cache_dir="~/.cache/ganviz"))

Both passes run on the model's device under ``torch.no_grad()`` with the model (and segmenter) in eval mode:

1. a per-unit quantile sketch over every spatial activation, and the top-k images of every unit ranked by the
   unit's spatial maximum;
2. per unit x concept IoU tallies: each unit map is upsampled (bilinear, ``align_corners=False``) to the
   segmentation's resolution, cut at the unit's threshold (its activation value at ``quantile``) and compared
   with the concept masks (:meth:`ganviz.stats.IoUTally.add_upsampled`).

Memory does not grow with the number of images: only streaming statistics are kept.  When the layer's
activations (and labels) of all images fit in ``activation_cache_bytes`` they are kept from pass 1 so that
pass 2 does not run the model again.  Under ``torch.distributed`` images are processed in fixed chunks whose
sketches are merged in chunk order, so the result does not depend on the number of processes.  With a
``cache_dir``, a finished result is reused, and pass-1 statistics are checkpointed so that a run interrupted in
pass 2 resumes there (single process only).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..cache import ResultCache, callable_id, make_key, weights_hash
from ..plumbing import eval_mode, model_device
from ..progress import progress as progress_bar
from ..stats import IoUTally, Quantile, TopK, load_stats, save_stats
from ..toyworld import CONCEPTS
from ..trace import get_module
from .config import DissectConfig
from .distributed import Dist, Shards
from .probe import IGNORE, ActivationStore, Probe, Task, check_labels
from .result import DEFAULT_QUANTILES, FORMAT, DissectionResult, from_state, to_state

__all__ = ["run_dissection", "quantile_table"]

Sizes = Tuple[Tuple[int, int], Tuple[int, int]]  # (activation size, label size)


@dataclass(frozen=True)
class _Passes:
    """What both passes share: the batch computation, the settings, this rank's images and the process group."""

    probe: Probe
    config: DissectConfig
    shards: Shards
    par: Dist

    @property
    def show(self) -> bool:
        return self.config.progress and self.par.rank == 0

    def bar(self, number: int):
        return progress_bar(total=self.shards.local, desc=f"dissect {self.probe.layer}: pass {number}/2",
                            disable=not self.show)


def _batches(chunk: range, batch_size: int) -> Iterator[range]:
    for s in range(chunk.start, chunk.stop, batch_size):
        yield range(s, min(s + batch_size, chunk.stop))


# ---------------------------------------------------------------------------------------------------- pass 1
def _sketch_chunk(run: _Passes, chunk: range, topk: TopK, store: ActivationStore, bar) -> Quantile:
    """One chunk's quantile sketch; its images' spatial maxima go into ``topk``, activations to ``store``."""
    sketch = Quantile(run.config.sketch_resolution)
    upsampled = run.config.threshold_on == "upsampled"
    for b in _batches(chunk, run.config.batch_size):
        acts, labels = run.probe(b, store.wants_labels or upsampled)
        maps = acts if not upsampled else F.interpolate(acts, size=tuple(labels.shape[-2:]), mode="bilinear",
                                                        align_corners=False)
        # [N*H*W, C] samples, as the transpose of a contiguous [C, N*H*W] (the sketch's layout)
        sketch.add(maps.transpose(0, 1).reshape(maps.shape[1], -1).t())
        topk.add(acts.amax((2, 3)), torch.as_tensor(list(b), device=run.probe.device))
        store.offer(b, acts, labels)
        bar.update(len(b))
    return sketch


def _pass_one(run: _Passes, store: ActivationStore) -> Tuple[Quantile, TopK]:
    """Quantile sketch and top-k (complete on rank 0).

    Every chunk of images gets its own sketch, merged into the total in chunk order, so the result does not
    depend on how many processes share the chunks.
    """
    par, chunks, dev = run.par, run.shards.chunks, run.probe.device
    total, topk = Quantile(run.config.sketch_resolution), TopK(run.config.k)
    with run.bar(1) as bar:
        for r in range(run.shards.rounds):
            ci = r * par.world + par.rank
            sketch = _sketch_chunk(run, chunks[ci], topk, store, bar) if ci < len(chunks) else None
            for part in par.gather_stats(sketch, Quantile, dev):  # rank order = chunk order
                total.merge(part)
    if par.on:
        parts = par.gather_stats(topk if topk.count else None, TopK, dev)
        topk = TopK(run.config.k)
        for part in parts:
            topk.merge(part)
    return total, topk


def quantile_table(sketch: Quantile, quantiles: Sequence[float], units_per_step: int = 16) -> np.ndarray:
    """Each unit's activation value at each of ``quantiles``: float32 ``[C, Q]``, read a few units at a time
    (:meth:`Quantile.quantiles_of`) to bound temporary memory."""
    q = torch.as_tensor(np.asarray(quantiles), dtype=torch.float64)
    c = sketch.num_units or 0
    parts = [sketch.quantiles_of(range(u, min(u + units_per_step, c)), q).float().cpu()
             for u in range(0, c, units_per_step)]
    return torch.cat(parts).numpy()


def _thresholds(run: _Passes, sketch: Quantile) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds[C], quantile grid[L], values[C, L])``: computed on rank 0, the same on every rank."""
    shared = None
    if run.par.rank == 0:
        quantile = float(run.config.quantile)
        grid = np.union1d(DEFAULT_QUANTILES, [quantile])
        values = quantile_table(sketch, grid)
        shared = (values[:, int(np.searchsorted(grid, quantile))].copy(), grid, values)
    return run.par.broadcast(shared)


# ---------------------------------------------------------------------------------------------------- pass 2
def _labelled_batches(run: _Passes, store: ActivationStore) -> Iterator[Tuple[range, Tensor, Tensor]]:
    """This rank's ``(indices, activations, labels)``: kept from pass 1 when they were, else recomputed."""
    if store.active:
        yield from store.batches()
        store.clear()
        return
    store.clear()
    for chunk in run.shards.mine:
        for b in _batches(chunk, run.config.batch_size):
            acts, labels = run.probe(b, True)
            assert labels is not None
            yield b, acts, labels


def _segmenter_names(probe: Probe) -> List[str]:
    kk = probe.num_concepts
    if kk is None:
        raise ValueError("the segmenter returns labels without names; pass concept_names=")
    return list(CONCEPTS) if kk == len(CONCEPTS) else [f"concept_{j}" for j in range(kk)]


def _pass_two(run: _Passes, store: ActivationStore, thresholds: Tensor, names: Optional[List[str]]
              ) -> Tuple[Optional[IoUTally], Optional[List[str]], Optional[Sizes]]:
    """IoU tallies, concept names and sizes: complete on rank 0 (tallies of all ranks merged in rank order)."""
    dev = run.probe.device
    tally: Optional[IoUTally] = None
    sizes: Optional[Sizes] = None
    with run.bar(2) as bar:
        for b, acts, labels in _labelled_batches(run, store):
            names = names if names is not None else _segmenter_names(run.probe)
            labels = check_labels(labels, len(names))
            if tally is None:
                tally = IoUTally(thresholds.shape[0], len(names), ignore_index=IGNORE, device=dev)
            sizes = (tuple(acts.shape[-2:]), tuple(labels.shape[-2:]))
            tally.add_upsampled(acts, labels, thresholds)
            bar.update(len(b))
    if run.par.on:  # ranks without images learn nothing; rank 0 learns names and sizes from the others
        known = run.par.gather((names, sizes) if tally is not None else None)
        parts = run.par.gather_stats(tally, IoUTally, dev)
        if run.par.rank != 0:
            return None, None, None
        names, sizes = next(m for m in known or [] if m is not None)
        tally = IoUTally(thresholds.shape[0], len(names), ignore_index=IGNORE, device=dev)
        for part in parts:
            tally.merge(part)
    return tally, names, sizes


# ------------------------------------------------------------------------------------------- cache + resume
class _Entry:
    """A dissection's place in the result cache: the result file, and the pass-1 checkpoint beside it."""

    def __init__(self, cache: ResultCache, key: str, resumable: bool) -> None:
        self.cache, self.key = cache, key
        self.checkpoint: Optional[Path] = cache.path(key, ".pass1.npz") if resumable else None

    def load(self, par: Dist) -> Optional[DissectionResult]:
        """The cached result (on every rank), or ``None``."""
        hit = self.cache.load(self.key, DissectionResult.load) if par.rank == 0 else None
        if par.on:
            state = par.broadcast(None if hit is None else to_state(hit))
            hit = None if state is None else from_state(*state)
        return hit

    def load_checkpoint(self, device: torch.device) -> Optional[Tuple[Quantile, TopK]]:
        """Pass-1 statistics saved by an interrupted run, or ``None`` (missing or unreadable)."""
        path = self.checkpoint
        if path is None or not os.path.exists(path):
            return None
        try:
            saved = load_stats(path, device=device)
            sketch, topk = saved["quantile"], saved["topk"]
            if not isinstance(sketch, Quantile) or not isinstance(topk, TopK):
                raise TypeError("unexpected statistics")
            return sketch, topk
        except Exception as exc:
            warnings.warn(f"ignoring unreadable checkpoint {path}: {exc}", RuntimeWarning, stacklevel=5)
            return None

    def save_checkpoint(self, sketch: Quantile, topk: TopK) -> None:
        if self.checkpoint is not None:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            save_stats(self.checkpoint, quantile=sketch, topk=topk)

    def save(self, result: DissectionResult) -> None:
        """Store the finished result and drop the checkpoint."""
        self.cache.save(self.key, result.save)
        if self.checkpoint is not None:
            self.checkpoint.unlink(missing_ok=True)


def _entry(task: Task, config: DissectConfig, n: int, names: Optional[List[str]], model_hash: str,
           par: Dist) -> Optional[_Entry]:
    """The cache entry of this dissection, or ``None`` (no ``cache_dir``, or data without an identity)."""
    if config.cache_dir is None:
        return None
    if not task.source.identity:
        warnings.warn("the data source has no identity; the result will not be cached", RuntimeWarning,
                      stacklevel=4)
        return None
    seg = task.segmenter_module
    key = make_key(format=FORMAT, kind=task.kind, layer=task.layer, data=task.source.identity, concepts=names,
                   weights=model_hash, segmenter_weights=weights_hash(seg) if seg else "",
                   segmenter=callable_id(task.segmenter) if seg is None else "module",
                   preprocess=callable_id(task.preprocess),
                   segmenter_preprocess=callable_id(task.segmenter_preprocess), **config.key_params(n))
    return _Entry(ResultCache(config.cache_dir), par.broadcast(key), resumable=not par.on)


# ------------------------------------------------------------------------------------------------ the run
def _initial_names(task: Task) -> Optional[List[str]]:
    """Concept names known before any work: given, the data's, or the segmenter's (``None``: learnt later)."""
    if task.concept_names is not None:
        return list(task.concept_names)
    if task.segmenter is None:
        if task.source.concept_names is None:
            raise ValueError("the data's label values have no names; pass concept_names=")
        return list(task.source.concept_names)
    return list(getattr(task.segmenter, "concept_names", None) or []) or None


class _Found(NamedTuple):
    """What the passes found (complete on rank 0)."""

    topk: TopK
    thresholds: np.ndarray
    grid: np.ndarray
    values: np.ndarray
    tally: Optional[IoUTally]
    names: Optional[List[str]]
    sizes: Optional[Sizes]


def _compute(run: _Passes, entry: Optional[_Entry], names: Optional[List[str]]) -> _Found:
    """Both passes (pass 1 from the checkpoint when there is one)."""
    store = ActivationStore(run.config.activation_cache_bytes, run.shards.local)
    saved = entry.load_checkpoint(run.probe.device) if entry is not None else None
    if saved is None:
        sketch, topk = _pass_one(run, store)
        if entry is not None:
            entry.save_checkpoint(sketch, topk)
    else:
        sketch, topk = saved
    thr, grid, values = _thresholds(run, sketch)
    tally, names, sizes = _pass_two(run, store, torch.as_tensor(thr, device=run.probe.device), names)
    return _Found(topk, thr, grid, values, tally, names, sizes)


def _result(task: Task, n: int, config: DissectConfig, model_hash: str, found: _Found) -> DissectionResult:
    topk, thr, grid, values, tally, names, sizes = found
    assert tally is not None and names is not None and sizes is not None
    (act_size, label_size), (top_values, top_indices) = sizes, topk.result()
    return DissectionResult(
        layer=task.layer, model_kind=task.kind, concept_names=tuple(names), quantile=float(config.quantile),
        thresholds=np.asarray(thr, np.float32), quantile_levels=np.asarray(grid, np.float64),
        quantile_values=np.asarray(values, np.float32), iou=tally.iou().cpu().numpy(),
        intersection=tally.intersection.cpu().numpy(), unit_area=tally.unit_area.cpu().numpy(),
        concept_area=tally.concept_area.cpu().numpy(), topk_values=top_values.float().cpu().numpy(),
        topk_indices=top_indices.cpu().numpy(), num_images=n, pixels=int(tally.pixels),
        activation_size=act_size, label_size=label_size, data=task.source.identity, model_hash=model_hash,
        params=config.key_params(n))


def run_dissection(task: Task, config: DissectConfig) -> DissectionResult:
    """Dissect ``task`` with ``config``: everything that can be checked is checked before any work."""
    get_module(task.model, task.layer)
    n = config.check(len(task.source))
    seg = task.segmenter_module
    if config.device is not None:
        task.model.to(config.device)
        if seg is not None:
            seg.to(config.device)
    device = model_device(task.model)
    names = _initial_names(task)
    par = Dist(config.distributed)
    model_hash = weights_hash(task.model) if par.rank == 0 else ""
    entry = _entry(task, config, n, names, model_hash, par)
    hit = entry.load(par) if entry is not None else None
    if hit is not None:
        return hit
    run = _Passes(Probe(task, device), config, Shards(n, config.chunk, par.rank, par.world), par)
    with torch.no_grad(), eval_mode(task.model, seg):
        found = _compute(run, entry, names)
    state = None
    if par.rank == 0:
        result = _result(task, n, config, model_hash, found)
        if entry is not None:
            entry.save(result)
        if not par.on:
            return result
        state = to_state(result)
    return from_state(*par.broadcast(state))
