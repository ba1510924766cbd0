"""The upsampled-IoU kernel: which pixels of bilinearly upsampled unit maps exceed their thresholds.

    counts = upsampled_counts(acts, labels, thresholds, bins=K + 1)   # [C, K + 1] active pixels per label
    # same as: up = F.interpolate(acts, labels.shape[-2:], mode="bilinear", align_corners=False)
    #          counts[c, j] = ((up[:, c] > thresholds[c]) & (labels == j)).sum()

Used by :meth:`ganviz.stats.IoUTally.add_upsampled`.  Upsampled values are computed only in tiles whose source
cells hold a value above the threshold: bilinear values are convex combinations of those cells, so no other
pixel can be active.  The full-resolution maps are never materialised.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AxisPlan", "Grid", "axis_plan", "grid_plan", "upsampled_counts"]


@dataclass(frozen=True)
class AxisPlan:
    """Bilinear (align_corners=False) resampling along one axis, as segments of output coordinates.

    Segment ``s`` interpolates source cells ``i0[s]`` and ``i1[s]``: output coordinate ``coords[s, r]`` gets
    ``x[i0] + lam[s, r] * (x[i1] - x[i0])``.  Unused slots point at the sink coordinate ``n_out``.
    """

    i0: Tensor
    i1: Tensor
    coords: Tensor
    lam: Tensor


@dataclass(frozen=True)
class Grid:
    """Both axes' plans from ``(h, w)`` to ``(hh, ww)``, and every tile slot's offset in a padded label map."""

    y: AxisPlan
    x: AxisPlan
    offsets: Tensor  # [(sy * Sx + sx) * Ry * Rx + r * Rx + q]: offset of slot (r, q) of tile (sy, sx)
    h: int
    w: int
    hh: int
    ww: int

    @property
    def slots(self) -> int:
        return self.y.coords.shape[1] * self.x.coords.shape[1]


def _segments(n_in: int, n_out: int) -> List[Tuple[int, int, List[int], List[float]]]:
    """``(i0, i1, output coordinates, weights)`` per segment of output coordinates sharing their source cells."""
    dst = torch.arange(n_out)
    if n_in == n_out:
        i0, lam = dst.clone(), torch.zeros(n_out)
    else:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = (scale * (dst.float() + 0.5) - 0.5).clamp(min=0)
        i0 = src.floor().long().clamp(max=n_in - 1)
        lam = (src - i0.float()).clamp(0, 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    # Coordinates that take one source cell only (borders) form their own segments, so that every
    # segment spans at most about n_out / n_in coordinates.
    alone = (lam == 0) | (i1 == i0)
    lam = torch.where(alone, torch.zeros_like(lam), lam)
    seg_key = i0 * 2 + (~alone).long()
    bounds = torch.nonzero(torch.diff(seg_key, prepend=seg_key[:1] - 1)).reshape(-1)
    lengths = torch.diff(bounds, append=torch.tensor([n_out]))
    segs = []
    for start, length in zip(bounds.tolist(), lengths.tolist()):
        a, b = int(i0[start]), int(i1[start]) if not bool(alone[start]) else int(i0[start])
        segs.append((a, b, list(range(start, start + length)), lam[start:start + length].tolist()))
    return segs


@lru_cache(maxsize=64)
def axis_plan(n_in: int, n_out: int, device: torch.device) -> AxisPlan:
    """The :class:`AxisPlan` from ``n_in`` to ``n_out`` cells, on ``device`` (cached)."""
    segs = _segments(n_in, n_out)
    width = max(len(rows) for _, _, rows, _ in segs)
    coords = torch.full((len(segs), width), n_out, dtype=torch.long)
    lams = torch.zeros(len(segs), width)
    for j, (_, _, rows, ls) in enumerate(segs):
        coords[j, :len(rows)] = torch.tensor(rows)
        lams[j, :len(rows)] = torch.tensor(ls)
    return AxisPlan(torch.tensor([a for a, _, _, _ in segs], device=device),
                    torch.tensor([b for _, b, _, _ in segs], device=device), coords.to(device), lams.to(device))


@lru_cache(maxsize=32)
def grid_plan(h: int, w: int, hh: int, ww: int, device: torch.device) -> Grid:
    """The :class:`Grid` from ``(h, w)`` maps to ``(hh, ww)`` labels, on ``device`` (cached)."""
    py, px = axis_plan(h, hh, device), axis_plan(w, ww, device)
    offsets = py.coords[:, None, :, None] * (ww + 1) + px.coords[None, :, None, :]
    return Grid(py, px, offsets.reshape(-1), h, w, hh, ww)


def _live_tiles(acts: Tensor, thr: Tensor, grid: Grid) -> Tuple[Tensor, Tensor, Tensor]:
    """``(live maps [M], their cells [M*h*w], tiles [T, 3] = (map, sy, sx))`` that can hold an active pixel."""
    n, c, h, w = acts.shape
    live = (acts.amax((2, 3)) > thr[None]).reshape(-1).nonzero().squeeze(1)  # maps with any active pixel
    maps = acts.reshape(n * c, h * w).index_select(0, live).view(-1, h, w)
    rows = torch.maximum(maps.index_select(1, grid.y.i0), maps.index_select(1, grid.y.i1))
    tile_max = torch.maximum(rows.index_select(2, grid.x.i0), rows.index_select(2, grid.x.i1))
    tiles = (tile_max > thr[live % c].view(-1, 1, 1)).nonzero()
    return live, maps.reshape(-1), tiles


def _tile_counts(grid: Grid, cells: Tensor, live: Tensor, tiles: Tensor, c: int, lab: Tensor, thr: Tensor,
                 nb: int) -> Optional[Tensor]:
    """Bincount ``[C * nb]`` of (unit, label) over the active pixels of ``tiles`` (``None``: none active)."""
    py, px, h, w = grid.y, grid.x, grid.h, grid.w
    m, sy, sx = tiles.unbind(1)
    mi = live[m]
    ni, ci = torch.div(mi, c, rounding_mode="floor"), mi % c
    base = m * (h * w)
    y0, y1, x0, x1 = base + py.i0[sy] * w, base + py.i1[sy] * w, px.i0[sx], px.i1[sx]
    x00, x01 = cells.index_select(0, y0 + x0)[:, None], cells.index_select(0, y0 + x1)[:, None]
    x10, x11 = cells.index_select(0, y1 + x0)[:, None], cells.index_select(0, y1 + x1)[:, None]
    lx, ly = px.lam[sx], py.lam[sy]  # [T, Rx], [T, Ry]
    top = torch.addcmul(x00, lx, x01 - x00)
    bot = torch.addcmul(x10, lx, x11 - x10)
    vals = torch.addcmul(top[:, None, :], ly[:, :, None], (bot - top)[:, None, :])  # [T, Ry, Rx]
    on = (vals > thr[ci][:, None, None]).view(-1).nonzero().squeeze(1)
    if on.numel() == 0:
        return None
    slots = grid.slots
    t = torch.div(on, slots, rounding_mode="floor")  # tile of each active pixel, and its slot in the tile
    slot = on - t * slots
    tile_id = (sy * px.coords.shape[0] + sx).index_select(0, t)
    image_base = (ni * ((grid.hh + 1) * (grid.ww + 1))).index_select(0, t)
    pix = image_base + grid.offsets.index_select(0, tile_id * slots + slot)
    return torch.bincount(ci.index_select(0, t) * nb + lab.index_select(0, pix), minlength=c * nb)


def upsampled_counts(acts: Tensor, labels: Tensor, thresholds: Tensor, bins: int,
                     max_values: int = 1 << 22) -> Tensor:
    """Active pixels per unit and label value, ``counts[C, bins]`` (int64).

    ``acts[N, C, h, w]`` are upsampled bilinearly (``align_corners=False``) to the size of ``labels[N, HH, WW]``
    (long, values in ``0 .. bins - 1``); a pixel of unit ``c`` is active where the value exceeds
    ``thresholds[c]``.  ``max_values`` bounds how many upsampled values are computed at once.
    """
    n, c, h, w = acts.shape
    hh, ww = labels.shape[-2:]
    grid = grid_plan(h, w, hh, ww, acts.device)
    nb = bins + 1  # bin `bins`: the sink row/column of the padded label map, never counted
    lab = F.pad(labels, (0, 1, 0, 1), value=bins).reshape(-1)
    thr = thresholds.to(acts.device, acts.dtype)
    counts = torch.zeros(c * nb, dtype=torch.long, device=acts.device)
    live, cells, tiles = _live_tiles(acts, thr, grid)
    step = max(1, max_values // grid.slots)
    for s in range(0, tiles.shape[0], step):
        part = _tile_counts(grid, cells, live, tiles[s:s + step], c, lab, thr, nb)
        if part is not None:
            counts += part
    return counts.view(c, nb)[:, :bins]
