"""Notebooks in JupyterLab 4 and Notebook 7, not only Voila: open, run every cell, and find every widget view.

Widgets that render in Voila can still fail elsewhere ("Error displaying widget", a missing front-end extension).
Each front end runs in its own server on 127.0.0.1 over a copy of the notebook; the test runs all cells from the
Run menu in Chromium and checks that every cell ran without an error output, that the widget views (including
the paint canvas) are on the page, and that no output says "Error displaying widget".
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from voila_harness import EXAMPLES, VoilaServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

# notebook -> whether it shows a paint canvas; the three that run in about a minute and between them show every
# widget family (the GAN side on a ProGAN file, GAN Paint on the bundled GAN, the classifier's ablation sliders)
NOTEBOOKS = {"07_your_own_models.ipynb": True, "04_gan_paint.ipynb": True, "02_ablate_units.ipynb": False}


def jupyter(app: str) -> list[str]:
    exe = Path(sys.executable).with_name("jupyter")
    return [str(exe) if exe.exists() else "jupyter", app, "--ServerApp.token=", "--ServerApp.password=",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.disable_check_xsrf=True", "--allow-root"]


def run_all_cells(page, timeout_s: float = 400) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        if prompts and all("*" not in p and p.strip() not in ("[ ]:", "[ ]") for p in prompts):
            return
        time.sleep(1)
    raise TimeoutError(f"cells still running or not run after {timeout_s:.0f} s: {prompts}")


@pytest.mark.parametrize("notebook", list(NOTEBOOKS))
@pytest.mark.parametrize("app,path", [("lab", "lab/tree"), ("notebook", "notebooks")])
def test_a_notebook_runs_and_shows_its_widgets(app, path, notebook, browser_context, tmp_path, shots):
    shutil.copy(EXAMPLES / notebook, tmp_path / notebook)
    with VoilaServer(tmp_path, command=jupyter(app)) as server:
        page = browser_context.new_page()
        page.goto(f"{server.base}/{path}/{notebook}", timeout=120_000)
        page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
        page.locator(".jp-Notebook-cell").first.wait_for(timeout=60_000)
        time.sleep(3)  # the kernel starts
        run_all_cells(page)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                              ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
        assert not [e for e in errors if "Error" in e or "Traceback" in e], errors
        if NOTEBOOKS[notebook]:
            page.locator("canvas").first.wait_for(timeout=60_000)   # the paint canvas (ipycanvas) rendered
        views = page.locator(".jp-OutputArea-output .jupyter-widgets, .jp-OutputArea-output .widget-box")
        assert views.count() >= 3
        assert "Error displaying widget" not in page.locator(".jp-Notebook").first.inner_text()
        shots(page, f"frontend_{app}_{notebook[:2]}")
        page.close()
