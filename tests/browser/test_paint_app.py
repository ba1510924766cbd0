"""The GAN Paint app in a real browser: started with the README's main command, driven with the mouse in Chromium.

The canvas's pixels are read back from the page (exact: the widget sends PNG) and segmented here with the bundled
segmenter to check what the strokes did.  Screenshots land in build/screenshots/ (or $GANVIZ_SCREENSHOTS).
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ganviz
from ganviz.paint import brush_mask
from voila_harness import (REPO, VoilaServer, canvas_pixels, drag_on, image_digest, image_size, open_notebook,
                           wait_canvas_settled, wait_image_loaded, wait_text_change, wait_text_contains)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

SCALE = 6      # the app's canvas shows the 64x64 image enlarged 6x
BRUSH = 4      # the app's default brush radius, image pixels
CELL = 8       # image pixels per layer4 location


def readme_app_command() -> list[str]:
    """The command after the last ``&&`` of the README's first set-up command (``ganviz app``)."""
    first = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)[0]
    words = first.split("&&")[-1].split()
    exe = Path(sys.executable).with_name(words[0])
    return [str(exe) if exe.exists() else shutil.which(words[0]) or words[0], *words[1:]]


@pytest.fixture(scope="module")
def app(browser_context, tmp_path_factory):
    with VoilaServer(REPO, command=readme_app_command()) as server:
        page = open_notebook(browser_context, server.base + "/", ["canvas.ganviz-paint-canvas"])
        yield page
        page.close()


@pytest.fixture(scope="module")
def segmenter():
    return ganviz.load("toy-segmenter")[0]


