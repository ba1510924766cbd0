"""Soak: many updates on each widget; memory, live widget objects and time per update must stay flat.

    python benchmarks/soak.py            # 1,000 strokes, 1,000 slider changes, 500 switchboard toggles
    python benchmarks/soak.py --quick    # a tenth of each

For each widget it reports, between update 100 and the last: RSS growth (%), live ipywidgets objects (their
count must not grow: rows rebuilt on every page or concept change must be closed), and the time per update in
the first and the last tenth; and, for one long drag of 1,000 mouse moves on the paint canvas, the time per move
at its start and its end.  Bars (issue 18): RSS growth < 5%, widget objects constant, time per update flat.
"""
from __future__ import annotations

import argparse
import gc
import os
import time

import ipywidgets as W  # noqa: F401 - the widgets under test are ipywidgets
from ipywidgets.widgets import widget as _widget_module
import numpy as np
import torch

import ganviz
from ganviz.widgets import AblationPanel, PaintCanvas, UnitSwitchboard


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def live_widgets() -> int:
    gc.collect()
    return len(_widget_module._instances)


def soak(name: str, n: int, update) -> None:
    times, rss0, live0 = [], None, None
    for i in range(n):
        t = time.perf_counter()
        update(i)
        times.append(time.perf_counter() - t)
        if i == min(99, n // 10):
            rss0, live0 = rss_mb(), live_widgets()
    rss1, live1 = rss_mb(), live_widgets()
    tenth = max(1, n // 10)
    first, last = np.median(times[:tenth]) * 1000, np.median(times[-tenth:]) * 1000
    print(f"{name:<28} {n:>5} updates  RSS {rss0:.0f} -> {rss1:.0f} MB ({(rss1 / rss0 - 1) * 100:+.1f}%)  "
          f"widgets {live0} -> {live1}  ms/update first {first:.1f}, last {last:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    torch.set_num_threads(1)
    gen, _ = ganviz.load("toy-gan")
    seg, sinfo = ganviz.load("toy-segmenter")
    clf, cinfo = ganviz.load("toy-classifier")
    gan_result = ganviz.zoo.dissection("toy-gan", "layer4", gen)

    canvas = PaintCanvas(gen, gan_result, background=False)
    rng = np.random.default_rng(0)

    def stroke(i: int) -> None:
        x, y = rng.uniform(0, 64, 2)
        canvas.stroke([(x, y), (x + 5, y + 3)])
        if i % 20 == 19:
            canvas.reset()

    soak("paint strokes", 1000 // scale, stroke)

    canvas._down(10.0, 10.0)
    soak("one drag, mouse moves", 1000 // scale, lambda i: canvas._move(10.0 + (i % 300) * 0.15, 10.0 + i * 0.04))
    canvas._up(40.0, 40.0)

    panel = AblationPanel(clf, ganviz.ToyWorldSource(64, seed=3), class_names=cinfo.class_names,
                          units=list(range(8)), background=False)
    soak("ablation slider changes", 1000 // scale, lambda i: panel.set_scale(i % 8, float(i % 5) / 4))
    soak("ablation unit rows rebuilt", 200 // scale, lambda i: panel.set_units(list(range(i % 7, i % 7 + 8))))

    board = UnitSwitchboard(gen, seg, gan_result, concept="tree", samples=4, n_units=8, rank_samples=4,
                            background=False)
    concepts = [c for c in ("tree", "dome", "door", "grass") if c in gan_result.concept_names]
    soak("switchboard toggles", 500 // scale, lambda i: board.set_scale(board.units[i % 8] if hasattr(board, "units")
                                                                       else i % 8, float(i % 2)))
    soak("switchboard concept changes", 100 // scale, lambda i: board.show_concept(concepts[i % len(concepts)]))


if __name__ == "__main__":
    main()
