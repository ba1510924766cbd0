"""Several named statistics in one ``.npz`` file (arrays and json, no pickle), and merging lists of them.

    save_stats("pass1.npz", quantile=sketch, topk=topk)       # written atomically
    saved = load_stats("pass1.npz", device="cuda")           # {"quantile": Quantile, "topk": TopK}
    total = merge_all([part_a, part_b])                      # a new statistic; the parts are untouched
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, Sequence, TypeVar, Union

import numpy as np

from ..cache import atomic_write
from .base import Device, Stat, registered

__all__ = ["merge_all", "save_stats", "load_stats"]

S = TypeVar("S", bound=Stat)
_FORMAT = 1


def merge_all(stats: Sequence[S]) -> S:
    """Merge statistics over disjoint data into a new one (inputs untouched)."""
    if not stats:
        raise ValueError("merge_all needs at least one statistic")
    result = copy.deepcopy(stats[0])
    for other in stats[1:]:
        result.merge(other)
    return result


def save_stats(path: Union[str, os.PathLike], **stats: Stat) -> None:
    """Write named statistics to one ``.npz`` at ``path`` (exactly), atomically.

    Arrays are stored as ``"{name}/{key}"``; the class of each statistic is kept
    as json in the ``"__meta__"`` entry.  No pickle is involved.
    """
    arrays: Dict[str, np.ndarray] = {}
    kinds: Dict[str, str] = {}
    for name, stat in stats.items():
        if "/" in name or name.startswith("__"):
            raise ValueError(f"invalid statistic name {name!r}")
        if not isinstance(stat, Stat):
            raise TypeError(f"{name!r} is not a Stat")
        kinds[name] = type(stat).__name__
        for key, value in stat.state_dict().items():
            arrays[f"{name}/{key}"] = np.asarray(value)
    arrays["__meta__"] = np.asarray(json.dumps({"format": _FORMAT, "stats": kinds}))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write, suffix=".npz")


def load_stats(path: Union[str, os.PathLike], device: Device = None) -> Dict[str, Stat]:
    """Read statistics written by :func:`save_stats` (no pickle)."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        grouped: Dict[str, Dict[str, Any]] = {name: {} for name in meta["stats"]}
        for key in z.files:
            name, sep, field = key.partition("/")
            if sep and name in grouped:
                grouped[name][field] = z[key]
    out: Dict[str, Stat] = {}
    for name, kind in meta["stats"].items():
        out[name] = registered(kind).from_state_dict(grouped[name], device)
    return out
