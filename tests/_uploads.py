"""The documented list of bad uploads (README, "Editing a real photo"), as bytes, with the message each must get."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def good_png(size: tuple[int, int] = (80, 60), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)), "PNG")


def refused() -> dict[str, tuple[bytes, str]]:
    """Uploads that are refused: name -> (file bytes, regex the message must match)."""
    png = good_png()
    return {
        "not an image": (b"%PDF-1.4 a document, not a picture", "not an image"),
        "truncated PNG": (png[: len(png) // 2], "truncated or corrupt"),
        "20000x20000 image": (encode(Image.new("1", (20000, 20000)), "PNG"), "too large|at most"),
        "1x1 image": (encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), "1x1 pixels.*at least"),
    }


def converted() -> dict[str, tuple[bytes, str]]:
    """Uploads that are converted (and said so): name -> (file bytes, regex of the conversion note)."""
    deep = (np.arange(100 * 100, dtype=np.uint16).reshape(100, 100) * 6)
    return {
        "16-bit PNG": (encode(Image.fromarray(deep), "PNG"), "16-bit"),
        "CMYK JPEG": (encode(Image.new("CMYK", (80, 60), (0, 255, 0, 0)), "JPEG"), "CMYK"),
    }


def other_formats() -> dict[str, bytes]:
    """Images in formats that are not accepted (PNG and JPEG only), and a PostScript file."""
    img = Image.fromarray(np.full((40, 40, 3), 128, np.uint8))
    out = {fmt: encode(img, fmt) for fmt in ("BMP", "TIFF", "GIF", "PPM", "TGA", "ICO")}
    out["float TIFF"] = encode(Image.fromarray(np.full((40, 40), 0.5, np.float32)), "TIFF")
    out["EPS"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 40\nshowpage\n"
    return out
