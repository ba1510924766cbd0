"""Classifier unit ablation: predictions with units removed, flip search, per-class accuracy, sparsity curves.

Following Bau et al. (PNAS 2020): units are removed by setting them to 0; units are ranked by the effect of
removing each one alone; a class's accuracy is compared with the other classes' as its top units are removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .cache import PathLike, cached_arrays, make_key, weights_hash
from .progress import progress as progress_bar
from .edits import Ablate, Edit, Replace, Scale
from .trace import Trace, get_module

__all__ = ["unit_scales", "predict", "single_unit_effects", "FlipResult", "find_flip", "class_accuracy",
           "SparsityCurve", "sparsity_curve"]


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device('cpu'))


def unit_scales(scales: dict[int, float] | None) -> Edit | None:
    """An edit scaling each unit by its factor (0 removes it, 1 keeps it) or None when nothing changes."""
    scales = {int(u): float(s) for u, s in (scales or {}).items() if float(s) != 1.0}
    if not scales:
        return None
    return Scale(list(scales), list(scales.values()))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, layer: str | None = None, edit: Edit | None = None,
            batch: int = 256) -> torch.Tensor:
    """Class probabilities of images ``x`` (already in the model's input range), optionally with a layer edit."""
    dev = _device(model)
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].to(dev)
        if layer is None or edit is None:
            out.append(model(xb).float().softmax(1).cpu())
        else:
            with Trace(model, layer, retain_output=False, edit=edit) as tr:
                out.append(tr.run(xb).float().softmax(1).cpu())
    return torch.cat(out)


def _num_units(model: nn.Module, layer: str, x: torch.Tensor) -> int:
    with Trace(model, layer, stop=True) as tr:
        tr.run(x[:1].to(_device(model)))
    return int(tr[layer].output.shape[1])


