"""ProGAN 256x256 on CPU: plain forward pass and paint-stroke latency (median), and their ratio (target <= 1.3x).

A randomly initialised generator in the exact layout of GAN Dissection's ProGAN conversion (23M weights, the
published 256x256 widths) is written to a temporary file and loaded with ``ganviz.load_checkpoint``; latency does
not depend on the weights' values.  ``layer4`` (8x8, 512 units) is dissected over a few samples with the colour
segmenter, then:

* forward: ``generator(z)`` for one latent;
* paint stroke (core): ``Painter.paint`` (brush mask) + ``Painter.generate`` (edit at layer4 + full forward);
* paint stroke (widget): a mouse-up on ``PaintCanvas`` in synchronous mode, to the new image bytes (adds the PNG
  encoding of the canvas image).

Strokes accumulate up to 10 (then reset), like a user painting.

    OMP_NUM_THREADS=1 python benchmarks/progan_paint_latency.py
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ganviz
from ganviz.adapters import Normalize, SegmenterAdapter
from ganviz.formats import save_random_checkpoint
from ganviz.models.segmenters import ColorSegmenter
from ganviz.widgets import PaintCanvas


def median_ms(times: list) -> str:
    return f"median {statistics.median(times) * 1e3:.0f} ms (min {min(times) * 1e3:.0f}, max {max(times) * 1e3:.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        gen = ganviz.load_checkpoint(save_random_checkpoint("progan", Path(tmp) / "progan256.pth", resolution=256),
                                     device=args.device)
    seg = SegmenterAdapter(ColorSegmenter(), ColorSegmenter.concept_names, preprocess=Normalize((-1, 1)))
    result = gen.dissect(seg, "layer4", n=8, batch_size=4, progress=False)
    painter = gen.painter(result, seed=0)
    concepts = painter.concepts(0.0)
    z = painter.z
    sync = torch.cuda.synchronize if gen.device.type == "cuda" else (lambda: None)

    def forward() -> None:
        with torch.no_grad():
            gen.model(z)
        sync()

    rng = np.random.default_rng(0)

    def stroke(i: int) -> None:
        x, y = rng.uniform(32, 224, 2)
        painter.paint(concepts[i % len(concepts)], [(x, y), (x + 30, y + 10)], strength="high", radius=16,
                      mode="draw" if i % 3 else "remove")
        painter.generate()
        sync()

    fwd, core = [], []
    for i in range(args.runs + 2):  # interleaved, the first two are warm-up
        t = time.perf_counter()
        forward()
        fwd.append(time.perf_counter() - t)
        if i % 10 == 9:
            painter.reset()
        t = time.perf_counter()
        stroke(i)
        core.append(time.perf_counter() - t)
    fwd, core = fwd[2:], core[2:]

    view = PaintCanvas(gen, result, concepts=concepts[:4], background=False)
    sent = []
    put = view.canvas.put_image_data  # the clock stops once the PNG is encoded and sent
    view.canvas.put_image_data = lambda data, x=0, y=0: (put(data, x, y), sent.append(time.perf_counter()))

    def event(name: str, x: float, y: float) -> None:
        view.canvas._handle_frontend_event(None, {"event": name, "x": x * view.scale, "y": y * view.scale}, [])

    widget = []
    for i in range(args.runs + 2):
        x, y = rng.uniform(32, 224, 2)
        event("mouse_down", x, y)
        event("mouse_move", x + 30, y + 10)
        t = time.perf_counter()
        event("mouse_up", x + 30, y + 10)
        widget.append(sent[-1] - t)
        if i % 10 == 9:
            view.reset()
    widget = widget[2:]
    f, c, w = (statistics.median(v) for v in (fwd, core, widget))
    print(f"ProGAN 256x256 ({sum(p.numel() for p in gen.model.parameters()) / 1e6:.1f}M weights), layer4, "
          f"{gen.device}, {torch.get_num_threads()} torch threads, {len(fwd)} runs each")
    print(f"forward pass:          {median_ms(fwd)}")
    print(f"paint stroke (core):   {median_ms(core)}; ratio to forward {c / f:.2f}x")
    print(f"paint stroke (widget): {median_ms(widget)}; ratio to forward {w / f:.2f}x")
    print(f"target ratio <= 1.3x: {'OK' if c / f <= 1.3 else 'ABOVE'} (core), {'OK' if w / f <= 1.3 else 'ABOVE'} (widget)")


if __name__ == "__main__":
    main()
