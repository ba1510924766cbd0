"""Train the bundled toy-world models on the CPU: ``python -m ganviz.zoo.train classifier|gan|segmenter|encoder``.

Every run renders its training scenes from toy world seed ``--world-seed`` (default 0), checkpoints to
``--out`` every ``--every`` steps and resumes from the latest checkpoint there.  The batch order is a pure
function of ``(--seed, step)``, so a resumed run sees the same batches as an uninterrupted one.  ``--export``
writes the finished (or latest) weights into the package and records their sha256.  docs/models.md lists the
commands that produced the shipped weights.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..toyworld import CONCEPTS, SCENE_CLASSES, render_batch
from .arch import ToyDiscriminator, ToyEncoder, ToyGenerator, ToySegmenter, ToyVGG
from .registry import save_weights

IMAGENET_MEAN = (0.5, 0.5, 0.5)


def render_dataset(n: int, world_seed: int, workers: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``n`` scenes as uint8 tensors ``(images N,3,H,W, labels N,H,W, classes N)`` using a process pool."""
    chunks = [range(i, min(i + 1000, n)) for i in range(0, n, 1000)]
    parts = []
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(render_batch, c, world_seed) for c in chunks]
            for f in tqdm(futures, desc=f"render {n} scenes", unit="k"):
                parts.append(f.result())
    else:
        parts = [render_batch(c, world_seed) for c in tqdm(chunks, desc=f"render {n} scenes", unit="k")]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    classes = torch.from_numpy(np.concatenate([p[2] for p in parts]))
    return images, labels, classes


def batch_indices(seed: int, step: int, n: int, batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n, (batch,), generator=g)


