"""The result of a dissection: per-unit thresholds, IoU with every concept, top images; one ``.npz`` on disk.

    result.labels()[0]               # UnitLabel(unit=3, concept='tree', iou=0.21, runners_up=(...))
    result.units_for("sky", n=10)    # units ranked by IoU with sky
    result.concept_counts()          # {'sky': 12, 'tree': 9, ...}
    result.save("conv5_3.npz"); DissectionResult.load("conv5_3.npz")

Vocabulary: ``quantile`` (e.g. 0.99) is the level each unit's mask is cut at; ``thresholds[c]`` is the unit's
activation value at that quantile; ``quantile_levels``/``quantile_values`` sample each unit's distribution.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..basis import unit_noun
from ..cache import atomic_write

__all__ = ["UnitLabel", "LABEL_MIN_IOU", "DissectionResult", "DEFAULT_QUANTILES", "FORMAT", "ARRAYS", "to_state", "from_state"]

FORMAT = 1
"""Version of the saved ``.npz`` layout (also part of every cache key)."""

LABEL_MIN_IOU = 0.04
"""IoU a unit's best concept must reach to name the unit (Bau et al. 2017)."""

DEFAULT_QUANTILES: np.ndarray = np.unique(np.round(np.concatenate([
    np.linspace(0.0, 1.0, 101), np.linspace(0.99, 1.0, 11), [0.995, 0.999, 0.9995]]), 6))
"""Quantiles at which every result stores each unit's activation value (for histograms and other thresholds)."""


@dataclass(frozen=True)
class UnitLabel:
    """A unit's best concept and its IoU, with the next best concepts ``((name, iou), ...)``."""

    unit: int
    concept: str
    iou: float
    runners_up: Tuple[Tuple[str, float], ...] = ()

    def labelled(self, min_iou: float = LABEL_MIN_IOU) -> bool:
        """Whether the best IoU reaches the labelling threshold (Network Dissection: 0.04)."""
        return self.iou >= min_iou

    def name(self, min_iou: float = LABEL_MIN_IOU) -> str:
        """The concept's name, or ``"unlabelled"`` below the threshold (a unit whose best IoU with hats is 0.02 is
        not a hat unit)."""
        return self.concept if self.labelled(min_iou) else "unlabelled"

    def describe(self, min_iou: float = LABEL_MIN_IOU, digits: int = 2) -> str:
        """``"hat, IoU 0.21"`` or, below the threshold, ``"unlabelled (best: hat, IoU 0.02)"``."""
        text = f"{self.concept}, IoU {self.iou:.{digits}f}"
        return text if self.labelled(min_iou) else f"unlabelled (best: {text})"


ARRAYS = ("thresholds", "quantile_levels", "quantile_values", "iou", "intersection", "unit_area",
           "concept_area", "topk_values", "topk_indices")


