"""ganviz: look inside vision networks - dissection, ablation and GAN Paint, live in Jupyter.

The flat public API re-exports the core (no widget imports here); widgets live in ``ganviz.widgets``.
"""
from . import toyworld, zoo
from .adapters import ClassifierAdapter, GeneratorAdapter, SegmenterAdapter
from .checkpoints import CheckpointError
from .formats import load_checkpoint
from .dissect import (DatasetSource, DissectionResult, GeneratorSource, TensorSource, ToyWorldSource, UnitLabel,
                      dissect_classifier, dissect_generator)
from .imaging import colorize_labels, from_uint8, make_grid, png_bytes, to_uint8
from .metrics import fid, frechet_distance, inception_features, layer_features
from .stats import IoUTally, Mean, Quantile, TopK, Variance, load_stats, merge_all, save_stats
from .toyworld import CONCEPTS, SCENE_CLASSES, ToyWorld
from .trace import (Ablate, Compose, Edit, LayerNotFoundError, Replace, Scale, SetLevel, Trace, count_hooks,
                    edited_forward, get_module, layer_names, retain)
from .zoo import ChecksumError, ModelInfo, load

__version__ = "0.1.0"

__all__ = [
    "toyworld", "zoo", "load", "load_checkpoint", "CheckpointError", "ClassifierAdapter", "GeneratorAdapter",
    "SegmenterAdapter", "ModelInfo", "ChecksumError", "ToyWorld", "CONCEPTS", "SCENE_CLASSES",
    "Trace", "retain", "edited_forward", "get_module", "layer_names", "count_hooks", "LayerNotFoundError",
    "Edit", "Ablate", "Scale", "SetLevel", "Replace", "Compose",
    "TopK", "Quantile", "IoUTally", "Mean", "Variance", "merge_all", "save_stats", "load_stats",
    "dissect_classifier", "dissect_generator", "DissectionResult", "UnitLabel", "ToyWorldSource", "TensorSource",
    "DatasetSource", "GeneratorSource", "frechet_distance", "fid", "inception_features", "layer_features", "to_uint8", "from_uint8", "colorize_labels", "make_grid", "png_bytes",
]
