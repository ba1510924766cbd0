"""Jupyter widgets over the ganviz core (ipywidgets); each is also usable from plain Python via its methods.

Every widget takes a model as an adapter (:mod:`ganviz.adapters`) or a bare module with hints, and a dissection
owns its layer::

    TopActivationGrid(classifier, result, data)     AblationPanel(classifier, data, result=result)
    GradCamView(classifier, data, ["conv4_3", "conv5_3"], class_names=names)
    PaintCanvas(generator, result)                  UnitSwitchboard(generator, segmenter, result)
    WhereCanItGo(generator, segmenter, result)      InversionView(inverter)  # or a GeneratorAdapter
    WordSearch(word_probe_classifier(model, layer, data, ganviz.toy_text_image()))   # type a word, see units
"""
from __future__ import annotations

from ._base import ViewBase, ViewState
from .ablation import AblationPanel
from .classifier import DissectionSummary, GradCamView, TopActivationGrid
from .gan import UnitSwitchboard, WhereCanItGo
from .inversion import InversionGrid, InversionView
from .paint import PaintCanvas
from .words import WordSearch

__all__ = ["TopActivationGrid", "DissectionSummary", "AblationPanel", "GradCamView", "UnitSwitchboard",
           "WhereCanItGo", "PaintCanvas", "InversionView", "InversionGrid", "WordSearch", "ViewBase", "ViewState"]
