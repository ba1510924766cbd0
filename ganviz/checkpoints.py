"""Safe checkpoint loading: tensors only (``weights_only`` / safetensors), wrappers unwrapped, clear key errors.

Nothing here unpickles arbitrary objects: ``torch.load`` always runs with ``weights_only=True`` (the only class
allowed beyond tensors and containers is ``argparse.Namespace``, which training scripts such as rosinality's
StyleGAN2 store as ``"args"``).  A file that needs anything else is refused with :class:`CheckpointError`.
"""
from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["WRAPPERS", "PREFIXES", "CheckpointError", "check_regular_file", "check_zip_sizes", "read_checkpoint", "strip_prefixes", "extract_state_dict",
           "load_state", "check_keys", "complete_counters", "load_into", "save_state"]

PathLike = Union[str, "os.PathLike[str]"]

WRAPPERS = ("g_ema", "state_dict", "model_state_dict", "model", "generator", "net", "params")
"""Keys under which checkpoints keep their state dict, tried in this order."""

PREFIXES = ("module.", "_orig_mod.")
"""Prefixes added by ``DataParallel`` / ``torch.compile``; stripped when every key has them."""


class CheckpointError(ValueError):
    """A checkpoint file cannot be read safely, or its keys do not fit the model it is loaded into."""


MAX_INFLATION = 16
"""A zip checkpoint may declare at most this many times its own size uncompressed (``torch.save`` stores members
uncompressed, so its ratio is about 1), beyond :data:`MIN_INFLATION_BYTES`."""
MIN_INFLATION_BYTES = 256 * 2 ** 20


def check_regular_file(path: PathLike, what: str = "checkpoint") -> Path:
    """``path`` as a Path when it is a regular file; a clear error for a missing path, a directory or a device
    (reading ``/dev/zero`` would never end)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {what} file at {path}")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise CheckpointError(f"{path} is {kind}; expected a {what} file")
    return path


def check_zip_sizes(path: Path) -> None:
    """Refuse a zip-format ``torch.save`` file whose members declare far more data than the file holds (a
    decompression bomb), before anything is inflated."""
    if not zipfile.is_zipfile(path):
        return
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"cannot read {path} as a torch.save zip archive: {err}") from None
    if declared > max(MAX_INFLATION * size, MIN_INFLATION_BYTES):
        raise CheckpointError(f"refused to load {path}: its {size:,} bytes declare {declared:,} bytes when "
                              "inflated (a decompression bomb?); torch.save files are stored uncompressed")


def read_checkpoint(path: PathLike) -> Any:
    """Read ``path`` (``.safetensors`` or a ``torch.save`` file) without unpickling code; returns what it holds."""
    path = check_regular_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own SafetensorError (and OSError / ValueError)
            raise CheckpointError(f"cannot read {path} as a safetensors file: {err}") from None
    check_zip_sizes(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError) as err:
        text = str(err).strip()
        after = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        # torch's own text may advise weights_only=False: wrong advice for a file you did not make, never shown
        detail = next((line.strip() for line in after.splitlines()
                       if line.strip() and "weights_only" not in line and "Weights only load failed" not in line),
                      type(err).__name__)
        if "global" in detail.lower():  # the file names a class or function to call while unpickling
            raise CheckpointError(
                f"refused to load {path}: it holds objects other than tensors and plain containers ({detail}). "
                "ganviz reads checkpoints with torch.load(weights_only=True) and never runs code stored in a file. "
                "If you trust the file, re-save just its weights: torch.save(model.state_dict(), 'weights.pt') "
                "(or save them as .safetensors)") from None
        raise CheckpointError(f"cannot read {path} as a torch.save or safetensors file: {detail}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def strip_prefixes(state: Mapping[str, Tensor], prefixes: Sequence[str] = PREFIXES) -> Dict[str, Tensor]:
    """Remove a prefix such as ``module.`` when every key carries it (repeatedly, e.g. ``module.module.``)."""
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in out):
                out = {k[len(p):]: v for k, v in out.items()}
                changed = True
    return out


def extract_state_dict(obj: Any, prefer: Sequence[str] = WRAPPERS) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """``(state_dict, extras)`` from a loaded checkpoint: a plain state dict, or one under a wrapper key.

    ``extras`` holds the wrapper's other entries (e.g. ``latent_avg`` of a StyleGAN2 checkpoint).
    """
    if _is_state_dict(obj):
        return strip_prefixes(obj), {}
    if isinstance(obj, Mapping):
        for key in prefer:
            if key in obj and _is_state_dict(obj[key]):
                return strip_prefixes(obj[key]), {k: v for k, v in obj.items() if k != key}
        inner = [k for k, v in obj.items() if _is_state_dict(v)]
        raise CheckpointError(
            "the checkpoint is a dict but not a state dict: its entries are "
            f"{', '.join(map(str, list(obj)[:12]))}; expected tensors, or a state dict under one of "
            f"{', '.join(prefer)}" + (f" (dicts of tensors found under: {', '.join(map(str, inner))})" if inner
                                      else ""))
    raise CheckpointError(f"the checkpoint holds a {type(obj).__name__}; expected a state dict of tensors")


def load_state(path: PathLike, prefer: Sequence[str] = WRAPPERS) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Read ``path`` safely and unwrap its state dict: ``(state_dict, extras)``."""
    return extract_state_dict(read_checkpoint(path), prefer)


def _listing(items: Iterable[str], limit: int = 8) -> str:
    items = list(items)
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_keys(module: nn.Module, state: Mapping[str, Tensor], what: str = "") -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mismatched-shape keys (nothing if they fit)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
                  for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches ({len(mismatched)}): {_listing(mismatched)}")
    name = what or type(module).__name__
    raise CheckpointError(f"the state dict does not fit {name}: " + "; ".join(parts))


def complete_counters(module: nn.Module, state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Add the BatchNorm ``num_batches_tracked`` counters that files saved before PyTorch 0.4.1 lack (torchvision's
    older ResNet, VGG-BN and Inception weights); they only matter in training.  Other keys are unchanged."""
    out = dict(state)
    for key in module.state_dict():
        if key.endswith("num_batches_tracked") and key not in out \
                and key[: -len("num_batches_tracked")] + "running_mean" in out:
            out[key] = torch.tensor(0, dtype=torch.long)
    return out


def load_into(module: nn.Module, state: Mapping[str, Tensor], what: str = "") -> nn.Module:
    """Check ``state`` against ``module`` (see :func:`check_keys`; missing BatchNorm counters are filled in), load
    it strictly and return the module."""
    state = complete_counters(module, state)
    check_keys(module, state, what)
    module.load_state_dict(dict(state), strict=True)
    return module


def save_state(module_or_state: Union[nn.Module, Mapping[str, Tensor]], path: PathLike,
               wrap: Optional[str] = None, **extras: Any) -> Path:
    """Write a state dict with ``torch.save`` (or safetensors for ``.safetensors``), optionally under ``wrap``."""
    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else dict(module_or_state)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        if wrap or extras:
            raise ValueError("a .safetensors file holds one flat state dict (no wrapper or extras)")
        save_file(state, str(path))
    else:
        torch.save({wrap: state, **extras} if wrap else state, str(path))
    return path
