"""Distribution metrics: Frechet distance between feature sets, segmentation accuracy and IoU.

    frechet_distance(feats_a, feats_b)                      # rows are samples
    extract = layer_features(model, "conv5_3")              # images in [-1, 1] -> pooled features
    segmentation_scores(confusion(pred, labels, k))         # pixel accuracy, IoU per class, mean IoU
    two_sample_accuracy(feats_real, feats_fake)             # a linear probe's held-out real/fake accuracy

FID with its default features is :func:`ganviz.fid_score.fid`; Inception-v3 weights load through
:func:`ganviz.formats.inception_features`.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .plumbing import eval_mode, model_device
from .trace import Trace, get_module

__all__ = ["frechet_distance", "two_sample_accuracy", "confusion", "segmentation_scores", "FeatureExtractor", "layer_features",
           "roc_auc"]


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


def two_sample_accuracy(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, l2: float = 1e-3,
                        seed: int = 0) -> float:
    """Classifier two-sample test: held-out accuracy of a logistic-regression probe telling rows of ``a`` from
    rows of ``b``, fitted on a random half of each set and tested on the other half (0.5: indistinguishable)."""
    a, b = (torch.as_tensor(np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t), dtype=torch.float64)
            for t in (a, b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (N, D) feature arrays with equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a) < 4 or len(b) < 4:
        raise ValueError("need at least 4 samples in each feature set (half fit the probe, half test it)")
    g = torch.Generator().manual_seed(seed)
    pa, pb = torch.randperm(len(a), generator=g), torch.randperm(len(b), generator=g)
    ha, hb = len(a) // 2, len(b) // 2
    x_fit = torch.cat([a[pa[:ha]], b[pb[:hb]]])
    y_fit = torch.cat([torch.ones(ha), torch.zeros(hb)]).double()
    x_test = torch.cat([a[pa[ha:]], b[pb[hb:]]])
    y_test = torch.cat([torch.ones(len(a) - ha), torch.zeros(len(b) - hb)]).double()
    mu, sd = x_fit.mean(0), x_fit.std(0).clamp(min=1e-8)
    x_fit, x_test = (x_fit - mu) / sd, (x_test - mu) / sd
    w = torch.zeros(x_fit.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = x_fit @ w[:-1] + w[-1]
        loss = F.binary_cross_entropy_with_logits(logits, y_fit) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (x_test @ w[:-1] + w[-1]) > 0
    return float((pred.double() == y_test).double().mean())


def roc_auc(scores: np.ndarray | torch.Tensor, positive: np.ndarray | torch.Tensor) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties half)."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(positive, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs positives and negatives, got {n_pos} and {n_neg}")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1  # average 1-based rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
    get_module(model, layer)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)

    @torch.no_grad()
    def extract(images: torch.Tensor) -> torch.Tensor:
        dev = model_device(model)
        out = []
        with eval_mode(model):
            for i in range(0, len(images), batch):
                x = (images[i:i + batch].to(dev).float() + 1) / 2
                if size is not None and x.shape[-1] != size:
                    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                x = (x - m.to(dev)) / s.to(dev)
                with Trace(model, layer, stop=True) as tr:
                    tr.run(x)
                    f = tr[layer].output
                out.append((f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)).float().cpu())
        return torch.cat(out)

    return extract
