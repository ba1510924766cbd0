"""Every widget on features of a basis, in a real browser: examples/08 rendered by Voila, driven in Chromium.

The notebook installs TopK SAEs on the toy GAN's ``layer4`` and the toy classifier's ``conv5_3``; each widget below
was given the dissection of the feature layer (``<layer>.basis.features``) and must say "feature", not "unit",
and respond to the mouse as it does on units.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from voila_harness import (broken_images, canvas_pixels, check_no_cell_errors, drag_on, drag_slider_to,
                           image_digest, wait_canvas_settled, wait_html_change, wait_image_loaded, wait_src_change,
                           wait_text_contains)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]


def status_of(widget) -> str:
    text = widget.locator(".ganviz-status").first.inner_text()
    assert "\u26a0" not in text, f"widget reported an error: {text}"
    return text


def test_summary_lists_features(features_page, shots):
    check_no_cell_errors(features_page)
    summary = features_page.locator(".ganviz-summary").first
    assert summary.locator(".ganviz-summary-table th").first.inner_text().strip() == "feature"
    assert summary.locator(".ganviz-summary-table tr").count() > 10
    assert re.search(r"\d+ of 1024 features reach IoU", status_of(summary))
    assert not broken_images(summary)
    shots(summary, "08_summary_features")


def test_switchboard_turns_tree_features_off(features_page, shots):
    board = features_page.locator(".ganviz-switchboard").first
    switches = board.locator(".ganviz-unit-switches button")
    assert switches.count() == 12
    assert all(re.fullmatch(r"feature \d+", t.strip()) for t in switches.all_inner_texts())
    readout = board.locator(".ganviz-switchboard-readout")
    grid = board.locator("img.ganviz-switchboard-grid")
    wait_image_loaded(grid)
    before, src = readout.inner_html(), grid.get_attribute("src")
    board.get_by_role("button", name="All off").click()
    wait_text_contains(readout, "12 features off")
    wait_src_change(grid, src)
    drop = re.search(r"now \(-(\d+)%\); 12 features off", readout.inner_text())
    assert drop and int(drop.group(1)) >= 10, f"12 tree features off barely changed the trees: {readout.inner_text()}"
    assert readout.inner_html() != before
    shots(board, "08_switchboard_features_off")


def test_where_can_a_door_feature_go(features_page, shots):
    where = features_page.locator(".ganviz-where").first
    img = where.locator("img.ganviz-where-image")
    wait_image_loaded(img)
    assert "door" in where.locator(".ganviz-where-readout").inner_text()
    assert not broken_images(where)
    shots(where, "08_where_door_features")


def test_painting_with_features_changes_the_canvas(features_page, shots):
    canvas = features_page.locator("canvas.ganviz-paint-canvas").first
    shown = wait_canvas_settled(canvas, None)
    scale = shown.shape[0] // 64
    assert shown.std() > 10, "the canvas shows no scene"
    drag_on(canvas, [(x * scale, 20 * scale) for x in (14, 26, 38, 50)])
    painted = wait_canvas_settled(canvas, shown)
    changed = (np.abs(painted.astype(int) - shown.astype(int)).sum(-1) > 30).mean()
    assert changed > 0.005, f"a stroke changed only {changed:.2%} of the canvas"
    shots(features_page.locator(".ganviz-paint").first, "08_paint_features")


def test_grid_shows_and_selects_features(features_page, shots):
    grid = features_page.locator(".ganviz-grid").first
    captions = grid.locator(".ganviz-grid-rows .widget-html").all_inner_texts()
    assert captions and all(re.match(r"feature \d+: ", c.strip()) for c in captions), captions
    select = grid.locator(".ganviz-unit-select select")
    images = grid.locator("img.ganviz-detail-images")
    label = select.locator("option").nth(1).inner_text().replace("\xa0", " ")
    feature = int(re.match(r"feature (\d+):", label).group(1))
    src = images.get_attribute("src")
    select.select_option(index=1)
    wait_text_contains(grid.locator(".ganviz-detail-title"), f"feature {feature}:")
    wait_src_change(images, src)
    assert "features shown of" in status_of(grid)
    shots(grid, "08_grid_features")


def test_ablation_slider_on_a_feature(features_page, shots):
    panel = features_page.locator(".ganviz-ablation").first
    bars = panel.locator(".ganviz-bars .widget-html-content")
    sliders = panel.locator(".ganviz-unit-slider")
    assert sliders.count() >= 1
    label = sliders.first.locator(".widget-label").inner_text()
    assert label.startswith("feature "), label
    # find_flip left its features at 0: drag the first back to 1 (the right third of the track) and back to 0
    status = panel.locator(".ganviz-status")
    before = bars.inner_html()
    drag_slider_to(sliders.first, 1 / 3, expect="1.00")
    after = wait_html_change(bars, before)
    drag_slider_to(sliders.first, 0.0, expect="0.00")
    wait_html_change(bars, after)
    wait_text_contains(status, "features removed")
    assert panel.get_by_role("button", name="Restore all features").count() == 1
    shots(panel, "08_ablation_features")


def test_gradcam_on_a_feature_layer(features_page, shots):
    cam = features_page.locator(".ganviz-gradcam").first
    img = cam.locator("img.ganviz-gradcam-image")
    wait_image_loaded(img)
    wait_text_contains(cam.locator(".ganviz-status"), "conv5_3.basis.features")
    assert image_digest(img)
    shots(cam, "08_gradcam_features")
