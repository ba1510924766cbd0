"""Fixtures for the real-browser tests: Voila on 127.0.0.1 serving examples/, Debian's Chromium via Playwright.

Each example notebook is rendered once per session (the first render dissects 2000 images; later ones use
examples/.ganviz-cache).  Screenshots go to build/screenshots/ or $GANVIZ_SCREENSHOTS.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_factories.py

from voila_harness import EXAMPLES, VoilaServer, launch, open_notebook, screenshot_content, screenshot_dir


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the example notebooks in Voila with a real Chromium")


@pytest.fixture(scope="session")
def voila():
    with VoilaServer(EXAMPLES) as server:
        yield server


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = launch(p, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture(scope="session")
def frontend_workdir(tmp_path_factory):
    """One folder for the JupyterLab and Notebook 7 runs of a test file, whose ``.ganviz-cache`` is the examples'
    own: what one run of a notebook computed (dissections, dictionaries, inversions) the next finds."""
    folder = tmp_path_factory.mktemp("frontends")
    cache = EXAMPLES / ".ganviz-cache"
    cache.mkdir(exist_ok=True)
    (folder / ".ganviz-cache").symlink_to(cache, target_is_directory=True)
    return folder


@pytest.fixture(scope="session")
def shots():
    """``shots(locator_or_page, name)`` saves a PNG screenshot and returns its path."""
    folder = screenshot_dir()

    def save(target, name: str):
        path = folder / f"{name}.png"
        if hasattr(target, "goto"):          # a Page: the viewport
            target.screenshot(path=str(path))
        else:
            screenshot_content(target, path)
        return path

    return save


def _notebook(voila, context, name, ready):
    try:
        page = open_notebook(context, voila.url(name), ready)
    except Exception as err:
        raise RuntimeError(f"{name} did not render in Voila: {err}\n--- voila log ---\n{voila.log_tail()}") from err
    return page


@pytest.fixture(scope="session")
def dissect_page(voila, browser_context):
    """examples/01_dissect_a_classifier.ipynb rendered, with its summary, grid and Grad-CAM widgets shown."""
    page = _notebook(voila, browser_context, "01_dissect_a_classifier.ipynb",
                     [".ganviz-summary .ganviz-summary-chart", ".ganviz-grid .ganviz-grid-rows img",
                      ".ganviz-gradcam .ganviz-gradcam-image"])
    yield page
    page.close()


@pytest.fixture(scope="session")
def ablate_page(voila, browser_context):
    """examples/02_ablate_units.ipynb rendered, with the ablation panel and its unit sliders shown."""
    page = _notebook(voila, browser_context, "02_ablate_units.ipynb",
                     [".ganviz-ablation .ganviz-bars", ".ganviz-ablation .ganviz-unit-slider .noUi-handle",
                      ".ganviz-ablation .ganviz-curve"])
    yield page
    page.close()


@pytest.fixture(scope="session")
def features_page(voila, browser_context):
    """examples/08_features_vs_units.ipynb rendered: every widget on features of a basis (SAEs on the toy GAN's
    layer4 and the toy classifier's conv5_3)."""
    page = _notebook(voila, browser_context, "08_features_vs_units.ipynb",
                     [".ganviz-summary .ganviz-summary-chart", ".ganviz-switchboard .ganviz-unit-switches button",
                      ".ganviz-where img.ganviz-where-image", "canvas.ganviz-paint-canvas",
                      ".ganviz-grid .ganviz-grid-rows img", ".ganviz-ablation .ganviz-unit-slider .noUi-handle",
                      ".ganviz-gradcam .ganviz-gradcam-image"])
    yield page
    page.close()


@pytest.fixture(scope="session")
def words_page(voila, browser_context):
    """examples/10_which_labels_can_you_trust.ipynb rendered: the causal-check summary and two WordSearch views."""
    page = _notebook(voila, browser_context, "10_which_labels_can_you_trust.ipynb",
                     [".ganviz-summary .ganviz-summary-chart", ".ganviz-words img.ganviz-words-strip"])
    yield page
    page.close()
