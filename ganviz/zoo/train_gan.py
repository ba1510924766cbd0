"""Train the toy GAN: ``python -m ganviz.zoo.train gan`` (the recipe is :func:`train_gan`'s docstring).

    G = train_gan(args)                      # args as parsed by ganviz.zoo.train
    G = export_gan_checkpoint(Path("checkpoints/gan/checkpoint.pt"))
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import read_checkpoint
from .arch import ToyDiscriminator, ToyGenerator
from .training import Run, autocast_dtype, batch_indices, init_weights, render_dataset, run_loop, to_input

__all__ = ["train_gan", "recalibrate_batchnorm", "export_gan_checkpoint", "save_samples"]


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, z_dim: int, batches: int = 40, batch: int = 128,
                          seed: int = 0) -> nn.Module:
    """Re-estimate a generator's BatchNorm running statistics as exact averages over fresh samples."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    generator.train()
    for _ in range(batches):
        generator(torch.randn(batch, z_dim, generator=g))
    for m in bns:
        m.momentum = 0.1
    return generator.eval()


def _r1_penalty(D: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """Zero-centred gradient penalty on real images (Mescheder et al. 2018): mean squared norm of dD/dx."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.float().pow(2).sum((1, 2, 3)).mean()


def _discriminator(args) -> nn.Module:
    if args.projected:
        from .projected import ProjectedDiscriminator
        from .registry import load

        return ProjectedDiscriminator(load("toy-clip")[0].visual)
    return ToyDiscriminator(mbstd=args.mbstd, deep=args.deep_d)


def train_gan(args) -> nn.Module:
    """Hinge-loss GAN with a spectral-normalised discriminator, equal learning rates, Adam(0, 0.99) and an EMA
    generator (the shipped toy-gan's recipe); float32 unless bf16 is native (see :func:`~ganviz.zoo.training.autocast_dtype`); on CUDA
    when available.  Options for longer runs: a lazy R1 penalty on reals (``--r1``, every ``--r1-every`` steps),
    a minibatch-std channel (``--mbstd``) and a 3x3 conv per resolution (``--deep-d``) in the discriminator, a
    discriminator on the frozen toy-clip image tower's features (``--projected``: :mod:`~ganviz.zoo.projected`), and a
    warm start (``--init-from bundled``) whose first ``--d-warmup`` steps train the discriminator only."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images, _, _ = render_dataset(args.data, args.world_seed, args.workers)
    torch.manual_seed(args.seed)
    G = ToyGenerator(args.z_dim).to(device, memory_format=torch.channels_last)
    D = _discriminator(args).to(device, memory_format=torch.channels_last)
    init_weights(G, "toy-gan", args.init_from)
    G_ema = copy.deepcopy(G).eval()
    lr = args.lr or 2e-4
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam([p for p in D.parameters() if p.requires_grad], lr=lr * args.d_lr_ratio,
                             betas=(0.0, 0.99))
    run = Run(Path(args.out), "gan", {"G": G, "D": D, "G_ema": G_ema, "opt_g": opt_g, "opt_d": opt_d}, args.keep)
    run.resume()
    G.train()
    D.train()
    dtype = autocast_dtype(device, args.autocast)
    print(f"device {device}, autocast {dtype}, r1 {args.r1} every {args.r1_every}, init {args.init_from}")

    def body(step: int) -> str:
        idx = batch_indices(args.seed, step, len(images), args.batch)
        g = torch.Generator().manual_seed(args.seed + 7 * step)
        real = to_input(images[idx]).to(device)  # no flips: they would mirror the watermark's text
        z = torch.randn(len(idx), args.z_dim, generator=g).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            with torch.set_grad_enabled(step >= args.d_warmup):
                fake = G(z)
            loss_d = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake.detach())).mean()
            r1 = (_r1_penalty(D, real) if args.r1 > 0 and step % args.r1_every == 0
                  else torch.zeros((), device=device))
        opt_d.zero_grad(set_to_none=True)
        (loss_d + 0.5 * args.r1 * args.r1_every * r1).backward()
        opt_d.step()
        if step < args.d_warmup:  # a fresh discriminator catches up with a warm-started generator first
            return f"loss_d={loss_d.item():.3f} (discriminator warm-up) r1={r1.item():.4f}"
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss_g = -D(fake).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - decay)
            for be, b in zip(G_ema.buffers(), G.buffers()):
                be.copy_(b)
        if (step + 1) % args.sample_every == 0:
            save_samples(G_ema, args.z_dim, run.dir / f"samples_{step + 1:06d}.png")
        return f"loss_d={loss_d.item():.3f} loss_g={loss_g.item():.3f} r1={r1.item():.4f}"

    run_loop(run, args.steps, args.every, body, args.log_every, args.until, args.minutes)
    return recalibrate_batchnorm(copy.deepcopy(G_ema).float().cpu(), args.z_dim, batches=args.bn_batches)


def export_gan_checkpoint(path: Path, z_dim: int = 128, bn_batches: int = 40) -> nn.Module:
    """The EMA generator of a GAN checkpoint, with BatchNorm statistics recalibrated over ``bn_batches`` x 128
    samples."""
    state = read_checkpoint(path)
    G = ToyGenerator(z_dim)
    G.load_state_dict(state["G_ema"])
    print(f"exporting the EMA generator of {path} at step {state['step']}")
    return recalibrate_batchnorm(G, z_dim, batches=bn_batches)


@torch.no_grad()
def save_samples(G: nn.Module, z_dim: int, path: Path, n: int = 64, seed: int = 123) -> None:
    from PIL import Image

    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    was = G.training
    G.eval()
    x = G(z.to(next(G.parameters()).device)).float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte()
    G.train(was)
    rows = int(np.ceil(n / 8))
    grid = torch.zeros(3, rows * 66, 8 * 66, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, 8)
        grid[:, r * 66 + 1:r * 66 + 65, c * 66 + 1:c * 66 + 65] = x[i]
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
