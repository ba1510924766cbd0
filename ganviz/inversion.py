"""Per-image GAN inversion by optimisation: find a latent (and optionally a layer's features) that reproduce an image.

``invert`` first optimises ``z`` against a pixel loss (plus an optional feature loss), then, when ``layer`` is
given, the layer's whole feature map as free parameters, with the generator frozen: the intermediate layer has
far more degrees of freedom than ``z``, so the reconstruction gets closer, and unit edits at that layer (GAN Paint)
still apply to the result.  The best state so far is kept; ``stop()`` returning True or a KeyboardInterrupt ends
the optimisation early and returns it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .causal import model_device
from .trace import Replace, Trace, get_module


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB of two image batches (``data_range``: 2 for images in [-1, 1])."""
    mse = float(F.mse_loss(a.float(), b.float()))
    return float("inf") if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


@dataclass
class InversionResult:
    """The best latent (and features) found, the image they make, and the loss history."""

    z: Tensor
    image: Tensor
    psnr: float
    losses: List[float] = field(default_factory=list)
    layer: Optional[str] = None
    features: Optional[Tensor] = None
    interrupted: bool = False

    @property
    def steps(self) -> int:
        return len(self.losses)


def _frozen(model: nn.Module) -> List[bool]:
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    return flags


def invert(generator: nn.Module, target: Tensor, *, z_init: Optional[Tensor] = None, z_dim: Optional[int] = None,
           steps: int = 200, lr: float = 0.05, layer: Optional[str] = None, layer_steps: int = 200,
           layer_lr: float = 0.01, feature_loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
           feature_weight: float = 1.0, seed: int = 0, stop: Optional[Callable[[], bool]] = None,
           callback: Optional[Callable[[int, float, Tensor], None]] = None) -> InversionResult:
    """Invert ``generator`` on ``target`` (one image ``(1, C, H, W)`` or ``(C, H, W)`` in the output range).

    ``steps`` Adam steps on ``z`` (from ``z_init``, default a normal draw with ``seed``), then ``layer_steps`` on
    ``layer``'s features if ``layer`` is given.  The loss is the pixel MSE plus ``feature_weight *
    feature_loss(image, target)`` when given.  ``callback(step, loss, image)`` sees the progress.
    """
    target = torch.as_tensor(target)
    if target.ndim == 3:
        target = target[None]
    if target.ndim != 4 or len(target) != 1:
        raise ValueError(f"invert one image (1, C, H, W), got shape {tuple(target.shape)}")
    if layer is not None:
        get_module(generator, layer)
    dev = model_device(generator)
    target = target.to(dev).float()
    if z_init is None:
        z_dim = int(z_dim if z_dim is not None else getattr(generator, "z_dim", 0))
        if z_dim <= 0:
            raise ValueError("pass z_init= or z_dim= (the generator has no z_dim attribute)")
        z_init = torch.randn(1, z_dim, generator=torch.Generator().manual_seed(seed))
    z = z_init.detach().clone().to(dev).requires_grad_(True)
    was_training, flags = generator.training, _frozen(generator)
    generator.eval()

    def loss_of(image: Tensor) -> Tensor:
        loss = F.mse_loss(image.float(), target)
        if feature_loss is not None:
            loss = loss + feature_weight * feature_loss(image, target)
        return loss

    losses: List[float] = []
    best = {"loss": float("inf"), "z": z.detach().clone(), "features": None}
    interrupted = False
    try:
        opt = torch.optim.Adam([z], lr=lr)
        for i in range(steps):
            if stop is not None and stop():
                interrupted = True
                break
            image = generator(z)
            loss = loss_of(image)
            losses.append(float(loss.detach()))
            if losses[-1] < best["loss"]:  # the loss belongs to z before this step's update
                best.update(loss=losses[-1], z=z.detach().clone())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if callback is not None:
                callback(i, losses[-1], image.detach())
        if layer is not None and not interrupted:
            with torch.no_grad(), Trace(generator, layer) as tr:
                tr.run(best["z"])
                feats = tr[layer].output.detach().clone().requires_grad_(True)
            best["features"] = feats.detach().clone()
            opt = torch.optim.Adam([feats], lr=layer_lr)
            with Trace(generator, [], retain_output=False, edit={layer: Replace(lambda _: feats)}) as tr:
                for i in range(layer_steps):
                    if stop is not None and stop():
                        interrupted = True
                        break
                    image = tr.run(best["z"])
                    loss = loss_of(image)
                    losses.append(float(loss.detach()))
                    if losses[-1] < best["loss"]:
                        best.update(loss=losses[-1], features=feats.detach().clone())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if callback is not None:
                        callback(steps + i, losses[-1], image.detach())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for p, flag in zip(generator.parameters(), flags):
            p.requires_grad_(flag)
        generator.train(was_training)
    with torch.no_grad():
        if best["features"] is not None:
            fixed = best["features"]
            image = Trace(generator, [], retain_output=False, edit={layer: Replace(lambda _: fixed)}).run(best["z"])
        else:
            image = generator(best["z"])
    return InversionResult(best["z"], image.detach(), psnr(image, target), losses, layer if best["features"] is not None
                           else None, best["features"], interrupted)
