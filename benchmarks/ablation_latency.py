"""AblationPanel responsiveness in Python with the bundled classifier on CPU (no browser).

(a) latency: a unit slider changes (set the way the front end sets it: ``slider.value = v``) -> new prediction bars.
    Synchronous mode (``background=False``), so the time is exactly trait change -> model run -> ``bars.value``
    set.  Median over ``--changes`` changes (target <= 30 ms).
(b) coalescing: ``--events`` slider events in the background mode, counting model evaluations
    (``panel._latest.runs``), target <= 5:
      burst  - all events delivered back to back (a fast drag whose messages queue up in the kernel);
      spread - the events spread evenly over one second (a steady one-second drag).

    OMP_NUM_THREADS=1 python benchmarks/ablation_latency.py
    OMP_NUM_THREADS=1 python benchmarks/ablation_latency.py --changes 20 --events 100     # quick
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import ganviz
from ganviz import ablation
from ganviz.widgets import AblationPanel


def make_panel(model, info, data, units, background: bool) -> AblationPanel:
    return AblationPanel(model, data, layer="conv5_3", class_names=info.class_names, units=units,
                         preprocess=info.to_input, background=background)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=50, help="slider changes timed in (a)")
    ap.add_argument("--events", type=int, default=200, help="slider events in (b)")
    ap.add_argument("--seconds", type=float, default=1.0, help="span of the spread events in (b)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, info = ganviz.load("toy-classifier")
    data = ganviz.ToyWorldSource(64, seed=1)
    images, _ = data.load([0])
    flip = ablation.find_flip(model, "conv5_3", info.to_input(images), max_units=3)   # units that matter here
    units = list(flip.units) + [u for u in (3, 17) if u not in flip.units]
    print(f"bundled toy-classifier, layer conv5_3, image 0, units {units} (find_flip: {flip.units}), "
          f"{torch.get_num_threads()} torch threads")

    # (a) latency, synchronous
    panel = make_panel(model, info, data, units, background=False)
    slider = panel._slider[flip.units[0]]
    values = [0.0, 1.0, 2.5, 0.5] * (args.changes // 4 + 2)
    for v in values[:5]:                       # warm-up
        slider.value = v
    times, changed = [], 0
    for v in values[5:5 + args.changes]:
        before, runs = panel.bars.value, panel._latest.runs
        t = time.perf_counter()
        slider.value = v
        times.append(time.perf_counter() - t)
        assert panel._latest.runs == runs + 1, "each change runs the model once"
        changed += panel.bars.value != before
    med = statistics.median(times) * 1e3
    print(f"(a) slider change -> new bars: median {med:.1f} ms, p90 "
          f"{statistics.quantiles(times, n=10)[-1] * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms over "
          f"{len(times)} changes ({changed} changed the bars' HTML)  target <= 30 ms: "
          f"{'OK' if med <= 30 else 'ABOVE'}")

    # (b) coalescing, background thread
    panel = make_panel(model, info, data, units, background=True)
    panel.wait()
    slider = panel._slider[flip.units[0]]
    for mode in ("burst", "spread"):
        panel.wait()
        runs = panel._latest.runs
        gap = 0.0 if mode == "burst" else args.seconds / args.events
        t0 = time.perf_counter()
        for i in range(args.events):
            if gap:
                while time.perf_counter() < t0 + i * gap:
                    time.sleep(gap / 4)
            slider.value = round(3.0 * (i + 1) / args.events / 0.05) * 0.05
        sent = time.perf_counter() - t0
        panel.wait()
        done = time.perf_counter() - t0
        n = panel._latest.runs - runs
        want = ablation.predict(model, panel.preprocess(panel.image), "conv5_3",
                                ablation.unit_scales({**panel.scales, flip.units[0]: slider.value}))[0].numpy()
        latest = bool(np.allclose(panel.probs, want, atol=1e-6))
        print(f"(b) {mode:>6}: {args.events} events in {sent * 1e3:.0f} ms -> {n} model evaluations "
              f"(idle {done * 1e3:.0f} ms after the first event; bars show the last event: {latest})  "
              f"target <= 5: {'OK' if n <= 5 else 'ABOVE'}")


if __name__ == "__main__":
    main()
