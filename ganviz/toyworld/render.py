"""Procedural scene renderer: RGB images with a concept label at every pixel and a scene class.

Scenes are drawn at twice the output size and box-downsampled (labels by nearest neighbour), which gives
anti-aliased edges at little cost.  Everything is a pure function of ``(seed, index)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .concepts import CLASS_INDEX, CONCEPT_INDEX, SCENE_CLASSES, WATERMARK_FRACTION

__all__ = ["C", "WATERMARK_TEXTS", "Scene", "GREENS", "TREE_GREENS", "WALL_COLORS", "ROOF_COLORS", "DOME_COLORS",
           "SHIRTS", "HATS", "SKIN", "HAIR", "render", "render_batch"]

C = CONCEPT_INDEX
WATERMARK_TEXTS = ("ganviz", "toyworld", "(c) stock", "SAMPLE", "preview")


@dataclass
class Scene:
    """One rendered scene: ``image`` (H, W, 3) uint8, ``labels`` (H, W) uint8 concept indices, ``scene_class``."""

    image: np.ndarray
    labels: np.ndarray
    scene_class: int

    @property
    def class_name(self) -> str:
        return SCENE_CLASSES[self.scene_class]


class _Canvas:
    """A float RGB canvas with a label map and cheap shape fills restricted to bounding boxes."""

    def __init__(self, size: int, rng: np.random.Generator, light: np.ndarray):
        self.n = size
        self.rgb = np.zeros((size, size, 3), np.float32)
        self.lab = np.zeros((size, size), np.uint8)
        self.rng = rng
        self.light = light

    def _box(self, x0: float, y0: float, x1: float, y1: float):
        n = self.n
        a, b = max(int(np.floor(x0 * n)), 0), min(int(np.ceil(x1 * n)), n)
        c, d = max(int(np.floor(y0 * n)), 0), min(int(np.ceil(y1 * n)), n)
        if a >= b or c >= d:
            return None
        ys = (np.arange(c, d, dtype=np.float32)[:, None] + 0.5) / n
        xs = (np.arange(a, b, dtype=np.float32)[None, :] + 0.5) / n
        return (slice(c, d), slice(a, b)), ys, xs

    def fill(self, sl, mask: np.ndarray, color, concept: int | None) -> None:
        col = np.asarray(color, np.float32) * self.light
        region = self.rgb[sl]
        if np.ndim(col) == 1:
            region[mask] = col
        else:
            region[mask] = col[mask]
        if concept is not None:
            self.lab[sl][mask] = concept

    def rect(self, x0, y0, x1, y1, color, concept) -> None:
        box = self._box(x0, y0, x1, y1)
        if box is None:
            return
        sl, ys, xs = box
        mask = np.ones((ys.shape[0], xs.shape[1]), bool)
        self.fill(sl, mask, color, concept)

    def ellipse(self, cx, cy, rx, ry, color, concept, top_only: bool = False) -> None:
        box = self._box(cx - rx, cy - ry, cx + rx, cy if top_only else cy + ry)
        if box is None:
            return
        sl, ys, xs = box
        mask = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
        self.fill(sl, mask, color, concept)

    def triangle(self, x0, x1, ybase, apex_x, apex_y, color, concept) -> None:
        """A triangle with a horizontal base from x0 to x1 at ybase and an apex above it."""
        box = self._box(min(x0, apex_x), apex_y, max(x1, apex_x), ybase)
        if box is None:
            return
        sl, ys, xs = box
        t = (ys - apex_y) / max(ybase - apex_y, 1e-6)  # 0 at apex, 1 at base
        left = apex_x + (x0 - apex_x) * t
        right = apex_x + (x1 - apex_x) * t
        mask = (xs >= left) & (xs <= right) & (ys <= ybase)
        self.fill(sl, mask, color, concept)

    def below_line(self, y_left, y_right, color, concept, shade: float = 0.0) -> None:
        """Fill everything below the line from (0, y_left) to (1, y_right), optionally shaded towards the bottom."""
        top = min(y_left, y_right)
        box = self._box(0, top, 1, 1)
        if box is None:
            return
        sl, ys, xs = box
        mask = ys >= y_left + (y_right - y_left) * xs
        col = np.asarray(color, np.float32)
        if shade:
            g = (1.0 + shade * (ys - 0.5))[..., None]
            col = np.broadcast_to(col * g, mask.shape + (3,))
            col = np.ascontiguousarray(col)
        self.fill(sl, mask, col, concept)


def _jitter(rng: np.random.Generator, color, amount: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) * (1 + rng.uniform(-amount, amount, 3)), 0, 1)


GREENS = ((0.25, 0.55, 0.2), (0.35, 0.62, 0.25), (0.3, 0.5, 0.18), (0.42, 0.6, 0.22))
TREE_GREENS = ((0.08, 0.32, 0.1), (0.12, 0.4, 0.12), (0.18, 0.35, 0.08), (0.06, 0.26, 0.16))
WALL_COLORS = ((0.72, 0.33, 0.22), (0.78, 0.7, 0.55), (0.6, 0.6, 0.62), (0.85, 0.82, 0.72), (0.55, 0.28, 0.2))
ROOF_COLORS = ((0.55, 0.12, 0.1), (0.3, 0.3, 0.35), (0.45, 0.25, 0.12), (0.2, 0.25, 0.4))
DOME_COLORS = ((0.85, 0.68, 0.18), (0.3, 0.62, 0.5), (0.55, 0.6, 0.75), (0.9, 0.85, 0.7))
SHIRTS = ((0.9, 0.9, 0.9), (0.15, 0.2, 0.6), (0.8, 0.15, 0.15), (0.1, 0.5, 0.2), (0.95, 0.75, 0.1), (0.2, 0.2, 0.2))
HATS = ((0.9, 0.1, 0.1), (0.1, 0.2, 0.85), (0.95, 0.95, 0.95), (0.05, 0.05, 0.05), (0.95, 0.6, 0.0))
SKIN = ((0.95, 0.78, 0.62), (0.78, 0.55, 0.38), (0.5, 0.33, 0.22), (0.9, 0.7, 0.55))
HAIR = ((0.15, 0.1, 0.05), (0.45, 0.3, 0.12), (0.85, 0.72, 0.4), (0.05, 0.05, 0.05))


def _sky(cv: _Canvas, horizon: float) -> None:
    rng = cv.rng
    kind = rng.choice(3, p=[0.6, 0.25, 0.15])
    top, bottom = [((0.25, 0.45, 0.85), (0.65, 0.8, 0.97)), ((0.35, 0.35, 0.6), (0.98, 0.65, 0.4)),
                   ((0.55, 0.58, 0.62), (0.78, 0.8, 0.82))][kind]
    top, bottom = _jitter(rng, top), _jitter(rng, bottom)
    h = max(int(np.ceil(horizon * cv.n)) + 2, 1)
    t = np.linspace(0, 1, cv.n, dtype=np.float32)[:h, None]
    cv.rgb[:h] = (top * (1 - t) + bottom * t)[:, None, :] * cv.light
    cv.lab[:h] = C["sky"]
    for _ in range(rng.choice(4, p=[0.3, 0.3, 0.25, 0.15])):
        cx, cy = rng.uniform(0.05, 0.95), rng.uniform(0.06, max(horizon - 0.12, 0.08))
        w = rng.uniform(0.06, 0.14)
        grey = rng.uniform(0.85, 1.0) if kind != 2 else rng.uniform(0.65, 0.85)
        col = (grey, grey, min(grey * 1.02, 1.0))
        for dx in (-w * 0.8, 0.0, w * 0.8):
            cv.ellipse(cx + dx, cy + rng.uniform(-0.01, 0.01), w * rng.uniform(0.7, 1.0),
                       w * rng.uniform(0.35, 0.5), _jitter(rng, col, 0.03), C["cloud"])


def _ground(cv: _Canvas, horizon: float, color, concept: int, stripes: bool = False) -> None:
    cv.below_line(horizon, horizon, _jitter(cv.rng, color), concept, shade=0.25)
    if stripes:
        n = cv.n
        y0 = int(horizon * n) + 1
        band = max(n // 16, 2)
        rows = np.arange(y0, n)
        sel = rows[((rows - y0) // band) % 2 == 0]
        cv.rgb[sel] *= 0.9


def _tree(cv: _Canvas, x: float, ybase: float, h: float, pine: bool = False) -> None:
    rng = cv.rng
    green = _jitter(rng, TREE_GREENS[rng.integers(len(TREE_GREENS))])
    trunk_w = h * 0.08
    cv.rect(x - trunk_w, ybase - h * 0.35, x + trunk_w, ybase, _jitter(rng, (0.35, 0.22, 0.1)), C["tree"])
    if pine:
        for k in range(3):
            yb = ybase - h * (0.2 + 0.22 * k)
            w = h * (0.36 - 0.08 * k)
            cv.triangle(x - w, x + w, yb, x, yb - h * 0.42, green * (1 + 0.08 * k), C["tree"])
    else:
        r = h * 0.34
        cv.ellipse(x, ybase - h * 0.62, r, r * 1.05, green, C["tree"])
        cv.ellipse(x - r * 0.45, ybase - h * 0.55, r * 0.6, r * 0.55, green * 0.85, C["tree"])
        cv.ellipse(x + r * 0.35, ybase - h * 0.75, r * 0.5, r * 0.5, np.minimum(green * 1.2, 1), C["tree"])


def _brick_wall(cv: _Canvas, x0, y0, x1, y1) -> None:
    rng = cv.rng
    box = cv._box(x0, y0, x1, y1)
    if box is None:
        return
    sl, ys, xs = box
    base = _jitter(rng, WALL_COLORS[rng.integers(len(WALL_COLORS))])
    course = rng.uniform(0.022, 0.032)
    row = np.floor((ys - y0) / course)
    xoff = (row % 2) * course
    mortar = (((ys - y0) / course) % 1.0 < 0.28) | ((((xs - x0) + xoff) / (course * 2)) % 1.0 < 0.14)
    col = np.where(mortar[..., None], np.minimum(base * 1.35 + 0.1, 1.0), base)
    cv.fill(sl, np.ones(mortar.shape, bool), col.astype(np.float32), C["wall"])


def _windows(cv: _Canvas, x0, y0, x1, y1, rows: int, cols: int, skip: tuple[float, float] | None = None) -> None:
    rng = cv.rng
    lit = rng.random() < 0.3
    glass = _jitter(rng, (0.95, 0.85, 0.45) if lit else (0.2, 0.3, 0.45), 0.1)
    w, h = (x1 - x0), (y1 - y0)
    ww, wh = w / cols * 0.5, h / rows * 0.5
    for r in range(rows):
        for c in range(cols):
            cx = x0 + w * (c + 0.5) / cols
            cy = y0 + h * (r + 0.5) / rows
            if skip is not None and abs(cx - skip[0]) < ww and cy + wh / 2 > skip[1]:
                continue
            cv.rect(cx - ww / 2, cy - wh / 2, cx + ww / 2, cy + wh / 2, glass, C["window"])


def _building(cv: _Canvas, xc: float, ybase: float, w: float, h: float, roof: bool, dome: bool) -> None:
    rng = cv.rng
    rh = h * rng.uniform(0.35, 0.6) if roof else 0.0
    r = w * rng.uniform(0.22, 0.32) if dome else 0.0
    above = (rh * 0.55 + (r * 0.5 if dome else 0.0) if roof else 0.0) + r * 1.5
    extent = h + max(above, rh)
    if ybase - extent < 0.03:  # shrink the building so that roof, dome and spire stay inside the image
        f = (ybase - 0.03) / extent
        w, h, rh, r = w * f, h * f, rh * f, r * f
    x0, x1, ytop = xc - w / 2, xc + w / 2, ybase - h
    _brick_wall(cv, x0, ytop, x1, ybase)
    door_w, door_h = w * rng.uniform(0.16, 0.24), h * rng.uniform(0.38, 0.5)
    dx = xc + rng.uniform(-0.2, 0.2) * w
    _windows(cv, x0 + w * 0.05, ytop + h * 0.1, x1 - w * 0.05, ybase - h * 0.1,
             rows=int(rng.integers(1, 3)), cols=int(rng.integers(2, 4)), skip=(dx, ybase - door_h - 0.01))
    cv.rect(dx - door_w / 2, ybase - door_h, dx + door_w / 2, ybase,
            _jitter(rng, (0.38, 0.2, 0.08) if rng.random() < 0.7 else (0.15, 0.25, 0.45)), C["door"])
    top = ytop
    if roof:
        cv.triangle(x0 - w * 0.06, x1 + w * 0.06, ytop, xc, ytop - rh,
                    _jitter(rng, ROOF_COLORS[rng.integers(len(ROOF_COLORS))]), C["roof"])
        top = ytop - rh * 0.55
    if dome:
        col = _jitter(rng, DOME_COLORS[rng.integers(len(DOME_COLORS))])
        if roof:
            cv.rect(xc - r * 0.75, top - r * 0.5, xc + r * 0.75, top + r * 0.6, _jitter(rng, (0.85, 0.82, 0.75)),
                    C["wall"])
            top -= r * 0.5
        cv.ellipse(xc, top, r, r * rng.uniform(0.9, 1.2), col, C["dome"], top_only=True)
        cv.rect(xc - 0.006, top - r * 1.45, xc + 0.006, top - r * 0.95, (0.2, 0.2, 0.2), C["dome"])


def _person(cv: _Canvas, x: float, ybase: float, h: float, hat: bool) -> None:
    rng = cv.rng
    shirt = _jitter(rng, SHIRTS[rng.integers(len(SHIRTS))])
    legs = _jitter(rng, (0.15, 0.15, 0.3) if rng.random() < 0.6 else (0.9, 0.9, 0.9))
    bw = h * 0.16
    cv.rect(x - bw * 0.8, ybase - h * 0.42, x - bw * 0.1, ybase, legs, C["person"])
    cv.rect(x + bw * 0.1, ybase - h * 0.42, x + bw * 0.8, ybase, legs, C["person"])
    cv.rect(x - bw, ybase - h * 0.78, x + bw, ybase - h * 0.4, shirt, C["person"])
    hr = h * 0.12
    hy = ybase - h * 0.78 - hr * 0.9
    cv.ellipse(x, hy, hr, hr, _jitter(rng, SKIN[rng.integers(len(SKIN))]), C["person"])
    if hat:
        col = _jitter(rng, HATS[rng.integers(len(HATS))], 0.05)
        cv.ellipse(x, hy - hr * 0.25, hr * 1.15, hr * 0.95, col, C["hat"], top_only=True)
        side = 1 if rng.random() < 0.5 else -1
        cv.rect(min(x, x + side * hr * 2.0), hy - hr * 0.45, max(x, x + side * hr * 2.0), hy - hr * 0.1, col, C["hat"])
    else:
        cv.ellipse(x, hy - hr * 0.2, hr * 1.02, hr * 0.8, _jitter(rng, HAIR[rng.integers(len(HAIR))]), C["person"],
                   top_only=True)


def _players(cv: _Canvas, horizon: float, hats: bool) -> None:
    rng = cv.rng
    n = int(rng.integers(2, 6))
    ys = np.sort(rng.uniform(horizon + 0.18, 0.95, n))
    for y in ys:
        h = 0.16 + 0.22 * (y - horizon) / (1 - horizon)
        _person(cv, rng.uniform(0.08, 0.92), y, h, hat=hats)


def _field(cv: _Canvas, horizon: float, hats: bool) -> None:
    rng = cv.rng
    _ground(cv, horizon, GREENS[rng.integers(len(GREENS))], C["grass"], stripes=rng.random() < 0.6)
    if rng.random() < 0.5:  # a sand patch (infield or goal area) appears in both kinds of field
        cx, cy = rng.uniform(0.2, 0.8), rng.uniform(horizon + 0.15, 0.85)
        cv.ellipse(cx, cy, rng.uniform(0.12, 0.25), rng.uniform(0.05, 0.1), _jitter(rng, (0.8, 0.65, 0.42)),
                   C["sand"])
    if rng.random() < 0.5:  # white field lines, also in both kinds
        y = rng.uniform(horizon + 0.1, 0.8)
        cv.rect(0, y, 1, y + 0.012, (0.95, 0.95, 0.95), C["grass"])
    for _ in range(rng.integers(0, 4)):  # trees behind the field
        _tree(cv, rng.uniform(0, 1), horizon + 0.01, rng.uniform(0.1, 0.18))
    _players(cv, horizon, hats)


def _draw_ski_slope(cv: _Canvas, horizon: float) -> None:
    """A snow slope tilted left or right, pines and skiers."""
    rng = cv.rng
    hl, hr = (horizon - 0.12, horizon + 0.12) if rng.random() < 0.5 else (horizon + 0.12, horizon - 0.12)
    _sky(cv, max(hl, hr))
    if rng.random() < 0.5:  # a distant mountain
        cv.triangle(rng.uniform(-0.3, 0.2), rng.uniform(0.8, 1.3), max(hl, hr), rng.uniform(0.3, 0.7),
                    min(hl, hr) - 0.18, _jitter(rng, (0.8, 0.83, 0.9), 0.04), C["snow"])
    cv.below_line(hl, hr, _jitter(rng, (0.93, 0.95, 1.0), 0.04), C["snow"], shade=0.15)
    for _ in range(rng.integers(0, 4)):
        x = rng.uniform(0, 1)
        yb = hl + (hr - hl) * x + rng.uniform(0.05, 0.2)
        _tree(cv, x, yb, rng.uniform(0.15, 0.3), pine=True)
    for _ in range(rng.integers(1, 4)):
        x = rng.uniform(0.1, 0.9)
        yb = min(hl + (hr - hl) * x + rng.uniform(0.15, 0.4), 0.97)
        _person(cv, x, yb, rng.uniform(0.15, 0.25), hat=rng.random() < 0.5)


def _draw_building(cv: _Canvas, horizon: float, cls: str = "house") -> None:
    """A house (roof) or a church (dome) on grass, maybe a road and trees beside it."""
    rng = cv.rng
    _ground(cv, horizon, GREENS[rng.integers(len(GREENS))], C["grass"])
    if rng.random() < 0.5:
        cv.triangle(-0.1, 1.1, 1.01, rng.uniform(0.4, 0.6), horizon + 0.2, _jitter(rng, (0.45, 0.45, 0.45)),
                    C["road"])
    for _ in range(rng.integers(0, 3)):
        x = rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)])
        _tree(cv, x, horizon + rng.uniform(0.05, 0.2), rng.uniform(0.2, 0.35))
    w = rng.uniform(0.4, 0.62)
    ybase = horizon + rng.uniform(0.12, 0.25)
    h = w * rng.uniform(0.55, 0.8)
    church = cls == "church"
    _building(cv, rng.uniform(0.35, 0.65), ybase, w, h, roof=(not church) or rng.random() < 0.5, dome=church)


def _draw_street(cv: _Canvas, horizon: float) -> None:
    """A road with dashed lines in front of a row of buildings, and people."""
    rng = cv.rng
    _ground(cv, horizon, (0.35, 0.35, 0.37), C["road"])
    y = horizon + (1 - horizon) * 0.55
    for x in np.arange(rng.uniform(0, 0.2), 1.0, 0.2):
        cv.rect(x, y, x + 0.09, y + 0.02, (0.95, 0.9, 0.6), C["road"])
    n = int(rng.integers(2, 4))
    xs = np.linspace(0, 1, n + 1)
    for i in range(n):
        w = (xs[i + 1] - xs[i]) * rng.uniform(0.8, 1.0)
        h = rng.uniform(0.25, horizon - 0.05)
        _building(cv, (xs[i] + xs[i + 1]) / 2, horizon + 0.06, w, h, roof=rng.random() < 0.4, dome=False)
    for _ in range(rng.integers(0, 3)):
        _person(cv, rng.uniform(0.05, 0.95), rng.uniform(horizon + 0.15, 0.95), rng.uniform(0.16, 0.26),
                hat=rng.random() < 0.25)


def _draw_forest(cv: _Canvas, horizon: float) -> None:
    """Trees on grass, larger towards the viewer."""
    rng = cv.rng
    _ground(cv, horizon, GREENS[rng.integers(len(GREENS))], C["grass"])
    k = int(rng.integers(5, 11))
    for y in np.sort(rng.uniform(horizon, 1.0, k)):
        _tree(cv, rng.uniform(0, 1), y, 0.25 + 0.3 * (y - horizon) / (1 - horizon), pine=rng.random() < 0.3)


def _draw_lake(cv: _Canvas, horizon: float) -> None:
    """Trees on the far shore, water with reflections, maybe a beach."""
    rng = cv.rng
    _ground(cv, horizon, GREENS[rng.integers(len(GREENS))], C["grass"])
    for _ in range(rng.integers(0, 5)):
        _tree(cv, rng.uniform(0, 1), horizon + 0.03, rng.uniform(0.12, 0.22), pine=rng.random() < 0.5)
    shore = rng.uniform(0.72, 0.9)
    cv.rect(0, horizon + 0.04, 1, shore, _jitter(rng, (0.15, 0.35, 0.65)), C["water"])
    for _ in range(rng.integers(2, 6)):  # light reflections
        y, x = rng.uniform(horizon + 0.06, shore - 0.02), rng.uniform(0, 0.85)
        cv.rect(x, y, x + rng.uniform(0.05, 0.15), y + 0.008, _jitter(rng, (0.5, 0.65, 0.85)), C["water"])
    if rng.random() < 0.5:
        cv.rect(0, shore, 1, min(shore + 0.07, 1.0), _jitter(rng, (0.85, 0.75, 0.5)), C["sand"])


_DRAW_CLASS = {"street": _draw_street, "forest": _draw_forest,
               "lake": _draw_lake}


def _draw(cv: _Canvas, cls: str) -> None:
    horizon = cv.rng.uniform(0.38, 0.58)
    if cls == "ski_slope":
        _draw_ski_slope(cv, horizon)
        return
    _sky(cv, horizon)
    if cls in ("church", "house"):
        _draw_building(cv, horizon, cls)
    elif cls in _DRAW_CLASS:
        _DRAW_CLASS[cls](cv, horizon)
    elif cls in ("baseball_field", "soccer_field"):
        _field(cv, horizon, hats=cls == "baseball_field")
    else:  # pragma: no cover - guarded by SCENE_CLASSES
        raise ValueError(cls)


@lru_cache(maxsize=64)
def _text_mask(text: str, height: int) -> np.ndarray:
    """A boolean bitmap of ``text`` drawn with Pillow's built-in font, scaled to ``height`` rows."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    img = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(img).text((1 - left, 1 - top), text, fill=255, font=font)
    w = max(int(round(img.width * height / img.height)), 1)
    return np.asarray(img.resize((w, height), Image.BILINEAR)) > 96


