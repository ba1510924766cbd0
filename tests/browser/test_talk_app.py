"""The lecture app in a real browser: ``ganviz talk`` served by Voila, every section walked with Next in Chromium.

Each section must show its heading, a widget with a picture, and a measured number with a digit in it; no widget
may fail to render.  The static deck (``Talk.export``) is opened in Chromium too.  Screenshots of every section
land in build/screenshots/ (or $GANVIZ_SCREENSHOTS).
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from ganviz.apps.talk import SECTIONS, Section, Talk
from _factories import flat_view
from voila_harness import REPO, VoilaServer, broken_images, open_notebook, wait_text_contains

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]


def talk_command() -> list[str]:
    exe = Path(sys.executable).with_name("ganviz")
    return [str(exe) if exe.exists() else shutil.which("ganviz") or "ganviz", "talk"]


def test_every_section_shows_its_widget_and_number(browser_context, shots):
    with VoilaServer(REPO, command=talk_command()) as server:
        page = open_notebook(browser_context, server.base + "/", [".ganviz-talk"])
        talk = page.locator(".ganviz-talk").first
        number = page.locator(".ganviz-talk-number").first
        for i, section in enumerate(SECTIONS):
            if i:
                talk.get_by_role("button", name="Next").click()
            wait_text_contains(talk, f"{i + 1}. {section.title}", timeout_s=120)
            text = wait_text_contains(number, "Measured:", timeout_s=300)
            assert re.search(r"\d", text) or section.key == "omission", (section.key, text)
            pictures = talk.locator("img, canvas")
            assert pictures.count() >= 1, section.key
            assert not broken_images(talk), section.key
            assert "Error displaying widget" not in talk.inner_text(), section.key
            shots(page, f"talk_{i + 1:02d}_{section.key}")
        assert not [e for e in page.console_errors if "widget" in e.lower()], page.console_errors
        page.close()


def test_the_exported_deck_opens_with_every_picture(browser_context, tmp_path):
    sections = [Section(k, k.title(), "claim", lambda m, v=v: (flat_view(v), f"number {v}"))
                for k, v in (("one", 40), ("two", 200))]
    deck = Talk(sections, models=object()).export(tmp_path / "deck.html")
    page = browser_context.new_page()
    page.goto(deck.as_uri())
    shown = page.locator("section.on")
    assert "One" in shown.inner_text() and "number 40" in shown.inner_text()
    page.keyboard.press("ArrowRight")
    assert "number 200" in page.locator("section.on").inner_text()
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert sizes == [[True, 64], [True, 64]]
    page.close()
