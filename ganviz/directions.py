"""Concept directions: linear read-outs of a layer that detect concepts, as a :class:`~ganviz.basis.DirectionsBasis`.

    basis = net2vec_directions(classifier, "conv5_3", ToyWorldSource(1000, seed=2))          # from segmentations
    basis = net2vec_directions(generator, "layer4", GeneratorSource(500, 128), segmenter=segmenter)
    basis = cav_directions(classifier, "conv5_3", {"tree": (images_with_trees, images_without)})   # example sets
    basis = cav_directions_from_labels(classifier, "conv5_3", ToyWorldSource(1000, seed=2), concepts=["hat"])
    with with_basis(classifier, "conv5_3", basis) as view: ...      # dissect, ablate, paint with the directions

* **Net2Vec** (Fong & Vedaldi 2018): one linear probe per concept on the layer's feature-map positions, against
  the concept's share of each position's image patch (label maps average-pooled to the map's size), trained with
  a class-balanced binary cross-entropy.  The direction is the probe's weight vector.
* **CAV** (Kim et al. 2018, TCAV): a linear classifier separating the spatially pooled activations of images with
  the concept from those without; the direction is its normal.

Probes are fitted by full-batch L-BFGS on standardised activations (weights mapped back to raw activation units),
with a small L2 penalty.  Directions are unit-norm; the basis' ``center`` is the mean activation, so removing a
direction sets the layer's component along it to the average (see :class:`~ganviz.basis.DirectionsBasis`).
``basis.scores`` holds each probe's balanced accuracy on the data it was fitted on.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .basis import DirectionsBasis
from .dissect.probe import IGNORE, Probe, Task
from .dissect.sources import DataSource, GeneratorSource, LatentSource, TensorSource, as_source
from .plumbing import eval_mode, model_device, seeded_generator, z_dim_of
from .preprocessing import identity, to_signed
from .progress import progress as progress_bar
from .toyworld import CONCEPTS

__all__ = ["fit_linear_probes", "data_source", "collect_activations", "concept_maps", "pooled_activations",
           "net2vec_directions", "cav_directions", "cav_directions_from_labels"]

Preprocess = Optional[Callable[[Tensor], Tensor]]


def _standardise(x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return (x - mean) / std, mean, std


def fit_linear_probes(x: Tensor, y: Tensor, mask: Optional[Tensor] = None, *, l2: float = 1e-4,
                      steps: int = 100) -> Tuple[Tensor, Tensor, Tensor]:
    """Logistic probes ``sigmoid(x @ W.T + b)`` for targets ``y [M, K]`` in [0, 1] from inputs ``x [M, C]``.

    ``mask [M, K]`` (bool) limits each probe to some rows (CAV: the example sets).  Positives and negatives
    weigh the same in total.  Returns ``(W [K, C], b [K], balanced_accuracy [K])`` in ``x``'s raw units.
    ``W, b, acc = fit_linear_probes(acts, areas)``.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be [M, C] and y [M, K] with the same M, got {list(x.shape)} and {list(y.shape)}")
    x, y = x.float(), y.float().clamp(0, 1)
    m = torch.ones_like(y) if mask is None else mask.float()
    pos, neg = (y * m).sum(0), ((1 - y) * m).sum(0)
    if bool(((pos < 1) | (neg < 1)).any()):
        bad = int(((pos < 1) | (neg < 1)).nonzero()[0])
        raise ValueError(f"probe {bad} has no positive or no negative examples ({float(pos[bad]):.0f} / "
                         f"{float(neg[bad]):.0f})")
    weight_pos, weight_neg = m * 0.5 / pos, m * 0.5 / neg
    xs, mean, std = _standardise(x)
    w = torch.zeros(y.shape[1], x.shape[1], requires_grad=True)
    b = torch.zeros(y.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        logits = xs @ w.T + b
        loss = -(weight_pos * y * F.logsigmoid(logits) + weight_neg * (1 - y) * F.logsigmoid(-logits)).sum()
        loss = loss / y.shape[1] + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred = (xs @ w.T + b) > 0
        hard = y >= 0.5
        acc = 0.5 * ((pred & hard).float() * m).sum(0) / (hard.float() * m).sum(0).clamp_min(1) + \
            0.5 * ((~pred & ~hard).float() * m).sum(0) / ((~hard).float() * m).sum(0).clamp_min(1)
        w_raw = w.detach() / std
        b_raw = b.detach() - (w_raw * mean).sum(1)
    return w_raw, b_raw, acc


# -- what the probes read -------------------------------------------------------------------------------------------


def _concept_names(source: DataSource, segmenter: Any, given: Optional[Sequence[str]]) -> Optional[List[str]]:
    if given is not None:
        return list(given)
    if segmenter is not None:
        names = getattr(segmenter, "concept_names", None)
        return list(names) if names else None
    return list(source.concept_names) if source.concept_names is not None else None


def _probe(model: nn.Module, layer: str, source: DataSource, kind: str, preprocess: Preprocess, segmenter: Any,
           segmenter_preprocess: Preprocess, labels: bool = False) -> Probe:
    pre = preprocess or (to_signed if kind == "classifier" else identity)
    seg_pre = segmenter_preprocess or (to_signed if kind == "classifier" else identity)
    if kind == "generator" and segmenter is None and labels:
        raise ValueError("reading concepts in a generator's images needs segmenter=")
    task = Task(model, layer, kind, source, preprocess=pre, segmenter=segmenter, segmenter_preprocess=seg_pre)
    return Probe(task, model_device(model))


def data_source(data: Any, kind: Optional[str] = None, *, model: Optional[nn.Module] = None,
                n: Optional[int] = None) -> Tuple[DataSource, str]:
    """``(source, kind)`` for what a reader is given: a data source, images ``[N, 3, H, W]`` in [0, 1]
    (``"classifier"``), latents ``[N, z]`` or a ``GeneratorSource`` (``"generator"``), or ``None`` (``n`` seeded
    latents of ``model.z_dim``, default 2000).  ``kind`` overrides the guess."""
    if data is None:
        if model is None:
            raise ValueError("no data given: pass images, latents or a data source")
        source: DataSource = GeneratorSource(2000 if n is None else n, z_dim_of(model), seed=1)
    elif isinstance(data, Tensor) and data.ndim == 2:
        source = LatentSource(data)
    elif isinstance(data, Tensor):
        source = TensorSource(data)
    else:
        source = as_source(data)
    guess = "generator" if isinstance(source, (GeneratorSource, LatentSource)) else "classifier"
    kind = kind or guess
    if kind not in ("classifier", "generator"):
        raise ValueError(f"kind must be 'classifier' or 'generator', got {kind!r}")
    return source, kind


def _pick_positions(acts: Tensor, positions: Optional[int], gen: torch.Generator) -> Tensor:
    """``[B, C, h, w]`` -> ``[B, P, C]``: all positions, or ``positions`` drawn per item."""
    b, c = acts.shape[:2]
    flat = acts.reshape(b, c, -1).transpose(1, 2)
    if positions is None or positions >= flat.shape[1]:
        return flat
    idx = torch.stack([torch.randperm(flat.shape[1], generator=gen)[:positions] for _ in range(b)])
    return flat.gather(1, idx.to(flat.device)[..., None].expand(-1, -1, c))


@torch.no_grad()
def collect_activations(model: nn.Module, layer: str, data: Any = None, *, n: Optional[int] = None,
                        kind: Optional[str] = None, preprocess: Preprocess = None, batch_size: int = 100,
                        positions: Optional[int] = None, seed: int = 0, progress: bool = True) -> Tensor:
    """Activations of ``layer`` over the first ``n`` items of ``data`` (see :func:`data_source`): ``[N, P, C]``
    float32 on the CPU, all positions or ``positions`` drawn per item.  Token and channels-last layers are read
    as their ``[B, C, H, W]`` maps.  ``collect_activations(model, "conv5_3", ToyWorldSource(500))``.
    """
    source, kind = data_source(data, kind, model=model, n=n)
    n = len(source) if n is None else min(int(n), len(source))
    if n < 1:
        raise ValueError("no items to read activations from")
    probe = _probe(model, layer, source, kind, preprocess, None, None)
    gen, out = seeded_generator(seed), []
    with eval_mode(model), progress_bar(total=n, desc=f"activations of {layer}", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            acts, _ = probe(range(start, min(start + batch_size, n)), want_labels=False)
            out.append(_pick_positions(acts, positions, gen).float().cpu())
            bar.update(acts.shape[0])
    return torch.cat(out)


def _shares(labels: Tensor, k: int, size: Tuple[int, int]) -> Tensor:
    """Label maps ``[B, H, W]`` -> each concept's share of every cell of a ``size`` grid ``[B, K, h, w]``."""
    valid = labels != IGNORE
    onehot = F.one_hot(labels.clamp_min(0), k).permute(0, 3, 1, 2).float() * valid[:, None].float()
    return F.adaptive_avg_pool2d(onehot, size)


@torch.no_grad()
def concept_maps(model: nn.Module, layer: str, data: Any, *, n: Optional[int] = None, kind: Optional[str] = None,
                 preprocess: Preprocess = None, segmenter: Any = None, segmenter_preprocess: Preprocess = None,
                 num_concepts: Optional[int] = None, batch_size: int = 64,
                 progress: bool = True) -> Tuple[Tensor, Tensor]:
    """Activations ``[N, C, h, w]`` of ``layer`` and each concept's share of every position ``[N, K, h, w]``.

    Labels come from the data, or from ``segmenter`` (required for generators), as in ``dissect_*``.
    ``acts, shares = concept_maps(classifier, "conv5_3", ToyWorldSource(500))``.
    """
    source, kind = data_source(data, kind)
    n = len(source) if n is None else min(int(n), len(source))
    probe = _probe(model, layer, source, kind, preprocess, segmenter, segmenter_preprocess, labels=True)
    acts, shares = [], []
    with eval_mode(model, segmenter), progress_bar(total=n, desc=f"concepts at {layer}", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            a, labels = probe(range(start, min(start + batch_size, n)), want_labels=True)
            assert labels is not None
            k = num_concepts or probe.num_concepts or int(labels.max()) + 1
            acts.append(a.float().cpu())
            shares.append(_shares(labels.cpu(), k, tuple(a.shape[-2:])))
            bar.update(a.shape[0])
    if not acts:
        raise ValueError("no items to read")
    width = max(s.shape[1] for s in shares)
    return torch.cat(acts), torch.cat([F.pad(s, (0, 0, 0, 0, 0, width - s.shape[1])) for s in shares])


def _default_names(k: int) -> List[str]:
    """Names for unnamed label values: the toy world's concepts when there are as many (as dissections do)."""
    return list(CONCEPTS) if k == len(CONCEPTS) else [f"concept_{j}" for j in range(k)]


def _select(names: Optional[List[str]], k: int, concepts: Optional[Sequence[str]]) -> List[int]:
    """Indices of the requested concepts (all ``k`` by default)."""
    if concepts is None:
        return list(range(k))
    if names is None:
        raise ValueError("the data's concepts have no names; pass concept_names= to pick concepts by name")
    missing = [c for c in concepts if c not in names]
    if missing:
        raise KeyError(f"unknown concepts {', '.join(map(repr, missing))}; known: {', '.join(names)}")
    return [names.index(c) for c in concepts]


def _basis(w: Tensor, keep: List[int], names: List[str], center: Tensor, acc: Tensor) -> DirectionsBasis:
    basis = DirectionsBasis(w, [names[j] for j in keep], center=center)
    basis.scores = {names[j]: float(a) for j, a in zip(keep, acc)}
    return basis


def net2vec_directions(model: nn.Module, layer: str, data: Any, *, n: Optional[int] = None,
                       concepts: Optional[Sequence[str]] = None, concept_names: Optional[Sequence[str]] = None,
                       kind: Optional[str] = None, preprocess: Preprocess = None, segmenter: Any = None,
                       segmenter_preprocess: Preprocess = None, min_positions: int = 20, l2: float = 1e-4,
                       batch_size: int = 64, progress: bool = True) -> DirectionsBasis:
    """Net2Vec directions for ``concepts`` (default: every concept on at least ``min_positions`` positions).

    A position is positive in proportion to its patch's share of the concept (soft targets).
    """
    source, kind = data_source(data, kind)
    names = _concept_names(source, segmenter, concept_names)
    k = len(names) if names is not None else None
    acts, shares = concept_maps(model, layer, source, n=n, kind=kind, preprocess=preprocess, segmenter=segmenter,
                                segmenter_preprocess=segmenter_preprocess, num_concepts=k, batch_size=batch_size,
                                progress=progress)
    names = names or _default_names(shares.shape[1])
    x = acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])
    y = shares.permute(0, 2, 3, 1).reshape(-1, shares.shape[1])
    pos = (y >= 0.5).sum(0)
    keep = [j for j in _select(names, y.shape[1], concepts) if min_positions <= pos[j] <= len(y) - min_positions]
    if not keep:
        raise ValueError(f"no concept covers at least {min_positions} positions of the {len(y)} read")
    w, _, acc = fit_linear_probes(x, y[:, keep], l2=l2)
    return _basis(w, keep, names, x.mean(0), acc)


@torch.no_grad()
def pooled_activations(model: nn.Module, layer: str, data: Any, *, kind: Optional[str] = None,
                       preprocess: Preprocess = None, batch_size: int = 64) -> Tensor:
    """Spatial means of ``layer``'s map ``[N, C]`` for images in [0, 1] (or latents / a source)."""
    source, kind = data_source(data, kind)
    probe = _probe(model, layer, source, kind, preprocess, None, None)
    out = []
    with eval_mode(model):
        for start in range(0, len(source), batch_size):
            acts, _ = probe(range(start, min(start + batch_size, len(source))), want_labels=False)
            out.append(acts.float().mean((2, 3)).cpu())
    if not out:
        raise ValueError("an example set is empty")
    return torch.cat(out)


def _cav(pooled: Dict[str, Tuple[Tensor, Tensor]], l2: float) -> Tuple[Tensor, List[str], Tensor, Tensor]:
    """One logistic probe per concept on its own examples (with: 1, without: 0), fitted jointly."""
    names = list(pooled)
    rows = torch.cat([torch.cat(pooled[c]) for c in names])
    y = torch.zeros(len(rows), len(names))
    mask = torch.zeros(len(rows), len(names), dtype=torch.bool)
    at = 0
    for j, c in enumerate(names):
        p, q = pooled[c]
        y[at:at + len(p), j] = 1
        mask[at:at + len(p) + len(q), j] = True
        at += len(p) + len(q)
    w, _, acc = fit_linear_probes(rows, y, mask, l2=l2)
    return w, names, acc, rows.mean(0)


def cav_directions(model: nn.Module, layer: str, examples: Mapping[str, Tuple[Any, Any]], *,
                   kind: Optional[str] = None, preprocess: Preprocess = None, l2: float = 1e-3,
                   batch_size: int = 64) -> DirectionsBasis:
    """CAV directions from example sets ``{concept: (with, without)}`` (images ``[N, 3, H, W]`` in [0, 1],
    latents ``[N, z]`` for a generator, or data sources)."""
    if not examples:
        raise ValueError("examples is empty: pass {concept: (images_with, images_without)}")
    pooled = {}
    for name, pair in examples.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"examples[{name!r}] must be a pair (with, without)")
        pooled[str(name)] = tuple(pooled_activations(model, layer, d, kind=kind, preprocess=preprocess,
                                                     batch_size=batch_size) for d in pair)
    w, names, acc, center = _cav(pooled, l2)  # type: ignore[arg-type]
    return _basis(w, list(range(len(names))), names, center, acc)


