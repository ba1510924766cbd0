"""Print the toy world's render speed and how often each concept and class appears.

    python benchmarks/toyworld_stats.py [--n 8000]
"""
import argparse
import time

import numpy as np

from ganviz.toyworld import CONCEPTS, SCENE_CLASSES, render_batch

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=8000)
p.add_argument("--size", type=int, default=64)
args = p.parse_args()
render_batch(range(20), size=args.size)  # warm caches (font)
t = time.perf_counter()
_, labels, classes = render_batch(range(args.n), size=args.size)
dt = time.perf_counter() - t
print(f"rendered {args.n} scenes of {args.size}x{args.size} on one core: {args.n / dt:.0f} images/s")
present = np.stack([(labels == k).any(axis=(1, 2)) for k in range(len(CONCEPTS))], 1).mean(0)
area = np.bincount(labels.reshape(-1), minlength=len(CONCEPTS)) / labels.size
print("concept      share of images  share of pixels")
for k, name in enumerate(CONCEPTS):
    print(f"{name:12s} {present[k]:15.3f}  {area[k]:15.4f}")
print("class shares:", {c: round(float(s), 3) for c, s in zip(SCENE_CLASSES, np.bincount(classes) / args.n)})
