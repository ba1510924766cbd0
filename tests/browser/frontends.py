"""Notebooks in JupyterLab 4 and Notebook 7, not only Voila: open, run every cell, check what they show and say.

Widgets that render in Voila can still fail elsewhere ("Error displaying widget", a missing front-end extension).
Each front end runs in its own server on 127.0.0.1 over a copy of the notebook; :func:`check_notebook` runs all
cells from the Run menu in Chromium and checks that every cell ran without an error output, that the widget views
(including the paint canvas) are on the page, that outputs show pictures (no broken image, no figure repr) and
that no output says "Error displaying widget".  It then saves the notebook from the front end and compares the
text outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` with the committed ones (the check ``pytest
--nbval-lax`` makes), so the front-end run is also the notebook's test: its findings are asserted in its cells.
Last it drives one interaction per widget family with the mouse and keyboard, as a user would in that front
end: an ablation slider dragged to 0 (notebook 07: the panel recomputes without the unit), a paint stroke (04:
the canvas changes), a photo upload through the browser's file dialog (04: the kernel receives it and the canvas
answers in its status line) and a word typed into the word search (10: units ranked).

The notebooks are split over two test files (``test_frontends_*.py``), which pytest-xdist runs on different
workers; within a file JupyterLab runs a notebook first and computes what it computes, Notebook 7 then finds it in
the examples' ``.ganviz-cache`` (dissections, dictionaries, GAN experiments, inversions).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from voila_harness import (EXAMPLES, VoilaServer, broken_images, drag_on, drag_slider_to, wait_canvas_settled,
                           wait_text_contains)

# Both front ends of a notebook, JupyterLab first; FRONT_ENDS parametrizes the tests.  NO_WIDGETS shows pictures
# and no widget; CANVAS shows a paint canvas; DRIVE (below) maps a notebook to the interaction it drives.
FRONT_ENDS = [("lab", "lab/tree"), ("notebook", "notebooks")]
NO_WIDGETS = ("00_tour.ipynb",)
CANVAS = ("07_your_own_models.ipynb", "04_gan_paint.ipynb", "08_features_vs_units.ipynb", "06_edit_a_real_photo.ipynb")
CHECK_OUTPUT = "# NBVAL_CHECK_OUTPUT"


def jupyter(app: str) -> list[str]:
    exe = Path(sys.executable).with_name("jupyter")
    return [str(exe) if exe.exists() else "jupyter", app, "--ServerApp.token=", "--ServerApp.password=",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.disable_check_xsrf=True", "--allow-root"]


def run_all_cells(page, timeout_s: float = 1500) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        if prompts and all("*" not in p and p.strip() not in ("[ ]:", "[ ]") for p in prompts):
            return
        time.sleep(1)
    raise TimeoutError(f"cells still running or not run after {timeout_s:.0f} s: {prompts}")


def saved_notebook(page, path: Path, timeout_s: float = 60) -> dict:
    """Save the notebook from the front end (Ctrl+S, as a user would) and read the file it wrote."""
    before = path.stat().st_mtime_ns
    page.keyboard.press("Escape")            # command mode: the shortcut goes to the notebook, not a widget
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.stat().st_mtime_ns != before:
            try:
                return json.loads(path.read_text())
            except ValueError:                # still being written
                pass
        time.sleep(0.5)
    raise TimeoutError(f"{path.name} was not saved within {timeout_s:.0f} s of Ctrl+S")


def _text_outputs(cell: dict) -> tuple[str, list[str]]:
    """A code cell's printed text (streams joined, as a front end merges them) and its results' ``text/plain``."""
    def text(value) -> str:
        return "".join(value) if isinstance(value, list) else value

    streams = "".join(text(o["text"]) for o in cell.get("outputs", []) if o["output_type"] == "stream")
    results = [text(o["data"]["text/plain"]) for o in cell.get("outputs", [])
               if o["output_type"] in ("execute_result", "display_data") and "text/plain" in o.get("data", {})
               and "application/vnd.jupyter.widget-view+json" not in o["data"]]
    return streams, results


def output_mismatches(ran: dict, committed: dict) -> list[str]:
    """Cells marked ``# NBVAL_CHECK_OUTPUT`` whose text outputs differ from the committed notebook's, described."""
    problems = []
    for i, (new, old) in enumerate(zip(ran["cells"], committed["cells"])):
        source = "".join(old["source"]) if isinstance(old["source"], list) else old["source"]
        if old["cell_type"] == "code" and source.lstrip().startswith(CHECK_OUTPUT):
            if _text_outputs(new) != _text_outputs(old):
                problems.append(f"cell {i}: printed {_text_outputs(new)!r}, the committed notebook {_text_outputs(old)!r}")
    return problems


