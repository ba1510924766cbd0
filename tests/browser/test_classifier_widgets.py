"""The classifier widgets in a real browser: examples/01 and 02 rendered by Voila, driven in Chromium.

Run with ``python -m pytest tests/browser -m browser``.  Screenshots land in build/screenshots/ (or
$GANVIZ_SCREENSHOTS); look at them.
"""
from __future__ import annotations

import re

import pytest

from voila_harness import (broken_images, check_no_cell_errors, drag_slider_to, image_digest, image_size,
                           wait_html_change, wait_html_equal, wait_image_loaded, wait_src_change, wait_text_contains)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]


def assert_status_ok(widget):
    status = widget.locator(".ganviz-status").first
    text = status.inner_text()
    assert text.strip(), "status line is empty"
    assert "\u26a0" not in text, f"widget reported an error: {text}"
    return text


def assert_not_stretched(img, what):
    """A matplotlib figure sent as PNG must be shown at (at most) its own size, not stretched across the page."""
    wait_image_loaded(img)
    size = image_size(img)
    (nw, nh), (sw, sh) = size["natural"], size["shown"]
    assert nw > 100 and nh > 100, f"{what}: tiny image {size}"
    assert sw <= nw + 1 and sh <= nh + 1, f"{what} is stretched: {size}"


def output_text(page, needle: str) -> str:
    outs = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts() if needle in t]
    assert outs, f"no notebook output contains {needle!r}"
    return outs[0]


# -- 1. everything renders --------------------------------------------------------------------------------------
def test_dissection_widgets_render(dissect_page, shots):
    page = dissect_page
    check_no_cell_errors(page)

    summary = page.locator(".ganviz-summary").first
    assert_not_stretched(summary.locator("img.ganviz-summary-chart"), "summary chart")
    rows = summary.locator(".ganviz-summary-table tr")
    assert rows.count() > 10, "summary table has (almost) no unit rows"
    assert rows.nth(1).locator("td").count() == 3
    assert re.search(r"\d+ of \d+ units reach IoU", assert_status_ok(summary))
    shots(summary, "01_dissection_summary")

    grid = page.locator(".ganviz-grid").first
    strips = grid.locator(".ganviz-grid-rows > .widget-hbox")
    assert strips.count() == 6, "notebook 01 shows 6 units per page"
    for i in range(strips.count()):
        row = strips.nth(i)
        assert re.fullmatch(r"unit \d+: [\w ]+, IoU \d\.\d\d", row.locator(".widget-html").inner_text().strip())
        img = row.locator("img")
        wait_image_loaded(img)
        size = image_size(img)
        assert size["natural"][0] > 6 * 64 and size["shown"] == size["natural"], f"strip {i}: {size}"
    assert "units shown of" in assert_status_ok(grid)
    assert grid.locator(".ganviz-unit-select option").count() >= strips.count()
    shots(grid, "01_top_activation_grid")

    cam = page.locator(".ganviz-gradcam").first
    img = cam.locator("img.ganviz-gradcam-image")
    wait_image_loaded(img)
    size = image_size(img)
    assert size["natural"][0] > 2 * size["natural"][1] - 20, f"Grad-CAM shows image and overlay side by side: {size}"
    wait_text_contains(cam.locator(".ganviz-status"), "Grad-CAM for 'church'")
    shots(cam, "01_gradcam")
    shots(page, "01_page")
    for widget in (summary, grid, cam):
        assert not broken_images(widget), "broken-image icons shown"
    assert not [e for e in page.console_errors if "widget" in e.lower() or "Uncaught" in e], page.console_errors


def test_ablation_panel_renders(ablate_page, shots):
    page = ablate_page
    check_no_cell_errors(page)
    panel = page.locator(".ganviz-ablation").first
    wait_image_loaded(panel.locator("img.ganviz-ablation-image"))
    wait_text_contains(panel.locator(".ganviz-status"), "predicted")
    assert_status_ok(panel)
    bars = panel.locator(".ganviz-bars .widget-html-content > div")
    assert bars.count() == 5, "top-5 prediction bars"
    assert re.search(r"\d\.\d\d", bars.first.inner_text())
    units = [int(u) for u in re.findall(r"\d+", output_text(page, "units removed:").split("[")[1].split("]")[0])]
    sliders = panel.locator(".ganviz-unit-slider")
    assert sliders.count() == len(units), "one slider per unit found by find_flip"
    for i, u in enumerate(units):
        assert sliders.nth(i).locator(".widget-label").inner_text().startswith(f"unit {u}")
    # buttons show their whole caption
    for button in panel.locator("button.jupyter-button").all():
        assert button.evaluate("b => b.scrollWidth <= b.clientWidth + 1"), f"clipped: {button.inner_text()}"
    assert_not_stretched(panel.locator("img.ganviz-curve"), "sparsity curve")
    assert not broken_images(panel), "broken-image icons shown"
    shots(panel, "02_ablation_panel")


