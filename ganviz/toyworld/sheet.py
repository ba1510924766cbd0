"""A contact sheet of the toy world: scenes beside their colour-coded label maps, with a legend."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .concepts import CONCEPTS, LABEL_COLORS, SCENE_CLASSES
from .render import render

__all__ = ["contact_sheet"]


def contact_sheet(path: str | Path, per_class: int = 3, seed: int = 0, size: int = 64, zoom: int = 2) -> Path:
    """Write a PNG with ``per_class`` scenes of every class (image | label map) and a concept legend."""
    pal = np.asarray(LABEL_COLORS, np.uint8)
    font = ImageFont.load_default()
    tile = size * zoom
    label_w = 110
    cols = per_class
    width = label_w + cols * (2 * tile + 12)
    height = len(SCENE_CLASSES) * (tile + 8) + 8 + 24 * ((len(CONCEPTS) + 7) // 8) + 10
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    found = {c: [] for c in range(len(SCENE_CLASSES))}
    index = 0
    while min(len(v) for v in found.values()) < per_class:
        s = render(index, seed, size)
        if len(found[s.scene_class]) < per_class:
            found[s.scene_class].append(s)
        index += 1
    for row, cls in enumerate(SCENE_CLASSES):
        y = 8 + row * (tile + 8)
        draw.text((6, y + tile // 2 - 6), cls.replace("_", " "), fill=(0, 0, 0), font=font)
        for k, s in enumerate(found[row]):
            x = label_w + k * (2 * tile + 12)
            sheet.paste(Image.fromarray(s.image).resize((tile, tile), Image.NEAREST), (x, y))
            sheet.paste(Image.fromarray(pal[s.labels]).resize((tile, tile), Image.NEAREST), (x + tile, y))
    y0 = 8 + len(SCENE_CLASSES) * (tile + 8) + 4
    step = width // 8
    for k, name in enumerate(CONCEPTS):
        x, y = 6 + (k % 8) * step, y0 + (k // 8) * 24
        draw.rectangle([x, y, x + 14, y + 14], fill=tuple(LABEL_COLORS[k]), outline=(0, 0, 0))
        draw.text((x + 20, y + 1), name, fill=(0, 0, 0), font=font)
    sheet.save(path)
    return Path(path)
