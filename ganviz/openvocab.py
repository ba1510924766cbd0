"""Label units with any words, using a text-image model instead of a segmenter (CLIP-Dissect's idea).

    tim = ganviz.toy_text_image()                    # or ganviz.load_text_image("path/to/clip-model-dir")
    words = label_classifier_units(model, "conv5_3", ToyWorldSource(2000, seed=1), tim, ["tree", "dome", ...])
    words.label(12)            # 'tree'
    words.top(12, 3)           # [('tree', 4.1), ('pine', 3.9), ('forest', 1.2)]
    words.units_for("dome")    # units ranked by their score for 'dome'
    words = label_generator_units(generator, "layer4", tim, vocabulary, n=1000)

How a word is scored for a unit (SoftWPMI of CLIP-Dissect, Oikarinen & Weng, ICLR 2023): every probe image gets
a unit activation (the mean of the unit's map) and a probability for every word (a softmax over the vocabulary of
``sharpness`` times the image-text cosine similarity).  The unit's ``top_k`` most activating images are its soft
example set, image ``r`` (by rank) belonging to it with a probability falling linearly from ``p_start`` to
``p_end``.  ``log p(word | examples)`` sums, over the examples, the log of the chance that an image is not a
counter-example (``1 - p_member * (1 - p(word | image))``); the score subtracts ``lam`` times the log of the same
quantity averaged over all units, so that words describing every unit's examples (the sky of every scene) do
not win.  The paper's values: ``top_k`` 100, ``sharpness`` 10, ``lam`` 1, ``p_start`` 0.998, ``p_end`` 0.97.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import ResultCache, atomic_write, callable_id, make_key, weights_hash
from .dissect.sources import GeneratorSource, LatentSource, as_source
from .plumbing import eval_mode, model_device, z_dim_of
from .preprocessing import identity, to_signed
from .textimage import TextImageModel
from .edits import Ablate
from .label_checks import LabelCheck, class_check
from .trace import Trace, edited_forward, retain

__all__ = ["WordLabels", "label_classifier_units", "label_generator_units", "soft_wpmi", "default_vocabulary",
           "WordProbe", "word_probe_classifier", "word_probe_generator", "labels_from_masks"]

PathLike = Optional[Union[str, "os.PathLike[str]"]]
FORMAT = 1


def default_vocabulary() -> List[str]:
    """The shipped English word list (visual nouns of scenes and objects, one per line)."""
    text = resources.files("ganviz").joinpath("data/vocabulary.txt").read_text()
    return [w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#")]


def soft_wpmi(similarity: Tensor, activations: Tensor, top_k: int = 100, sharpness: float = 10.0, lam: float = 1.0,
              p_start: float = 0.998, p_end: float = 0.97, eps: float = 1e-7) -> Tensor:
    """Scores ``(U, W)`` of words for units from image-word cosine similarities ``(N, W)`` and unit activations
    ``(N, U)`` (see the module's docstring)."""
    n = similarity.shape[0]
    if activations.shape[0] != n:
        raise ValueError(f"{n} images have similarities but {activations.shape[0]} have activations")
    k = max(1, min(int(top_k), n))
    p_word = torch.softmax(sharpness * similarity.double(), dim=1)  # (N, W)
    member = p_start - torch.arange(k, dtype=torch.double) / k * (p_start - p_end)  # (k,)
    top = activations.double().topk(k, dim=0).indices.T  # (U, k)
    per_unit = []
    for rows in top.split(64):  # (u, k) -> (u, k, W) at a time
        p = p_word[rows]
        per_unit.append(torch.log1p(-member[None, :, None] * (1 - p)).clamp(min=math.log(eps)).sum(1))
    log_given = torch.cat(per_unit)  # (U, W)
    log_mean = torch.logsumexp(log_given, dim=0) - math.log(log_given.shape[0])
    return (log_given - lam * log_mean).float()


@dataclass
class WordLabels:
    """Scores ``(units, words)`` of every vocabulary word for every unit of one layer; the best is the label."""

    layer: str
    words: Tuple[str, ...]
    scores: np.ndarray
    model: str = ""
    method: str = "soft_wpmi"

    @property
    def num_units(self) -> int:
        return int(self.scores.shape[0])

    def _unit(self, unit: int) -> int:
        if not -self.num_units <= int(unit) < self.num_units:
            raise IndexError(f"unit {unit} out of range: layer {self.layer!r} has {self.num_units} units")
        return int(unit) % self.num_units

    def label(self, unit: int) -> str:
        """The best-scoring word of ``unit``."""
        return self.words[int(self.scores[self._unit(unit)].argmax())]

    def labels(self) -> List[str]:
        """The label of every unit, in unit order."""
        return [self.words[i] for i in self.scores.argmax(1)]

    def top(self, unit: int, n: int = 3) -> List[Tuple[str, float]]:
        """The ``n`` best words of ``unit`` with their scores."""
        row = self.scores[self._unit(unit)]
        return [(self.words[i], float(row[i])) for i in np.argsort(-row)[:n]]

    def units_for(self, word: str, n: Optional[int] = None, labelled_only: bool = False) -> List[int]:
        """Units ranked by their score for ``word`` (only those labelled ``word`` with ``labelled_only``)."""
        if word not in self.words:
            raise KeyError(f"{word!r} is not in this labelling's vocabulary of {len(self.words)} words; label "
                           f"again with it in the vocabulary")
        j = self.words.index(word)
        order = [int(u) for u in np.argsort(-self.scores[:, j], kind="stable")]
        if labelled_only:
            best = self.scores.argmax(1)
            order = [u for u in order if best[u] == j]
        return order[:n]

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        meta = dict(format=FORMAT, layer=self.layer, words=list(self.words), model=self.model, method=self.method)
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, scores=self.scores, meta=np.array(json.dumps(meta))),
                     suffix=".npz")

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "WordLabels":
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            return cls(meta["layer"], tuple(meta["words"]), f["scores"], meta["model"], meta["method"])

    def __repr__(self) -> str:
        return f"WordLabels(layer={self.layer!r}, units={self.num_units}, words={len(self.words)}, {self.model})"


