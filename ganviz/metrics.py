"""Distribution metrics: Frechet distance between feature sets, segmentation accuracy and IoU."""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows are samples), as in FID."""
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (N, D) feature arrays with equal D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 samples in each feature set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s @ cov_b @ s), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion matrix counts[target, pred] (int64) for label tensors of any equal shape."""
    idx = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(conf: torch.Tensor, min_share: float = 0.005) -> dict:
    """Pixel accuracy, per-class IoU and mean IoU over classes covering at least ``min_share`` of pixels."""
    conf = conf.double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))
    share = conf.sum(1) / conf.sum()
    keep = share >= min_share
    return {"pixel_accuracy": float(inter.sum() / conf.sum()), "iou": iou.tolist(), "share": share.tolist(),
            "mean_iou": float(iou[keep].mean()), "mean_iou_classes": keep.nonzero().flatten().tolist()}


FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]
"""Images ``(N, 3, H, W)`` in [-1, 1] -> features ``(N, D)``: what the Frechet distance compares."""


def layer_features(model: nn.Module, layer: str, *, size: Optional[int] = None,
                   mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                   batch: int = 100) -> FeatureExtractor:
    """A feature extractor: spatially averaged outputs of ``model``'s ``layer``.

    Images in [-1, 1] are mapped to [0, 1], resized to ``size`` (bilinear; None keeps them), then normalised with
    ``mean``/``std`` (the defaults map back to [-1, 1], the bundled models' input range; ImageNet-trained
    networks such as Inception use (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) and size 299).
    """
    from .trace import Trace, get_module

    get_module(model, layer)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:
        dev = next(model.parameters()).device
        out = []
        was = model.training
        model.eval()
        try:
            for i in range(0, len(images), batch):
                x = (images[i:i + batch].to(dev).float() + 1) / 2
                if size is not None and x.shape[-1] != size:
                    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                x = (x - m.to(dev)) / s.to(dev)
                with Trace(model, layer, stop=True) as tr:
                    tr.run(x)
                    f = tr[layer].output
                out.append((f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)).float().cpu())
        finally:
            model.train(was)
        return torch.cat(out)

    return extract


def bundled_classifier_features() -> FeatureExtractor:
    """The default FID features: the bundled toy classifier's pooled ``conv5_3`` (192-d)."""
    from .zoo import load

    classifier, _ = load("toy-classifier")
    return layer_features(classifier, "conv5_3")


INCEPTION_VARIANTS = ("auto", "torchvision", "fid")


def inception_features(path: str | os.PathLike[str], device: str | torch.device = "cpu", variant: str = "auto",
                       batch: int = 50) -> FeatureExtractor:
    """The usual FID features: Inception-v3's 2048-d pooled features, from a weights file you supply.

    ``path``: a torchvision ``inception_v3`` state dict (e.g. ``inception_v3_google-0cc3c7bd.pth``; with or
    without ``AuxLogits.*``) or pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow FID
    network, which published FID values use); read safely by :func:`ganviz.checkpoints.load_state`, nothing is
    downloaded.  ``variant``: ``"auto"`` tells them apart from ``fc.weight`` (1000 vs 1008 classes),
    ``"torchvision"`` / ``"fid"`` force one.  Images in [-1, 1] are resized to 299x299 (bilinear, as pytorch-fid)
    and fed in [-1, 1] (pytorch-fid), or ImageNet-normalised for the torchvision weights, which the model maps
    back to [-1, 1] as torchvision's pretrained ``inception_v3`` does (``transform_input``).  Missing,
    unexpected or mis-shaped keys raise :class:`~ganviz.checkpoints.CheckpointError` naming them.  The network
    is available as the extractor's ``model`` attribute.
    """
    from .adapters import IMAGENET_MEAN, IMAGENET_STD
    from .checkpoints import CheckpointError, load_into, load_state
    from .models import inception

    if variant not in INCEPTION_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants: {', '.join(INCEPTION_VARIANTS)}")
    state, _ = load_state(path)
    try:
        detected = inception.variant_from_state_dict(state)
    except ValueError as err:
        if variant == "auto" or "fc.weight" not in state:
            raise CheckpointError(f"{path}: {err}") from None
        detected = variant
    variant = detected if variant == "auto" else variant
    fid_net = variant == "fid"
    aux = any(k.startswith("AuxLogits.") for k in state)
    model = inception.Inception3(int(state["fc.weight"].shape[0]), aux_logits=aux, transform_input=not fid_net,
                                 fid=fid_net)
    what = "pytorch-fid's FID Inception-v3" if fid_net else "torchvision's Inception-v3"
    load_into(model, state, what)
    model.to(device).eval()
    if fid_net:
        extract = layer_features(model, "avgpool", size=299, batch=batch)
    else:
        extract = layer_features(model, "avgpool", size=299, mean=IMAGENET_MEAN, std=IMAGENET_STD, batch=batch)
    extract.model = model  # type: ignore[attr-defined]
    return extract


def fid(real: torch.Tensor, fake: torch.Tensor, extractor: Optional[FeatureExtractor] = None) -> float:
    """Frechet distance between the features of two image sets ``(N, 3, H, W)`` in [-1, 1].

    ``extractor`` defaults to :func:`bundled_classifier_features` (meaningful for toy-world images); pass
    ``inception_features("pt_inception-2015-12-05-6726825d.pth")`` for the usual Inception FID when you have
    the weights file, or ``layer_features(model, layer, ...)`` for any network.  Values from different
    extractors are not comparable.
    """
    for name, x in (("real", real), ("fake", fake)):
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} images must be a (N, 3, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    extractor = extractor or bundled_classifier_features()
    return frechet_distance(extractor(real), extractor(fake))
