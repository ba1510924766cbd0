"""Torch chores shared by every floor: where a model lives, eval mode with everything restored, latents.

    dev = model_device(model)                 # first parameter's or buffer's device; CPU for neither
    with eval_mode(generator, segmenter):     # train/eval flags of every submodule restored afterwards
        ...
    with frozen(generator):                   # eval mode and requires_grad off, both restored
        ...
    z = seeded_latents(8, z_dim_of(generator), seed=0)
    labels, k = segment(segmenter, images)    # argmax of logits, or integer labels as given
"""
from __future__ import annotations

import threading
import weakref
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

__all__ = ["model_device", "model_lock", "eval_mode", "frozen", "segment", "z_dim_of", "seeded_latents", "seeded_generator"]


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a module without either or a non-module)."""
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    inner = getattr(model, "model", None)  # an adapter
    if isinstance(inner, nn.Module) and inner is not model:
        return model_device(inner)
    return torch.device("cpu")


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises ganviz's computations on ``model`` (one per model object)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def _locked(mods: list[nn.Module]) -> Iterator[None]:
    with ExitStack() as stack:
        for m in sorted(set(mods), key=id):  # one global order: two threads never wait on each other
            stack.enter_context(model_lock(m))
        yield


@contextmanager
def eval_mode(*models: Any) -> Iterator[None]:
    """Put modules in eval mode for the block, then restore every submodule's own train/eval flag.

    The block holds the models' locks (:func:`model_lock`), so two threads computing on one model take turns
    and each finds, and leaves, the model as the user left it.
    """
    mods = [m for m in models if isinstance(m, nn.Module)]
    with _locked(mods):
        saved = [(m, m.training) for model in mods for m in model.modules()]
        try:
            for model in mods:
                model.eval()
            yield
        finally:
            for m, flag in saved:
                m.training = flag


@contextmanager
def frozen(*models: Any) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` on every parameter for the block; both restored afterwards, also
    when the block raises or is interrupted (gradients then flow only to what the caller optimises)."""
    mods = [m for m in models if isinstance(m, nn.Module)]
    with _locked(mods):
        params = [p for model in mods for p in model.parameters()]
        flags = [p.requires_grad for p in params]
        try:
            with eval_mode(*mods):
                for p in params:
                    p.requires_grad_(False)
                yield
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)


def segment(segmenter: Callable[[Tensor], Any], x: Tensor) -> tuple[Tensor, int | None]:
    """Run a segmenter: logits ``(N,K,H,W)`` -> ``(argmax, K)``; integer labels ``(N,H,W)`` -> ``(labels, None)``."""
    out = segmenter(x)
    if isinstance(out, Mapping):
        out = out["out"]
    if not isinstance(out, Tensor):
        raise TypeError(f"the segmenter returned {type(out).__name__}; expected a tensor")
    if out.is_floating_point():
        if out.ndim != 4:
            raise ValueError(f"segmenter logits must be (N, K, H, W), got {tuple(out.shape)}")
        return out.argmax(1), int(out.shape[1])
    if out.ndim != 3:
        raise ValueError(f"segmenter labels must be (N, H, W), got {tuple(out.shape)}")
    return out.long(), None


def z_dim_of(generator: Any, z_dim: int | None = None) -> int:
    """The latent size: ``z_dim`` when given, else the generator's (or its adapter's) ``z_dim`` attribute."""
    if z_dim is None:
        z_dim = getattr(generator, "z_dim", None)
        if not z_dim and isinstance(getattr(generator, "model", None), nn.Module):
            z_dim = getattr(generator.model, "z_dim", None)
    if not z_dim or int(z_dim) <= 0:
        raise ValueError(f"cannot tell the latent size of {type(generator).__name__}: pass z_dim=...")
    return int(z_dim)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU random generator seeded with ``seed`` (latents are drawn on the CPU so that seeds mean the same
    samples on every device)."""
    return torch.Generator().manual_seed(int(seed) % (2 ** 63))


def seeded_latents(n: int, z_dim: int, seed: int = 0, device: torch.device | str | None = None) -> Tensor:
    """``n`` standard-normal latents of size ``z_dim`` drawn from ``seed`` (on the CPU, then moved to ``device``)."""
    z = torch.randn(int(n), int(z_dim), generator=seeded_generator(seed))
    return z if device is None else z.to(device)