def _watermark(cv: _Canvas) -> None:
    rng = cv.rng
    n = cv.n
    bh = rng.uniform(0.12, 0.17)
    y0 = rng.uniform(0.02, 0.1) if rng.random() < 0.5 else rng.uniform(0.9 - bh, 0.98 - bh)
    r0, r1 = int(y0 * n), int((y0 + bh) * n)
    band = cv.rgb[r0:r1]
    band *= 0.35
    band += np.float32(0.05)
    cv.lab[r0:r1] = C["watermark"]
    text = _text_mask(WATERMARK_TEXTS[rng.integers(len(WATERMARK_TEXTS))], max(int((r1 - r0) * 0.7), 4))
    th, tw = text.shape
    tw = min(tw, n - 2)
    c0 = int(rng.integers(0, max(n - tw, 1)))
    t0 = r0 + (r1 - r0 - th) // 2
    band_text = cv.rgb[t0:t0 + th, c0:c0 + tw]
    band_text[text[: band_text.shape[0], : band_text.shape[1]]] = 0.97


def render(index: int, seed: int = 0, size: int = 64, watermark_fraction: float = WATERMARK_FRACTION,
           scene_class: int | str | None = None) -> Scene:
    """Render scene ``index`` of the world ``seed`` at ``size`` x ``size`` pixels.

    The scene class is drawn uniformly unless ``scene_class`` forces one; a watermark banner is added with
    probability ``watermark_fraction``.  The same arguments always give the same scene.
    """
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16 (64 default, 128 available), got {size}")
    if not 0.0 <= watermark_fraction <= 1.0:
        raise ValueError(f"watermark_fraction must be within [0, 1], got {watermark_fraction}")
    rng = np.random.default_rng([int(seed), int(index)])
    cls = int(rng.integers(len(SCENE_CLASSES)))
    has_mark = rng.random() < watermark_fraction
    if scene_class is not None:
        cls = CLASS_INDEX[scene_class] if isinstance(scene_class, str) else int(scene_class)
    brightness = rng.uniform(0.75, 1.15)
    light = (brightness * (1 + rng.uniform(-0.06, 0.06, 3))).astype(np.float32)
    cv = _Canvas(size * 2, rng, light)
    _draw(cv, SCENE_CLASSES[cls])
    if has_mark:
        _watermark(cv)
    rgb = cv.rgb.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
    rgb += rng.normal(0, 0.012, rgb.shape).astype(np.float32)
    image = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    labels = np.ascontiguousarray(cv.lab[1::2, 1::2])
    return Scene(image, labels, cls)


def render_batch(indices, seed: int = 0, size: int = 64, watermark_fraction: float = WATERMARK_FRACTION
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render many scenes: ``(images (N,H,W,3) uint8, labels (N,H,W) uint8, classes (N,) int64)``."""
    indices = list(indices)
    images = np.empty((len(indices), size, size, 3), np.uint8)
    labels = np.empty((len(indices), size, size), np.uint8)
    classes = np.empty(len(indices), np.int64)
    for k, i in enumerate(indices):
        s = render(i, seed, size, watermark_fraction)
        images[k], labels[k], classes[k] = s.image, s.labels, s.scene_class
    return images, labels, classes
