"""Captions of toy scenes written from their ground truth, for training and testing text-image models.

    facts = scene_facts(labels, scene_class)          # what is where, from the exact label map
    caption(facts, rng)     # 'a photo of a chapel with a dome at the top, two people on the left and a watermark'

A caption names the scene class (or a synonym), a random subset of the concepts that cover at least
``MIN_SHARE`` of the image, with a count for countable things (connected regions of the label map) and sometimes
a position, plus distractor words that carry no information.  ``WORD_CONCEPT`` maps every word the captions use
for a concept back to it, so that a label given in words can be checked against the ground truth.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .concepts import CONCEPTS, SCENE_CLASSES

__all__ = ["ConceptFact", "SceneFacts", "scene_facts", "caption", "CLASS_WORDS", "CONCEPT_WORDS", "WORD_CONCEPT",
           "CAPTION_WORDS", "MIN_SHARE", "class_prompt", "words"]

MIN_SHARE = 0.004
"""Concepts covering less of the image than this (17 pixels at 64x64) are not mentioned."""

CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "church": ("church", "chapel", "cathedral"),
    "house": ("house", "home", "cottage"),
    "street": ("street", "city street", "town street"),
    "forest": ("forest", "woods", "woodland"),
    "lake": ("lake", "pond", "lakeside"),
    "baseball_field": ("baseball field", "ballpark", "baseball diamond"),
    "soccer_field": ("soccer field", "football pitch", "soccer pitch"),
    "ski_slope": ("ski slope", "ski resort", "piste"),
}
"""Words for each scene class; the first is the canonical name used in prompts."""

CONCEPT_WORDS: dict[str, tuple[str, ...]] = {
    "sky": ("sky", "blue sky"), "cloud": ("cloud", "clouds"), "grass": ("grass", "lawn", "meadow"),
    "tree": ("tree", "trees", "pine"), "water": ("water", "waves"), "road": ("road", "pavement", "asphalt"),
    "wall": ("wall", "brick wall", "facade"), "roof": ("roof", "rooftop", "tiles"), "dome": ("dome", "cupola"),
    "window": ("window", "windows"), "door": ("door", "doorway", "entrance"),
    "person": ("person", "people", "man", "woman", "player"), "hat": ("hat", "cap", "helmet"),
    "snow": ("snow", "snowy"), "sand": ("sand", "sandy", "infield"),
    "watermark": ("watermark", "banner", "stock photo"),
}
"""Words for each concept; the first is the canonical name."""

_COUNTABLE = {"cloud": ("cloud", "clouds"), "tree": ("tree", "trees"), "window": ("window", "windows"),
              "door": ("door", "doors"), "person": ("person", "people"), "dome": ("dome", "domes")}
_NUMBERS = ("no", "one", "two", "three")
_PREFIXES = ("a photo of", "a picture of", "an image of", "a view of", "a", "")
_DISTRACTORS = ("beautiful", "old", "sunny", "quiet", "nice", "typical", "small", "scenic", "daytime", "summer")
_POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the middle")


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (letters only), the tokens of the toy text encoder."""
    return re.findall(r"[a-z]+", text.lower())


WORD_CONCEPT: dict[str, str] = {phrase: c for c, ws in {**CONCEPT_WORDS, **_COUNTABLE}.items() for phrase in ws}
"""Phrase -> concept for every phrase the captions use for a concept (``'pine' -> 'tree'``)."""


@dataclass(frozen=True)
class ConceptFact:
    """One concept in one scene: its share of the pixels, centroid (x, y in [0, 1]) and connected regions."""

    concept: str
    share: float
    x: float
    y: float
    count: int


@dataclass(frozen=True)
class SceneFacts:
    """The scene class and every concept covering at least ``MIN_SHARE`` of the image."""

    scene_class: str
    concepts: tuple[ConceptFact, ...]

    def has(self, concept: str) -> bool:
        return any(f.concept == concept for f in self.concepts)

    def mirrored(self) -> "SceneFacts":
        """The facts of the horizontally flipped scene (left and right swap)."""
        return SceneFacts(self.scene_class, tuple(ConceptFact(f.concept, f.share, 1.0 - f.x, f.y, f.count)
                                                  for f in self.concepts))


