"""FID with ganviz's default features (floor 4: it loads a bundled model).

    fid(real, fake)                                               # the bundled classifier's pooled conv5_3
    fid(real, fake, inception_features("pt_inception-2015-12-05-6726825d.pth"))   # the usual Inception FID
"""
from __future__ import annotations

from typing import Optional

import torch

from .metrics import FeatureExtractor, frechet_distance, layer_features
from .zoo import load

__all__ = ["fid", "bundled_classifier_features"]


def bundled_classifier_features() -> FeatureExtractor:
    """The default FID features: the bundled toy classifier's pooled ``conv5_3`` (192-d)."""
    classifier, _ = load("toy-classifier")
    return layer_features(classifier, "conv5_3")



def fid(real: torch.Tensor, fake: torch.Tensor, extractor: Optional[FeatureExtractor] = None) -> float:
    """Frechet distance between the features of two image sets ``(N, 3, H, W)`` in [-1, 1].

    ``extractor`` defaults to :func:`bundled_classifier_features` (meaningful for toy-world images); pass
    ``inception_features("pt_inception-2015-12-05-6726825d.pth")`` for the usual Inception FID when you have
    the weights file, or ``layer_features(model, layer, ...)`` for any network.  Values from different
    extractors are not comparable.
    """
    for name, x in (("real", real), ("fake", fake)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} images must be a (N, 3, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    extractor = extractor or bundled_classifier_features()
    return frechet_distance(extractor(real), extractor(fake))
