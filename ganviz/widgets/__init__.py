"""Jupyter widgets over the ganviz core (ipywidgets); each is also usable from plain Python via its methods."""
from .classifier import AblationPanel, DissectionSummary, GradCamView, TopActivationGrid
from .gan import UnitSwitchboard, WhereCanItGo
from .inversion import InversionGrid, InversionView
from .paint import PaintCanvas

__all__ = ["TopActivationGrid", "DissectionSummary", "AblationPanel", "GradCamView", "UnitSwitchboard",
           "WhereCanItGo", "PaintCanvas", "InversionView", "InversionGrid"]
