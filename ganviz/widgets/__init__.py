"""Jupyter widgets over the ganviz core (ipywidgets); each is also usable from plain Python via its methods."""
import sys

from .classifier import AblationPanel, DissectionSummary, GradCamView, TopActivationGrid
from .gan import UnitSwitchboard, WhereCanItGo
from .inversion import InversionGrid, InversionView
from .paint import PaintCanvas

__all__ = ["TopActivationGrid", "DissectionSummary", "AblationPanel", "GradCamView", "UnitSwitchboard",
           "WhereCanItGo", "PaintCanvas", "InversionView", "InversionGrid"]


def _enable_colab_widgets() -> bool:
    """Colab shows third-party widgets (ipycanvas) only with its custom widget manager: switch it on there."""
    if "google.colab" not in sys.modules:
        return False
    try:
        from google.colab import output

        output.enable_custom_widget_manager()
        return True
    except Exception:  # noqa: BLE001 - an old Colab without it: widgets still work in a plain notebook
        return False


_enable_colab_widgets()
