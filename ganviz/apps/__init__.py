"""Web apps (Voila notebooks shipped in the package): ``ganviz app`` opens the GAN Paint app."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

APPS = {"paint": Path(__file__).parent / "paint.ipynb"}


def notebook(name: str = "paint") -> Path:
    """The packaged notebook of app ``name``."""
    if name not in APPS:
        raise KeyError(f"no app {name!r}; apps: {', '.join(APPS)}")
    return APPS[name]


def voila_command(name: str = "paint", port: int = 8866, open_browser: bool = True, ip: str = "127.0.0.1",
                  extra: Sequence[str] = ()) -> list:
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


def paint_app(seed: int = 0, layer: Optional[str] = None):
    """The GAN Paint app's widget on the bundled toy GAN (what the app notebook shows)."""
    import ipywidgets as W

    from .. import zoo
    from ..widgets import PaintCanvas

    generator, info = zoo.load("toy-gan")
    result = zoo.dissection("toy-gan", layer or info.default_layer, generator)
    canvas = PaintCanvas(generator, result.layer, result, seed=seed)
    title = W.HTML("<h2 style='margin:4px 0'>GAN Paint on the toy world</h2>"
                   "<p style='margin:0 0 8px 0'>Choose a concept, then drag on the image to draw it (or pick "
                   "<i>remove</i> to erase it). The generator redraws the scene with the concept's units switched "
                   "on or off under your stroke.</p>")
    app = W.VBox([title, canvas.widget])
    app.add_class("ganviz-app")
    app.canvas = canvas  # type: ignore[attr-defined]
    return app
