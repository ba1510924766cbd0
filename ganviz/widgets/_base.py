"""What every ganviz widget shares: a status line that shows errors, coalesced compute, one upload path, the
observable view state, Colab's widget manager switched on where a widget is built, and ``save(path)``.

    class MyView(ViewBase):
        def __init__(self, model, background=True):
            super().__init__(background)          # status line, Latest(), Colab once
            self.upload = W.FileUpload(...)
            self.watch_upload(self.upload, self.take)   # take(data: bytes, name: str); errors -> status line
            self.compute(self.draw, ...)          # at most one computation, the latest request wins
"""
from __future__ import annotations

import html
import io
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W
import numpy as np
import traitlets
from PIL import Image

from ..imaging import png_bytes
from .coalesce import Latest

__all__ = ["ViewBase", "ViewState", "image_widget", "hidden_until_set", "static_picture", "css", "uploaded_file",
           "enable_colab_widgets", "close_tree"]

_colab_enabled: bool | None = None
"""None until a widget is built on Colab; then whether its custom widget manager could be switched on."""


def enable_colab_widgets() -> bool:
    """Switch on Colab's custom widget manager (needed for third-party widgets such as ipycanvas), once per
    session, when a widget is built there; elsewhere nothing happens.  True when it is on."""
    global _colab_enabled
    if _colab_enabled is None and "google.colab" in sys.modules:
        try:
            from google.colab import output

            output.enable_custom_widget_manager()
            _colab_enabled = True
        except Exception:  # noqa: BLE001 - an old Colab without it: widgets still work in a plain notebook
            _colab_enabled = False
    return bool(_colab_enabled)


def uploaded_file(value: Any) -> tuple[bytes, str] | None:
    """The first file of a ``FileUpload`` value as ``(bytes, name)``, or None when it holds none.

    ipywidgets 8 sends a tuple of dicts (``name``, ``type``, ``size``, ``content``); older front ends send a dict
    of file name -> ``{"metadata": {...}, "content": ...}`` or items without a ``name`` key.
    """
    if not value:
        return None
    if isinstance(value, Mapping):
        if "content" in value:  # a single file's dict
            key, item = None, value
        else:
            key, item = next(iter(value.items()))
    else:
        key, item = None, next(iter(value))
    item = dict(item)
    content = item.get("content")
    if content is None:
        raise ValueError("the upload carried no file content; try the upload again")
    name = item.get("name") or dict(item.get("metadata") or {}).get("name") or key or "the upload"
    return bytes(content), str(name)


class ViewState(traitlets.HasTraits):
    """The user-visible state of a view, declared as traits: ``view.state.observe(fn, names="concept")`` reacts
    to it and ``traitlets.link((a.state, "concept"), (b.state, "concept"))`` keeps two views together.  Each
    view declares its own traits (with ``help=``); setting one drives the view like its control does."""


