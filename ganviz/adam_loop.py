"""The optimisation loop shared by inversion and fine-tuning: Adam on some tensors against one loss per image,
keeping each image's best state, stoppable (``stop()`` or Ctrl+C) at any step."""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["AdamLoop", "per_image_loss", "rows_where"]


class AdamLoop:
    """Adam steps on some parameters, keeping the best state of each of ``n`` independent problems (images whose
    losses are summed: Adam's updates are per element, so each follows the path it would follow alone);
    ``stop()`` or Ctrl+C ends it early."""

    def __init__(self, stop: Optional[Callable[[], bool]], callback: Optional[Callable[[int, float, Tensor], None]],
                 n: int = 1):
        self.stop, self.callback = stop, callback
        self.history: List[List[float]] = []  # per step, one loss per problem
        self.n = n
        self.reset_best()
        self.interrupted = False

    def reset_best(self) -> None:
        self.best_loss = torch.full((self.n,), float("inf"))

    def losses(self, i: int = 0) -> List[float]:
        """Problem ``i``'s loss at every step."""
        return [step[i] for step in self.history]

    def run(self, params: List[Tensor], lr: float, steps: int, forward: Callable[[], Tuple[Tensor, Tensor]],
            keep: Callable[[Tensor], None]) -> None:
        """``forward()`` returns ``(losses (n,), image)``; ``keep(better)`` snapshots the state of the problems
        where ``better`` (a bool mask) is set, whose losses are the best so far."""
        if self.interrupted:
            return
        opt = torch.optim.Adam(params, lr=lr)
        try:
            for _ in range(steps):
                if self.stop is not None and self.stop():
                    self.interrupted = True
                    return
                loss, image = forward()
                if not loss.requires_grad:
                    raise ValueError("the generator's output has no gradient with respect to what is optimised; "
                                     "inversion needs a differentiable generator")
                each = loss.detach().reshape(-1).float().cpu()
                self.history.append(each.tolist())
                better = each < self.best_loss  # the loss belongs to the state before this step's update
                if bool(better.any()):
                    self.best_loss = torch.where(better, each, self.best_loss)
                    keep(better)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                if self.callback is not None:
                    self.callback(len(self.history) - 1, float(each.mean()), image.detach())
        except KeyboardInterrupt:
            self.interrupted = True


def per_image_loss(target: Tensor, feature_loss: Optional[Callable[[Tensor, Tensor], Tensor]],
             feature_weight: float) -> Callable[[Tensor], Tensor]:
    """``loss_of(images)``: one loss per target image (pixel MSE, plus the feature loss of each image alone)."""
    def loss_of(image: Tensor) -> Tensor:
        if image.shape[1:] != target.shape[1:]:
            raise ValueError(f"the target is {tuple(target.shape[1:])} but the generator makes "
                             f"{tuple(image.shape[1:])} images; pass a uint8 (H, W, 3) photo to have it cropped "
                             "and resized")
        loss = (image.float() - target).pow(2).flatten(1).mean(1)
        if feature_loss is not None:
            loss = loss + feature_weight * torch.stack([feature_loss(image[i:i + 1], target[i:i + 1]).reshape(())
                                                        for i in range(len(target))])
        return loss
    return loss_of


def rows_where(better: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Rows of ``new`` where ``better`` is set, else rows of ``old``."""
    mask = better.to(new.device).reshape((-1,) + (1,) * (new.ndim - 1))
    return torch.where(mask, new.detach(), old)
