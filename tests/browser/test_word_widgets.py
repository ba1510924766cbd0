"""The word search widget in a real browser: examples/10 rendered by Voila, a word typed in Chromium."""
from __future__ import annotations

import re

import pytest

from voila_harness import broken_images, check_no_cell_errors, wait_image_loaded, wait_src_change, wait_text_contains

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]


def test_summary_shows_causal_checks(words_page, shots):
    check_no_cell_errors(words_page)
    summary = words_page.locator(".ganviz-summary").first
    assert summary.locator(".ganviz-summary-table th").nth(3).inner_text().strip() == "when off"
    assert re.search(r"p\(class\) [+-]\d+% when off", summary.locator(".ganviz-summary-table").inner_text())
    shots(summary, "10_summary_checks")


def test_typing_a_word_ranks_units_with_images_and_checks(words_page, shots):
    view = words_page.locator(".ganviz-words").first
    strip = view.locator("img.ganviz-words-strip")
    wait_image_loaded(strip)
    src = strip.get_attribute("src")
    box = view.locator(".ganviz-words-text input")
    box.fill("tree")
    box.press("Enter")
    status = view.locator(".ganviz-status")
    wait_text_contains(status, "'tree': the 3 units", timeout_s=60)
    wait_src_change(strip, src, timeout_s=60)
    wait_image_loaded(strip)
    table = view.locator(".ganviz-words-table").inner_text()
    assert table.count("tree: p(class)") == 3, table
    assert "\u26a0" not in status.inner_text() and not broken_images(view)
    shots(view, "10_word_search_tree")
