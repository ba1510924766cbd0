"""Dissection time versus plain forward passes over the same images (target: at most 1.3x).

Both are timed alternately ``--repeat`` times and the best of each is compared, in wall-clock and in process
CPU time (with torch on one thread, CPU time is not inflated by other processes competing for the cores).

Images are rendered once and kept in memory, so rendering is timed in neither.  Both timings include the same
uint8 -> float conversion.  The dissection stops each forward pass after the layer and, when the layer's
activations fit the activation budget, reuses them for pass 2 instead of running the model again.

    python benchmarks/dissect_overhead.py --n 5000            # full run
    OMP_NUM_THREADS=1 python benchmarks/dissect_overhead.py --n 500 --threads 1   # quick check
    python benchmarks/dissect_overhead.py --model vgg16 --n 128 --batch-size 16 --repeat 2   # VGG-16 at 224x224
"""
from __future__ import annotations

import argparse
import time

import torch

from ganviz import zoo
from ganviz.dissect import TensorSource, dissect_classifier
from ganviz.toyworld import CONCEPTS, render_batch
from ganviz.zoo.arch import ToyVGG


def load_classifier() -> tuple[torch.nn.Module, str]:
    """The bundled classifier when its weights exist, else a random-init one."""
    try:
        model, _ = zoo.load("toy-classifier")
        return model, "bundled toy-classifier"
    except (FileNotFoundError, zoo.ChecksumError):
        torch.manual_seed(0)
        return ToyVGG(8).eval(), "random-init ToyVGG (bundled weights not found)"


def vgg16_at_224(n: int) -> tuple[torch.nn.Module, TensorSource, str]:
    """A random-weight VGG-16 (torchvision's layout, 1000 classes) and ``n`` toy scenes enlarged to 224x224."""
    import torch.nn.functional as F

    from ganviz.models.vgg import vgg16

    torch.manual_seed(0)
    images, labels, _ = render_batch(range(n), seed=1)
    x = F.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear",
                      align_corners=False).round().clamp(0, 255).byte().permute(0, 2, 3, 1)
    y = F.interpolate(torch.from_numpy(labels)[:, None].float(), size=(224, 224), mode="nearest")[:, 0].long()
    source = TensorSource(x, y, identity=f"bench vgg16 n={n}", concept_names=CONCEPTS)
    return vgg16().eval(), source, "random-weight VGG-16 at 224x224"


def plain_forward(model: torch.nn.Module, source: TensorSource, batch_size: int) -> None:
    """Full forward passes over every image of ``source``."""
    with torch.no_grad():
        for s in range(0, len(source), batch_size):
            x, _ = source.load(range(s, min(s + batch_size, len(source))))
            model(x * 2 - 1)


def timed(fn, *args, **kwargs):
    """``(result, wall seconds, process CPU seconds)`` of ``fn(*args, **kwargs)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="number of images (default 5000)")
    ap.add_argument("--model", choices=["toy", "vgg16"], default="toy")
    ap.add_argument("--layer", default=None, help="default: conv5_3 (toy), features.29 (vgg16)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--activation-cache-mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions; the best of each is used")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    if args.model == "vgg16":
        model, source, which = vgg16_at_224(args.n)
        args.layer = args.layer or "features.29"
    else:
        model, which = load_classifier()
        images, labels, _ = render_batch(range(args.n), seed=1)
        source = TensorSource(torch.from_numpy(images), torch.from_numpy(labels), identity=f"bench n={args.n}",
                              concept_names=CONCEPTS)
        args.layer = args.layer or "conv5_3"
    print(f"model: {which}; layer {args.layer}; {args.n} images; batch {args.batch_size}; "
          f"{torch.get_num_threads()} threads; data ready in {time.perf_counter() - t:.1f} s (not timed below)")
    plain_forward(model, TensorSource(source.images[: args.batch_size]), args.batch_size)  # warm-up
    print("timing (process CPU time is the fairer clock on a shared machine; wall time when it is idle)")

    forward, dissect = [], []
    for _ in range(args.repeat):  # interleaved, so that background load hits both alike
        forward.append(timed(plain_forward, model, source, args.batch_size)[1:])
        result, *t = timed(dissect_classifier, model, args.layer, source, batch_size=args.batch_size,
                           progress=False, activation_cache_bytes=args.activation_cache_mb << 20)
        dissect.append(tuple(t))
    c, (h, w) = result.num_units, result.activation_size
    side = source.images.shape[1]
    kept = args.n * (c * h * w * 4 + side * side * 2) <= args.activation_cache_mb << 20
    print(f"activations kept for pass 2: {kept}")
    for j, clock in enumerate(("wall", "cpu")):
        f, d = [t[j] for t in forward], [t[j] for t in dissect]
        ratio = min(d) / min(f)
        print(f"{clock:>4} s  forward: " + ", ".join(f"{v:.2f}" for v in f) + "   dissection: "
              + ", ".join(f"{v:.2f}" for v in d))
        print(f"{clock:>4} ratio dissection / forward (best of {args.repeat} each) = {ratio:.3f}  "
              f"(target <= 1.3: {'OK' if ratio <= 1.3 else 'ABOVE'})")
    print(f"{sum(result.concept_counts().values())} units with IoU >= 0.04")


if __name__ == "__main__":
    main()