# -- 2. an ablation slider changes the prediction bars ------------------------------------------------------------
def test_ablation_slider_changes_bars(ablate_page, shots):
    page = ablate_page
    panel = page.locator(".ganviz-ablation").first
    bars, status = panel.locator(".ganviz-bars .widget-html-content"), panel.locator(".ganviz-status")
    wait_text_contains(status, "predicted")
    before_html, before_png = bars.inner_html(), bars.screenshot()
    flip = re.search(r"prediction: (\w+) -> (\w+)", output_text(page, "prediction:"))
    assert flip, "notebook 02 prints the flip"
    original, flipped = flip.groups()
    assert bars.inner_text().split()[0] == original

    sliders = panel.locator(".ganviz-unit-slider")
    units = []
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        units.append(int(re.match(r"unit (\d+)", slider.locator(".widget-label").inner_text()).group(1)))
        drag_slider_to(slider, 0.0, expect="0.00")       # a real mouse drag to the left end
    wait_text_contains(status, f"units removed: {units}")
    after_html = wait_html_change(bars, before_html)
    assert bars.inner_text().split()[0] == flipped, \
        f"removing units {units} in the browser should flip {original} to {flipped} as in the notebook"
    assert "intact" in bars.inner_text()
    assert bars.screenshot() != before_png
    shots(panel, "02_ablation_units_removed")

    # the keyboard moves the slider too: End = 3.0 (amplified), and the bars change again
    handle = sliders.first.locator(".noUi-handle")
    handle.focus()
    handle.press("End")
    wait_text_contains(sliders.first.locator(".widget-readout"), "3.00")
    wait_html_change(bars, after_html)

    # "Restore all units" brings back the intact prediction
    panel.get_by_role("button", name="Restore all units").click()
    wait_html_equal(bars, before_html)
    wait_text_contains(status, f"predicted {original}")


# -- 3. selecting a unit in the grid opens its details ------------------------------------------------------------
def test_grid_unit_selection_opens_details(dissect_page, shots):
    page = dissect_page
    grid = page.locator(".ganviz-grid").first
    select = grid.locator(".ganviz-unit-select select")
    title, images = grid.locator(".ganviz-detail-title"), grid.locator("img.ganviz-detail-images")
    plot = grid.locator("img.ganviz-detail-plot")
    options = select.locator("option").all_inner_texts()
    assert len(options) > 3
    current = select.evaluate("s => s.selectedIndex")
    old_images, old_plot = image_digest(images), image_digest(plot)
    for index in [i for i in (3, 1, 2) if i != current][:2]:
        label = options[index].replace("\xa0", " ")
        unit = int(re.match(r"unit (\d+):", label).group(1))
        srcs = images.get_attribute("src"), plot.get_attribute("src")
        select.select_option(index=index)
        text = wait_text_contains(title, f"unit {unit}:")
        assert "IoU" in text and "threshold" in text
        wait_src_change(images, srcs[0])
        wait_src_change(plot, srcs[1])
        wait_image_loaded(images)
        wait_image_loaded(plot)
        new_images, new_plot = image_digest(images), image_digest(plot)
        assert new_images != old_images, f"unit {unit}: detail images did not change"
        assert new_plot != old_plot, f"unit {unit}: detail plot did not change"
        old_images, old_plot = new_images, new_plot
        assert_not_stretched(plot, "unit detail plot")
    assert_status_ok(grid)
    shots(grid, "01_grid_unit_details")


# -- 4. Grad-CAM follows the class -------------------------------------------------------------------------------
def test_gradcam_switches_with_class(dissect_page, shots):
    page = dissect_page
    cam = page.locator(".ganviz-gradcam").first
    img, status = cam.locator("img.ganviz-gradcam-image"), cam.locator(".ganviz-status")
    select = cam.locator(".ganviz-class-select select")
    wait_text_contains(status, "Grad-CAM for 'church'")
    seen = {"church": image_digest(img)}
    for name in ("forest", "street"):
        src = img.get_attribute("src")
        select.select_option(label=name)
        wait_text_contains(status, f"Grad-CAM for '{name}'")
        wait_src_change(img, src)
        seen[name] = image_digest(img)
        shots(cam, f"01_gradcam_{name}")
    assert len(set(seen.values())) == 3, f"Grad-CAM image does not change with the class: {seen}"
    select.select_option(label="church")                 # same class, same picture
    wait_text_contains(status, "Grad-CAM for 'church'")
    assert image_digest(img) == seen["church"]
    assert_status_ok(cam)
