"""Progress bars that render as widgets in notebooks and as text in terminals (``tqdm.auto``)."""
from __future__ import annotations

from typing import Any, Iterable, Optional

__all__ = ["progress"]


def progress(iterable: Optional[Iterable[Any]] = None, *, total: Optional[int] = None, desc: str = "",
             unit: str = "img", disable: bool = False, leave: Optional[bool] = None) -> Any:
    """Return a ``tqdm.auto`` bar (a no-op bar when ``disable``); usable as a context manager.

    ``tqdm`` is imported here, not at module import, so importing ganviz pulls in no widget library.
    """
    if disable:
        from tqdm import tqdm as plain

        return plain(iterable, total=total, disable=True)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
