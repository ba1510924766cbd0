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

import functools
import hashlib
import json
import os
import re
import tempfile
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Optional, TypeVar, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "atomic_write",
    "weights_hash",
    "callable_id",
    "make_key",
    "ResultCache",
    "cached_arrays",
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


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _stable_repr(value: Any) -> str:
    """``repr(value)`` without a memory address (Python's default repr shows one, new in every process)."""
    return _ADDRESS.sub("", repr(value))


def _value_id(value: Any, depth: int) -> str:
    """A string that changes when ``value`` changes: weights for modules, bytes for tensors and arrays, the state of
    plain objects, recursively for callables and containers (``depth`` bounds the recursion)."""
    if isinstance(value, nn.Module):
        return f"module {type(value).__qualname__} {weights_hash(value)[:16]}"
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        return f"tensor {t.dtype} {tuple(t.shape)} {hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy()).hexdigest()[:16]}"
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {value.shape} {hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]}"
    if isinstance(value, (str, int, float, bool, type(None), bytes, torch.dtype, torch.device, Path)):
        return repr(value)
    if isinstance(value, types.ModuleType):
        return f"python module {value.__name__}"
    if depth <= 0:
        return f"{type(value).__qualname__}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(map(repr, value)) if isinstance(value, (set, frozenset)) else value
        return "[" + ",".join(_value_id(v, depth - 1) for v in items) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_value_id(v, depth - 1)}" for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))) + "}"
    if callable(value):
        return callable_id(value, depth - 1)
    state = getattr(value, "__dict__", None)
    if state is not None:  # a plain object: its attributes, not its address
        return f"{type(value).__module__}.{type(value).__qualname__}{_value_id(dict(state), depth - 1)}"
    return f"{type(value).__module__}.{type(value).__qualname__}:{_stable_repr(value)}"


def _function_id(fn: Any, depth: int) -> str:
    code = fn.__code__
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_consts).encode())
    h.update(repr(code.co_names).encode())
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            h.update(_value_id(cell.cell_contents, depth).encode())
        except ValueError:  # empty cell
            h.update(b"<empty>")
    module_globals = getattr(fn, "__globals__", {})
    for name in code.co_names:  # globals the function reads: their current values, not only their names
        if name in module_globals and not isinstance(module_globals[name], type):
            h.update(f"{name}={_value_id(module_globals[name], depth)}".encode())
    h.update(_value_id(getattr(fn, "__defaults__", None), depth).encode())
    h.update(_value_id(getattr(fn, "__kwdefaults__", None), depth).encode())
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}:{h.hexdigest()[:16]}"


def callable_id(fn: Optional[Callable[..., Any]], depth: int = 3) -> str:
    """A string that changes when what a callable computes may change: its code, constants, closure, the globals
    it reads and its defaults (by value: modules by their weights, tensors by their bytes); for a bound method also
    the state of its object; for a module its weights; for another callable object its attributes.
    """
    if fn is None:
        return "none"
    if isinstance(fn, nn.Module):
        return _value_id(fn, depth)
    if isinstance(fn, functools.partial):
        return f"partial({callable_id(fn.func, depth - 1)},{_value_id(fn.args, depth)},{_value_id(fn.keywords, depth)})"
    owner = getattr(fn, "__self__", None)
    func = getattr(fn, "__func__", None)
    if owner is not None and func is not None and not isinstance(owner, types.ModuleType):
        return f"method {callable_id(func, depth)} of {_value_id(owner, depth)}"
    if getattr(fn, "__code__", None) is not None:
        return _function_id(fn, depth)
    state = getattr(fn, "__dict__", None)
    if state is not None:
        return f"{type(fn).__module__}.{type(fn).__qualname__}{_value_id(dict(state), depth)}:{_stable_repr(fn)}"
    return f"{type(fn).__module__}.{type(fn).__qualname__}:{_stable_repr(fn)}"


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
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _value_id(value, 0)  # dtype, shape and a digest of the bytes
    raise TypeError(f"cannot use {type(value).__name__} in a cache key; pass a string")


def make_key(**parts: Any) -> str:
    """A hex digest naming ``parts`` (str/int/float/bool/None, tensors and arrays by their bytes, lists and dicts of
    them) canonically."""
    text = json.dumps(_jsonable(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _store_key(path: str, key: str) -> None:
    """Record ``key`` inside an entry: as the zip comment of an npz file, else in a ``.key`` file beside it."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path, "a") as zf:
            zf.comment = f"ganviz-cache-key:{key}".encode()
    else:
        Path(path + ".key").write_text(key)


def _stored_key(path: Path) -> str:
    """The key an entry was written under ("" when it has none or cannot be read)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                text = zf.comment.decode(errors="replace")
            return text.split(":", 1)[1] if text.startswith("ganviz-cache-key:") else ""
        side = Path(str(path) + ".key")
        return side.read_text().strip() if side.is_file() else ""
    except (OSError, zipfile.BadZipFile):
        return ""


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
        if not path.is_file():
            warnings.warn(f"ignoring cache entry {path}: not a regular file", RuntimeWarning, stacklevel=2)
            return None
        stored = _stored_key(path)
        if stored != key:
            why = f"ignoring cache file {path}: it holds entry {stored}, not {key}" if stored else \
                f"ignoring unreadable cache file {path}: it records no key (damaged, or written by another version)"
            warnings.warn(why, RuntimeWarning, stacklevel=2)
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
        if path.exists() and not path.is_file():
            warnings.warn(f"not caching to {path}: something other than a file is there", RuntimeWarning,
                          stacklevel=2)
            return path

        def write_with_key(tmp: str) -> None:
            writer(tmp)
            if zipfile.is_zipfile(tmp):
                _store_key(tmp, key)

        atomic_write(path, write_with_key, suffix=suffix)
        if not zipfile.is_zipfile(path):
            _store_key(str(path), key)
        return path

    def discard(self, key: str, suffix: str = ".npz") -> None:
        """Remove entry ``key`` if present."""
        for path in (self.path(key, suffix), Path(str(self.path(key, suffix)) + ".key")):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"ResultCache({str(self.directory)!r})"


def cached_arrays(cache_dir: Optional[PathLike], key: Callable[[], str], compute: Callable[[], Dict[str, np.ndarray]]
                  ) -> Dict[str, np.ndarray]:
    """``compute()`` (named arrays); with ``cache_dir``, what a call with the same ``key()`` stored there, or
    ``compute()`` stored under it for the next call (``key`` is only called with a cache: hashing costs time)."""
    if cache_dir is None:
        return compute()
    cache, name = ResultCache(cache_dir), key()

    def read(path: Path) -> Dict[str, np.ndarray]:
        with np.load(path) as arrays:
            return dict(arrays)

    hit = cache.load(name, read)
    if hit is not None:
        return hit
    out = compute()
    cache.save(name, lambda tmp: np.savez(tmp, **out))
    return out