def _regions(mask: np.ndarray) -> int:
    """Number of 4-connected regions of a boolean mask (label propagation; masks here are small)."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(h * w).reshape(h, w), big)
    while True:
        m = lab.copy()
        m[1:] = np.minimum(m[1:], lab[:-1])
        m[:-1] = np.minimum(m[:-1], lab[1:])
        m[:, 1:] = np.minimum(m[:, 1:], lab[:, :-1])
        m[:, :-1] = np.minimum(m[:, :-1], lab[:, 1:])
        m = np.where(mask, m, big)
        if np.array_equal(m, lab):
            return int(np.unique(lab[mask]).size)
        lab = m


def scene_facts(labels: np.ndarray, scene_class: int | str, min_share: float = MIN_SHARE) -> SceneFacts:
    """What a scene shows, from its label map ``(H, W)`` of concept indices and its class."""
    labels = np.asarray(labels)
    h, w = labels.shape
    counts = np.bincount(labels.ravel(), minlength=len(CONCEPTS))
    ys, xs = np.mgrid[0:h, 0:w]
    facts = []
    for k in np.flatnonzero(counts >= max(min_share * h * w, 1)):
        name = CONCEPTS[k]
        mask = labels == k
        n = _regions(mask) if name in _COUNTABLE else 0
        facts.append(ConceptFact(name, float(counts[k] / (h * w)), float((xs[mask].mean() + 0.5) / w),
                                 float((ys[mask].mean() + 0.5) / h), n))
    cls = SCENE_CLASSES[scene_class] if not isinstance(scene_class, str) else scene_class
    return SceneFacts(cls, tuple(facts))


def _position(f: ConceptFact) -> str:
    if f.x < 0.35:
        return _POSITIONS[0]
    if f.x > 0.65:
        return _POSITIONS[1]
    if f.y < 0.35:
        return _POSITIONS[2]
    if f.y > 0.65:
        return _POSITIONS[3]
    return _POSITIONS[4]


def _phrase(f: ConceptFact, rng: np.random.Generator) -> str:
    if f.concept in _COUNTABLE and rng.random() < 0.7:
        one, many = _COUNTABLE[f.concept]
        number = _NUMBERS[f.count] if f.count < len(_NUMBERS) else str(rng.choice(("several", "many")))
        text = f"{'a' if f.count == 1 and rng.random() < 0.5 else number} {one if f.count == 1 else many}"
    else:
        text = str(rng.choice(CONCEPT_WORDS[f.concept]))
    if rng.random() < 0.4:
        text += " " + _position(f)
    return text


def caption(facts: SceneFacts, rng: np.random.Generator) -> str:
    """One random caption of a scene: class (or a synonym), some of its concepts, distractor words."""
    cls = str(rng.choice(CLASS_WORDS[facts.scene_class]))
    adjective = str(rng.choice(_DISTRACTORS)) + " " if rng.random() < 0.3 else ""
    prefix = str(rng.choice(_PREFIXES))
    head = f"{prefix} {'a ' if prefix in ('a photo of', 'a picture of', 'a view of') else ''}{adjective}{cls}"
    concepts = [f for f in facts.concepts if rng.random() < 0.6]
    rng.shuffle(concepts)
    parts = [_phrase(f, rng) for f in concepts[:4]]
    if not parts:
        return head.strip()
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{head} with {body}".strip()


def class_prompt(scene_class: str) -> str:
    """The zero-shot prompt of a scene class: ``'a photo of a church'``."""
    return f"a photo of a {CLASS_WORDS[scene_class][0]}"


def _all_words() -> tuple[str, ...]:
    texts = [p for ws in CLASS_WORDS.values() for p in ws] + [p for ws in CONCEPT_WORDS.values() for p in ws]
    texts += [p for ws in _COUNTABLE.values() for p in ws] + list(_NUMBERS) + list(_PREFIXES) + list(_DISTRACTORS)
    texts += list(_POSITIONS) + ["several many with and an a"]
    return tuple(sorted({w for t in texts for w in words(t)}))


CAPTION_WORDS: tuple[str, ...] = _all_words()
"""Every word a caption can contain (the toy text encoder's vocabulary)."""