def to_input(images_u8: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float in [-1, 1], channels_last, optional per-sample horizontal flip."""
    x = images_u8.float().div_(127.5).sub_(1.0)
    if flip is not None and flip.any():
        x[flip] = x[flip].flip(-1)
    return x.contiguous(memory_format=torch.channels_last)


class Run:
    """Checkpointing and resume for one training run."""

    def __init__(self, out: Path, name: str, modules: dict[str, object], keep: bool = False):
        self.dir = out / name
        self.keep = keep
        self.dir.mkdir(parents=True, exist_ok=True)
        self.modules = modules
        self.step = 0
        self.log = open(self.dir / "log.txt", "a")
        self.t0 = time.time()
        self.elapsed0 = 0.0

    @property
    def ckpt(self) -> Path:
        return self.dir / "checkpoint.pt"

    def resume(self) -> None:
        if self.ckpt.exists():
            state = torch.load(self.ckpt, map_location="cpu", weights_only=True)
            for k, m in self.modules.items():
                m.load_state_dict(state[k])
            self.step = int(state["step"])
            if "torch_rng" in state:  # dropout masks continue as in an uninterrupted run
                torch.set_rng_state(state["torch_rng"])
            self.elapsed0 = float(state.get("elapsed", 0.0))
            print(f"resumed {self.ckpt} at step {self.step}")

    def elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.t0

    def save(self) -> None:
        state = {k: m.state_dict() for k, m in self.modules.items()}
        state["step"] = self.step
        state["torch_rng"] = torch.get_rng_state()
        state["elapsed"] = self.elapsed()
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save(state, tmp)
        if self.keep:  # a snapshot per checkpoint, to choose the step to ship by evaluation
            shutil.copyfile(tmp, self.dir / f"step_{self.step:06d}.pt")
        os.replace(tmp, self.ckpt)

    def write(self, msg: str) -> None:
        self.log.write(f"step {self.step} t={self.elapsed():.0f}s {msg}\n")
        self.log.flush()


def _loop(run: Run, steps: int, every: int, body: Callable[[int], str], log_every: int = 50,
          until: int | None = None) -> None:
    bar = tqdm(total=steps, initial=run.step, desc=run.dir.name)
    stop = steps if until is None else min(until, steps)
    while run.step < stop:
        msg = body(run.step)
        run.step += 1
        bar.update(1)
        if run.step % log_every == 0:
            bar.set_postfix_str(msg)
            run.write(msg)
        if run.step % every == 0 or run.step == stop:
            run.save()
    bar.close()


def _train_supervised(args, name: str, factory: Callable[[], nn.Module], images: torch.Tensor,
                      targets: torch.Tensor, lr: float, weight_decay: float, metric: str,
                      label_smoothing: float = 0.0) -> tuple[nn.Module, Run]:
    """AdamW + one-cycle training with cross-entropy on flipped batches; per-pixel targets flip with the image."""
    torch.manual_seed(args.seed)
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
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == y).float().mean().item()
        return f"loss={loss.item():.3f} {metric}={acc:.4f}"

    _loop(run, args.steps, args.every, body, args.log_every, args.until)
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


def _autocast_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    """bf16 autocast where the hardware computes bf16 natively (CUDA, or CPUs with AVX512-BF16/AMX); float32
    elsewhere: on a CPU without it, bf16 is emulated and a GAN step takes about twice as long as in float32."""
    if mode == "off":
        return None
    if mode == "bf16" or device.type == "cuda":
        return torch.bfloat16
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else None


def _r1_penalty(D: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """Zero-centred gradient penalty on real images (Mescheder et al. 2018): mean squared norm of dD/dx."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.float().pow(2).sum((1, 2, 3)).mean()


def _init_generator(G: nn.Module, source: str | None) -> None:
    """Warm-start ``G`` from the bundled toy-gan (``bundled``) or a safetensors file, when asked."""
    if not source:
        return
    from safetensors.torch import load_file

    from .registry import WEIGHTS_DIR, _read_manifest

    path = WEIGHTS_DIR / _read_manifest(WEIGHTS_DIR)["toy-gan"]["file"] if source == "bundled" else Path(source)
    G.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    print(f"generator initialised from {path}")


def train_gan(args) -> nn.Module:
    """Hinge-loss GAN with a spectral-normalised discriminator (minibatch-std channel), lazy R1 penalty on reals
    every ``--r1-every`` steps, equal learning rates, Adam(0, 0.99) and an EMA generator; float32 unless bf16 is
    native (see :func:`_autocast_dtype`); on CUDA when available."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images, _, _ = render_dataset(args.data, args.world_seed, args.workers)
    torch.manual_seed(args.seed)
    G = ToyGenerator(args.z_dim).to(device, memory_format=torch.channels_last)
    D = ToyDiscriminator(mbstd=not args.no_mbstd).to(device, memory_format=torch.channels_last)
    _init_generator(G, args.init_from)
    G_ema = copy.deepcopy(G).eval()
    lr = args.lr or 2e-4
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr * args.d_lr_ratio, betas=(0.0, 0.99))
    run = Run(Path(args.out), "gan", {"G": G, "D": D, "G_ema": G_ema, "opt_g": opt_g, "opt_d": opt_d}, args.keep)
    run.resume()
    G.train()
    D.train()
    dtype = _autocast_dtype(device, args.autocast)
    run.write(f"device {device}, autocast {dtype}, r1 {args.r1} every {args.r1_every}, init {args.init_from}")

    def body(step: int) -> str:
        idx = batch_indices(args.seed, step, len(images), args.batch)
        g = torch.Generator().manual_seed(args.seed + 7 * step)
        real = to_input(images[idx]).to(device)  # no flips: they would mirror the watermark's text
        z = torch.randn(len(idx), args.z_dim, generator=g).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            fake = G(z)
            loss_d = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake.detach())).mean()
            r1 = (_r1_penalty(D, real) if args.r1 > 0 and step % args.r1_every == 0
                  else torch.zeros((), device=device))
        opt_d.zero_grad(set_to_none=True)
        (loss_d + 0.5 * args.r1 * args.r1_every * r1).backward()
        opt_d.step()
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

    _loop(run, args.steps, args.every, body, args.log_every, args.until)
    return recalibrate_batchnorm(copy.deepcopy(G_ema).float().cpu(), args.z_dim)


def train_encoder(args) -> nn.Module:
    """Invert the bundled GAN layer by layer on (z, G(z)) pairs (no real images are needed).

    Stage 1 (first half of ``--steps``): ``features`` learns image -> ``layer4`` features, with a feature loss and
    the pixel loss of the generator's later layers run from the predicted features.  Stage 2 (next 35%):
    ``latent`` learns ``layer4`` features (as ``features`` predicts them) -> z, with a z loss and the feature loss
    of the generator's early layers run from the predicted z.  Stage 3 (the rest): both parts together on the
    pixel loss of ``G(E(G(z)))`` plus the z loss.
    """
    from .registry import load
    from ..trace import Replace, Trace

    G, ginfo = load("toy-gan")
    for p in G.parameters():
        p.requires_grad_(False)
    layer = "layer4"
    torch.manual_seed(args.seed)
    E = ToyEncoder(ginfo.z_dim).to(memory_format=torch.channels_last)
    lr = args.lr or 1e-3
    opt = torch.optim.Adam(E.parameters(), lr=lr)
    run = Run(Path(args.out), "encoder", {"E": E, "opt": opt})
    run.resume()
    E.train()
    s1, s2 = int(args.steps * 0.5), int(args.steps * 0.85)

    def body(step: int) -> str:
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        z = torch.randn(args.batch, ginfo.z_dim, generator=g)
        with torch.no_grad(), Trace(G, layer) as tr:
            x = tr.run(z)
            f = tr[layer].output.clone()
        scale = f.pow(2).mean() + 1e-8
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if step < s1:
                f_hat = E.features(x)
                x_hat = Trace(G, [], retain_output=False, edit={layer: Replace(lambda _: f_hat)}).run(z)
                loss_f = F.mse_loss(f_hat.float(), f) / scale
                loss_x = F.mse_loss(x_hat.float(), x)
                loss = loss_f + loss_x
                msg = f"stage1 feat={loss_f.item():.4f} pix={loss_x.item():.4f}"
            elif step < s2:
                with torch.no_grad():
                    f_in = E.features(x)
                z_hat = E.latent(f_in)
                with Trace(G, layer, detach=False, stop=True) as tr:
                    tr.run(z_hat.float())
                    f_z = tr[layer].output
                loss_z = F.mse_loss(z_hat.float(), z)
                loss_f = F.mse_loss(f_z.float(), f) / scale
                loss = loss_z + loss_f
                msg = f"stage2 z={loss_z.item():.4f} feat={loss_f.item():.4f}"
            else:
                z_hat = E(x)
                loss_z = F.mse_loss(z_hat.float(), z)
                loss_x = F.mse_loss(G(z_hat.float()).float(), x)
                loss = loss_x + 0.1 * loss_z
                msg = f"stage3 pix={loss_x.item():.4f} z={loss_z.item():.4f}"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return msg

    _loop(run, args.steps, args.every, body, args.log_every, args.until)
    return E.eval()


def export_gan_checkpoint(path: Path, z_dim: int = 128) -> nn.Module:
    """The EMA generator of a GAN checkpoint, with recalibrated BatchNorm statistics."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    G = ToyGenerator(z_dim)
    G.load_state_dict(state["G_ema"])
    print(f"exporting the EMA generator of {path} at step {state['step']}")
    return recalibrate_batchnorm(G, z_dim)


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


TRAINERS = {"classifier": train_classifier, "segmenter": train_segmenter, "gan": train_gan,
            "encoder": train_encoder}
DEFAULTS = {  # steps, batch, rendered training scenes
    "classifier": dict(steps=2000, batch=128, data=40000),
    "segmenter": dict(steps=1500, batch=32, data=20000),
    "gan": dict(steps=10000, batch=64, data=50000),
    "encoder": dict(steps=6000, batch=64, data=0),  # trains on generated images only
}
ZOO_NAMES = {"classifier": "toy-classifier", "segmenter": "toy-segmenter", "gan": "toy-gan", "encoder": "toy-encoder"}


def main(argv: list[str] | None = None) -> None:
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
    p.add_argument("--d-lr-ratio", type=float, default=1.0,
                   help="gan: discriminator lr / generator lr (the first shipped GAN used 2)")
    p.add_argument("--keep", action="store_true", help="gan: keep a snapshot step_NNNNNN.pt of every checkpoint")
    p.add_argument("--r1", type=float, default=0.1, help="gan: R1 penalty weight gamma (0: off)")
    p.add_argument("--r1-every", type=int, default=4, help="gan: apply the R1 penalty every N steps (lazy)")
    p.add_argument("--no-mbstd", action="store_true", help="gan: no minibatch-std channel in the discriminator")
    p.add_argument("--init-from", help="gan: warm-start the generator from 'bundled' or a safetensors file")
    p.add_argument("--autocast", choices=["auto", "bf16", "off"], default="auto",
                   help="bf16 autocast: auto uses it on CUDA and on CPUs with native bf16 only")
    p.add_argument("--device", help="gan: cuda or cpu (default: cuda when available)")
    args = p.parse_args(argv)
    for k, v in DEFAULTS[args.model].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.export_only:
        if args.model != "gan":
            raise SystemExit("--export-only is for the gan (the classifier's export refits its head on data)")
        model = export_gan_checkpoint(Path(args.out) / "gan" / "checkpoint.pt", args.z_dim)
    else:
        model = TRAINERS[args.model](args)
    print(f"{args.model}: done in {time.time() - t0:.0f}s in this process")
    if args.export or args.export_to:
        extra = None
        if args.model == "encoder":  # an encoder inverts one generator: record which
            from .registry import info as model_info

            extra = {"generator_sha256": model_info("toy-gan").sha256, "steps": args.steps}
        # the encoder only starts an optimisation: half precision halves the package's largest file at no cost
        dtype = torch.float16 if args.model == "encoder" else torch.float32
        path = save_weights(ZOO_NAMES[args.model], model, folder=args.export_to, extra=extra, dtype=dtype)
        print(f"exported {path}")


if __name__ == "__main__":
    main()
