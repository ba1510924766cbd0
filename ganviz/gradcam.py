"""Grad-CAM: where a classifier looked for a class, at a chosen layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .trace import Trace


def gradcam(model: nn.Module, x: torch.Tensor, layer: str, target: int | None = None,
            size: tuple[int, int] | None = None) -> tuple[torch.Tensor, int]:
    """Grad-CAM heatmaps (N, H, W) in [0, 1] for class ``target`` (default: each image's top class).

    The layer's channels are weighted by the spatial mean of the class score's gradient, summed, passed through
    ReLU, upsampled bilinearly to ``size`` (default: the input's) and scaled so each map's maximum is 1.
    Returns the maps and the class used (of the first image when ``target`` is None).
    """
    if x.ndim == 3:
        x = x[None]
    dev = next((p.device for p in model.parameters()), torch.device('cpu'))
    x = x.to(dev)
    with torch.enable_grad(), Trace(model, layer, detach=False) as tr:
        logits = tr.run(x)
        acts = tr[layer].output
        if acts.ndim != 4:
            raise ValueError(f"Grad-CAM needs a convolutional layer with (N, C, H, W) output; "
                             f"{layer!r} gives shape {tuple(acts.shape)}")
        classes = logits.argmax(1) if target is None else torch.full((len(x),), int(target), device=dev)
        if target is not None and not 0 <= int(target) < logits.shape[1]:
            raise IndexError(f"class {target} out of range (the model has {logits.shape[1]} classes)")
        score = logits.gather(1, classes[:, None]).sum()
        (grads,) = torch.autograd.grad(score, acts)
    weights = grads.mean((2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(1, keepdim=True)).detach().float()
    cam = F.interpolate(cam, size=size or tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    cam = cam / cam.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]
    return cam.cpu(), int(classes[0])