def _masked(out: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``out`` (1 or G images) times each row of ``keep`` (G, units): one trial per row."""
    return out * keep.reshape(keep.shape + (1,) * (out.ndim - 2)).to(out.dtype)


def _trial_probs(model: nn.Module, layer: str, img: torch.Tensor, keep: torch.Tensor, fan_out: bool) -> torch.Tensor:
    """Class probabilities of one image ``img`` (1,3,H,W) with row g of ``keep`` as the layer's units in trial g.

    ``fan_out``: the layers before ``layer`` run once and its output is copied into the trials (the work of one
    image, not G, before the layer); otherwise the image is copied into the trials at the input.
    """
    if fan_out:
        edit = Replace(lambda out: _masked(out.expand(len(keep), *out.shape[1:]), keep))
        batch = img
    else:
        edit = Replace(lambda out: _masked(out, keep))
        batch = img.expand(len(keep), *img.shape[1:])
    with Trace(model, layer, retain_output=False, edit=edit) as tr:
        probs = tr.run(batch).float().softmax(1)
    if probs.shape[0] != len(keep):
        raise ValueError(f"{len(keep)} trials gave {probs.shape[0]} predictions")
    return probs


def _first_trials(model: nn.Module, layer: str, img: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The trials of the first group, and whether the layers after ``layer`` treat a batch that starts there like
    one that starts at the input (true of convnets, residual networks and ViTs; not of a model that reshapes with
    the batch size it was given): its first and last trials are compared with the same trials run from the input."""
    try:
        fast = _trial_probs(model, layer, img, keep, fan_out=True)
        if torch.allclose(fast[[0, -1]], _trial_probs(model, layer, img, keep[[0, -1]], fan_out=False),
                          atol=1e-5, rtol=1e-4):
            return fast, True
    except Exception:  # noqa: BLE001 - any failure of the shortcut means: run every trial from the input
        pass
    return _trial_probs(model, layer, img, keep, fan_out=False), False


@torch.no_grad()
def single_unit_effects(model: nn.Module, layer: str, x: torch.Tensor, target: int | torch.Tensor,
                        units: Sequence[int] | None = None, chunk: int = 64, progress: bool = False,
                        removed: Sequence[int] = ()) -> torch.Tensor:
    """Drop in the target class's probability (mean over ``x``) when each unit alone is removed.

    ``target`` is one class for all images or one class per image; units already in ``removed`` stay removed in
    every trial.  Returns a tensor with one effect per unit of the layer (0 for units not tried).  Where the
    model allows it (checked on the first trials), the layers before ``layer`` run once per image, not per trial.
    """
    dev = _device(model)
    n_units = _num_units(model, layer, x)
    units = list(range(n_units)) if units is None else [int(u) for u in units]
    target = torch.as_tensor(target).expand(len(x)) if torch.as_tensor(target).ndim == 0 else torch.as_tensor(target)
    base_edit = Ablate(list(removed)) if removed else None
    base = predict(model, x, layer, base_edit)[torch.arange(len(x)), target].mean()
    effects = torch.zeros(n_units)
    xs = x.to(dev)
    fan_out = None
    for img in progress_bar(range(len(x)), desc="single-unit ablations", disable=not progress or len(x) < 4):
        for start in range(0, len(units), chunk):
            group = units[start:start + chunk]
            keep = torch.ones(len(group), n_units, device=dev)
            keep[torch.arange(len(group)), torch.tensor(group)] = 0
            if removed:
                keep[:, list(removed)] = 0
            if fan_out is None:
                probs, fan_out = _first_trials(model, layer, xs[img:img + 1], keep)
            else:
                probs = _trial_probs(model, layer, xs[img:img + 1], keep, fan_out)
            effects[group] += probs[:, int(target[img])].cpu()
    effects = torch.where(torch.isin(torch.arange(n_units), torch.tensor(units)), base - effects / len(x),
                          torch.zeros(n_units))
    return effects


@dataclass
class FlipResult:
    """Units whose removal changes an image's top class, found greedily by effect."""

    units: list[int]
    original_class: int
    new_class: int
    flipped: bool
    trail: list[np.ndarray] = field(default_factory=list)  # class probabilities after each removal


def find_flip(model: nn.Module, layer: str, x: torch.Tensor, max_units: int = 5, candidates: int = 40,
              cache_dir: PathLike | None = None) -> FlipResult:
    """Greedy search for a small set of units whose removal changes the top class of one image ``x`` (1,3,H,W).

    Every step removes the unit (among the ``candidates`` with the largest single-unit effect) whose removal,
    added to the units removed so far, lowers the original class's probability most.  With ``cache_dir``, the
    search is stored by the model's weights, the layer, the image and the settings, and an identical call loads it.
    """
    if x.ndim == 3:
        x = x[None]
    get_module(model, layer)
    out = cached_arrays(cache_dir, lambda: make_key(kind="flip", model=weights_hash(model), layer=layer,
                                                    x=x.detach().cpu(), max_units=max_units, candidates=candidates),
                        lambda: _flip_search(model, layer, x, max_units, candidates))
    units, trail = [int(u) for u in out["units"]], list(out["trail"])
    original, new = int(trail[0].argmax()), int(trail[-1].argmax())
    return FlipResult(units, original, new, new != original, trail)


@torch.no_grad()
def _flip_search(model: nn.Module, layer: str, x: torch.Tensor, max_units: int, candidates: int
                 ) -> dict[str, np.ndarray]:
    """:func:`find_flip`'s search: the units removed and the class probabilities before and after each removal."""
    probs = predict(model, x)[0]
    original = int(probs.argmax())
    ranked = single_unit_effects(model, layer, x, original).argsort(descending=True)[:candidates].tolist()
    removed: list[int] = []
    trail = [probs.numpy()]
    for _ in range(max_units):
        effects = single_unit_effects(model, layer, x, original, units=[u for u in ranked if u not in removed],
                                      removed=removed)
        removed.append(int(effects.argmax()))
        probs = predict(model, x, layer, Ablate(removed))[0]
        trail.append(probs.numpy())
        if int(probs.argmax()) != original:
            break
    return {"units": np.asarray(removed, np.int64), "trail": np.stack(trail)}


@torch.no_grad()
def class_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, layer: str | None = None,
                   edit: Edit | None = None) -> np.ndarray:
    """Per-class accuracy over a labelled set, optionally with a layer edit (e.g. ``Ablate(units)``)."""
    pred = predict(model, x, layer, edit).argmax(1)
    return np.array([float((pred[y == c] == c).float().mean()) if (y == c).any() else float("nan")
                     for c in range(num_classes)])


@dataclass
class SparsityCurve:
    """Accuracy of one class and of all others as its most important units are removed one by one."""

    target: int
    units: list[int]  # ranked by single-unit effect, most important first
    class_accuracy: np.ndarray  # [k+1]: with the first k units removed
    other_accuracy: np.ndarray  # [k+1]: mean accuracy of the other classes

    def drop(self, k: int) -> tuple[float, float]:
        """Accuracy lost by the class and by the others with the top ``k`` units removed."""
        return (float(self.class_accuracy[0] - self.class_accuracy[k]),
                float(self.other_accuracy[0] - self.other_accuracy[k]))


def sparsity_curve(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, target: int, num_classes: int,
                   max_units: int = 10, rank_images: int = 40, progress: bool = False) -> SparsityCurve:
    """Rank units by single-unit effect on ``target`` (over up to ``rank_images`` of its images), then remove the
    top 0..``max_units`` units and measure accuracy of the class and of the others on ``(x, y)``."""
    get_module(model, layer)
    xs = x[y == target][:rank_images]
    if len(xs) == 0:
        raise ValueError(f"no images of class {target} in the validation set")
    units = single_unit_effects(model, layer, xs, target, progress=progress).argsort(descending=True)[:max_units]
    units = units.tolist()
    cls_acc, other_acc = [], []
    for k in range(max_units + 1):
        acc = class_accuracy(model, x, y, num_classes, layer, Ablate(units[:k]) if k else None)
        cls_acc.append(acc[target])
        other_acc.append(np.nanmean(np.delete(acc, target)))
    return SparsityCurve(target, units, np.array(cls_acc), np.array(other_acc))
