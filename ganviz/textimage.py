"""Text-image models (CLIP and the toy one) behind one small interface, for labelling units with words.

    tim = ganviz.toy_text_image()                   # the bundled toy model (ganviz.zoo.toy_clip)
    tim = ganviz.load_text_image("clip-vit-base")   # a CLIP from local files (ganviz.clip_files)
    img = tim.encode_images(images01)               # (N, 3, H, W) in [0, 1] -> (N, D) unit vectors
    txt = tim.encode_texts(["tree", "dome"])        # -> (W, D) unit vectors
    words = tim.encode_words(["tree", "dome"])      # each word in the model's prompt templates, averaged
    parts = tim.encode_regions(images01, 2)         # -> (N, 2, 2, D): each quarter of each image
    seg = WordSegmenter(tim, ["tree", "dome"])      # images in [-1, 1] -> word logits (N, 2, h, w): a segmenter
"""
from __future__ import annotations

import hashlib
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import callable_id, weights_hash
from .plumbing import eval_mode
from .preprocessing import to_signed
from .toyworld.captions import words as _words  # the toy captions' tokens: lower-case letter runs

__all__ = ["WordTokenizer", "TextImageModel", "WordSegmenter", "resize_center_crop"]


class WordTokenizer:
    """Whole lower-case words to ids: 0 pads, 1 is any word not in ``words``, then ``words`` in order."""

    PAD, UNK = 0, 1

    def __init__(self, words: Sequence[str], max_len: int = 32):
        self.words = tuple(words)
        self.index = {w: i + 2 for i, w in enumerate(self.words)}
        self.max_len = int(max_len)

    @property
    def vocab_size(self) -> int:
        return len(self.words) + 2

    def known(self, text: str) -> bool:
        """Whether every word of ``text`` is in the vocabulary (unknown words all read as one token)."""
        tokens = _words(text)
        return bool(tokens) and all(t in self.index for t in tokens)

    def __call__(self, texts: Sequence[str]) -> Tensor:
        out = torch.zeros(len(texts), self.max_len, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.index.get(t, self.UNK) for t in _words(text)][: self.max_len]
            ids = ids or [self.UNK]  # no letters at all: one unknown word, never an all-padding row
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


