"""Names, colours and documented frequencies of the toy world's concepts and scene classes."""
from __future__ import annotations

__all__ = ["CONCEPTS", "SCENE_CLASSES", "CONCEPT_INDEX", "CLASS_INDEX", "LABEL_COLORS", "WATERMARK_FRACTION",
           "CONCEPT_FREQUENCY", "RENDER_VERSION"]

CONCEPTS: tuple[str, ...] = (
    "sky", "cloud", "grass", "tree", "water", "road", "wall", "roof",
    "dome", "window", "door", "person", "hat", "snow", "sand", "watermark",
)
"""Concept names; a label map holds the index of one of these at every pixel."""

SCENE_CLASSES: tuple[str, ...] = (
    "church", "house", "street", "forest", "lake", "baseball_field", "soccer_field", "ski_slope",
)
"""Scene-class names; every scene class is drawn with probability 1/8."""

CONCEPT_INDEX = {name: i for i, name in enumerate(CONCEPTS)}
CLASS_INDEX = {name: i for i, name in enumerate(SCENE_CLASSES)}

# Colours used in label-map visualisations (not the rendered colours of the scenes).
LABEL_COLORS: tuple[tuple[int, int, int], ...] = (
    (135, 190, 250),  # sky
    (235, 235, 235),  # cloud
    (60, 170, 60),  # grass
    (20, 90, 30),  # tree
    (30, 80, 200),  # water
    (90, 90, 90),  # road
    (180, 70, 50),  # wall
    (120, 30, 30),  # roof
    (230, 190, 40),  # dome
    (110, 220, 230),  # window
    (120, 70, 20),  # door
    (240, 130, 200),  # person
    (255, 0, 0),  # hat
    (255, 255, 255),  # snow
    (220, 190, 120),  # sand
    (160, 0, 200),  # watermark
)

WATERMARK_FRACTION = 0.25
"""Default share of images that carry a watermark banner."""

# Share of images (64x64, default watermark fraction) in which each concept covers at least one pixel,
# measured over 8,000 images by `python benchmarks/toyworld_stats.py` and checked by the tests.
CONCEPT_FREQUENCY: dict[str, float] = {
    "sky": 1.00, "cloud": 0.67, "grass": 0.75, "tree": 0.67, "water": 0.12, "road": 0.25, "wall": 0.375,
    "roof": 0.28, "dome": 0.12, "window": 0.375, "door": 0.375, "person": 0.46, "hat": 0.23, "snow": 0.125,
    "sand": 0.18, "watermark": 0.25,
}

RENDER_VERSION = 1
"""Bumped whenever the renderer draws differently, so caches keyed by a toy-world data identity do not return
results computed on older scenes."""