def _image_parts(data: Any, preprocess: Optional[Callable[[Tensor], Tensor]]) -> Tuple[Any, Callable, Callable]:
    """``(source, to_model, to_images)`` of an image model: the model sees ``preprocess(images)``, the text-image
    model the images."""
    return as_source(data), preprocess or to_signed, _images_as_loaded


def _images_as_loaded(x: Tensor, out: Any) -> Tensor:
    return x


def _generator_parts(generator: nn.Module, n: int, seed: int, latents: Any,
                     to_unit_range: Optional[Callable[[Tensor], Tensor]]) -> Tuple[Any, Callable, Callable]:
    """``(source, to_model, to_images)`` of a generator: latents in, ``to_unit_range(G(z))`` to the text-image
    model (default: a tanh output in [-1, 1] to [0, 1])."""
    if latents is None:
        source: Any = GeneratorSource(n, z_dim_of(generator), seed)
    else:
        source = LatentSource(torch.as_tensor(latents)) if isinstance(latents, (Tensor, np.ndarray)) else latents
    to01 = to_unit_range or to_signed.inverse
    return source, identity, lambda z, out: to01(out.float()).cpu()


def _check_vocabulary(vocabulary: Optional[Sequence[str]], tim: TextImageModel) -> Tuple[str, ...]:
    words = tuple(default_vocabulary() if vocabulary is None else vocabulary)
    if isinstance(vocabulary, str) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise ValueError("vocabulary must be a non-empty list of non-empty strings, e.g. ['tree', 'dome']")
    if len(set(words)) != len(words):
        raise ValueError("vocabulary has repeated words")
    return words


def _collect(model: nn.Module, layer: str, source: Any, tim: TextImageModel, to_model: Callable[[Tensor], Tensor],
             to_images: Callable[[Any, Tensor], Tensor], n: int, batch_size: int, progress: bool,
             generator: bool = False, pool: str = "mean", regions: int = 1) -> Tuple[Tensor, Tensor]:
    """Unit activations ``(n, U)`` (each map's mean, or its maximum with ``pool="max"``) and image embeddings
    ``(n, D)`` of the first ``n`` items of ``source`` (a classifier's forward pass stops at ``layer``; a
    generator's runs to the image).  With ``regions`` r > 1 every image counts as its r x r regions: activations
    ``(n * r * r, U)`` pooled over each region of the unit maps, embeddings of the same regions of the image."""
    if pool not in ("mean", "max"):
        raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
    if int(regions) < 1:
        raise ValueError(f"regions must be a positive number of regions per side (1: whole images), got {regions}")
    from tqdm.auto import tqdm

    device = model_device(model)
    acts, embs = [], []
    with eval_mode(model), Trace(model, layer, stop=not generator) as tr:
        for start in tqdm(range(0, n, batch_size), desc=f"label {layer}", disable=not progress, leave=False):
            x, _ = source.load(range(start, min(start + batch_size, n)))
            with torch.no_grad():
                out = tr.run(to_model(x.to(device)))
            maps = tr[layer].map.float()
            pooled = (F.adaptive_avg_pool2d if pool == "mean" else F.adaptive_max_pool2d)(maps, int(regions))
            acts.append(pooled.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).cpu())
            emb = tim.encode_regions(to_images(x, out), int(regions))
            embs.append(emb.reshape(-1, emb.shape[-1]))
    return torch.cat(acts), torch.cat(embs)


