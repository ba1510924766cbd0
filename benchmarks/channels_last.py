"""The bundled models as ``ganviz.load`` gives them on the CPU (convolution weights channels-last, NHWC) against the
same models with contiguous (NCHW) weights: a batch of forward passes, and inversion steps (forward and backward,
one image), one thread, timings interleaved in one run.

    python benchmarks/channels_last.py [--batch 64] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

import ganviz


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def forward(model, x):
    run = model.encode_image if hasattr(model, "encode_image") else model
    return lambda: run(x)


def inversion_steps(generator, steps: int = 10):
    target = torch.rand(1, 3, 64, 64) * 2 - 1

    def run():
        z = torch.zeros(1, 128, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(steps):
            loss = (generator(z) - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = torch.rand(args.batch, 3, 64, 64) * 2 - 1
    for name in ("toy-gan", "toy-segmenter", "toy-classifier", "toy-encoder", "toy-clip", "toy-vit"):
        loaded, _ = ganviz.load(name)
        nchw = copy.deepcopy(loaded).to(memory_format=torch.contiguous_format)
        x = torch.randn(args.batch, 128) if name == "toy-gan" else images
        with torch.no_grad():
            diff = (forward(loaded, x)() - forward(nchw, x)()).abs().max()
            t_nchw = best_time(forward(nchw, x), args.repeats)
            t_loaded = best_time(forward(loaded, x), args.repeats)
        print(f"{name:15s} forward of {args.batch}: NCHW {t_nchw:.3f} s, as loaded {t_loaded:.3f} s: "
              f"{t_nchw / t_loaded:.2f}x; largest difference {diff:.1e}")
        if name == "toy-gan":
            for model in (loaded, nchw):
                model.requires_grad_(False)
            t_nchw = best_time(inversion_steps(nchw), args.repeats)
            t_loaded = best_time(inversion_steps(loaded), args.repeats)
            print(f"{name:15s} 10 inversion steps: NCHW {t_nchw:.3f} s, as loaded {t_loaded:.3f} s: "
                  f"{t_nchw / t_loaded:.2f}x")


if __name__ == "__main__":
    main()
