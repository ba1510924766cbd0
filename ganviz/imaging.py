"""Image conversions in one place: tensors <-> uint8 arrays and PIL images, label colouring, grids."""
from __future__ import annotations

import colorsys
import hashlib
import io

import numpy as np
import torch
from PIL import Image

from .toyworld.concepts import CONCEPTS, LABEL_COLORS

__all__ = ["to_uint8", "from_uint8", "colorize_labels", "make_grid", "upscale", "png_bytes", "heatmap_overlay",
           "diff_heatmap", "highlight_region", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "MIN_UPLOAD_SIDE",
           "ACCEPTED_FORMATS", "load_photo", "load_image", "fit_photo", "concept_color"]


def to_uint8(images: torch.Tensor | np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(N,3,H,W) or (3,H,W) float tensor in ``value_range`` -> (N,H,W,3) or (H,W,3) uint8 array."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    t = torch.as_tensor(images).detach().float().cpu()
    lo, hi = value_range
    t = ((t - lo) / (hi - lo)).clamp(0, 1).mul(255).round().byte()
    return t.movedim(-3, -1).numpy()


def from_uint8(images: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """(N,H,W,3) or (H,W,3) uint8 array -> float tensor (N,3,H,W) / (3,H,W) in ``value_range``."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div(255).movedim(-1, -3)
    lo, hi = value_range
    return t * (hi - lo) + lo


def colorize_labels(labels: np.ndarray | torch.Tensor, palette=LABEL_COLORS) -> np.ndarray:
    """Concept label map(s) (..., H, W) -> RGB uint8 (..., H, W, 3)."""
    pal = np.asarray(palette, np.uint8)
    lab = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    return pal[np.clip(lab, 0, len(pal) - 1)]


def make_grid(images: np.ndarray, cols: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile (N,H,W,3) uint8 images into one image with ``cols`` columns and ``pad`` pixels between tiles."""
    n, h, w, c = images.shape
    rows = max(int(np.ceil(n / cols)), 1)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
    return out


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an (H,W,3) uint8 image, so small images stay crisp on screen."""
    return np.repeat(np.repeat(image, factor, 0), factor, 1)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an (H,W,3) or (H,W,4) uint8 image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def heatmap_overlay(image: np.ndarray, heat: np.ndarray | torch.Tensor, alpha: float = 0.5,
                    cmap: str = "jet") -> np.ndarray:
    """Blend an (H,W) heatmap in [0, 1] (resized to the image) over an (H,W,3) uint8 image."""
    from matplotlib import colormaps

    heat = np.asarray(heat.detach().cpu() if isinstance(heat, torch.Tensor) else heat, np.float32)
    if heat.shape != image.shape[:2]:
        heat = np.asarray(Image.fromarray(heat).resize(image.shape[1::-1], Image.BILINEAR))
    colored = colormaps[cmap](np.clip(heat, 0, 1))[..., :3] * 255
    return (image * (1 - alpha) + colored * alpha).round().astype(np.uint8)


def diff_heatmap(a: np.ndarray, b: np.ndarray, vmax: float = 64.0, cmap: str = "inferno") -> np.ndarray:
    """Per-pixel difference of two (H,W,3) uint8 images (mean over channels) as an RGB heatmap; ``vmax`` grey
    levels and more are the hottest colour, so equal images are black."""
    from matplotlib import colormaps

    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1) / vmax
    return (colormaps[cmap](np.clip(d, 0, 1))[..., :3] * 255).round().astype(np.uint8)


def highlight_region(image: np.ndarray, mask: np.ndarray, dim: float = 0.25,
                     outline: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """Network-Dissection style: keep the pixels inside ``mask``, dim the rest, outline the region."""
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        mask = np.asarray(Image.fromarray(mask).resize(image.shape[1::-1], Image.NEAREST))
    out = image.astype(np.float32)
    out[~mask] = out[~mask] * dim + 255 * (1 - dim) * 0.15
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = outline
    return out.round().astype(np.uint8)


MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000


MIN_UPLOAD_SIDE = 16


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert a decoded image of any mode to RGB, noting what was converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, np.float64)  # 16-bit values: the full range 0..65535 maps to 0..255
        img = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8))
        notes.append("16-bit grayscale scaled to 8-bit RGB")
    elif img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
        notes.append("transparency composited on white")
    elif img.mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif img.mode in ("L", "1"):
        notes.append("grayscale converted to RGB")
    elif img.mode not in ("RGB",):
        notes.append(f"{img.mode} converted to RGB")
    return img.convert("RGB")


ACCEPTED_FORMATS = ("PNG", "JPEG")
"""Upload formats: only these decoders are tried (no TIFF floats, no PostScript handed to Ghostscript)."""


def _decode(data: bytes, max_pixels: int, min_side: int, notes: list[str]) -> Image.Image:
    """Open ``data`` as PNG or JPEG only, check its size from the header, decode it upright and in RGB."""
    from PIL import ImageOps, UnidentifiedImageError

    fmt = "image"
    try:
        with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ValueError(f"the image has {w}x{h} pixels; at most {max_pixels:,} pixels are accepted")
            if min(w, h) < min_side:
                raise ValueError(f"the image is {w}x{h} pixels; expected at least {min_side}x{min_side}")
            fmt = img.format or "image"
            frames = int(getattr(img, "n_frames", 1))
            img.load()
            if frames > 1:
                notes.append(f"first of {frames} frames used")
            if img.getexif().get(0x0112, 1) not in (0, 1):  # the EXIF Orientation tag
                img = ImageOps.exif_transpose(img)
                notes.append("turned upright as its EXIF orientation says")
            return _to_rgb(img, notes)
    except UnidentifiedImageError:
        raise ValueError("the file is not an image ganviz accepts; expected a PNG or JPEG image (other "
                         "formats are not decoded)") from None
    except Image.DecompressionBombError as err:
        raise ValueError(f"the image is too large to decode safely; at most {max_pixels:,} pixels are accepted "
                         f"({err})") from None
    except (OSError, SyntaxError, EOFError) as err:  # truncated or corrupt data inside a valid header
        raise ValueError(f"the {fmt} file is truncated or corrupt ({err}); "
                         "expected a complete PNG or JPEG image") from None


def load_photo(data: bytes, size: int | None = None, max_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_UPLOAD_PIXELS, min_side: int = MIN_UPLOAD_SIDE) -> tuple[np.ndarray, str]:
    """Decode an uploaded image to (H,W,3) uint8, centre-cropped to a square and resized to ``size``; also return a
    note of what was converted (e.g. "16-bit grayscale scaled to 8-bit RGB; centre-cropped 300x200 to 200x200").

    Accepts PNG and JPEG only (:data:`ACCEPTED_FORMATS`).  Refuses empty files, files over ``max_bytes``, images
    over ``max_pixels`` (decompression bombs: refused from the header, before decoding), images with a side under
    ``min_side``, truncated files and other formats, with a ``ValueError`` that says what was expected.
    Grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are converted, an EXIF orientation is
    applied and an animated PNG gives its first frame, each said in the note.
    """
    if len(data) == 0:
        raise ValueError("the uploaded file is empty; expected a PNG or JPEG image")
    if len(data) > max_bytes:
        raise ValueError(f"the file is {len(data) / 2**20:.1f} MB; images up to {max_bytes / 2**20:.0f} MB are "
                         "accepted")
    notes: list[str] = []
    img = _decode(data, max_pixels, min_side, notes)
    return _square(img, size, notes)


def _square(img: Image.Image, size: int | None, notes: list[str]) -> tuple[np.ndarray, str]:
    side = min(img.size)
    if img.width != img.height:
        notes.append(f"centre-cropped {img.width}x{img.height} to {side}x{side}")
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if size is not None and side != size:
        img = img.resize((size, size), Image.LANCZOS)
        notes.append(f"resized to {size}x{size}")
    return np.asarray(img, np.uint8).copy(), "; ".join(notes)


def fit_photo(photo: np.ndarray, size: int, max_pixels: int = MAX_UPLOAD_PIXELS) -> tuple[np.ndarray, str]:
    """An in-memory photo as an (size, size, 3) uint8 array: (H, W, 3) uint8, centre-cropped to a square and
    resized like an upload (:func:`load_photo`); also the note of what was done.  Anything else, or a photo over
    ``max_pixels``, gets a ``ValueError`` that says what is expected."""
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 photo, got {photo.dtype} array of shape {photo.shape} "
                         "(load files with ganviz.imaging.load_photo, which converts other kinds of image)")
    h, w = photo.shape[:2]
    if h * w > max_pixels:
        raise ValueError(f"the photo has {w}x{h} pixels; at most {max_pixels:,} pixels are accepted")
    if min(h, w) < 1:
        raise ValueError(f"the photo is empty ({w}x{h} pixels)")
    if (h, w) == (size, size):
        return photo, ""
    return _square(Image.fromarray(photo), size, [])


def load_image(data: bytes, size: int | None = None, max_bytes: int = MAX_UPLOAD_BYTES,
               max_pixels: int = MAX_UPLOAD_PIXELS, min_side: int = MIN_UPLOAD_SIDE) -> np.ndarray:
    """Decode an uploaded image like :func:`load_photo`, without the note."""
    return load_photo(data, size, max_bytes, max_pixels, min_side)[0]


def concept_color(name: str) -> tuple[int, int, int]:
    """The colour of a concept, keyed by its name: the toy world's label colour for a toy-world concept, else a
    colour drawn from a hash of the name (the same in every session and process, and distinct names get distinct
    hues, saturations and brightnesses, so a 150-concept vocabulary is told apart too)."""
    if name in CONCEPTS:
        r, g, b = LABEL_COLORS[CONCEPTS.index(name)]
        return int(r), int(g), int(b)
    digest = hashlib.sha256(str(name).encode("utf-8")).digest()
    hue = int.from_bytes(digest[:4], "big") / 2 ** 32
    saturation = 0.5 + 0.45 * digest[4] / 255
    value = 0.6 + 0.35 * digest[5] / 255
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)