def check_notebook(app: str, path: str, notebook: str, browser_context, workdir: Path, tmp_path: Path, shots) -> None:
    """Run every cell of ``examples/notebook`` in front end ``app`` and check what it shows and prints (above)."""
    shutil.copy(EXAMPLES / notebook, workdir / notebook)
    # a fresh workspace: JupyterLab would reopen the notebooks of earlier runs (saved in ~/.jupyter) beside this one
    fresh = [f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"] if app == "lab" else []
    with VoilaServer(workdir, command=jupyter(app) + fresh) as server:
        page = browser_context.new_page()
        page.goto(f"{server.base}/{path}/{notebook}", timeout=120_000)
        page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
        page.locator(".jp-Notebook-cell").first.wait_for(timeout=60_000)
        time.sleep(3)  # the kernel starts
        run_all_cells(page)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                              ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
        assert not [e for e in errors if "Error" in e or "Traceback" in e], errors
        if notebook in CANVAS:
            page.locator("canvas").first.wait_for(timeout=60_000)   # the paint canvas (ipycanvas) rendered
        views = page.locator(".jp-OutputArea-output .jupyter-widgets, .jp-OutputArea-output .widget-box")
        assert views.count() >= (0 if notebook in NO_WIDGETS else 3)
        outputs = page.locator(".jp-Notebook").first
        text = outputs.inner_text()
        assert "Error displaying widget" not in text and "<Figure size" not in text
        assert not broken_images(outputs)
        assert outputs.locator(".jp-OutputArea-output img").count() >= 1  # pictures, not reprs
        committed = json.loads((EXAMPLES / notebook).read_text())
        mismatches = output_mismatches(saved_notebook(page, workdir / notebook), committed)
        assert not mismatches, "\n".join(mismatches)
        if notebook in DRIVE:
            DRIVE[notebook](page, tmp_path)
        shots(page, f"frontend_{app}_{notebook[:2]}")
        page.close()


def drive_slider(page, tmp_path) -> None:
    """Notebook 07: drag the ablation panel's first unit slider to 0; the panel recomputes without that unit."""
    import re

    panel = page.locator(".ganviz-ablation").first
    panel.scroll_into_view_if_needed()
    slider = panel.locator(".ganviz-unit-slider").first
    unit = int(re.match(r"unit (\d+)", slider.locator(".widget-label").inner_text()).group(1))
    drag_slider_to(slider, 0.0, expect="0.00")
    wait_text_contains(panel.locator(".ganviz-status").first, f"units removed: [{unit}]")


def drive_paint_and_upload(page, tmp_path) -> None:
    """Notebook 04: a stroke across the canvas changes its pixels; an uploaded PNG reaches the kernel (this canvas
    has no inverter, so it says what painting on a photo needs)."""
    from PIL import Image

    canvas = page.locator("canvas.ganviz-paint-canvas").first
    canvas.scroll_into_view_if_needed()
    before = wait_canvas_settled(canvas, None)
    box = canvas.bounding_box()
    drag_on(canvas, [(box["width"] * 0.2, box["height"] * 0.7), (box["width"] * 0.8, box["height"] * 0.7)])
    wait_canvas_settled(canvas, before, timeout_s=60)
    Image.new("RGB", (80, 60), (90, 140, 200)).save(tmp_path / "photo.png")
    with page.expect_file_chooser() as chooser:
        page.locator(".ganviz-paint-upload").first.click()
    chooser.value.set_files(str(tmp_path / "photo.png"))
    wait_text_contains(page.locator(".ganviz-paint > .ganviz-status").first, "needs GAN inversion")


def drive_word_search(page, tmp_path) -> None:
    """Notebook 10: a word typed in the word search ranks the units that respond to it."""
    view = page.locator(".ganviz-words").first
    view.scroll_into_view_if_needed()
    box = view.locator(".ganviz-words-text input")
    box.fill("tree")
    box.press("Enter")
    wait_text_contains(view.locator(".ganviz-status").first, "'tree': the 3 units", timeout_s=120)


DRIVE = {"07_your_own_models.ipynb": drive_slider, "04_gan_paint.ipynb": drive_paint_and_upload,
         "10_which_labels_can_you_trust.ipynb": drive_word_search}
