"""ganviz: look inside vision networks - dissection, ablation and GAN Paint, live in Jupyter.

The flat facade (``ganviz.<name>``) holds what a notebook user types: the entry points (``load``,
``load_checkpoint``, ``dissect_classifier``, ``dissect_generator``, ``gradcam``, ``find_flip``, ``invert``, ``fid``),
the objects they return and take (results, data sources, adapters, edits, ``Trace``, ``Painter``, ``Inverter``,
``GeneratorProbe``), the streaming statistics, and reading a layer in another basis (``with_basis``,
``train_sae``, ``net2vec_directions``, ``cav_directions``: features used wherever units are), and labelling units
with any words through a text-image model (``toy_text_image``, ``load_text_image``, ``label_classifier_units``,
``label_generator_units``, ``WordSegmenter``: a segmenter whose classes are words).  Everything else is
imported from its module.  No widget imports here: widgets live in ``ganviz.widgets``.
"""
from . import toyworld, zoo
from .ablation import find_flip
from .basis import BasisError, DictionaryBasis, DirectionsBasis, IdentityBasis, with_basis
from .adapters import ClassifierAdapter, GeneratorAdapter, SegmenterAdapter, as_classifier, as_generator
from .checkpoints import CheckpointError
from .directions import cav_directions, net2vec_directions
from .dissect import (DatasetSource, DissectionResult, GeneratorSource, TensorSource, ToyWorldSource, UnitLabel,
                      dissect_classifier, dissect_generator)
from .edits import Ablate, Compose, Edit, Replace, Scale, SetLevel
from .fid_score import fid
from .formats import inception_features, load_checkpoint
from .generator_units import GeneratorProbe
from .gradcam import gradcam
from .hf import load_hf
from .imaging import colorize_labels, from_uint8, make_grid, png_bytes, to_uint8
from .inversion import Inverter, finetune, invert
from .layouts import Layout, LayoutError, infer_layout
from .metrics import frechet_distance, layer_features
from .openvocab import WordLabels, default_vocabulary, label_classifier_units, label_generator_units
from .paint import Painter
from .preprocessing import Normalize
from .sae import load_dictionary, save_dictionary, train_sae
from .clip_files import load_text_image
from .textimage import TextImageModel, WordSegmenter
from .zoo.toy_clip import toy_text_image
from .stats import IoUTally, Mean, Quantile, TopK, Variance, load_stats, merge_all, save_stats
from .toyworld import CONCEPTS, SCENE_CLASSES, ToyWorld
from .trace import LayerNotFoundError, Trace, count_hooks, edited_forward, get_module, layer_names, retain
from .zoo import ChecksumError, ModelInfo, load

__version__ = "0.1.0"

__all__ = [
    "toyworld", "zoo", "load", "load_checkpoint", "CheckpointError", "ClassifierAdapter", "GeneratorAdapter",
    "SegmenterAdapter", "as_classifier", "as_generator", "ModelInfo", "ChecksumError", "ToyWorld", "CONCEPTS", "SCENE_CLASSES", "Normalize",
    "Trace", "retain", "edited_forward", "get_module", "layer_names", "count_hooks", "LayerNotFoundError",
    "Edit", "Ablate", "Scale", "SetLevel", "Replace", "Compose",
    "TopK", "Quantile", "IoUTally", "Mean", "Variance", "merge_all", "save_stats", "load_stats",
    "dissect_classifier", "dissect_generator", "DissectionResult", "UnitLabel", "ToyWorldSource", "TensorSource",
    "DatasetSource", "GeneratorSource", "gradcam", "find_flip", "GeneratorProbe", "Painter", "Inverter", "invert",
    "finetune", "frechet_distance", "fid", "inception_features", "layer_features", "to_uint8", "from_uint8",
    "colorize_labels", "make_grid", "png_bytes", "Layout", "LayoutError", "infer_layout", "load_hf",
    "with_basis", "IdentityBasis", "DictionaryBasis", "DirectionsBasis", "BasisError", "train_sae", "load_dictionary",
    "save_dictionary", "net2vec_directions", "cav_directions", "TextImageModel", "WordSegmenter", "toy_text_image",
    "load_text_image", "label_classifier_units", "label_generator_units", "WordLabels", "default_vocabulary",
]
