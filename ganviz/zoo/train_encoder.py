"""Train the toy encoder that inverts the bundled GAN: ``python -m ganviz.zoo.train encoder``.

    E = train_encoder(args)                  # args as parsed by ganviz.zoo.train
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..edits import Replace
from ..trace import Trace
from .arch import ToyEncoder
from .registry import load
from .training import Run, autocast_dtype, init_weights, run_loop

__all__ = ["train_encoder"]


def _stage1(G: nn.Module, E: ToyEncoder, layer: str, z: torch.Tensor, x: torch.Tensor, f: torch.Tensor):
    """``features``: the feature loss plus the pixel loss of the generator's later layers run from them."""
    f_hat = E.features(x)
    x_hat = Trace(G, [], retain_output=False, edit={layer: Replace(lambda _: f_hat)}).run(z)
    loss_f = F.mse_loss(f_hat.float(), f) / (f.pow(2).mean() + 1e-8)
    loss_x = F.mse_loss(x_hat.float(), x)
    return loss_f + loss_x, f"stage1 feat={loss_f.item():.4f} pix={loss_x.item():.4f}"


def _stage2(G: nn.Module, E: ToyEncoder, layer: str, z: torch.Tensor, x: torch.Tensor, f: torch.Tensor):
    """``latent``: the z loss plus the feature loss of the generator's early layers run from the predicted z."""
    with torch.no_grad():
        f_in = E.features(x)
    z_hat = E.latent(f_in)
    with Trace(G, layer, detach=False, stop=True) as tr:
        tr.run(z_hat.float())
        f_z = tr[layer].output
    loss_z = F.mse_loss(z_hat.float(), z)
    loss_f = F.mse_loss(f_z.float(), f) / (f.pow(2).mean() + 1e-8)
    return loss_z + loss_f, f"stage2 z={loss_z.item():.4f} feat={loss_f.item():.4f}"


def _stage3(G: nn.Module, E: ToyEncoder, layer: str, z: torch.Tensor, x: torch.Tensor, f: torch.Tensor):
    """Both parts together on the pixel loss of ``G(E(G(z)))`` plus a tenth of the z loss."""
    z_hat = E(x)
    loss_z = F.mse_loss(z_hat.float(), z)
    loss_x = F.mse_loss(G(z_hat.float()).float(), x)
    return loss_x + 0.1 * loss_z, f"stage3 pix={loss_x.item():.4f} z={loss_z.item():.4f}"


def train_encoder(args) -> nn.Module:
    """Invert the bundled GAN layer by layer on (z, G(z)) pairs (no real images are needed).

    Stage 1 (first half of ``--steps``): ``features`` learns image -> ``layer4`` features, with a feature loss and
    the pixel loss of the generator's later layers run from the predicted features.  Stage 2 (next 35%):
    ``latent`` learns ``layer4`` features (as ``features`` predicts them) -> z, with a z loss and the feature loss
    of the generator's early layers run from the predicted z.  Stage 3 (the rest): both parts together on the
    pixel loss of ``G(E(G(z)))`` plus the z loss.  ``--init-from bundled`` starts from the shipped encoder (after a
    generator is fine-tuned, a shorter run then suffices); bf16 autocast only where it is native.
    """
    G, ginfo = load("toy-gan")
    for p in G.parameters():
        p.requires_grad_(False)
    layer = "layer4"
    torch.manual_seed(args.seed)
    E = ToyEncoder(ginfo.z_dim).to(memory_format=torch.channels_last)
    init_weights(E, "toy-encoder", args.init_from)
    dtype = autocast_dtype(torch.device("cpu"), args.autocast)
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
        stage = _stage1 if step < s1 else _stage2 if step < s2 else _stage3
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss, msg = stage(G, E, layer, z, x, f)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return msg

    run_loop(run, args.steps, args.every, body, args.log_every, args.until, args.minutes)
    return E.eval()
