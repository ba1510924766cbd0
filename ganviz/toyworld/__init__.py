"""The toy world: procedural scenes with ground-truth concept masks, the embedded data set of ganviz."""
from .concepts import CONCEPT_FREQUENCY, CONCEPTS, LABEL_COLORS, RENDER_VERSION, SCENE_CLASSES, WATERMARK_FRACTION
from .dataset import ToyWorld
from .render import Scene, render, render_batch
from .sheet import contact_sheet

__all__ = ["RENDER_VERSION", "CONCEPTS", "SCENE_CLASSES", "LABEL_COLORS", "WATERMARK_FRACTION", "CONCEPT_FREQUENCY",
           "Scene", "render", "render_batch", "ToyWorld", "contact_sheet"]
