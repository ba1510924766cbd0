"""Pictures of units: a unit's top images with its top-quantile region highlighted, histograms, IoU bars."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dissect import DissectionResult, as_source
from .imaging import highlight_region, make_grid, to_uint8
from .trace import Trace

__all__ = ["images_and_maps", "unit_top_images", "unit_strip", "plot_unit_detail"]


def _signed(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


@torch.no_grad()
def images_and_maps(model: nn.Module, layer: str, source, indices: Sequence[int], units: Sequence[int],
                    kind: str = "classifier", preprocess: Callable[[torch.Tensor], torch.Tensor] = _signed
                    ) -> tuple[np.ndarray, torch.Tensor]:
    """Images (N,H,W,3 uint8) of data items ``indices`` and the maps of ``units`` upsampled to them (N,U,H,W).

    For a classifier the items are images fed through ``preprocess``; for a generator they are latents and the
    images are the generator's output (in [-1, 1]).
    """
    dev = next((p.device for p in model.parameters()), torch.device('cpu'))
    inputs, _ = as_source(source).load(list(indices))
    with Trace(model, layer, stop=kind == "classifier") as tr:
        out = tr.run((preprocess(inputs) if kind == "classifier" else inputs).to(dev))
    acts = tr[layer].output[:, list(units)].float()
    if kind == "classifier":
        images = to_uint8(inputs)
    else:
        images = to_uint8(out.float().cpu(), (-1, 1))
    size = images.shape[1:3]
    maps = F.interpolate(acts, size=size, mode="bilinear", align_corners=False).cpu()
    return images, maps


def unit_top_images(model: nn.Module, result: DissectionResult, source, unit: int, n: int = 6,
                    preprocess: Callable[[torch.Tensor], torch.Tensor] = _signed) -> np.ndarray:
    """The ``n`` top-activating images of ``unit`` with its above-threshold region highlighted (n,H,W,3)."""
    if not 0 <= unit < result.num_units:
        raise IndexError(f"unit {unit} out of range for layer {result.layer!r} with {result.num_units} units")
    idx = [int(i) for i in result.topk_indices[unit][:n] if i >= 0]
    if not idx:
        raise ValueError(f"{result.noun()} {unit} has no top images (was the dissection run on an empty data "
                         "set?)")
    images, maps = images_and_maps(model, result.layer, source, idx, [unit], result.model_kind, preprocess)
    thr = float(result.thresholds[unit])
    return np.stack([highlight_region(img, m[0].numpy() > thr) for img, m in zip(images, maps)])


def unit_strip(model: nn.Module, result: DissectionResult, source, unit: int, n: int = 6,
               preprocess: Callable[[torch.Tensor], torch.Tensor] = _signed) -> np.ndarray:
    """One row of highlighted top images (for grids and slides)."""
    return make_grid(unit_top_images(model, result, source, unit, n, preprocess), cols=n, pad=1)


def plot_unit_detail(result: DissectionResult, unit: int):
    """A figure with the unit's activation distribution (from the quantile sketch) and its IoU per concept."""
    from .charts import figure

    fig = figure((8, 2.6))
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.6])
    levels, values = result.quantile_levels, result.quantile_values[unit]
    ax1.plot(values, levels, color="#4c72b0")
    ax1.axvline(result.thresholds[unit], color="#c44e52", ls="--", lw=1,
                label=f"threshold (q={result.quantile})")
    ax1.set_xlabel("activation")
    ax1.set_ylabel("fraction below")
    ax1.legend(fontsize=7, loc="lower right")
    ax1.set_title(f"{result.noun()} {unit}: activation distribution", fontsize=9)
    iou = result.iou[unit]
    order = np.argsort(-iou)
    ax2.bar(range(len(iou)), iou[order], color=["#55a868" if v >= 0.04 else "#999999" for v in iou[order]])
    ax2.set_xticks(range(len(iou)))
    ax2.set_xticklabels([result.concept_names[j] for j in order], rotation=60, ha="right", fontsize=7)
    ax2.axhline(0.04, color="#c44e52", lw=0.8, ls=":")
    ax2.set_title(f"IoU with every concept (best: {result.concept_names[order[0]]} {iou[order[0]]:.2f})",
                  fontsize=9)
    return fig