def _count(source: Any, n: Optional[int]) -> int:
    n = len(source) if n is None else min(int(n), len(source))
    if n < 1:
        raise ValueError("labelling needs at least one probe image; the data set is empty")
    return n


def _label(model: nn.Module, layer: str, source: Any, to_model: Callable[[Tensor], Tensor],
           to_images: Callable[[Any, Tensor], Tensor], tim: TextImageModel, words: Tuple[str, ...], n: Optional[int],
           batch_size: int, params: dict, cache_dir: PathLike, progress: bool, generator: bool = False
           ) -> WordLabels:
    n = _count(source, n)
    cache = ResultCache(os.path.expanduser(os.fspath(cache_dir))) if cache_dir is not None else None
    key = None
    if cache is not None and getattr(source, "identity", ""):
        key = make_key(format=FORMAT, kind="openvocab", model=weights_hash(model), layer=layer,
                       data=f"{source.identity} n={n}", text_image=tim.identity, words=list(words),
                       to_model=callable_id(to_model), to_images=callable_id(to_images), **params)
        hit = cache.load(key, WordLabels.load)
        if hit is not None:
            return hit
    regions = params.pop("regions", 1)
    acts, embs = _collect(model, layer, source, tim, to_model, to_images, n, batch_size, progress, generator,
                          regions=regions)
    scores = soft_wpmi(embs @ tim.encode_words(list(words)).T, acts, **params)
    result = WordLabels(layer, words, scores.numpy(), tim.name)
    if cache is not None and key is not None:
        cache.save(key, result.save)
    return result


def label_classifier_units(model: nn.Module, layer: str, data: Any, text_image: TextImageModel,
                           vocabulary: Optional[Sequence[str]] = None, *, n: Optional[int] = None,
                           batch_size: int = 100, preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                           top_k: int = 100, sharpness: float = 10.0, lam: float = 1.0, regions: int = 1,
                           cache_dir: PathLike = None, progress: bool = True) -> WordLabels:
    """Score every word of ``vocabulary`` (default :func:`default_vocabulary`) for every unit of an image
    model's ``layer`` over ``data`` (a DataSource, an image tensor in [0, 1] or a Dataset; first ``n`` items).

    The model sees ``preprocess(images)`` (default ``images * 2 - 1``), the text-image model the images
    themselves.  ``regions`` r > 1 describes each image's r x r regions instead of the whole image (the unit's
    map pooled over the same regions), for units of layers whose maps are finer than the scene.  ``cache_dir``:
    reuse a result of identical weights, data, words and parameters."""
    words = _check_vocabulary(vocabulary, text_image)
    return _label(model, layer, *_image_parts(data, preprocess), text_image, words, n, batch_size,
                  dict(top_k=top_k, sharpness=sharpness, lam=lam, regions=regions), cache_dir, progress)


def label_generator_units(generator: nn.Module, layer: str, text_image: TextImageModel,
                          vocabulary: Optional[Sequence[str]] = None, *, n: int = 1000, seed: int = 1,
                          latents: Any = None, batch_size: int = 50,
                          to_unit_range: Optional[Callable[[Tensor], Tensor]] = None, top_k: int = 100,
                          sharpness: float = 10.0, lam: float = 1.0, regions: int = 1,
                          cache_dir: PathLike = None, progress: bool = True) -> WordLabels:
    """Score every word for every unit of a generator's ``layer`` over ``n`` samples ``G(z)`` (``z`` from
    ``GeneratorSource(n, z_dim, seed)`` unless ``latents`` is given).  ``to_unit_range`` maps the generator's
    output to images in [0, 1] (default ``(x + 1) / 2`` clamped, for a tanh output); ``regions`` as in
    :func:`label_classifier_units`."""
    words = _check_vocabulary(vocabulary, text_image)
    return _label(generator, layer, *_generator_parts(generator, n, seed, latents, to_unit_range), text_image,
                  words, n, batch_size, dict(top_k=top_k, sharpness=sharpness, lam=lam, regions=regions),
                  cache_dir, progress, generator=True)


