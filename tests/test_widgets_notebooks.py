"""No saved widget state in the shipped notebooks (tools/strip_notebooks.py removes it, keeping the outputs the front-end tests compare)."""
import importlib.util
import re
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "examples").glob("*.ipynb")) + sorted((REPO / "ganviz" / "apps").glob("*.ipynb"))


def _tool():
    spec = importlib.util.spec_from_file_location("strip_notebooks", REPO / "tools" / "strip_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_carry_no_widget_state(path):
    tool = _tool()
    text = path.read_text(encoding="utf-8")
    assert tool.widget_state(json.loads(text)) == [], f"run: python tools/strip_notebooks.py {path.relative_to(REPO)}"
    assert tool.dumps(tool.strip(json.loads(text))) == text, f"run: python tools/strip_notebooks.py {path.name}"


def test_examples_stay_small():
    # ten notebooks, each saved with its pictures (static pictures of the widgets, at most 800x600; PNGs in a
    # 256-colour palette): the bar is 1.5 MB
    total = sum(p.stat().st_size for p in (REPO / "examples").iterdir() if p.is_file())
    assert total < 1.5e6, f"examples/ holds {total / 1e6:.2f} MB; run python tools/strip_notebooks.py examples/*.ipynb"


def test_stripping_keeps_the_checked_outputs():
    tool = _tool()
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb = {"cells": [{"cell_type": "code", "source": "# NBVAL_CHECK_OUTPUT\nprint(1)", "metadata": {},
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"},
                                 {"output_type": "display_data", "metadata": {},
                                  "data": {"text/plain": "VBox(...)",
                                           "application/vnd.jupyter.widget-view+json": view}}]}],
          "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}},
          "nbformat": 4, "nbformat_minor": 5}
    assert tool.widget_state(nb) == ["metadata.widgets", "cell 0 output"]
    out = tool.strip(nb)
    assert tool.widget_state(out) == [] and "widgets" not in out["metadata"]
    assert out["cells"][0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "1\n"},
                                          {"output_type": "display_data", "metadata": {},
                                           "data": {"text/plain": "VBox(...)"}}]


REPR = re.compile(r"<Figure size|VBox\(|HBox\(|Image\(value=b|Error displaying widget")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_saved_outputs_show_pictures_not_reprs(path):
    """Opened without a kernel (GitHub, nbviewer), a notebook shows its saved outputs: pictures, not reprs."""
    import base64

    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"cell {i} saved an error"
            data = out.get("data", {})
            text = "".join(data.get("text/plain", []))
            if "image/png" in data:
                assert base64.b64decode(data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n", f"cell {i}: broken PNG"
            elif "image/jpeg" in data:
                assert base64.b64decode(data["image/jpeg"])[:2] == b"\xff\xd8", f"cell {i}: broken JPEG"
            else:
                assert not REPR.search(text), f"cell {i} shows a repr instead of a picture: {text[:80]}"


def test_static_pictures_are_jpeg_only_where_that_pays():
    import numpy as np

    from ganviz.widgets._base import static_picture

    from ganviz.imaging import png_bytes
    from ganviz.widgets._base import STATIC_MAX_PNG, STATIC_SMALL_PNG

    rng = np.random.default_rng(0)  # a smooth, slightly noisy picture: a PNG of middling size, a small JPEG
    y, x = np.mgrid[0:160, 0:200] / 20.0
    smooth = np.stack([np.sin(x + y), np.cos(x * 0.7 - y), np.sin(x * y / 10)], -1)
    photo = np.clip(127 + 100 * smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    assert STATIC_SMALL_PNG < len(png_bytes(photo)) < STATIC_MAX_PNG  # the band where the rule decides
    chart = np.full((300, 400, 3), 255, np.uint8)
    chart[50:250:10, 40:360] = (30, 60, 200)  # lines on white: PNG is small and sharp
    assert set(static_picture(photo)) == {"image/jpeg"}
    assert set(static_picture(chart)) == {"image/png"}
