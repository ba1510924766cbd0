"""ganviz's forward hooks live outside the modules they watch, so no copy of a model can carry one.

    handle = add_forward_hook(module, fn)          # fn(module, args, output) -> new output or None
    handle = add_forward_pre_hook(module, fn)      # fn(module, args) -> None
    handle.remove()
    hooks_on(model)                                # ganviz hooks on model and its submodules

A hook registered with ``module.register_forward_hook`` sits in the module's own ``_forward_hooks`` dict, so
``copy.deepcopy`` or pickling a model while a :class:`~ganviz.trace.Trace` is active on it (another thread, a
fine-tuning copy) yields a copy that keeps calling the trace forever.  Here one process-wide torch hook dispatches
to the hooks registered for each module object (by identity, checked through a weak reference); it is installed
while at least one ganviz hook exists and removed with the last one.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Callable, Dict, List, Tuple

from torch import nn
from torch.nn.modules import module as torch_module

__all__ = ["HookHandle", "add_forward_hook", "add_forward_pre_hook", "hooks_on"]

_Entry = Tuple[int, "weakref.ReferenceType[nn.Module]", Callable[..., Any]]
_lock = threading.Lock()
_tokens = itertools.count()
_forward: Dict[int, List[_Entry]] = {}
_pre: Dict[int, List[_Entry]] = {}
_torch_handles: Dict[str, Any] = {}


def _run_forward(module: nn.Module, args: tuple, output: Any) -> Any:
    entries = _forward.get(id(module))
    if not entries:
        return None
    changed = False
    for _, ref, fn in tuple(entries):
        if ref() is module:
            new = fn(module, args, output)
            if new is not None:
                output, changed = new, True
    return output if changed else None


def _run_pre(module: nn.Module, args: tuple) -> None:
    for _, ref, fn in tuple(_pre.get(id(module), ())):
        if ref() is module:
            fn(module, args)


class HookHandle:
    """Removes one hook (idempotent)."""

    def __init__(self, table: Dict[int, List[_Entry]], key: int, token: int) -> None:
        self._table, self._key, self._token = table, key, token

    def remove(self) -> None:
        with _lock:
            entries = self._table.get(self._key, [])
            entries[:] = [e for e in entries if e[0] != self._token]
            if not entries:
                self._table.pop(self._key, None)
            _sync_torch_hooks()


def _sync_torch_hooks() -> None:
    """Install the process-wide torch hooks while any ganviz hook exists (call with ``_lock`` held)."""
    for name, table, register, runner in (("forward", _forward, torch_module.register_module_forward_hook,
                                           _run_forward),
                                          ("pre", _pre, torch_module.register_module_forward_pre_hook, _run_pre)):
        if table and name not in _torch_handles:
            _torch_handles[name] = register(runner)
        elif not table and name in _torch_handles:
            _torch_handles.pop(name).remove()


def _add(table: Dict[int, List[_Entry]], module: nn.Module, fn: Callable[..., Any]) -> HookHandle:
    if not isinstance(module, nn.Module):
        raise TypeError(f"hooks attach to torch.nn.Module objects, got {type(module).__name__}")
    token = next(_tokens)
    key = id(module)
    with _lock:
        entries = [e for e in table.get(key, []) if e[1]() is module]  # drop entries of a dead module with this id
        entries.append((token, weakref.ref(module), fn))
        table[key] = entries
        _sync_torch_hooks()
    return HookHandle(table, key, token)


def add_forward_hook(module: nn.Module, fn: Callable[[nn.Module, tuple, Any], Any]) -> HookHandle:
    """Call ``fn(module, args, output)`` after ``module`` runs; a non-None return replaces the output."""
    return _add(_forward, module, fn)


def add_forward_pre_hook(module: nn.Module, fn: Callable[[nn.Module, tuple], None]) -> HookHandle:
    """Call ``fn(module, args)`` before ``module`` runs (positional arguments only, as torch's global pre-hooks)."""
    return _add(_pre, module, fn)


def hooks_on(model: nn.Module) -> int:
    """How many ganviz hooks are registered on ``model`` and its submodules."""
    with _lock:
        return sum(sum(1 for e in table.get(id(m), ()) if e[1]() is m)
                   for m in model.modules() for table in (_forward, _pre))
