"""GAN Paint responsiveness in Python with the bundled toy GAN on CPU (no browser).

A stroke is delivered to the PaintCanvas the way the front end delivers it (mouse_down, moves, mouse_up events on
the ipycanvas widget) in synchronous mode, so the time of the mouse-up handler is exactly: stroke mask -> unit
edit at layer4 -> generator run -> PNG bytes encoded and handed to the canvas.  Median over ``--strokes`` strokes
(target <= 50 ms), interleaved with plain forward passes of the generator for the ratio, and beside the same
strokes on a canvas that gets its image enlarged in Python (the display path before the canvas enlarged it).

    OMP_NUM_THREADS=1 python benchmarks/paint_latency.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import ganviz
from ganviz.imaging import upscale
from ganviz.widgets import PaintCanvas
from ganviz.widgets.paint import _rgba


def _enlarged_in_python(view: PaintCanvas) -> None:
    """The display path before the canvas enlarged images itself: a 6x larger RGBA array encoded as PNG."""
    view._show = lambda image: view.canvas.put_image_data(_rgba(upscale(image, view.scale)), 0, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strokes", type=int, default=40)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator, info = ganviz.load("toy-gan")
    result = ganviz.zoo.dissection("toy-gan", "layer4", generator, progress=False)
    views = {"canvas enlarges": PaintCanvas(generator, result, background=False),
             "enlarged in Python": PaintCanvas(generator, result, background=False)}
    _enlarged_in_python(views["enlarged in Python"])
    sent: list[float] = []
    for view in views.values():
        put = view.canvas.put_image_data  # the clock stops once the PNG is encoded and sent
        view.canvas.put_image_data = lambda data, x=0, y=0, put=put: (put(data, x, y), sent.append(time.perf_counter()))
    rng = np.random.default_rng(0)
    concepts = list(views["canvas enlarges"].concept.options)
    z = torch.randn(1, generator.z_dim)

    def event(view, name, x, y):
        view.canvas._handle_frontend_event(None, {"event": name, "x": x * view.scale, "y": y * view.scale}, [])

    times: dict[str, list[float]] = {name: [] for name in [*views, "forward"]}
    for i in range(args.strokes + 3):  # the first three are warm-up; each stroke goes to both views, then a forward
        x, y = rng.uniform(8, 56, 2)
        for name, view in views.items():
            view.concept.value = concepts[i % len(concepts)]
            view.mode.value = "draw" if i % 3 else "remove"
            event(view, "mouse_down", x, y)
            event(view, "mouse_move", x + 4, y)
            event(view, "mouse_move", x + 8, y + 2)
            t = time.perf_counter()
            event(view, "mouse_up", x + 8, y + 2)
            times[name].append(sent[-1] - t)
            if i % 10 == 9:
                view.reset()
        with torch.no_grad():
            t = time.perf_counter()
            generator(z)
            times["forward"].append(time.perf_counter() - t)
    med = {name: statistics.median(v[3:]) * 1e3 for name, v in times.items()}
    f = med["forward"]
    print(f"bundled toy-gan, layer4, {torch.get_num_threads()} torch threads, {args.strokes} strokes "
          f"(up to 10 composited), interleaved with plain forward passes")
    print(f"plain forward pass: median {f:.1f} ms")
    for name in views:
        v = times[name][3:]
        print(f"mouse-up -> new image bytes, {name}: median {med[name]:.1f} ms (min {min(v) * 1e3:.1f}, "
              f"max {max(v) * 1e3:.1f}); ratio {med[name] / f:.2f}x")
    best = med["canvas enlarges"]
    print(f"target <= 50 ms: {'OK' if best <= 50 else 'ABOVE'}")


if __name__ == "__main__":
    main()