class ViewBase:
    """Base of every ganviz widget: ``.widget`` is the ipywidgets tree, ``.status`` its status line, ``.state``
    its declared view state (:class:`ViewState`).

    Callbacks are wrapped by :meth:`guard` so an exception is shown in the status line (and kept in
    ``.last_error``) instead of vanishing into the front end's log; the kernel stays alive.  Heavy work goes through
    :meth:`compute`, which runs at most one computation at a time and only the latest request.  Uploads go through
    :meth:`watch_upload`.
    """

    min_interval = 0.3
    """Seconds between the starts of two computations while events stream in (at most ~4 per second)."""

    def __init__(self, background: bool = True) -> None:
        enable_colab_widgets()
        self.status = W.HTML(value="", layout=W.Layout(min_height="1.5em"))
        self.status.add_class("ganviz-status")
        self.last_error: BaseException | None = None
        self._latest = Latest(on_error=self._report, background=background, min_interval=self.min_interval)
        self.widget: W.Widget = W.VBox([self.status])
        self.state = ViewState()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The live widget, plus a PNG of the current view (:meth:`render`) and a one-line text: front ends with the
        widget manager show the widget; GitHub, nbviewer and a notebook opened without its kernel show the picture
        instead of a ``VBox(children=...)`` repr."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = f"{type(self).__name__} (an interactive ganviz view: run the cell to use it)"
        try:
            self.wait(10)
            bundle.update(static_picture(self.render()))
        except Exception:  # noqa: BLE001 - a view that cannot draw itself yet still shows the live widget
            pass
        return bundle

    def _report(self, err: BaseException) -> None:
        self.last_error = err
        if isinstance(err, KeyboardInterrupt):
            self.status.value = "&#9208; interrupted: the view is idle; change a control to compute again"
            return
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        self.status.value = f"<span style='color:#b00020'>&#9888; {html.escape(detail)}</span>"

    def say(self, text: str) -> None:
        self.status.value = html.escape(text)

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a callback so its exceptions land in the status line."""

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - shown to the user, kernel stays alive
                self._report(err)
                return None

        return wrapped

    def watch_upload(self, upload: W.FileUpload, handle: Callable[[bytes, str], None]) -> None:
        """Call ``handle(data, name)`` with every file put into ``upload`` (its errors go to the status line)."""

        def changed(change: Mapping[str, Any]) -> None:
            file = uploaded_file(change["new"])
            if file is None:
                return
            try:
                handle(*file)
            finally:
                upload.value = ()  # so that uploading the same file again is a change, and is handled again

        upload.observe(self.guard(changed), names="value")

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


STATIC_MAX_SIZE = (800, 600)
"""Largest static picture (width, height) a view puts in a notebook; larger views are scaled down."""
STATIC_MAX_PNG = 120_000
"""Bytes above which the static picture is stored as JPEG instead of PNG (saved notebooks stay small)."""
STATIC_SMALL_PNG = 30_000
"""Bytes below which the PNG is kept as it is; between the two, JPEG when it is under half the PNG's size."""


def static_picture(image: np.ndarray) -> dict[str, bytes]:
    """A view's picture for a notebook's saved output: ``{"image/png": ...}``, or ``{"image/jpeg": ...}`` when
    the PNG would be large or a photo-like picture (JPEG under half the PNG), scaled down to fit
    :data:`STATIC_MAX_SIZE`."""
    h, w = image.shape[:2]
    scale = min(1.0, STATIC_MAX_SIZE[0] / w, STATIC_MAX_SIZE[1] / h)
    picture = Image.fromarray(image)
    if scale < 1:
        picture = picture.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    png = png_bytes(np.asarray(picture))
    if len(png) <= STATIC_SMALL_PNG:
        return {"image/png": png}
    buf = io.BytesIO()
    picture.convert("RGB").save(buf, format="JPEG", quality=85)
    jpeg = buf.getvalue()  # photo-like grids shrink several times as JPEG; charts and flat pictures hardly do
    return {"image/jpeg": jpeg} if len(png) > STATIC_MAX_PNG or 2 * len(jpeg) < len(png) else {"image/png": png}


def image_widget(image: np.ndarray | None = None, width: int = 192) -> W.Image:
    """An image widget showing an (H,W,3) uint8 array as PNG bytes, scaled crisply in the browser (hidden while it
    has no picture)."""
    w = hidden_until_set(W.Image(format="png", layout=W.Layout(width=f"{width}px", height="auto")))
    w.add_class("ganviz-pixelated")
    if image is not None:
        w.value = png_bytes(image)
    return w


def hidden_until_set(image: W.Image) -> W.Image:
    """Hide an image widget while its value is empty: an empty image shows the browser's broken-image icon."""

    def follow(change: Mapping[str, Any]) -> None:
        image.layout.display = None if change["new"] else "none"

    follow({"new": image.value})
    image.observe(follow, names="value")
    return image


def css(*pairs: Any) -> None:
    """Stable CSS classes (``ganviz-<name>``) for styling and the browser tests: ``css(widget, name, ...)``."""
    for w, name in zip(pairs[::2], pairs[1::2]):
        w.add_class(f"ganviz-{name}")


def close_tree(*widgets: W.Widget) -> None:
    """Close widgets and everything they hold (children, layouts, styles), so rows that are rebuilt do not pile
    up as live front-end objects."""
    for w in widgets:
        for child in getattr(w, "children", ()):
            close_tree(child)
        for attr in ("layout", "style"):
            sub = getattr(w, attr, None)
            if isinstance(sub, W.Widget):
                sub.close()
        w.close()
