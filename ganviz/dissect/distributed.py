"""The dissection's view of ``torch.distributed``: ranks, chunks of images per rank, and gathering statistics.

    par = Dist(None)                          # the initialised process group, or a single process
    shards = Shards(n=5000, chunk=512, rank=par.rank, world=par.world)
    for chunk in shards.mine: ...             # this rank's chunks (round robin)
    parts = par.gather_stats(tally, IoUTally, device)   # rank 0: every rank's tally, in rank order
    result = par.broadcast(result)            # rank 0's object on every rank

Without an initialised process group every call is a no-op on the single process.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Type, TypeVar

import torch
import torch.distributed as dist

from ..stats import Stat

__all__ = ["Dist", "Shards"]

S = TypeVar("S", bound=Stat)


class Dist:
    """Rank/world of the current ``torch.distributed`` group (or a single process).

    ``enabled``: ``None`` uses the group when it is initialised; ``True`` requires one; ``False`` ignores it.
    """

    def __init__(self, enabled: Optional[bool]) -> None:
        ready = dist.is_available() and dist.is_initialized()
        if enabled and not ready:
            raise RuntimeError("distributed=True but torch.distributed is not initialised")
        self.on = ready if enabled is None else bool(enabled)
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def gather(self, obj: Any) -> Optional[List[Any]]:
        """Objects of all ranks, in rank order, on rank 0 (``None`` elsewhere)."""
        if not self.on:
            return [obj]
        out: Optional[List[Any]] = [None] * self.world if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.on:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_stats(self, stat: Optional[S], cls: Type[S], device: torch.device) -> List[S]:
        """Every rank's statistic (``None``: that rank has none), in rank order, on rank 0; ``[]`` elsewhere.

        A single process gets ``[stat]`` itself; across processes statistics travel as their ``state_dict()``.
        """
        if not self.on:
            return [] if stat is None else [stat]
        parts = self.gather(None if stat is None else stat.state_dict())
        return [cls.from_state_dict(p, device) for p in parts or [] if p is not None]


@dataclass(frozen=True)
class Shards:
    """Images ``0 .. n-1`` in chunks of ``chunk``, dealt to ``world`` ranks round robin."""

    n: int
    chunk: int
    rank: int = 0
    world: int = 1

    @property
    def chunks(self) -> List[range]:
        return [range(s, min(s + self.chunk, self.n)) for s in range(0, self.n, self.chunk)]

    @property
    def mine(self) -> List[range]:
        """This rank's chunks."""
        return self.chunks[self.rank::self.world]

    @property
    def local(self) -> int:
        """The number of this rank's images."""
        return sum(len(c) for c in self.mine)

    @property
    def rounds(self) -> int:
        """Rounds in which every rank takes (at most) one chunk: round ``r`` holds chunks ``r*world ..``."""
        return -(-len(self.chunks) // self.world)
