"""Single-unit ablation effects with the layers before the ablated layer run once per image against every trial
run from the input (the old way), on the bundled classifier and ViT, one thread, in one run.

    python benchmarks/ablation_speed.py [--images 4]
"""
from __future__ import annotations

import argparse
import time

import torch

import ganviz
from ganviz import ablation


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def from_the_input(model, layer, img, keep):
    return ablation._trial_probs(model, layer, img, keep, fan_out=False), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = ganviz.ToyWorldSource(50, seed=3).load(range(args.images))[0] * 2 - 1
    shortcut = ablation._first_trials
    for name, layer in (("toy-classifier", "conv5_3"), ("toy-classifier", "conv4_3"), ("toy-vit", "blocks.1"),
                        ("toy-vit", "blocks.3")):
        model, _ = ganviz.load(name)
        fast, t_fast = timed(lambda: ablation.single_unit_effects(model, layer, x, 2))
        ablation._first_trials = from_the_input
        try:
            slow, t_slow = timed(lambda: ablation.single_unit_effects(model, layer, x, 2))
        finally:
            ablation._first_trials = shortcut
        print(f"{name} {layer}: {t_slow:.2f} s from the input, {t_fast:.2f} s with the shortcut: "
              f"{t_slow / t_fast:.1f}x faster; largest difference {(fast - slow).abs().max():.1e}")


if __name__ == "__main__":
    main()
