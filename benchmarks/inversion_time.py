"""Seconds to invert one 64x64 image with the bundled toy GAN and encoder on CPU (target: <= 20 s to 30 dB).

For ``--images`` generated images G(z) (fresh latents), runs the app's inversion (encoder guess, latent steps,
then layer4 feature steps) and records when the reconstruction first reaches ``--psnr`` dB (PSNR from the pixel
loss of each step), the time of the whole inversion and its final PSNR.  Prints medians, and the same for
rendered toy-world scenes (which the GAN never saw) with generator fine-tuning, for comparison.

    python benchmarks/inversion_time.py            # torch's default threads (2 on the reference machine)
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import ganviz
from ganviz.inversion import Inverter
from ganviz.zoo.evaluate import held_out


def run(inverter: Inverter, target: torch.Tensor, goal: float) -> tuple[float, float, float]:
    """(seconds to reach ``goal`` dB or inf, seconds in all, final PSNR)."""
    t0 = time.perf_counter()
    reached = [math.inf]

    def watch(step: int, loss: float, image: torch.Tensor) -> None:
        if reached[0] == math.inf and loss > 0 and 10 * math.log10(4 / loss) >= goal:
            reached[0] = time.perf_counter() - t0

    result = inverter(target[None], callback=watch)
    return reached[0], time.perf_counter() - t0, result.psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--psnr", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    generator, _ = ganviz.load("toy-gan")
    encoder, _ = ganviz.load("toy-encoder")
    print(f"torch threads: {torch.get_num_threads()}")
    with torch.no_grad():
        fake = generator(torch.randn(args.images, 128, generator=torch.Generator().manual_seed(2024)))
    real, _, _ = held_out(args.images, seed=2025)
    for name, images, finetune in (("generated", fake, 0), ("rendered + fine-tune", real, 300)):
        inverter = Inverter(generator, encoder, layer="layer4", finetune_steps=finetune)
        rows = [run(inverter, images[i], args.psnr) for i in range(args.images)]
        for i, (reach, total, final) in enumerate(rows):
            print(f"{name} {i}: {args.psnr:.0f} dB after {reach:.1f} s; whole inversion {total:.1f} s, "
                  f"final {final:.1f} dB")
        print(f"{name}: median seconds to {args.psnr:.0f} dB {statistics.median(r[0] for r in rows):.1f}, "
              f"median whole inversion {statistics.median(r[1] for r in rows):.1f} s, "
              f"median final PSNR {statistics.median(r[2] for r in rows):.1f} dB")


if __name__ == "__main__":
    main()
