"""The bundled toy text-image model as a :class:`~ganviz.textimage.TextImageModel`."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..textimage import TextImageModel, WordTokenizer
from ..toyworld.captions import CLASS_WORDS
from ..toyworld.concepts import SCENE_CLASSES
from .registry import load

__all__ = ["toy_text_image", "TEMPLATES", "DENSE_SCALE"]

TEMPLATES = tuple(f"a photo of a {CLASS_WORDS[c][0]} with {{}}" for c in SCENE_CLASSES) + ("a photo of a {}",)
"""How a word is read by the toy model: in the frame of its captions, once per scene class (so that no class
wins), and alone after "a photo of a" (as class names are)."""


DENSE_SCALE = 2
"""Local embeddings are read from the image enlarged this many times: a 16x16 grid instead of conv5_3's 8x8, which is
coarser than most parts of a scene (word maps: docs/labels.md)."""


def toy_text_image(device: str | torch.device = "cpu", dense: bool = False) -> TextImageModel:
    """The bundled toy text-image model (``toy-clip``): 64x64 toy scenes and the words of toy captions.

    Regions (``regions=`` of the labelling functions) are cropped and encoded as images of their own, as the model
    was trained on region crops; ``dense=True`` describes them with its local embeddings instead (one pass per image,
    ``ToyCLIP.encode_image_dense`` on the image enlarged :data:`DENSE_SCALE` times; less accurate: docs/models.md)
    and can segment images into words (:class:`~ganviz.textimage.WordSegmenter`)."""
    model, meta = load("toy-clip", device)
    tokenizer = WordTokenizer(meta.extra["vocabulary"])

    def text_fn(texts: Sequence[str]) -> Tensor:
        return model.encode_text(tokenizer(texts).to(device))

    def preprocess(images: Tensor) -> Tensor:
        if images.shape[-2:] != (meta.resolution, meta.resolution):
            images = F.interpolate(images, size=(meta.resolution,) * 2, mode="bilinear", antialias=True,
                                   align_corners=False)
        return meta.to_input(images)

    def local_embeddings(x: Tensor) -> Tensor:  # a 16x16 grid: conv5_3's 8x8 is coarser than most parts
        return model.encode_image_dense(F.interpolate(x, scale_factor=DENSE_SCALE, mode="bilinear",
                                                      align_corners=False))

    return TextImageModel(model.encode_image, text_fn, preprocess, "toy-clip", model, tokenizer.known,
                          templates=TEMPLATES, dense_fn=local_embeddings if dense else None)
