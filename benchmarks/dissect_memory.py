"""Peak memory of a dissection versus the number of images (target: growth <= 10% from 2,000 to 20,000).

Each measurement runs in a fresh subprocess and reads its peak resident set size (``getrusage`` maxrss; torch's
allocations are invisible to tracemalloc).  Two settings are measured: the default activation budget (pass-1
activations are kept for pass 2 only when all of them fit, so a small run may peak higher than a large one)
and ``--activation-cache-mb 0`` (pure streaming: both passes run the model).

Images come from a small set of pre-rendered toy scenes served cyclically, so that rendering neither takes
the time nor the memory being measured.

    python benchmarks/dissect_memory.py                       # 2,000 vs 20,000 images
    OMP_NUM_THREADS=1 python benchmarks/dissect_memory.py --sizes 200 2000   # quick check
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor


class CycledToyWorld:
    """``n`` images that repeat ``base`` pre-rendered toy scenes (index ``i`` shows scene ``i % base``)."""

    def __init__(self, n: int, base: int = 256, seed: int = 1) -> None:
        from ganviz.toyworld import CONCEPTS, render_batch

        images, labels, _ = render_batch(range(base), seed=seed)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(labels).long()
        self.n, self.base = n, base
        self.identity = f"cycled toyworld seed={seed} base={base} n={n}"
        self.concept_names = CONCEPTS

    def __len__(self) -> int:
        return self.n

    def load(self, indices: Sequence[int]) -> Tuple[Tensor, Optional[Tensor]]:
        idx = torch.as_tensor([i % self.base for i in indices])
        return self.images[idx].float().div_(255), self.labels[idx]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(n: int, layer: str, cache_mb: int, batch_size: int) -> None:
    from ganviz import zoo
    from ganviz.dissect import dissect_classifier
    from ganviz.zoo.arch import ToyVGG

    try:
        model, _ = zoo.load("toy-classifier")
        which = "bundled"
    except (FileNotFoundError, zoo.ChecksumError):
        torch.manual_seed(0)
        model, which = ToyVGG(8).eval(), "random-init"
    source = CycledToyWorld(n)
    with torch.no_grad():  # touch the model once so its workspace counts in the baseline
        model(source.load(range(batch_size))[0] * 2 - 1)
    baseline = _maxrss_mb()
    start = time.perf_counter()
    result = dissect_classifier(model, layer, source, batch_size=batch_size, progress=False,
                                activation_cache_bytes=cache_mb << 20)
    print(json.dumps({"n": n, "model": which, "baseline_mb": baseline, "peak_mb": _maxrss_mb(),
                      "seconds": time.perf_counter() - start, "units": result.num_units}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000], metavar=("SMALL", "LARGE"))
    ap.add_argument("--layer", default="conv5_3")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--activation-cache-mb", type=int, default=512, help="the default setting measured")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child, args.layer, args.activation_cache_mb, args.batch_size)
        return
    for budget in (args.activation_cache_mb, 0):
        peaks = []
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--child", str(n), "--layer", args.layer, "--batch-size",
                   str(args.batch_size), "--activation-cache-mb", str(budget)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            peaks.append(rec["peak_mb"])
            print(f"budget {budget:4d} MiB  n={n:6d}: peak {rec['peak_mb']:7.1f} MiB (before dissecting "
                  f"{rec['baseline_mb']:7.1f} MiB, {rec['model']} model, {rec['seconds']:.1f} s)")
        ratio = peaks[1] / peaks[0]
        print(f"budget {budget:4d} MiB  peak ratio n={args.sizes[1]} / n={args.sizes[0]} = {ratio:.3f}  "
              f"(target <= 1.10: {'OK' if ratio <= 1.10 else 'ABOVE'})")


if __name__ == "__main__":
    main()
