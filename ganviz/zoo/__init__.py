"""Bundled models trained on the toy world: ``load('toy-classifier' | 'toy-gan' | 'toy-segmenter')``."""
from .dissections import dissection
from .registry import ChecksumError, ModelInfo, adapter, available, info, load, save_weights

__all__ = ["load", "adapter", "info", "available", "ModelInfo", "ChecksumError", "save_weights", "dissection"]
