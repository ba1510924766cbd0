"""Model factories importable by path (``_factories:classifier``) for command-line tests."""
from __future__ import annotations

import torch

from ganviz.zoo.arch import ToyGenerator, ToySegmenter, ToyVGG


def classifier() -> ToyVGG:
    """A randomly initialised toy classifier, identical in every process (fixed seed)."""
    torch.manual_seed(0)
    return ToyVGG(8).eval()


def generator() -> ToyGenerator:
    """A randomly initialised toy generator, identical in every process (fixed seed)."""
    torch.manual_seed(0)
    return ToyGenerator(128).eval()


def segmenter() -> ToySegmenter:
    """A randomly initialised toy segmenter (16 concepts), identical in every process."""
    torch.manual_seed(0)
    return ToySegmenter(16).eval()
