"""GAN Paint responsiveness in Python with the bundled toy GAN on CPU (no browser).

A stroke is delivered to the PaintCanvas the way the front end delivers it (mouse_down, moves, mouse_up events on
the ipycanvas widget) in synchronous mode, so the time of the mouse-up handler is exactly: stroke mask -> unit
edit at layer4 -> generator run -> PNG bytes handed to the canvas.  Median over ``--strokes`` strokes (target
<= 50 ms), beside a plain forward pass of the generator for the ratio.

    OMP_NUM_THREADS=1 python benchmarks/paint_latency.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import ganviz
from ganviz.widgets import PaintCanvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strokes", type=int, default=40)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator, info = ganviz.load("toy-gan")
    result = ganviz.zoo.dissection("toy-gan", "layer4", generator, progress=False)
    view = PaintCanvas(generator, result, background=False)
    sent = []
    put = view.canvas.put_image_data
    view.canvas.put_image_data = lambda data, x=0, y=0: (sent.append(time.perf_counter()), put(data, x, y))
    rng = np.random.default_rng(0)
    concepts = list(view.concept.options)

    def event(name, x, y):
        view.canvas._handle_frontend_event(None, {"event": name, "x": x * view.scale, "y": y * view.scale}, [])

    times = []
    for i in range(args.strokes + 3):                 # the first three are warm-up
        view.concept.value = concepts[i % len(concepts)]
        view.mode.value = "draw" if i % 3 else "remove"
        x, y = rng.uniform(8, 56, 2)
        event("mouse_down", x, y)
        event("mouse_move", x + 4, y)
        event("mouse_move", x + 8, y + 2)
        t = time.perf_counter()
        event("mouse_up", x + 8, y + 2)
        times.append(sent[-1] - t)
        if i % 10 == 9:
            view.reset()
    times = times[3:]
    z = torch.randn(1, generator.z_dim)
    with torch.no_grad():
        for _ in range(3):
            generator(z)
        fwd = []
        for _ in range(args.strokes):
            t = time.perf_counter()
            generator(z)
            fwd.append(time.perf_counter() - t)
    med, f = statistics.median(times) * 1e3, statistics.median(fwd) * 1e3
    print(f"bundled toy-gan, layer4, {torch.get_num_threads()} torch threads, {len(times)} strokes "
          f"(up to 10 composited)")
    print(f"mouse-up -> new image bytes: median {med:.1f} ms (min {min(times) * 1e3:.1f}, max "
          f"{max(times) * 1e3:.1f}); plain forward pass {f:.1f} ms; ratio {med / f:.2f}x")
    print(f"target <= 50 ms: {'OK' if med <= 50 else 'ABOVE'}")


if __name__ == "__main__":
    main()
