"""Segmenter class names -> dissection concept names, through name mappings shipped in ``ganviz/data``.

    concepts_for(segmenter.class_names)            # {"wall": "wall", "windowpane": "window", "sea": "water", ...}
    concept_names(segmenter.class_names)           # ("wall", "building", "sky", ...) in class order
    SegmenterAdapter(model, names, concepts=concepts_for(names))

The ADE20K mapping (``ade20k_concepts.json``) covers the 150 SceneParsing classes in label order; synonyms merge
(house, skyscraper, hovel -> building; windowpane -> window; sea, river, lake -> water; palm -> tree; earth,
land -> ground; hill -> mountain), every other class keeps its name.  Names match after stripping spaces and
lower-casing, and long names match by their first comma-separated name (``"windowpane, window"``); a name
the mapping does not know keeps its (stripped) name.  ADE20K-150 has no dome, roof, cloud, snow or hat class
(see :func:`absent_concepts`).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple, Union

__all__ = ["MAPPINGS", "load_mapping", "ade20k_classes", "ade20k_concepts", "absent_concepts", "concepts_for",
           "concept_names", "looks_like"]

DATA = Path(__file__).resolve().parent / "data"
MAPPINGS = ("ade20k",)
"""Mappings shipped with ganviz (``ganviz/data/<name>_concepts.json``)."""

MappingLike = Union[str, Mapping[str, str]]


@lru_cache(maxsize=None)
def _document(name: str) -> dict:
    if name not in MAPPINGS:
        raise ValueError(f"unknown concept mapping {name!r}; shipped mappings: {', '.join(MAPPINGS)} "
                         "(or pass a dict of class name -> concept name)")
    with open(DATA / f"{name}_concepts.json", encoding="utf-8") as f:
        return json.load(f)


def load_mapping(name: str = "ade20k") -> Dict[str, str]:
    """The shipped mapping ``name``: class name -> concept name (a fresh dict)."""
    return dict(_document(name)["concepts"])


def ade20k_classes() -> Tuple[str, ...]:
    """ADE20K's 150 SceneParsing classes in label order (short names, ``"wall"``, ``"building"``, ...)."""
    return tuple(_document("ade20k")["classes"])


def ade20k_concepts() -> Dict[str, str]:
    """ADE20K class -> concept name, for all 150 classes."""
    return load_mapping("ade20k")


def absent_concepts(name: str = "ade20k") -> Dict[str, str]:
    """Concepts the mapping's data set has no class for, with what its parser labels them instead."""
    return dict(_document(name).get("absent", {}))


def _key(name: str) -> str:
    return " ".join(str(name).split()).lower()


def _resolve(mapping: MappingLike) -> Dict[str, str]:
    table = load_mapping(mapping) if isinstance(mapping, str) else dict(mapping)
    return {_key(k): str(v) for k, v in table.items()}


def _concept(name: str, table: Mapping[str, str]) -> str:
    key = _key(name)
    if key in table:
        return table[key]
    return table.get(key.split(",")[0].strip(), " ".join(str(name).split()))


def concepts_for(class_names: Sequence[str], mapping: MappingLike = "ade20k") -> Dict[str, str]:
    """``{class name as given: concept name}`` for a segmenter's classes (the form ``SegmenterAdapter`` takes)."""
    table = _resolve(mapping)
    return {str(c): _concept(c, table) for c in class_names}


def concept_names(class_names: Sequence[str], mapping: MappingLike = "ade20k") -> Tuple[str, ...]:
    """The concept name of each class, in class order (several classes may share one)."""
    table = _resolve(mapping)
    return tuple(_concept(c, table) for c in class_names)


def looks_like(class_names: Sequence[str], name: str = "ade20k", share: float = 0.9) -> bool:
    """Whether at least ``share`` of ``class_names`` are classes of the shipped mapping ``name``."""
    table = _resolve(name)
    names = list(class_names)
    hits = sum(_key(c) in table or _key(c).split(",")[0].strip() in table for c in names)
    return bool(names) and hits >= share * len(names)
