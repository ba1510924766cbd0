"""The settings of one dissection, shared by :func:`dissect_classifier` and :func:`dissect_generator`.

    config = DissectConfig(quantile=0.995, k=50, batch_size=32, cache_dir="~/.cache/ganviz")
    n = config.check(len(source))      # the number of images to use; raises on bad settings before any work
    config.key_params(n)               # the settings a cached result depends on

Vocabulary: ``quantile`` is the level (e.g. 0.99, the top 1%) at which each unit's threshold is read.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Optional, Union

import torch

__all__ = ["DissectConfig", "THRESHOLD_ON"]

THRESHOLD_ON = ("raw", "upsampled")


@dataclass(frozen=True)
class DissectConfig:
    """How a dissection runs (what it dissects is given separately).

    ``n``: the first ``n`` items of the data (``None``: all).  ``k``: top images kept per unit.  ``quantile``:
    each unit's mask is the upsampled map above the unit's activation value at this quantile.
    ``threshold_on``: where that quantile is read.  ``"raw"`` (default, as in the Network Dissection paper): over
    the layer's own feature-map values.  ``"upsampled"``: over the maps upsampled to the segmentation's
    resolution, the same maps the masks are cut from (the definition of some later code; bilinear upsampling
    smooths peaks, so thresholds come out a little lower and masks a little larger).  The two give different
    labels for some units (16%, 20 of the 125 labelled units of the bundled classifier's conv5_3 over 1,000
    scenes; thresholds 3% lower on average); the upsampled one costs a
    segmentation per image in the first pass and a sketch of (segmentation / feature map) times more samples.
    ``chunk_size``: images per quantile sketch before sketches are merged (rounded to whole batches; fixes the
    result independently of the number of processes).  ``sketch_resolution``: the sketch's size per tier.
    ``activation_cache_bytes``: keep pass-1 activations for pass 2 when they fit (0: always recompute).
    ``device``: move the model (and segmenter) there; ``None``: the model's own device.  ``cache_dir``: reuse
    a result computed with identical weights, data and settings, and resume after pass 1.  ``progress``: show
    progress bars.  ``distributed``: ``None`` uses ``torch.distributed`` when it is initialised.
    """

    n: Optional[int] = None
    batch_size: int = 64
    k: int = 100
    quantile: float = 0.99
    chunk_size: int = 512
    sketch_resolution: int = 2048
    activation_cache_bytes: int = 512 << 20
    device: Optional[Union[str, torch.device]] = None
    cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None
    progress: bool = True
    distributed: Optional[bool] = None
    threshold_on: str = "raw"

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> "DissectConfig":
        """The config whose fields take their values from ``values`` (e.g. an entry point's ``locals()``)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def check(self, available: int) -> int:
        """The number of images to dissect out of ``available``; ``ValueError`` for settings that cannot work."""
        n = available if self.n is None else int(self.n)
        if n > available:
            raise ValueError(f"n={n} but the data has only {available} items")
        if n < 1:
            raise ValueError(f"expected at least 1 image to dissect, got n={n}")
        q = self.quantile
        if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0.0 < float(q) < 1.0:
            raise ValueError(f"quantile must lie strictly between 0 and 1 (0.99 = top 1%), got {q!r}")
        if self.threshold_on not in THRESHOLD_ON:
            raise ValueError(f"threshold_on must be one of {THRESHOLD_ON}, got {self.threshold_on!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError(f"batch_size and chunk_size must be >= 1, got {self.batch_size}, {self.chunk_size}")
        return n

    @property
    def chunk(self) -> int:
        """Images per chunk: ``chunk_size`` rounded to a whole number of batches (at least one)."""
        return self.batch_size * max(1, round(self.chunk_size / self.batch_size))

    def key_params(self, n: int) -> Dict[str, Any]:
        """The settings a result depends on (stored in ``DissectionResult.params`` and in the cache key)."""
        return {"k": self.k, "quantile": float(self.quantile), "batch_size": self.batch_size, "chunk": self.chunk,
                "sketch_resolution": self.sketch_resolution, "n": n,
                **({"threshold_on": self.threshold_on} if self.threshold_on != "raw" else {})}
