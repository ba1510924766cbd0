"""Dissections of the bundled models, shipped for the layers the widgets use so that apps start at once.

``dissection('toy-gan')`` returns the shipped result when it was computed for the installed weights, and
otherwise computes it (cached under ``$GANVIZ_CACHE``, default ``~/.cache/ganviz``).
``python -m ganviz.zoo.dissections toy-gan --layer layer4`` writes the shipped file after retraining.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional

from torch import nn

from ..cache import weights_hash
from ..dissect import DissectionResult, ToyWorldSource, dissect_classifier, dissect_generator
from .registry import WEIGHTS_DIR, info as model_info, load

__all__ = ["SAMPLES", "cache_dir", "shipped_path", "dissection", "export", "main"]

SAMPLES = 1000
"""Samples (generators) or toy-world images (classifiers) of a bundled dissection."""


def cache_dir() -> Path:
    """Where computed dissections are cached: ``$GANVIZ_CACHE`` or ``~/.cache/ganviz``."""
    return Path(os.environ.get("GANVIZ_CACHE", Path.home() / ".cache" / "ganviz"))


def shipped_path(name: str, layer: str, folder: Optional[Path] = None) -> Path:
    return Path(folder or WEIGHTS_DIR) / f"{name}.{layer}.dissection.npz"


def _compute(name: str, layer: str, model: nn.Module, cache: Optional[Path], progress: bool) -> DissectionResult:
    kind = model_info(name).kind
    if kind == "generator":
        segmenter, _ = load("toy-segmenter")
        return dissect_generator(model, layer, segmenter, n=SAMPLES, seed=1, cache_dir=cache, progress=progress)
    if kind == "classifier":
        return dissect_classifier(model, layer, ToyWorldSource(SAMPLES, seed=1), cache_dir=cache, progress=progress)
    raise ValueError(f"{name!r} is a {kind}; dissections exist for classifiers and generators")


def dissection(name: str = "toy-gan", layer: Optional[str] = None, model: Optional[nn.Module] = None, *,
               progress: bool = True) -> DissectionResult:
    """The dissection of ``layer`` (default: the model's default layer) of bundled model ``name``."""
    if model is None:
        model, info = load(name)
    else:
        info = model_info(name)
    layer = layer or info.default_layer
    if layer not in info.layers:
        raise KeyError(f"{name!r} has no layer {layer!r}; layers: {', '.join(info.layers)}")
    path = shipped_path(name, layer)
    if path.exists():
        result = DissectionResult.load(path)
        if result.model_hash == weights_hash(model):
            return result
    return _compute(name, layer, model, cache_dir(), progress)


def export(name: str, layer: str, folder: Optional[Path] = None) -> Path:
    """Compute the dissection of the installed weights and write it where :func:`dissection` finds it."""
    model, _ = load(name)
    result = _compute(name, layer, model, None, progress=True)
    path = shipped_path(name, layer, folder)
    result.save(path)
    return path


def main(argv: Optional[list] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ganviz.zoo.dissections", description=__doc__.split("\n")[0])
    p.add_argument("model", help="bundled model name, e.g. toy-gan")
    p.add_argument("--layer", required=True)
    p.add_argument("--folder", default=None, help="write here instead of the package's weights folder")
    args = p.parse_args(argv)
    print(f"wrote {export(args.model, args.layer, Path(args.folder) if args.folder else None)}")


if __name__ == "__main__":
    main()