class TextImageModel:
    """Image and text encoders sharing one embedding space.

    ``image_fn`` maps preprocessed images to embeddings, ``text_fn`` maps a list of strings to embeddings;
    ``preprocess`` maps images in [0, 1] (N, 3, H, W) to the image encoder's input (resizing and normalising).
    Both outputs are normalised to unit length here.  ``templates`` are the prompts a single word is read in
    (``"a photo of a {}"``; CLIP's prompt ensembling averages them).  ``dense_fn``, where the image encoder's
    embedding is the average of local ones (an average pool before a linear projection), maps preprocessed
    images to those local embeddings ``(N, D, h, w)``, so that regions cost no extra pass (as in MaskCLIP).
    """

    def __init__(self, image_fn: Callable[[Tensor], Tensor], text_fn: Callable[[Sequence[str]], Tensor],
                 preprocess: Callable[[Tensor], Tensor], name: str, module: nn.Module | None = None,
                 known: Callable[[str], bool] | None = None, templates: Sequence[str] = ("{}",),
                 dense_fn: Optional[Callable[[Tensor], Tensor]] = None):
        self.image_fn, self.text_fn, self.preprocess = image_fn, text_fn, preprocess
        self.name = name
        self.module = module
        self._known = known
        self.templates = tuple(templates)
        if not self.templates or not all(isinstance(t, str) and t.count("{}") == 1 for t in self.templates):
            raise ValueError(f"templates must be strings with one '{{}}' for the word, got {templates!r}")
        self.dense_fn = dense_fn

    def known(self, text: str) -> bool:
        """Whether the text encoder has seen every word of ``text`` (always true for sub-word tokenizers)."""
        return True if self._known is None else self._known(text)

    @property
    def identity(self) -> str:
        """What the embeddings depend on, for cache keys: the name, the encoders and the module (weights and
        structure, e.g. QuickGELU or GELU)."""
        parts = [self.name, callable_id(self.image_fn), callable_id(self.text_fn), callable_id(self.preprocess),
                 repr(self.templates), callable_id(self.dense_fn) if self.dense_fn is not None else "no dense"]
        if self.module is not None:
            parts += [weights_hash(self.module), repr(self.module)]
        return "|".join(parts)

    @property
    def device(self) -> torch.device:
        params = list(self.module.parameters()) if self.module is not None else []
        return params[0].device if params else torch.device("cpu")

    @torch.no_grad()
    def encode_images(self, images: Tensor, batch: int = 256) -> Tensor:
        """Images in [0, 1] ``(N, 3, H, W)`` -> unit-length embeddings ``(N, D)`` (float32, on the CPU)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        with eval_mode(self.module):
            out = [self.image_fn(self.preprocess(images[i:i + batch].to(self.device).float())).float().cpu()
                   for i in range(0, len(images), batch)]
        return F.normalize(torch.cat(out), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """Strings -> unit-length embeddings ``(W, D)`` (float32, on the CPU)."""
        if isinstance(texts, str) or not len(texts):
            raise ValueError("expected a non-empty list of strings")
        with eval_mode(self.module):
            return F.normalize(self.text_fn(list(texts)).float().cpu(), dim=-1)

    def encode_words(self, words: Sequence[str]) -> Tensor:
        """Words (or phrases) -> unit-length embeddings ``(W, D)``: each word in every template, averaged."""
        if isinstance(words, str) or not len(words):
            raise ValueError("expected a non-empty list of words")
        if self.templates == ("{}",):
            return self.encode_texts(list(words))
        total = sum(self.encode_texts([t.format(w) for w in words]) for t in self.templates)
        return F.normalize(total, dim=-1)

    @torch.no_grad()
    def encode_regions(self, images: Tensor, grid: int, batch: int = 256) -> Tensor:
        """Images in [0, 1] ``(N, 3, H, W)`` -> unit-length embeddings ``(N, grid, grid, D)`` of a ``grid`` x ``grid``
        split of each image: pooled local embeddings where the model has ``dense_fn``, else each region cropped
        and encoded as an image of its own."""
        if int(grid) < 1:
            raise ValueError(f"grid must be a positive number of regions per side, got {grid}")
        grid = int(grid)
        if grid == 1:
            return self.encode_images(images, batch)[:, None, None]
        h, w = images.shape[-2:]
        if h < grid or w < grid:
            raise ValueError(f"cannot split {h}x{w} images into {grid}x{grid} regions")
        if self.dense_fn is not None:
            with eval_mode(self.module):
                out = [F.adaptive_avg_pool2d(self.dense_fn(self.preprocess(images[i:i + batch].to(self.device)
                                                                               .float())).float(), grid).cpu()
                       for i in range(0, len(images), batch)]
            return F.normalize(torch.cat(out).permute(0, 2, 3, 1), dim=-1)
        ys = [round(i * h / grid) for i in range(grid + 1)]
        xs = [round(j * w / grid) for j in range(grid + 1)]
        cells = [self.encode_images(images[:, :, ys[i]:ys[i + 1], xs[j]:xs[j + 1]], batch)
                 for i in range(grid) for j in range(grid)]
        return torch.stack(cells, 1).reshape(len(images), grid, grid, -1)

    def __repr__(self) -> str:
        return f"TextImageModel({self.name!r})"


class WordSegmenter(nn.Module):
    """A segmenter whose classes are words: each location of an image gets the cosine similarity of the text-image
    model's local embedding there (``dense_fn``) with each word (read in the model's templates) -- its
    open-vocabulary segmentation, as in MaskCLIP (Zhou et al., ECCV 2022).  It takes images in [-1, 1] like the
    bundled segmenter and has ``concept_names``, so ``dissect_classifier(model, layer, data, segmenter=seg)`` and
    ``dissect_generator(generator, layer, seg)`` label units with words by Network Dissection's IoU (the unit
    maps are compared with the word maps at the word maps' resolution).  The words' embeddings and the model's
    identity are buffers, so a dissection's cache key changes with either."""

    def __init__(self, text_image: TextImageModel, words: Sequence[str]):
        super().__init__()
        if text_image.dense_fn is None:
            raise ValueError(f"{text_image.name} has no local embeddings (dense_fn): a WordSegmenter needs a model "
                             "whose image embedding averages local ones, e.g. toy_text_image(dense=True)")
        if isinstance(words, str) or not len(words) or len(set(words)) != len(words):
            raise ValueError(f"words must be a non-empty list of distinct words, got {words!r}")
        self.concept_names = tuple(words)
        self.text_image = text_image  # not a submodule: its weights are in model_id
        self.register_buffer("words", text_image.encode_words(list(words)))
        digest = hashlib.sha256(text_image.identity.encode()).digest()
        self.register_buffer("model_id", torch.tensor(list(digest), dtype=torch.uint8))

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] ``(N, 3, H, W)`` -> word similarities ``(N, W, h, w)`` at the local embeddings' grid."""
        tim = self.text_image
        x = tim.preprocess(to_signed.inverse(images.to(tim.device).float()))
        with eval_mode(tim.module):
            local = F.normalize(tim.dense_fn(x).float(), dim=1)
        return torch.einsum("ndhw,kd->nkhw", local, self.words.to(local.device)).to(images.device)


def resize_center_crop(images: Tensor, size: int) -> Tensor:
    """CLIP's image preprocessing on tensors: bicubic resize of the shorter side to ``size``, centre crop."""
    h, w = images.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        images = F.interpolate(images, size=(nh, nw), mode="bicubic", align_corners=False,
                               antialias=nh < h).clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    return images[..., top:top + size, left:left + size]