class WordProbe:
    """Type a word, see which units of a layer respond: probe images' unit activations and image embeddings are
    computed once, so each query costs one text encoding and a SoftWPMI column (the word scored against the
    vocabulary plus itself).  Build it with :func:`word_probe_classifier` or :func:`word_probe_generator`."""

    def __init__(self, model: nn.Module, layer: str, source: Any, tim: TextImageModel, vocabulary: Sequence[str],
                 activations: Tensor, embeddings: Tensor, kind: str, to_model: Callable[[Tensor], Tensor],
                 to_images: Callable[[Any, Tensor], Tensor], top_k: int = 100):
        self.model, self.layer, self.source, self.tim, self.kind = model, layer, source, tim, kind
        self.activations, self.embeddings = activations, embeddings
        self.vocabulary = tuple(vocabulary)
        self._vocab_emb = tim.encode_words(list(self.vocabulary))
        self.to_model, self.to_images, self.top_k = to_model, to_images, top_k

    @property
    def num_units(self) -> int:
        return int(self.activations.shape[1])

    def _word_embedding(self, word: str) -> Tuple[Tensor, int]:
        word = word.strip()
        if not word:
            raise ValueError("type a word or a short phrase, e.g. 'tree'")
        if word in self.vocabulary:
            return self._vocab_emb, self.vocabulary.index(word)
        return torch.cat([self._vocab_emb, self.tim.encode_words([word])]), len(self.vocabulary)

    def scores(self, word: str) -> np.ndarray:
        """SoftWPMI of ``word`` for every unit ``(U,)``: high when the unit's top images show it, and others' do not."""
        emb, j = self._word_embedding(word)
        return soft_wpmi(self.embeddings @ emb.T, self.activations, top_k=self.top_k)[:, j].numpy()

    def units(self, word: str, n: int = 6) -> List[int]:
        """The ``n`` units responding most to ``word``."""
        return [int(u) for u in np.argsort(-self.scores(word), kind="stable")[:n]]

    def top_images(self, unit: int, k: int = 6) -> List[int]:
        """Indices of ``unit``'s ``k`` most activating probe images."""
        if not 0 <= int(unit) < self.num_units:
            raise IndexError(f"unit {unit} out of range: {self.layer!r} has {self.num_units} units")
        return [int(i) for i in self.activations[:, int(unit)].topk(min(k, len(self.activations))).indices]

    @torch.no_grad()
    def images(self, indices: Sequence[int]) -> Tensor:
        """Probe images ``indices`` in [0, 1] (generated again for a generator)."""
        x, _ = self.source.load(list(indices))
        with eval_mode(self.model):
            out = self.model(self.to_model(x.to(model_device(self.model)))) if self.kind == "generator" else None
        return self.to_images(x, out).cpu()

    @torch.no_grad()
    def check(self, word: str, unit: int, samples: int = 16) -> LabelCheck:
        """Switch ``unit`` off over its ``samples`` top images and measure, for generators, the probability of
        ``word`` for the generated images; for classifiers, the probability of each image's predicted class."""
        units = [int(unit)]
        idx = self.top_images(units[0], samples)
        x, _ = self.source.load(idx)
        x = self.to_model(x.to(model_device(self.model)))
        with eval_mode(self.model):
            if self.kind == "classifier":
                return class_check(self.model, self.layer, x, units[0], word)
            emb, j = self._word_embedding(word)

            def p_word(out: Tensor) -> float:
                sim = self.tim.encode_images(self.to_images(None, out)) @ emb.T
                return float(torch.softmax(10.0 * sim, dim=1)[:, j].mean())

            base = p_word(self.model(x))
            off = p_word(edited_forward(self.model, x, {self.layer: Ablate(units)}))
        return LabelCheck(units[0], word, "p(word)", base, off, len(idx))