def segment(segmenter, shown: np.ndarray) -> np.ndarray:
    """Labels (64, 64) of what the canvas shows (its 6x enlargement sampled back to 64x64)."""
    img = torch.from_numpy(shown[::SCALE, ::SCALE].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        return segmenter(img).argmax(1)[0].numpy()


def cells(mask: np.ndarray) -> np.ndarray:
    """The image pixels of every layer location a mask touches (what a stroke edits)."""
    h, w = mask.shape
    touched = mask.reshape(h // CELL, CELL, w // CELL, CELL).max((1, 3)) > 0
    return np.kron(touched, np.ones((CELL, CELL))).astype(bool)


def click(page, name):
    page.locator(".ganviz-app").get_by_role("button", name=name, exact=True).click()


def test_app_paints_undoes_resets_and_removes(app, segmenter, shots):
    page = app
    canvas = page.locator("canvas.ganviz-paint-canvas")
    status = page.locator(".ganviz-app .ganviz-paint > .ganviz-status")
    original = wait_canvas_settled(canvas, None)
    assert original.shape == (64 * SCALE, 64 * SCALE, 3) and original.std() > 10, "the canvas shows no scene"
    shots(page, "paint-app-loaded")
    labels = segment(segmenter, original)
    tree = ganviz.CONCEPTS.index("tree")

    # draw trees along the image row (between the edges) that has the fewest tree pixels
    row = int(np.argmin([(labels[max(y - 4, 0):y + 4] == tree).sum() for y in range(8, 56)])) + 8
    points = [(8, row), (56, row)]
    click(page, "tree")
    click(page, "draw")
    drag_on(canvas, [(x * SCALE, y * SCALE) for x, y in points])
    painted = wait_canvas_settled(canvas, original)
    assert "1 stroke" in status.inner_text()
    shots(page, "paint-app-tree-stroke")
    inside = cells(brush_mask(points, BRUSH, (64, 64)))
    diff = np.abs(painted[::SCALE, ::SCALE].astype(int) - original[::SCALE, ::SCALE]).mean(-1)
    assert diff[inside].mean() > 3 * diff[~inside].mean() and diff[inside].mean() > 8, \
        (diff[inside].mean(), diff[~inside].mean())

    # a second stroke, then undo: exactly the image after the first stroke; reset: exactly the original
    drag_on(canvas, [(20 * SCALE, 20 * SCALE), (44 * SCALE, 20 * SCALE)])
    two = wait_canvas_settled(canvas, painted)
    assert "2 strokes" in status.inner_text()
    page.locator(".ganviz-undo").click()
    assert np.array_equal(wait_canvas_settled(canvas, two), painted)
    page.locator(".ganviz-reset").click()
    assert np.array_equal(wait_canvas_settled(canvas, painted), original)

    # remove mode, scribbled over the trees (back and forth across the rows they cover), erases them there
    ys, xs = np.nonzero(labels == tree)
    assert len(ys) > 40, "the app's first sample should show trees"
    stroke = []
    for k, y in enumerate(np.percentile(ys, [20, 50, 80]).round().astype(int)):
        span = xs[np.abs(ys - y) <= 2]
        ends = [(float(span.min()), int(y)), (float(span.max()), int(y))]
        stroke += ends if k % 2 == 0 else ends[::-1]
    region = cells(brush_mask(stroke, BRUSH, (64, 64)))
    click(page, "remove")
    click(page, "high")
    drag_on(canvas, [(x * SCALE, y * SCALE) for x, y in stroke])
    removed = wait_canvas_settled(canvas, original)
    shots(page, "paint-app-tree-removed")
    before = (labels[region] == tree).sum()
    after = (segment(segmenter, removed)[region] == tree).sum()
    assert after <= 0.5 * before, (before, after)
    assert "\u26a0" not in status.inner_text()
    assert not [e for e in page.console_errors if "widget" in e.lower() or "Uncaught" in e], page.console_errors


def test_app_repaints_after_a_reload(app, shots):
    page = app
    page.reload(wait_until="load")
    canvas = page.locator("canvas.ganviz-paint-canvas")
    canvas.wait_for(state="visible", timeout=120_000)
    shown = wait_canvas_settled(canvas, None)
    assert shown.std() > 10, "after a reload the canvas stayed blank"
    shots(page, "paint-app-reloaded")


def test_app_uploads_a_photo_shows_the_inversion_and_paints_on_it(app, segmenter, shots, tmp_path):
    """A rendered scene (never seen by the GAN) uploaded as a PNG: visible progress, then target, reconstruction
    and difference, then the canvas shows the reconstruction and a tree stroke changes it where painted."""
    from PIL import Image

    from ganviz import toyworld

    page = app
    canvas = page.locator("canvas.ganviz-paint-canvas")
    status = page.locator(".ganviz-app .ganviz-inversion .ganviz-status")
    before = wait_canvas_settled(canvas, None)
    scene = toyworld.render(3, seed=77, size=128)
    path = tmp_path / "my-house.png"
    Image.fromarray(scene.image).save(path)
    photo = np.asarray(Image.fromarray(scene.image).resize((64, 64), Image.LANCZOS))
    with page.expect_file_chooser() as chooser:      # the upload button opens the browser's file dialog
        page.locator(".ganviz-paint-upload").click()
    chooser.value.set_files(str(path))

    # progress while it runs: the step counter in the status line and the bar move
    seen = wait_text_contains(status, "step", timeout_s=60)
    shots(page, "paint-app-inverting")
    assert image_digest(page.locator("img.ganviz-inv-recon")) is not None, "no reconstruction shown while inverting"
    later = wait_text_change(status, seen, timeout_s=60)
    assert "step" in later or "PSNR" in later, later
    wait_text_contains(status, "PSNR", timeout_s=240)
    psnr = float(re.search(r"PSNR ([\d.]+) dB", status.inner_text()).group(1))
    assert psnr >= 30, status.inner_text()     # inversion + fine-tuning of the 64x64 photo
    diff = page.locator("img.ganviz-inv-diff")
    wait_image_loaded(diff)
    assert image_size(diff)["natural"] == [64, 64], "the difference view shows no 64x64 image"
    shots(page, "paint-app-photo-inverted")

    shown = wait_canvas_settled(canvas, before, timeout_s=60)
    recon = shown[::SCALE, ::SCALE].astype(int)
    assert np.abs(recon - photo).mean() < 8, np.abs(recon - photo).mean()   # the canvas shows the photo's reconstruction
    assert "reconstructed at PSNR" in page.locator(".ganviz-paint > .ganviz-status").inner_text()

    points = [(8, 44), (56, 44)]
    click(page, "tree")
    click(page, "draw")
    click(page, "high")
    drag_on(canvas, [(x * SCALE, y * SCALE) for x, y in points])
    painted = wait_canvas_settled(canvas, shown)
    shots(page, "paint-app-photo-painted")
    inside = cells(brush_mask(points, BRUSH, (64, 64)))
    change = np.abs(painted[::SCALE, ::SCALE].astype(int) - recon).mean(-1)
    assert change[inside].mean() > 3 * change[~inside].mean() and change[inside].mean() > 8, \
        (change[inside].mean(), change[~inside].mean())
    assert "\u26a0" not in page.locator(".ganviz-app").inner_text()