@dataclass(eq=False)
class DissectionResult:
    """Everything a dissection of one layer found; saveable as a single ``.npz`` (arrays + json, no pickle).

    Arrays: ``thresholds[C]`` (the activation value each unit's mask is cut at), ``quantile_levels[L]`` and
    ``quantile_values[C, L]`` (each unit's activation distribution), ``iou[C, K]``, the raw tallies
    ``intersection[C, K]``, ``unit_area[C]`` (active pixels) and ``concept_area[K]``, and
    ``topk_values[C, k]`` / ``topk_indices[C, k]`` (image indices into the data, by the unit's spatial max).
    """

    layer: str
    model_kind: str
    concept_names: Tuple[str, ...]
    quantile: float
    thresholds: np.ndarray
    quantile_levels: np.ndarray
    quantile_values: np.ndarray
    iou: np.ndarray
    intersection: np.ndarray
    unit_area: np.ndarray
    concept_area: np.ndarray
    topk_values: np.ndarray
    topk_indices: np.ndarray
    num_images: int
    pixels: int
    activation_size: Tuple[int, int]
    label_size: Tuple[int, int]
    data: str = ""
    model_hash: str = ""
    params: Dict[str, Any] = field(default_factory=dict)

    # -- shape ----------------------------------------------------------------------------------------------
    @property
    def num_units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def num_concepts(self) -> int:
        return int(self.iou.shape[1])

    @property
    def best_concept(self) -> np.ndarray:
        """Index of each unit's best concept ``[C]`` (ties: the lower index)."""
        return self.iou.argmax(1)

    @property
    def best_iou(self) -> np.ndarray:
        """Each unit's best IoU ``[C]``."""
        return self.iou.max(1)

    def _concept_index(self, concept: Union[str, int]) -> int:
        if isinstance(concept, (int, np.integer)):
            if not 0 <= int(concept) < self.num_concepts:
                raise IndexError(f"concept {concept} out of range 0..{self.num_concepts - 1}")
            return int(concept)
        try:
            return self.concept_names.index(concept)
        except ValueError:
            raise KeyError(f"no concept {concept!r}; concepts: {', '.join(self.concept_names)}") from None

    # -- labels ---------------------------------------------------------------------------------------------
    def label(self, unit: int, runners_up: int = 3) -> UnitLabel:
        """The label of ``unit``: best concept, its IoU and the next ``runners_up`` concepts."""
        row = self.iou[int(unit)]
        order = np.argsort(-row, kind="stable")
        best = int(order[0])
        rest = tuple((self.concept_names[int(j)], float(row[j])) for j in order[1:1 + runners_up])
        return UnitLabel(int(unit), self.concept_names[best], float(row[best]), rest)

    def labels(self, min_iou: float = 0.04, runners_up: int = 3) -> List[UnitLabel]:
        """Labels of the units whose best IoU is at least ``min_iou``, in unit order."""
        return [self.label(u, runners_up) for u in np.nonzero(self.best_iou >= min_iou)[0]]

    def noun(self, n: int = 1) -> str:
        """What a channel of this layer is called: "unit(s)", or "feature(s)" for the features of a basis."""
        return unit_noun(self.layer, n)

    def units_for(self, concept: Union[str, int], n: Optional[int] = None, labelled_only: bool = False,
                  min_iou: float = 0.0) -> List[int]:
        """Units ranked by their IoU with ``concept`` (descending).

        ``labelled_only`` keeps units whose best concept it is; ``min_iou`` drops weaker units; ``n`` caps.
        """
        j = self._concept_index(concept)
        scores = self.iou[:, j]
        order = np.argsort(-scores, kind="stable")
        keep = scores[order] >= min_iou
        if labelled_only:
            keep &= self.best_concept[order] == j
        units = [int(u) for u in order[keep]]
        return units if n is None else units[:n]

    def concept_counts(self, min_iou: float = 0.04) -> Dict[str, int]:
        """Number of units per best concept among units with IoU >= ``min_iou``, most units first."""
        best, ok = self.best_concept, self.best_iou >= min_iou
        counts = np.bincount(best[ok], minlength=self.num_concepts)
        order = sorted(range(self.num_concepts), key=lambda j: (-counts[j], j))
        return {self.concept_names[j]: int(counts[j]) for j in order if counts[j] > 0}

    def threshold_at(self, q: float) -> np.ndarray:
        """Each unit's threshold (activation value) at quantile ``q`` ``[C]``, interpolated in the stored grid.

        ``threshold_at(result.quantile)`` is close to ``thresholds`` (exact when the quantile is on the grid).
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must lie in [0, 1], got {q}")
        return np.array([np.interp(q, self.quantile_levels, row) for row in self.quantile_values],
                        dtype=np.float32)

    def summary(self, min_iou: float = 0.04) -> str:
        """A few lines of text: units, interpretable units, units per concept."""
        counts = self.concept_counts(min_iou)
        lines = [f"layer {self.layer} ({self.model_kind}): {self.num_units} units, {self.num_images} images, "
                 f"threshold quantile {self.quantile}",
                 f"{sum(counts.values())} units with IoU >= {min_iou} covering {len(counts)} concepts"]
        width = max([len(c) for c in counts] + [7])
        lines += [f"  {name:<{width}} {count:4d}" for name, count in counts.items()]
        return "\n".join(lines)

    def plot_concept_counts(self, min_iou: float = 0.04, ax: Any = None, title: Optional[str] = None) -> Any:
        """Bar chart of :meth:`concept_counts`; returns a ``matplotlib.figure.Figure`` (no pyplot state)."""
        from ..charts import figure

        counts = self.concept_counts(min_iou)
        if ax is None:
            fig = figure((max(4.0, 0.45 * len(counts) + 1.5), 3.2))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        names = list(counts)
        ax.bar(range(len(names)), [counts[c] for c in names], color="#4c72b0")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right")
        ax.set_ylabel(self.noun(2))
        if not names:
            ax.text(0.5, 0.5, f"no {self.noun()} reaches IoU {min_iou}", ha="center", va="center",
                    transform=ax.transAxes)
        noun = self.noun(2)
        ax.set_title(title or f"which {noun} match concepts best: {self.layer} "
                              f"({sum(counts.values())}/{self.num_units} {noun}, IoU >= {min_iou})", fontsize=9)
        return fig

    # -- persistence ----------------------------------------------------------------------------------------
    def _meta(self) -> Dict[str, Any]:
        return {"format": FORMAT, "layer": self.layer, "model_kind": self.model_kind,
                "concept_names": list(self.concept_names), "quantile": self.quantile,
                "num_images": self.num_images, "pixels": self.pixels,
                "activation_size": list(self.activation_size), "label_size": list(self.label_size),
                "data": self.data, "model_hash": self.model_hash, "params": self.params}

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write one ``.npz`` at exactly ``path`` (atomically): the arrays and a json ``meta`` entry."""
        arrays = {name: np.asarray(getattr(self, name)) for name in ARRAYS}
        arrays["meta"] = np.asarray(json.dumps(self._meta()))

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path, write, suffix=".npz")

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "DissectionResult":
        """Read a result written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(os.fspath(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"unsupported dissection format {meta.get('format')!r}")
            return from_state(meta, {name: z[name] for name in ARRAYS})

    def __repr__(self) -> str:
        n_ok = int((self.best_iou >= 0.04).sum())
        return (f"DissectionResult(layer={self.layer!r}, kind={self.model_kind!r}, units={self.num_units}, "
                f"concepts={self.num_concepts}, images={self.num_images}, labelled@0.04={n_ok})")


def to_state(result: DissectionResult) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """``(meta, arrays)``: what :func:`from_state` needs (for sending a result between processes)."""
    return result._meta(), {a: getattr(result, a) for a in ARRAYS}


def from_state(meta: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> DissectionResult:
    """The result described by ``meta`` (json-able) and ``arrays``."""
    return DissectionResult(layer=meta["layer"], model_kind=meta["model_kind"],
                            concept_names=tuple(meta["concept_names"]), quantile=float(meta["quantile"]),
                            num_images=int(meta["num_images"]), pixels=int(meta["pixels"]),
                            activation_size=tuple(meta["activation_size"]), label_size=tuple(meta["label_size"]),
                            data=meta["data"], model_hash=meta["model_hash"], params=dict(meta["params"]),
                            **{a: np.asarray(v) for a, v in arrays.items()})
