"""Distribution metrics: Frechet distance between feature sets, segmentation accuracy and IoU."""
from __future__ import annotations

import numpy as np
import torch


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
