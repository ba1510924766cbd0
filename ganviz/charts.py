"""Matplotlib figures that show themselves: notebooks display a :func:`figure` as a PNG without pyplot.

    fig = figure((6, 3))          # a matplotlib Figure; fig.add_subplot(), fig.savefig() as usual
    fig                           # the last line of a cell: shown as a picture, in any front end

A bare ``matplotlib.figure.Figure`` shows only its repr (``<Figure size 600x300 with 1 Axes>``) unless pyplot's
inline backend happens to be loaded; the figures ganviz returns carry their own PNG representation instead.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["figure", "figure_png", "figure_array"]


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (matplotlib's Agg renderer, no GUI)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_array(fig: Any, dpi: int = 100) -> np.ndarray:
    """The figure rendered as an (H, W, 3) uint8 array."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(figure_png(fig, dpi))).convert("RGB"))


def figure(figsize: tuple[float, float], **kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure`` (``layout="constrained"`` unless given) that displays as a PNG."""
    from matplotlib.figure import Figure

    class Chart(Figure):
        """A Figure whose notebook representation is its PNG rendering."""

        def _repr_png_(self) -> bytes:
            return figure_png(self)

    kwargs.setdefault("layout", "constrained")
    return Chart(figsize=figsize, **kwargs)
