"""Web apps (Voila notebooks shipped in the package): ``ganviz app`` opens the GAN Paint app, ``ganviz talk`` the
lecture (:mod:`ganviz.apps.talk`)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["APPS", "notebook", "voila_command", "serve", "paint_app", "talk_app"]

APPS = {"paint": Path(__file__).parent / "paint.ipynb", "talk": Path(__file__).parent / "talk.ipynb"}


def notebook(name: str = "paint") -> Path:
    """The packaged notebook of app ``name``."""
    if name not in APPS:
        raise KeyError(f"no app {name!r}; apps: {', '.join(APPS)}")
    return APPS[name]


def voila_command(name: str = "paint", port: int = 8866, open_browser: bool = True, ip: str = "127.0.0.1",
                  extra: Sequence[str] = ()) -> list[str]:
    """The command line that serves app ``name`` with Voila."""
    cmd = [sys.executable, "-m", "voila", str(notebook(name)), f"--port={port}", f"--Voila.ip={ip}",
           "--theme=light"]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd + list(extra)


def serve(name: str = "paint", port: int = 8866, open_browser: bool = True, ip: str = "127.0.0.1",
          extra: Sequence[str] = ()) -> int:
    """Serve app ``name`` with Voila until interrupted; returns Voila's exit status."""
    try:
        import voila  # noqa: F401
    except ImportError:
        raise SystemExit("error: the app needs Voila: pip install voila (or pip install 'ganviz[app]')") from None
    print(f"ganviz {name} app: http://{ip}:{port}/  (Ctrl+C stops it)", flush=True)
    try:
        return subprocess.call(voila_command(name, port, open_browser, ip, extra))
    except KeyboardInterrupt:
        return 0


def talk_app() -> Any:
    """The lecture app: the talk's sections in order, each with its live widget and measured number."""
    from .talk import Talk

    return Talk().widget


def paint_app(seed: int = 0, layer: str | None = None) -> Any:
    """The GAN Paint app on the bundled toy GAN (what the app notebook shows): the paint canvas, and below it the
    inversion view that reconstructs uploaded photos for painting."""
    import ipywidgets as W

    from .. import zoo
    from ..inversion import Inverter
    from ..widgets import InversionView, PaintCanvas

    generator, info = zoo.load("toy-gan")
    result = zoo.dissection("toy-gan", layer or info.default_layer, generator)
    encoder, _ = zoo.load("toy-encoder")
    segmenter, sinfo = zoo.load("toy-segmenter")
    inverter = Inverter(generator, encoder, layer=result.layer, finetune_steps=300)
    canvas = PaintCanvas(generator, result, seed=seed, inverter=inverter)
    view = InversionView(inverter, segmenter=segmenter, concept_names=sinfo.concept_names)
    canvas.attach(view)
    title = W.HTML("<h2 style='margin:4px 0'>GAN Paint on the toy world</h2>"
                   "<p style='margin:0 0 8px 0'>Choose a concept, then drag on the image to draw it (or pick "
                   "<i>remove</i> to erase it). The generator redraws the scene with the concept's units switched "
                   "on or off under your stroke. <b>Upload photo</b> reconstructs your own image with the GAN "
                   "(progress and what it could not reproduce below), then you paint on it.</p>")
    below = W.HTML("<h3 style='margin:12px 0 4px 0'>Your photo through the GAN</h3>"
                   "<p style='margin:0 0 6px 0'>Target, reconstruction and their difference (bright: what the "
                   "generator could not reproduce). The toy GAN was trained on toy-world scenes, so other photos "
                   "come back in toy-world colours and shapes; fine-tuning then makes the reconstruction close."
                   "</p>")
    app = W.VBox([title, canvas.widget, below, view.widget])
    app.add_class("ganviz-app")
    app.canvas = canvas  # type: ignore[attr-defined]
    app.inversion = view  # type: ignore[attr-defined]
    return app
