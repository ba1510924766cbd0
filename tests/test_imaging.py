"""Image conversions and the upload path: formats converted, bad files refused with clear messages."""
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ganviz.imaging import (colorize_labels, diff_heatmap, from_uint8, heatmap_overlay, highlight_region, load_image,
                            load_photo, make_grid, to_uint8)

from _uploads import converted, refused


def _png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, "PNG")
    return buf.getvalue()


def test_round_trip_and_ranges():
    x = torch.rand(2, 3, 5, 5) * 2 - 1
    u = to_uint8(x, (-1, 1))
    assert u.shape == (2, 5, 5, 3) and u.dtype == np.uint8
    back = from_uint8(u, (-1, 1))
    assert torch.allclose(back, x, atol=1 / 127)


def test_upload_formats_are_converted():
    rgb = load_image(_png(np.full((300, 200, 3), 90, np.uint8)), size=64)
    assert rgb.shape == (64, 64, 3) and abs(int(rgb[32, 32, 0]) - 90) <= 1
    gray = load_image(_png(np.full((50, 80), 200, np.uint8)), size=64)
    assert gray.shape == (64, 64, 3) and gray[10, 10].tolist() == [200, 200, 200]
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent -> white background
    assert load_image(_png(rgba), size=16)[0, 0].tolist() == [255, 255, 255]
    deep = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    out = load_image(_png(deep), size=32)
    assert out.shape == (32, 32, 3) and out.max() > 200 and out.min() < 10


def test_bad_uploads_are_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="empty"):
        load_image(b"")
    with pytest.raises(ValueError, match="not an image"):
        load_image(b"%PDF-1.4 not an image at all")
    with pytest.raises(ValueError, match="pixels"):
        load_image(_png(np.zeros((300, 300, 3), np.uint8)), max_pixels=10_000)
    with pytest.raises(ValueError, match="MB"):
        load_image(b"x" * 2000, max_bytes=1000)


@pytest.mark.parametrize("name", list(refused()))
def test_documented_bad_uploads_are_refused(name):
    data, message = refused()[name]
    with pytest.raises(ValueError, match=message):
        load_photo(data, size=64)


@pytest.mark.parametrize("name", list(converted()))
def test_documented_odd_uploads_are_converted_and_say_so(name):
    data, note = converted()[name]
    image, said = load_photo(data, size=64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and re.search(note, said)
    if name == "CMYK JPEG":  # (0, 255, 0, 0) in CMYK is magenta
        assert image[32, 32, 0] > 200 and image[32, 32, 1] < 60 and image[32, 32, 2] > 200


def test_decompression_bomb_header_is_refused_before_decoding():
    # a tiny PNG claiming 30000 x 30000 pixels: refused from the header alone
    buf = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buf, "PNG")
    with pytest.raises(ValueError, match="too large.*at most"):
        load_image(buf.getvalue())


def test_overlays_and_grids():
    img = np.full((8, 8, 3), 100, np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    out = highlight_region(img, mask)
    assert out[4, 4].tolist() == [100, 100, 100] and out[0, 0].sum() < 300 and out[2, 2].tolist() == [255, 255, 0]
    heat = heatmap_overlay(img, np.eye(8), alpha=1.0)
    assert heat[0, 0].tolist() != heat[0, 1].tolist()
    grid = make_grid(np.zeros((5, 4, 4, 3), np.uint8), cols=2, pad=1)
    assert grid.shape == (3 * 5 + 1, 2 * 5 + 1, 3)
    assert colorize_labels(np.array([[0, 15]])).shape == (1, 2, 3)


def test_diff_heatmap_is_black_where_equal_and_hot_where_different():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    heat = diff_heatmap(a, b)
    assert heat.shape == (4, 4, 3) and heat[1:, 1:].max() <= 5 and heat[0, 0].sum() > 400
    with pytest.raises(ValueError, match="shape"):
        diff_heatmap(a, b[:2])
