"""The public entry points: dissect a classifier's or a generator's layer.

    model, info = ganviz.zoo.load("toy-classifier")
    result = dissect_classifier(model, "conv5_3", ToyWorldSource(n=2000, seed=1), cache_dir="~/.cache/ganviz")
    generator, _ = ganviz.zoo.load("toy-gan"); segmenter, _ = ganviz.zoo.load("toy-segmenter")
    result = dissect_generator(generator, "layer4", segmenter, n=1000, quantile=0.99)

Both build a :class:`~ganviz.dissect.config.DissectConfig` from their keyword arguments and a
:class:`~ganviz.dissect.probe.Task` from the rest, and run :func:`~ganviz.dissect.engine.run_dissection`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..plumbing import z_dim_of
from ..preprocessing import identity, to_signed
from .config import DissectConfig
from .engine import run_dissection
from .probe import Task
from .result import DissectionResult
from .sources import DataSource, GeneratorSource, LatentSource, as_source

__all__ = ["dissect_classifier", "dissect_generator"]

Device = Optional[Union[str, torch.device]]
PathLike = Optional[Union[str, "os.PathLike[str]"]]


def dissect_classifier(model: nn.Module, layer: str, data: Any, *,
                       segmenter: Optional[Callable[[Tensor], Any]] = None, n: Optional[int] = None,
                       batch_size: int = 64, k: int = 100, quantile: float = 0.99,
                       preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                       segmenter_preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                       concept_names: Optional[Sequence[str]] = None, device: Device = None,
                       cache_dir: PathLike = None, progress: bool = True,
                       chunk_size: int = 512, sketch_resolution: int = 2048,
                       activation_cache_bytes: int = 512 << 20,
                       distributed: Optional[bool] = None, threshold_on: str = "raw") -> DissectionResult:
    """Dissect ``layer`` of an image classifier over ``data`` (first ``n`` items).

    ``data``: a :class:`DataSource` (e.g. :class:`ToyWorldSource`), an image tensor, or a Dataset.  Concept
    labels come from the data, or from ``segmenter`` (logits ``(N,K,H,W)`` or labels ``(N,H,W)``) applied to
    ``segmenter_preprocess(images)``.  The model sees ``preprocess(images)`` (default
    :data:`ganviz.preprocessing.to_signed`, ``images * 2 - 1``).  ``quantile``: each unit's mask is its
    upsampled map above the unit's threshold, its activation value at this quantile (0.99: the top 1%).
    ``device``: move the model (and segmenter) there; default the model's own device.  ``cache_dir``: reuse
    a result computed with identical weights, data and parameters (and resume after pass 1).
    ``activation_cache_bytes``: keep pass-1 activations for pass 2 when they fit (0: always recompute).
    ``distributed``: ``None`` uses ``torch.distributed`` when it is initialised.  ``threshold_on``: ``"raw"``
    (the quantile of the feature map's own values, as in the Network Dissection paper) or ``"upsampled"`` (of
    the upsampled maps the masks are cut from); see :class:`DissectConfig`.
    """
    config = DissectConfig.pick(locals())
    task = Task(model, layer, "classifier", as_source(data), preprocess=preprocess or to_signed,
                segmenter=segmenter, segmenter_preprocess=segmenter_preprocess or to_signed,
                concept_names=concept_names)
    return run_dissection(task, config)


def _latent_source(generator: nn.Module, n: Optional[int], z_dim: Any, seed: int, latents: Any) -> DataSource:
    if latents is None:  # z_dim may be a shape: only a missing one is looked up
        return GeneratorSource(1000 if n is None else n, z_dim_of(generator) if z_dim is None else z_dim, seed)
    if isinstance(latents, (Tensor, np.ndarray)):
        return LatentSource(torch.as_tensor(latents))
    return latents


def dissect_generator(generator: nn.Module, layer: str, segmenter: Callable[[Tensor], Any], *,
                      n: Optional[int] = None, z_dim: Optional[Union[int, Sequence[int]]] = None, seed: int = 1,
                      latents: Any = None, batch_size: int = 32, k: int = 100, quantile: float = 0.99,
                      segmenter_preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                      concept_names: Optional[Sequence[str]] = None, device: Device = None,
                      cache_dir: PathLike = None, progress: bool = True,
                      chunk_size: int = 512, sketch_resolution: int = 2048,
                      activation_cache_bytes: int = 512 << 20,
                      distributed: Optional[bool] = None, threshold_on: str = "raw") -> DissectionResult:
    """Dissect ``layer`` of a generator over ``n`` samples (default 1000), labelling generated images with
    ``segmenter``.

    Latents are ``GeneratorSource(n, z_dim, seed)`` (``z_dim`` defaults to ``generator.z_dim``) unless
    ``latents`` (a source or a tensor of ``z``) is given; top-k indices are sample indices into it.  The
    segmenter sees ``segmenter_preprocess(generator(z))`` (default: the output as is).  Other arguments as
    in :func:`dissect_classifier`.
    """
    config = DissectConfig.pick(locals())
    source = _latent_source(generator, n, z_dim, seed, latents)
    if segmenter is None:
        raise ValueError("dissecting a generator needs a segmenter to label the generated images")
    task = Task(generator, layer, "generator", source, preprocess=identity, segmenter=segmenter,
                segmenter_preprocess=segmenter_preprocess or identity, concept_names=concept_names)
    return run_dissection(task, config)
