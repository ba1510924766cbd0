"""A small on-disk cache for computed results (npz/json, never pickle).

Entries are keyed by a hash of everything a result depends on: model weights
(:func:`weights_hash`), layer, data identity and every parameter
(:func:`make_key`).  Files are written atomically (a temporary file in the same
folder, then ``os.replace``), so an interrupted run never leaves a half-written
entry, and an unreadable entry is treated as missing.

Example::

    cache = ResultCache("~/.cache/ganviz")
    key = make_key(model=weights_hash(model), layer="conv5_3", data=source.identity, k=100)
    result = cache.load(key, DissectionResult.load)
    if result is None:
        result = compute()
        cache.save(key, result.save)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "atomic_write",
    "weights_hash",
    "callable_id",
    "make_key",
    "ResultCache",
]

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[str], None], suffix: str = "") -> None:
    """Create ``path`` atomically: ``write(tmp_path)`` fills a temp file in the same folder, then it is renamed.

    If ``write`` raises (or the process is interrupted), the temporary file is removed and ``path`` is untouched.
    ``suffix`` is given to the temporary name (``np.savez`` appends ``.npz`` to names without it).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def weights_hash(*models: Optional[nn.Module]) -> str:
    """sha256 (hex) over the state dicts of ``models``: names, dtypes, shapes and raw bytes, in sorted key order.

    ``None`` entries are hashed as a marker, so ``weights_hash(a, None)`` differs from ``weights_hash(a, b)``.
    """
    h = hashlib.sha256()
    for m, model in enumerate(models):
        h.update(f"model {m}\0".encode())
        if model is None:
            h.update(b"none\0")
            continue
        state = model.state_dict()
        for name in sorted(state):
            t = state[name]
            if not isinstance(t, torch.Tensor):
                h.update(f"{name}\0{t!r}\0".encode())
                continue
            t = t.detach()
            h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            flat = t.to("cpu").contiguous().reshape(-1)
            if flat.numel():
                h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def callable_id(fn: Optional[Callable[..., Any]]) -> str:
    """A string that changes when a preprocessing callable changes (its code, constants and closure).

    Best effort: for objects without ``__code__`` the type name and ``repr`` are used.
    """
    if fn is None:
        return "none"
    code = getattr(fn, "__code__", None)
    if code is None:
        return f"{type(fn).__module__}.{type(fn).__qualname__}:{fn!r}"
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_consts).encode())
    h.update(repr(code.co_names).encode())
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            h.update(repr(cell.cell_contents).encode())
        except ValueError:  # empty cell
            h.update(b"<empty>")
    defaults = getattr(fn, "__defaults__", None)
    h.update(repr(defaults).encode())
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}:{h.hexdigest()[:16]}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, float):
        return repr(value)  # exact, and distinguishes 0.99 from 0.990000001
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, (torch.device, torch.dtype, Path)):
        return str(value)
    raise TypeError(f"cannot use {type(value).__name__} in a cache key; pass a string")


def make_key(**parts: Any) -> str:
    """A hex digest naming ``parts`` (str/int/float/bool/None, lists and dicts of them) canonically."""
    text = json.dumps(_jsonable(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class ResultCache:
    """A folder of cached results, one file per key."""

    def __init__(self, directory: PathLike) -> None:
        self.directory = Path(os.path.expanduser(os.fspath(directory)))

    def path(self, key: str, suffix: str = ".npz") -> Path:
        """The file that holds (or would hold) entry ``key``."""
        return self.directory / f"{key}{suffix}"

    def load(self, key: str, loader: Callable[[Path], T], suffix: str = ".npz") -> Optional[T]:
        """``loader(path)`` if entry ``key`` exists and loads; ``None`` if missing or unreadable (with a warning)."""
        path = self.path(key, suffix)
        if not path.exists():
            return None
        try:
            return loader(path)
        except Exception as exc:  # corrupt, truncated or from an incompatible version: recompute
            warnings.warn(f"ignoring unreadable cache file {path}: {type(exc).__name__}: {exc}", RuntimeWarning,
                          stacklevel=2)
            return None

    def save(self, key: str, writer: Callable[[str], None], suffix: str = ".npz") -> Path:
        """Write entry ``key`` atomically with ``writer(tmp_path)``; returns its path."""
        path = self.path(key, suffix)
        atomic_write(path, writer, suffix=suffix)
        return path

    def discard(self, key: str, suffix: str = ".npz") -> None:
        """Remove entry ``key`` if present."""
        try:
            self.path(key, suffix).unlink()
        except FileNotFoundError:
            pass

    def __repr__(self) -> str:
        return f"ResultCache({str(self.directory)!r})"
