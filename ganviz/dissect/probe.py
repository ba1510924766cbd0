"""What is dissected (:class:`Task`) and how one batch of it is computed (:class:`Probe`).

    task = Task(model, "conv5_3", "classifier", source, preprocess=to_signed)
    probe = Probe(task, device)
    acts, labels = probe(range(0, 64), want_labels=True)     # (N, C, h, w) float, (N, H, W) long

:class:`ActivationStore` keeps pass-1 activations (and labels) for pass 2 when they fit its budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..plumbing import model_device, segment
from ..preprocessing import identity
from ..trace import Trace
from .sources import DataSource

__all__ = ["IGNORE", "Task", "Probe", "ActivationStore", "check_labels"]

IGNORE = -1
"""Label value of pixels that belong to no concept."""


@dataclass(frozen=True)
class Task:
    """A layer of a model over a data source, with the concept labels' origin.

    ``kind``: ``"classifier"`` (the model sees ``preprocess(images)``; labels come from the data or from
    ``segmenter(segmenter_preprocess(images))``) or ``"generator"`` (the model sees the source's latents; labels
    are ``segmenter(segmenter_preprocess(model(z)))``).  ``concept_names`` name the label values.
    """

    model: nn.Module
    layer: str
    kind: str
    source: DataSource
    preprocess: Callable[[Tensor], Tensor] = identity
    segmenter: Optional[Callable[[Tensor], Any]] = None
    segmenter_preprocess: Callable[[Tensor], Tensor] = identity
    concept_names: Optional[Sequence[str]] = None

    @property
    def segmenter_module(self) -> Optional[nn.Module]:
        """The segmenter when it is a module (it then has weights, a device and a train/eval mode)."""
        return self.segmenter if isinstance(self.segmenter, nn.Module) else None


class Probe:
    """Computes ``(activations, labels)`` of a :class:`Task` for a batch of indices, on ``device``."""

    def __init__(self, task: Task, device: torch.device) -> None:
        self.device = device
        self.model, self.layer, self.source, self.kind = task.model, task.layer, task.source, task.kind
        self.preprocess, self.segmenter, self.seg_pre = task.preprocess, task.segmenter, task.segmenter_preprocess
        self.num_concepts: Optional[int] = None  # set by the first segmented batch

    def _acts(self, tr: Trace) -> Tensor:
        if not tr[self.layer].has_output:
            raise RuntimeError(f"layer {self.layer!r} did not run during the forward pass")
        record = tr[self.layer]  # token and channels-last layers come as their [B, C, H, W] map (see Trace)
        if record.layout is None and record.layout_error is not None:
            raise record.layout_error  # an ambiguous shape: names it and how to declare the layout
        acts = record.output
        if not isinstance(acts, Tensor) or acts.ndim != 4:
            shape = tuple(acts.shape) if isinstance(acts, Tensor) else type(acts).__name__
            raise ValueError(f"dissection needs a spatial layer output (N, C, H, W); layer {self.layer!r} "
                             f"gives {shape}")
        return acts.float().contiguous()

    def _labels(self, x: Tensor) -> Tensor:
        assert self.segmenter is not None
        if isinstance(self.segmenter, nn.Module):  # it may live on another device than the model
            x = x.to(model_device(self.segmenter))
        labels, k = segment(self.segmenter, x)
        if k is not None:
            self.num_concepts = k
        return labels.to(self.device)

    def __call__(self, indices: Sequence[int], want_labels: bool) -> Tuple[Tensor, Optional[Tensor]]:
        inputs, labels = self.source.load(indices)
        inputs = inputs.to(self.device)
        if self.kind == "generator":
            # a full pass (for the image) may modify the layer's output in place later on: keep a copy
            with Trace(self.model, self.layer, stop=not want_labels, clone=want_labels) as tr:
                out = tr.run(inputs)
            acts = self._acts(tr)
            labels = self._labels(self.seg_pre(out)) if want_labels else None
            return acts, labels
        with Trace(self.model, self.layer, stop=True) as tr:
            tr.run(self.preprocess(inputs))
        acts = self._acts(tr)
        if not want_labels:
            return acts, None
        if self.segmenter is not None:
            return acts, self._labels(self.seg_pre(inputs))
        if labels is None:
            raise ValueError("the data carries no labels; pass segmenter= to segment the images")
        return acts, labels.to(self.device)


def check_labels(labels: Tensor, k: int) -> Tensor:
    """``labels`` as long, or ``ValueError`` naming a value that is neither a concept index nor ``IGNORE``."""
    labels = labels.long()
    bad = (labels < IGNORE) | (labels >= k)
    if bool(bad.any()):
        v = int(labels[bad][0])
        raise ValueError(f"label value {v} outside 0..{k - 1} ({k} concept names; -1 marks no concept)")
    return labels


class ActivationStore:
    """Keeps pass-1 activations and labels on the device when all of this process's images fit the budget.

    They go into two buffers allocated once (one allocation instead of one per batch keeps the allocator from
    fragmenting, which otherwise slows the forward passes themselves).
    """

    def __init__(self, budget: int, images: int) -> None:
        self.budget, self.images = int(budget), int(images)
        self.decided = budget <= 0 or images == 0
        self.active = False
        self.items: List[Tuple[Sequence[int], int]] = []  # (indices, offset into the buffers)
        self.acts: Optional[Tensor] = None
        self.labels: Optional[Tensor] = None
        self.used = 0

    @property
    def wants_labels(self) -> bool:
        return not self.decided or self.active

    def offer(self, indices: Sequence[int], acts: Tensor, labels: Optional[Tensor]) -> None:
        if not self.decided:
            self.decided = True
            if labels is not None:
                per_image = acts[0].numel() * acts.element_size() + labels[0].numel() * 2
                self.active = per_image * self.images <= self.budget
                if self.active:
                    self.acts = acts.new_empty((self.images,) + tuple(acts.shape[1:]))
                    self.labels = torch.empty((self.images,) + tuple(labels.shape[1:]), dtype=torch.int16,
                                              device=labels.device)
        if self.active and labels is not None:
            assert self.acts is not None and self.labels is not None
            n = acts.shape[0]
            self.acts[self.used:self.used + n] = acts
            self.labels[self.used:self.used + n] = labels
            self.items.append((indices, self.used))
            self.used += n

    def batches(self) -> Iterator[Tuple[Sequence[int], Tensor, Tensor]]:
        """The kept ``(indices, activations, labels)`` in the order they came."""
        assert self.acts is not None and self.labels is not None
        for indices, offset in self.items:
            n = len(indices)
            yield indices, self.acts[offset:offset + n], self.labels[offset:offset + n].long()

    def clear(self) -> None:
        self.items.clear()
        self.acts = self.labels = None
        self.active = False
