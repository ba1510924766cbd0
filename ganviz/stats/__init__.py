"""Streaming, mergeable per-unit statistics.

    sketch, topk = Quantile(2048), TopK(100)
    sketch.add(samples)                          # [N, C]
    topk.add(acts.amax((2, 3)), index=indices)   # [N, C] values of images `indices`
    sketch.merge(other_sketch)                   # over disjoint data: as if one pass had seen both
    save_stats("stats.npz", quantile=sketch, topk=topk); load_stats("stats.npz")

Every statistic here runs on the device of the tensors given to it, keeps a
state whose size does not grow with the number of images added, and follows
one protocol (:class:`Stat`):

* ``add(...)`` folds in a batch;
* ``merge(other)`` folds in a statistic computed over disjoint data (in place,
  returns ``self``), so that the result is that of one pass over all data;
* ``state_dict()`` returns only numpy arrays, ints, floats and strings, so it
  can be written with ``np.savez``/json without pickle; ``load_state_dict(d)``
  and the classmethod ``from_state_dict(d)`` restore it;
* ``to_(device)`` moves the state in place.

Modules: :mod:`.base` (the protocol), :mod:`.topk`, :mod:`.quantile`, :mod:`.iou` (with the upsampled-IoU
kernel in :mod:`.upsampled`), :mod:`.moments` (mean, variance), :mod:`.io` (files, ``merge_all``).
"""
from __future__ import annotations

from .base import Stat
from .io import load_stats, merge_all, save_stats
from .iou import IoUTally
from .moments import Mean, Variance
from .quantile import Quantile
from .topk import TopK

__all__ = [
    "Stat",
    "TopK",
    "Quantile",
    "IoUTally",
    "Mean",
    "Variance",
    "merge_all",
    "save_stats",
    "load_stats",
]
