"""Shared widget machinery: a status line that shows errors, coalesced compute, and ``save(path)``."""
from __future__ import annotations

import html
import traceback
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W
import numpy as np
from PIL import Image

from ..coalesce import Latest
from ..imaging import png_bytes


class ViewBase:
    """Base of every ganviz widget: ``.widget`` is the ipywidgets tree, ``.status`` its status line.

    Callbacks are wrapped by :meth:`guard` so an exception is shown in the status line (and kept in
    ``.last_error``) instead of vanishing into the front end's log; the kernel stays alive.  Heavy work goes through
    :meth:`compute`, which runs at most one computation at a time and only the latest request.
    """

    min_interval = 0.3
    """Seconds between the starts of two computations while events stream in (at most ~4 per second)."""

    def __init__(self, background: bool = True):
        self.status = W.HTML(value="", layout=W.Layout(min_height="1.5em"))
        self.status.add_class("ganviz-status")
        self.last_error: BaseException | None = None
        self._latest = Latest(on_error=self._report, background=background, min_interval=self.min_interval)
        self.widget: W.Widget = W.VBox([self.status])

    def _ipython_display_(self) -> None:  # pragma: no cover - exercised in notebooks and the browser tests
        from IPython.display import display

        display(self.widget)

    def _report(self, err: BaseException) -> None:
        self.last_error = err
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        self.status.value = f"<span style='color:#b00020'>&#9888; {html.escape(detail)}</span>"

    def say(self, text: str) -> None:
        self.status.value = html.escape(text)

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a callback so its exceptions land in the status line."""

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - shown to the user, kernel stays alive
                self._report(err)
                return None

        return wrapped

    def compute(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` coalesced with other requests (latest wins)."""
        self._latest.submit(fn, *args)

    def wait(self, timeout: float | None = 30) -> bool:
        """Wait until pending computations have finished (for tests and scripts)."""
        return self._latest.wait(timeout)

    def render(self) -> np.ndarray:
        """The current view as an (H, W, 3) uint8 image."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the current view as a PNG (for slides)."""
        self.wait()
        path = Path(path)
        Image.fromarray(self.render()).save(path, format="PNG")
        return path


def image_widget(image: np.ndarray | None = None, width: int = 192) -> W.Image:
    """An image widget showing an (H,W,3) uint8 array as PNG bytes, scaled crisply in the browser."""
    w = W.Image(format="png", layout=W.Layout(width=f"{width}px", height="auto"))
    w.add_class("ganviz-pixelated")
    if image is not None:
        w.value = png_bytes(image)
    return w


def css(*pairs: Any) -> None:
    """Stable CSS classes (``ganviz-<name>``) for styling and the browser tests: ``css(widget, name, ...)``."""
    for w, name in zip(pairs[::2], pairs[1::2]):
        w.add_class(f"ganviz-{name}")
