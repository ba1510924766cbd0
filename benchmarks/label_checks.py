"""How many dissection labels of the bundled models survive a causal check (``ganviz.label_checks``).

    python benchmarks/label_checks.py            # about 2 minutes on one CPU core

Every unit labelled at IoU >= 0.04 is switched off alone.  GAN (layer4): the labelled concept's area over 32
latents (seed 77, not the dissection's).  Classifier (conv5_3): the predicted class's probability over the
held-out scenes (seed 3) where the concept covers >= 1% of the pixels.  A label is confirmed when that quantity
falls by >= 5%.  Prints the count per model and per concept.
"""
from __future__ import annotations

import time
from collections import defaultdict

import torch

import ganviz
from ganviz.generator_units import GeneratorProbe
from ganviz.label_checks import classifier_label_checks, generator_label_checks, summary
from ganviz.plumbing import seeded_latents
from ganviz.zoo.evaluate import held_out


def per_concept(checks: dict) -> str:
    by: dict = defaultdict(list)
    for check in checks.values():
        by[check.concept].append(check.confirmed())
    return ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by.items(), key=lambda kv: -len(kv[1])))


def main() -> None:
    torch.set_num_threads(1)
    t = time.time()
    gen, _ = ganviz.load("toy-gan")
    seg, _ = ganviz.load("toy-segmenter")
    result = ganviz.zoo.dissection("toy-gan", "layer4", gen, progress=False)
    checks = generator_label_checks(GeneratorProbe(gen, "layer4", seg, result), seeded_latents(32, 128, 77))
    print(f"toy-gan layer4: {summary(checks)} ({time.time() - t:.0f} s)\n  {per_concept(checks)}")
    t = time.time()
    clf, _ = ganviz.load("toy-classifier")
    result = ganviz.zoo.dissection("toy-classifier", "conv5_3", clf, progress=False)
    x, labels, _ = held_out(400, seed=3)
    checks = classifier_label_checks(clf, "conv5_3", result, x, labels)
    print(f"toy-classifier conv5_3: {summary(checks)} ({time.time() - t:.0f} s)\n  {per_concept(checks)}")


if __name__ == "__main__":
    main()
