"""Network Dissection and GAN Dissection: label the units of a layer with concepts.

    model, info = ganviz.zoo.load("toy-classifier")
    result = dissect_classifier(model, "conv5_3", ToyWorldSource(n=2000, seed=1))
    result.concept_counts()           # {'sky': 12, 'tree': 9, ...}
    result.labels()[0]                # UnitLabel(unit=3, concept='tree', iou=0.21, runners_up=(...))
    fig = result.plot_concept_counts()

The same call under ``torchrun`` (with ``torch.distributed`` initialised) shards the images over the ranks and
gives the same result as one process.

Modules, bottom up: :mod:`.sources` (what is read), :mod:`.result` (:class:`DissectionResult`, saving and
loading), :mod:`.config` (:class:`DissectConfig`, the settings), :mod:`.distributed` (ranks and shards),
:mod:`.probe` (one batch's activations and labels), :mod:`.engine` (the two passes, cache and resume) and
:mod:`.api` (:func:`dissect_classifier`, :func:`dissect_generator`).  The upsampled-IoU kernel is
:meth:`ganviz.stats.IoUTally.add_upsampled`.
"""
from __future__ import annotations

from .api import dissect_classifier, dissect_generator
from .config import DissectConfig
from .engine import run_dissection
from .probe import Task
from .result import DEFAULT_QUANTILES, DissectionResult, UnitLabel
from .sources import (DatasetSource, DataSource, GeneratorSource, LatentSource, TensorSource, ToyWorldSource,
                      as_source)

__all__ = [
    "DataSource",
    "ToyWorldSource",
    "TensorSource",
    "DatasetSource",
    "GeneratorSource",
    "LatentSource",
    "as_source",
    "UnitLabel",
    "DissectionResult",
    "DissectConfig",
    "Task",
    "run_dissection",
    "dissect_classifier",
    "dissect_generator",
    "DEFAULT_QUANTILES",
]
