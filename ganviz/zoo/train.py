"""Train the bundled toy-world models on the CPU: ``python -m ganviz.zoo.train classifier|vit|gan|segmenter|encoder|clip``.

Every run renders its training scenes from toy world seed ``--world-seed`` (default 0), checkpoints to
``--out`` every ``--every`` steps and resumes from the latest checkpoint there.  The batch order is a pure
function of ``(--seed, step)``, so a resumed run sees the same batches as an uninterrupted one.  ``--export``
writes the finished (or latest) weights into the package and records their sha256.  docs/models.md lists the
commands that produced the shipped weights.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..toyworld import CONCEPTS, SCENE_CLASSES
from .arch import ToySegmenter, ToyVGG, toy_vit
from .registry import save_weights
from .train_clip import train_clip
from .train_encoder import train_encoder
from .train_gan import export_gan_checkpoint, train_gan
from .training import Run, autocast_dtype, batch_indices, render_dataset, run_loop, to_input

__all__ = ["train_classifier", "train_vit", "train_segmenter", "train_gan", "train_encoder", "train_clip",
           "refit_sparse_head",
           "TRAINERS", "DEFAULTS", "ZOO_NAMES", "main"]



def _train_supervised(args, name: str, factory: Callable[[], nn.Module], images: torch.Tensor,
                      targets: torch.Tensor, lr: float, weight_decay: float, metric: str,
                      label_smoothing: float = 0.0, clip: float = 0.0) -> tuple[nn.Module, Run]:
    """AdamW + one-cycle training with cross-entropy on flipped batches; per-pixel targets flip with the image.
    ``clip``: clip the gradient norm (0: off).  bf16 autocast only where the CPU computes it natively."""
    torch.manual_seed(args.seed)
    dtype = autocast_dtype(torch.device("cpu"), args.autocast)
    model = factory().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr or lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr or lr, total_steps=args.steps, pct_start=0.1)
    run = Run(Path(args.out), name, {"model": model, "opt": opt, "sched": sched})
    run.resume()
    model.train()

    def body(step: int) -> str:
        idx = batch_indices(args.seed, step, len(images), args.batch)
        g = torch.Generator().manual_seed(args.seed + 7 * step)
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = to_input(images[idx], flip)
        y = targets[idx].long()
        if y.ndim > 1:
            y[flip] = y[flip].flip(-1)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == y).float().mean().item()
        return f"loss={loss.item():.3f} {metric}={acc:.4f}"

    run_loop(run, args.steps, args.every, body, args.log_every, args.until, args.minutes)
    return model.eval(), run


def train_classifier(args) -> nn.Module:
    images, _, classes = render_dataset(args.data, args.world_seed, args.workers)
    model, run = _train_supervised(args, "classifier", lambda: ToyVGG(len(SCENE_CLASSES)), images, classes,
                                   lr=2e-3, weight_decay=5e-4, metric="acc", label_smoothing=0.05)
    if args.head_l1 > 0:
        n = min(args.head_data, len(images))
        refit_sparse_head(model, images[:n], classes[:n], args.head_l1)
        run.write(f"refit fc on {n} images with L1 {args.head_l1}: units per class "
                  f"{(model.fc.weight != 0).sum(1).tolist()}")
    return model


def train_vit(args) -> nn.Module:
    """The toy ViT: the classifier's data and schedule, with the usual ViT settings (weight decay 0.05, gradient
    clipping at 1, label smoothing 0.1)."""
    images, _, classes = render_dataset(args.data, args.world_seed, args.workers)
    model, _ = _train_supervised(args, "vit", lambda: toy_vit(len(SCENE_CLASSES)), images, classes, lr=1e-3,
                                 weight_decay=0.05, metric="acc", label_smoothing=0.1, clip=1.0)
    return model


@torch.no_grad()
def _pooled_features(model: ToyVGG, images_u8: torch.Tensor, batch: int = 250) -> torch.Tensor:
    from ..trace import retain

    return torch.cat([retain(model, to_input(images_u8[i:i + batch]), ["conv5_3"])["conv5_3"].float().mean((2, 3))
                      for i in range(0, len(images_u8), batch)])


def refit_sparse_head(model: ToyVGG, images_u8: torch.Tensor, classes: torch.Tensor, l1: float,
                      iters: int = 3000) -> ToyVGG:
    """Refit the classifier's last layer as an L1-regularised softmax regression on pooled conv5_3 features.

    Proximal gradient descent (ISTA, step 1/L) from zero, so each class ends up reading a handful of units
    (Bau et al. 2020 observe such sparsity in large scene classifiers; a 192-unit toy network trained with
    dropout spreads the evidence instead).  The conv layers, and so their dissection, do not change.
    """
    feats = _pooled_features(model, images_u8).double()
    n, d = feats.shape
    k = model.fc.out_features
    step = 1.0 / (0.5 * float(torch.linalg.eigvalsh(feats.T @ feats / n).max()))

    def grads(W: torch.Tensor, b: torch.Tensor, l2: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            W, b = W.detach().requires_grad_(True), b.detach().requires_grad_(True)
            loss = F.cross_entropy(feats @ W.T + b, classes) + l2 * (W ** 2).sum()
            return torch.autograd.grad(loss, [W, b])

    W = torch.zeros(k, d, dtype=torch.double)
    b = torch.zeros(k, dtype=torch.double)
    for _ in tqdm(range(iters), desc="sparse head: select units", leave=False):
        gW, gb = grads(W, b)
        W = W - step * gW
        b = b - step * gb * 5
        W = W.sign() * (W.abs() - step * l1).clamp(min=0)
    # relaxed lasso: refit the selected weights without the L1 shrinkage (a little L2 keeps them finite), so
    # the predictions are as confident as a dense layer's
    support = W != 0
    for _ in tqdm(range(iters), desc="sparse head: refit", leave=False):
        gW, gb = grads(W, b, l2=1e-4)
        W = (W - 4 * step * gW) * support
        b = b - 4 * step * gb
    with torch.no_grad():
        model.fc.weight.copy_(W.float())
        model.fc.bias.copy_(b.float())
    return model


def train_segmenter(args) -> nn.Module:
    images, labels, _ = render_dataset(args.data, args.world_seed, args.workers)
    model, _ = _train_supervised(args, "segmenter", lambda: ToySegmenter(len(CONCEPTS)), images, labels,
                                 lr=3e-3, weight_decay=1e-4, metric="pixacc")
    return model


TRAINERS = {"classifier": train_classifier, "vit": train_vit, "segmenter": train_segmenter,
            "gan": train_gan, "encoder": train_encoder, "clip": train_clip}
DEFAULTS = {  # steps, batch, rendered training scenes
    "classifier": dict(steps=2000, batch=128, data=40000),
    "vit": dict(steps=3000, batch=128, data=40000),
    "segmenter": dict(steps=1500, batch=32, data=20000),
    "gan": dict(steps=10000, batch=64, data=50000),
    "encoder": dict(steps=6000, batch=64, data=0),  # trains on generated images only
    "clip": dict(steps=2000, batch=128, data=30000),
}
ZOO_NAMES = {"classifier": "toy-classifier", "vit": "toy-vit", "segmenter": "toy-segmenter", "gan": "toy-gan",
             "encoder": "toy-encoder", "clip": "toy-clip"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ganviz.zoo.train", description=__doc__.split("\n")[0])
    p.add_argument("model", choices=sorted(TRAINERS))
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, batch order and noise")
    p.add_argument("--world-seed", type=int, default=0, help="toy world seed of the training scenes")
    p.add_argument("--steps", type=int, help="total optimisation steps (default per model)")
    p.add_argument("--batch", type=int, help="batch size (default per model)")
    p.add_argument("--data", type=int, help="number of rendered training scenes (default per model)")
    p.add_argument("--lr", type=float, help="learning rate (default per model)")
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--every", type=int, default=250, help="checkpoint every N steps")
    p.add_argument("--minutes", type=float, help="checkpoint and stop after this many minutes of training "
                   "(resume later with the same command)")
    p.add_argument("--until", type=int, help="checkpoint and stop after this step (resume later with the same "
                   "--steps)")
    p.add_argument("--sample-every", type=int, default=500, help="GAN: save a sample sheet every N steps")
    p.add_argument("--log-every", type=int, default=50, help="append the losses to log.txt every N steps")
    p.add_argument("--workers", type=int, default=2, help="processes rendering the training scenes")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", default="checkpoints", help="checkpoint folder")
    p.add_argument("--head-l1", type=float, default=0.03, help="classifier: L1 strength of the sparse last layer "
                   "refit after training (0: keep the trained dense layer)")
    p.add_argument("--head-data", type=int, default=8000, help="classifier: training scenes used for the refit")
    p.add_argument("--export", action="store_true", help="write the trained weights into the package")
    p.add_argument("--export-to", default=None, help="write weights to this folder instead of the package's")
    p.add_argument("--export-only", action="store_true",
                   help="gan: export the latest checkpoint's EMA generator without training further")
    p.add_argument("--snapshot", help="gan --export-only: export this checkpoint file (e.g. one ranked best by "
                   "python -m ganviz.zoo.evaluate --checkpoints) instead of the latest")
    p.add_argument("--crop-prob", type=float, default=0.0, help="clip: share of each batch shown as region "
                   "crops captioned with what they show")
    p.add_argument("--dense-head", action="store_true", help="clip: train only the dense head of a trained model "
                   "(--init-from, default the bundled one) on the words of what each place of a scene shows")
    p.add_argument("--d-lr-ratio", type=float, default=1.0,
                   help="gan: discriminator lr / generator lr (the first shipped GAN used 2)")
    p.add_argument("--keep", action="store_true", help="gan: keep a snapshot step_NNNNNN.pt of every checkpoint")
    p.add_argument("--r1", type=float, default=0.0, help="gan: R1 penalty weight gamma (0: off, as the shipped GAN)")
    p.add_argument("--r1-every", type=int, default=4, help="gan: apply the R1 penalty every N steps (lazy)")
    p.add_argument("--bn-batches", type=int, default=40, help="gan: batches of 128 samples that re-estimate the "
                   "exported generator's BatchNorm statistics")
    p.add_argument("--mbstd", action="store_true", help="gan: a minibatch-std channel in the discriminator")
    p.add_argument("--deep-d", action="store_true", help="gan: a 3x3 conv per resolution in the discriminator")
    p.add_argument("--projected", action="store_true", help="gan: judge images in the frozen toy-clip image "
                   "tower's feature space (Projected GAN) plus a pixel head")
    p.add_argument("--d-warmup", type=int, default=0, help="gan: steps that train only the discriminator (with "
                   "--init-from, so that a fresh discriminator catches up before the generator moves)")
    p.add_argument("--init-from", help="gan, encoder, clip --dense-head: warm-start from the bundled model "
                   "('bundled') or a safetensors file")
    p.add_argument("--autocast", choices=["auto", "bf16", "off"], default="auto",
                   help="bf16 autocast: auto uses it on CUDA and on CPUs with native bf16 only")
    p.add_argument("--device", help="gan: cuda or cpu (default: cuda when available)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    for k, v in DEFAULTS[args.model].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.export_only:
        if args.model != "gan":
            raise SystemExit("--export-only is for the gan (the classifier's export refits its head on data)")
        model = export_gan_checkpoint(Path(args.snapshot or Path(args.out) / "gan" / "checkpoint.pt"), args.z_dim)
    else:
        model = TRAINERS[args.model](args)
    print(f"{args.model}: done in {time.time() - t0:.0f}s in this process")
    if args.export or args.export_to:
        extra = None
        if args.model == "encoder":  # an encoder inverts one generator: record which
            from .registry import info as model_info

            extra = {"generator_sha256": model_info("toy-gan").sha256, "steps": args.steps}
        if args.model == "clip":  # the tokenizer's words travel with the weights
            from ..toyworld.captions import CAPTION_WORDS

            steps = min(args.until or args.steps, args.steps)
            extra = {"vocabulary": list(CAPTION_WORDS), "steps": steps}
            if args.dense_head:  # the contrastive steps are those of the model the head was trained on
                from .registry import info as model_info

                extra = {**extra, "steps": model_info("toy-clip").extra["steps"], "dense_head_steps": steps}
        # the encoder only starts an optimisation: half precision halves the package's largest file at no cost
        dtype = torch.float16 if args.model == "encoder" else torch.float32
        path = save_weights(ZOO_NAMES[args.model], model, folder=args.export_to, extra=extra, dtype=dtype)
        print(f"exported {path}")


if __name__ == "__main__":
    main()
