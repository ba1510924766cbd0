"""Inverting images one by one against ``Inverter.many`` (one batch), on the bundled toy GAN and encoder with
notebook 05's settings (150 latent + 150 layer4 steps), one thread, in one run: time per image and how far each
batched result is from the same image inverted alone.

    python benchmarks/inversion_batch.py [--images 6]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import ganviz
from ganviz.inversion import Inverter
from ganviz.zoo.evaluate import held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator, _ = ganviz.load("toy-gan")
    encoder, _ = ganviz.load("toy-encoder")
    scenes, _, _ = held_out(args.images, seed=11)
    inverter = Inverter(generator, encoder, layer="layer4")
    start = time.perf_counter()
    alone = [inverter(scenes[i:i + 1]) for i in range(len(scenes))]
    t_alone = time.perf_counter() - start
    start = time.perf_counter()
    together = inverter.many(scenes)
    t_many = time.perf_counter() - start
    gaps = [abs(a.psnr - b.psnr) for a, b in zip(alone, together)]
    print(f"{len(scenes)} rendered scenes: one by one {t_alone / len(scenes):.2f} s per image, together "
          f"{t_many / len(scenes):.2f} s per image: {t_alone / t_many:.2f}x; mean PSNR "
          f"{np.mean([r.psnr for r in alone]):.2f} / {np.mean([r.psnr for r in together]):.2f} dB, largest "
          f"difference of one image {max(gaps):.2f} dB")


if __name__ == "__main__":
    main()