def cav_directions_from_labels(model: nn.Module, layer: str, data: Any, *, n: Optional[int] = None,
                               concepts: Optional[Sequence[str]] = None,
                               concept_names: Optional[Sequence[str]] = None, kind: Optional[str] = None,
                               preprocess: Preprocess = None, segmenter: Any = None,
                               segmenter_preprocess: Preprocess = None, min_share: float = 0.01,
                               min_examples: int = 10, l2: float = 1e-3, batch_size: int = 64,
                               progress: bool = True) -> DirectionsBasis:
    """CAV directions with example sets read from labels: images whose concept share is at least
    ``min_share`` against images without the concept (concepts with fewer than ``min_examples`` of either
    are left out)."""
    source, kind = data_source(data, kind)
    names = _concept_names(source, segmenter, concept_names)
    acts, shares = concept_maps(model, layer, source, n=n, kind=kind, preprocess=preprocess, segmenter=segmenter,
                                segmenter_preprocess=segmenter_preprocess,
                                num_concepts=len(names) if names else None, batch_size=batch_size,
                                progress=progress)
    names = names or _default_names(shares.shape[1])
    pooled, area = acts.mean((2, 3)), shares.mean((2, 3))
    sets = {}
    for j in _select(names, area.shape[1], concepts):
        has, lacks = area[:, j] >= min_share, area[:, j] == 0
        if int(has.sum()) >= min_examples and int(lacks.sum()) >= min_examples:
            sets[names[j]] = (pooled[has], pooled[lacks])
    if not sets:
        raise ValueError(f"no concept has {min_examples} images with and without it")
    w, kept, acc, _ = _cav(sets, l2)
    return _basis(w, list(range(len(kept))), kept, pooled.mean(0), acc)