def word_probe_classifier(model: nn.Module, layer: str, data: Any, text_image: TextImageModel,
                          vocabulary: Optional[Sequence[str]] = None, *, n: Optional[int] = 1000,
                          batch_size: int = 100, preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                          pool: str = "max", progress: bool = True) -> WordProbe:
    """A :class:`WordProbe` of an image model's ``layer`` over ``data`` (first ``n`` items).  ``pool``: a unit's
    activation on an image is its map's maximum (default: the top images are those of a dissection, where the
    unit fires most strongly) or mean (``"mean"``, CLIP-Dissect's choice)."""
    words = _check_vocabulary(vocabulary, text_image)
    source, to_model, to_images = _image_parts(data, preprocess)
    acts, embs = _collect(model, layer, source, text_image, to_model, to_images, _count(source, n), batch_size,
                          progress, pool=pool)
    return WordProbe(model, layer, source, text_image, words, acts, embs, "classifier", to_model, to_images)


def word_probe_generator(generator: nn.Module, layer: str, text_image: TextImageModel,
                         vocabulary: Optional[Sequence[str]] = None, *, n: int = 1000, seed: int = 1,
                         latents: Any = None, batch_size: int = 50,
                         to_unit_range: Optional[Callable[[Tensor], Tensor]] = None, pool: str = "max",
                         progress: bool = True) -> WordProbe:
    """A :class:`WordProbe` of a generator's ``layer`` over ``n`` samples (``z`` seed ``seed`` unless ``latents``
    is given, as in :func:`label_generator_units`); ``pool`` as in :func:`word_probe_classifier`."""
    words = _check_vocabulary(vocabulary, text_image)
    source, to_model, to_images = _generator_parts(generator, n, seed, latents, to_unit_range)
    acts, embs = _collect(generator, layer, source, text_image, to_model, to_images, _count(source, n),
                          batch_size, progress, generator=True, pool=pool)
    return WordProbe(generator, layer, source, text_image, words, acts, embs, "generator", to_model, to_images)


@torch.no_grad()
def labels_from_masks(model: nn.Module, layer: str, data: Any, *, crop: int = 0, n: Optional[int] = None,
                      batch_size: int = 250, preprocess: Optional[Callable[[Tensor], Tensor]] = None,
                      top_k: int = 100) -> WordLabels:
    """SoftWPMI labels from a perfect describer: ``p(concept | sample)`` is the concept's exact share of the
    whole image (``crop=0``) or of each ``crop`` x ``crop`` window (stride ``crop // 2``, unit maps averaged over
    the same windows), read from the data's label maps.  The ceiling of any describer at that granularity."""
    source = as_source(data)
    names = list(source.concept_names or [])
    if not names:
        raise ValueError("labels_from_masks needs data with concept label maps (e.g. ToyWorldSource)")
    if crop == 1 or crop < 0:
        raise ValueError(f"crop must be 0 (whole images) or a window of at least 2 pixels, got {crop}")
    n = _count(source, n)
    shares, acts = [], []
    with eval_mode(model):
        for start in range(0, n, batch_size):
            x, labels = source.load(range(start, min(start + batch_size, n)))
            act = retain(model, (preprocess or to_signed)(x.to(model_device(model))), layer)[layer].float().cpu()
            if labels is None:
                raise ValueError("labels_from_masks needs a label map for every image; the data gave none")
            onehot = F.one_hot(labels.clamp(min=0), len(names)).permute(0, 3, 1, 2).float()
            onehot *= (labels >= 0).unsqueeze(1)  # unlabelled pixels (-1) count for no concept
            if crop:
                act = F.interpolate(act, size=labels.shape[-2:], mode="bilinear", align_corners=False)
                onehot, act = F.avg_pool2d(onehot, crop, crop // 2), F.avg_pool2d(act, crop, crop // 2)
            else:
                onehot, act = onehot.mean((2, 3), keepdim=True), act.mean((2, 3), keepdim=True)
            shares.append(onehot.permute(0, 2, 3, 1).reshape(-1, len(names)))
            acts.append(act.permute(0, 2, 3, 1).reshape(-1, act.shape[1]))
    scores = soft_wpmi(torch.log(torch.cat(shares) + 1e-4), torch.cat(acts), top_k=top_k, sharpness=1.0)
    return WordLabels(layer, tuple(names), scores.numpy(), f"exact masks ({f'{crop} px crops' if crop else 'images'})")
