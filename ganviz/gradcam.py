"""Grad-CAM: where a classifier looked for a class, at a chosen layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .plumbing import eval_mode, model_device
from .layouts import Layout, LayoutSpec
from .trace import Trace

__all__ = ["gradcam"]


def gradcam(model: nn.Module, x: torch.Tensor, layer: str, target: int | None = None,
            size: tuple[int, int] | None = None, layout: LayoutSpec | None = None) -> tuple[torch.Tensor, int]:
    """Grad-CAM heatmaps (N, H, W) in [0, 1] for class ``target`` (default: each image's top class).

    The layer's channels are weighted by the spatial mean of the class score's gradient, summed, passed through
    ReLU, upsampled bilinearly to ``size`` (default: the input's) and scaled so each map's maximum is 1.
    Returns the maps and the class used (of the first image when ``target`` is None).  The model runs in eval
    mode (its train/eval flags are restored) and may be frozen (``requires_grad_(False)``).

    Token and channels-last layers (a ViT block, a Swin stage) work as their ``[B, C, H, W]`` maps
    (:class:`~ganviz.trace.Trace`): the gradient is taken with respect to the layer's own tensor and mapped with its
    layout (prefix tokens such as the class token left out).  ``layout`` declares the layer's layout when it
    cannot be inferred (e.g. ``"tokens_cls+2"``).
    """
    if x.ndim == 3:
        x = x[None]
    dev = model_device(model)
    # the input carries the gradient, so a frozen model (requires_grad off) works; eval mode, flags restored
    x = x.to(dev).detach()
    x = (x if x.is_floating_point() else x.float()).requires_grad_(True)
    layouts = None if layout is None else {layer: layout}
    with torch.enable_grad(), eval_mode(model), Trace(model, layer, detach=False, layouts=layouts) as tr:
        logits = tr.run(x)
        lay, raw = _layer_tensor(tr, layer)
        classes = logits.argmax(1) if target is None else torch.full((len(x),), int(target), device=dev)
        if target is not None and not 0 <= int(target) < logits.shape[1]:
            raise IndexError(f"class {target} out of range (the model has {logits.shape[1]} classes)")
        score = logits.gather(1, classes[:, None]).sum()
        (grads,) = torch.autograd.grad(score, raw)
    acts, grads = lay.to_map(raw.detach()), lay.to_map(grads)
    weights = grads.mean((2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(1, keepdim=True)).detach().float()
    cam = F.interpolate(cam, size=size or tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    cam = cam / cam.flatten(1).max(1).values.clamp(min=1e-12)[:, None, None]
    return cam.cpu(), int(classes[0])


def _layer_tensor(tr: Trace, layer: str) -> tuple[Layout, torch.Tensor]:
    """The layout of ``layer`` and the tensor it passed on; raises when it is no map."""
    rec = tr[layer]
    if rec.layout is None and rec.layout_error is not None:
        raise rec.layout_error
    if rec.layout is None or not isinstance(rec.raw, torch.Tensor):
        out = rec.output
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"Grad-CAM needs a layer with a spatial map ((N, C, H, W), tokens or channels last); "
                         f"{layer!r} gives shape {shape}")
    return rec.layout, rec.raw
