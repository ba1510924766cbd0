"""Uploads: only PNG and JPEG are decoded; what is converted is said; pictures come out the right way up."""
import datetime
import io

import numpy as np
import pytest
from PIL import Image

from ganviz.imaging import load_photo
from _uploads import encode, other_formats


@pytest.mark.parametrize("name", sorted(other_formats()))
def test_other_formats_are_refused_without_decoding(name):
    with pytest.raises(ValueError, match="PNG or JPEG"):
        load_photo(other_formats()[name])


def test_a_dark_16_bit_image_stays_dark():
    dark = np.full((32, 32), 2000, np.uint16)  # 3% of the 16-bit range
    out, note = load_photo(encode(Image.fromarray(dark), "PNG"))
    assert abs(int(out.mean()) - round(2000 / 257)) <= 1 and "16-bit" in note


def test_the_exif_orientation_is_applied_and_said():
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:, :30] = 255  # a white band on the left half of the stored picture
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    out, note = load_photo(buf.getvalue())
    assert "EXIF" in note
    top = out[:5].mean()
    assert top > 200 and out[-5:].mean() < 50, "turned upright, the band is at the top"


def test_an_animated_png_uses_its_first_frame_and_says_so():
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    out, note = load_photo(buf.getvalue())
    assert "first of 2 frames" in note and abs(int(out.mean()) - 10) <= 1


def test_uploading_the_same_file_twice_is_handled_twice():
    import ipywidgets as W

    from ganviz.widgets._base import ViewBase

    view, seen = ViewBase(background=False), []
    upload = W.FileUpload()
    view.watch_upload(upload, lambda data, name: seen.append((data, name)))
    photo = encode(Image.fromarray(np.zeros((16, 16, 3), np.uint8)), "PNG")
    for _ in range(2):
        upload.value = ({"name": "a.png", "type": "image/png", "size": len(photo), "last_modified": datetime.datetime(2026, 1, 1),
                         "content": memoryview(photo)},)
    assert seen == [(photo, "a.png"), (photo, "a.png")] and upload.value == ()
