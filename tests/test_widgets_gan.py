"""GAN widgets driven the way the front end drives them (canvas mouse events, buttons, uploads)."""
import io
import sys
import re
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image

import ganviz
from ganviz.inversion import Inverter
from ganviz.trace import count_hooks
from ganviz.widgets import PaintCanvas, UnitSwitchboard, WhereCanItGo

from _factories import SceneGenerator, scene_dissection, scene_segmenter
from _uploads import refused

SCALE = 4


@pytest.fixture(scope="module")
def gen():
    return SceneGenerator()


@pytest.fixture(scope="module")
def result(gen):
    return scene_dissection(gen)


@pytest.fixture
def canvas(gen, result):
    # seed 3 draws z0 < 0: no door as generated
    view = PaintCanvas(gen, "layer1", result, seed=3, scale=SCALE, concepts=["door", "wall", "sky"],
                       strengths={"low": 1, "high": 3}, background=False)
    assert view.painter.original()[..., 0].max() == 0
    return view


def _mouse(view, event, x, y):
    view.canvas._handle_frontend_event(None, {"event": event, "x": x * SCALE, "y": y * SCALE}, [])


def _drag(view, points):
    _mouse(view, "mouse_down", *points[0])
    for p in points[1:]:
        _mouse(view, "mouse_move", *p)
    _mouse(view, "mouse_up", *points[-1])
    view.wait()


def test_a_drag_paints_inside_the_stroke_and_undo_reset_restore(canvas):
    original = canvas.image.copy()
    canvas.concept.value = "door"
    canvas.brush.value = 3
    _drag(canvas, [(2, 4), (6, 4), (12, 4)])
    assert len(canvas.painter.strokes) == 1 and canvas.last_error is None
    changed = np.abs(canvas.image.astype(int) - original).sum(-1) > 0
    inside = np.zeros_like(changed)
    inside[:8, :16] = True
    assert changed[inside].mean() > 0.3 and not changed[~inside].any()
    canvas.mode.value = "remove"
    canvas.concept.value = "wall"
    _drag(canvas, [(4, 26), (8, 26)])
    assert len(canvas.painter.strokes) == 2
    canvas.undo_button.click()
    canvas.wait()
    assert len(canvas.painter.strokes) == 1 and canvas.image[..., 0].max() == 255
    canvas.reset_button.click()
    canvas.wait()
    assert np.array_equal(canvas.image, original)
    assert "1 stroke" not in canvas.status.value and count_hooks(canvas.painter.generator) == 0


def test_moves_without_a_press_do_nothing_and_leaving_the_canvas_ends_a_stroke(canvas):
    _mouse(canvas, "mouse_move", 5, 5)
    _mouse(canvas, "mouse_up", 5, 5)
    assert canvas.painter.strokes == []
    _mouse(canvas, "mouse_down", 2, 2)
    _mouse(canvas, "mouse_move", 8, 2)
    _mouse(canvas, "mouse_out", 40, 2)
    canvas.wait()
    assert len(canvas.painter.strokes) == 1


def test_a_drag_burst_ends_showing_the_final_stroke(canvas):
    canvas.concept.value = "door"
    _mouse(canvas, "mouse_down", 1, 1)
    for x in range(1, 16):
        _mouse(canvas, "mouse_move", x, 1 + x % 3)
    _mouse(canvas, "mouse_up", 15, 1)
    canvas.wait()
    assert np.array_equal(canvas.image, canvas.painter.image())


def test_a_browser_connecting_late_gets_the_image_again(canvas, monkeypatch):
    sent = []
    monkeypatch.setattr(canvas.canvas, "put_image_data", lambda data, x=0, y=0: sent.append(data.copy()))
    canvas.canvas._canvas_manager._current_canvas = canvas.canvas
    canvas.canvas._handle_frontend_event(None, {"event": "client_ready"}, [])
    assert len(sent) == 1 and sent[0].shape == (32 * SCALE, 32 * SCALE, 4)
    assert canvas.canvas._canvas_manager._current_canvas is None  # the next command re-targets this canvas
    assert np.array_equal(sent[0][::SCALE, ::SCALE, :3], canvas.image)


def _png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _upload(view, data, name="photo.png"):
    view.upload.value = ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                          "last_modified": datetime.now()},)


def test_uploads_get_clear_messages_and_a_handler_inverts(canvas, gen, result):
    for name, (data, message) in refused().items():  # the documented list of bad uploads
        _upload(canvas, data, name)
        assert isinstance(canvas.last_error, ValueError) and re.search(message, canvas.status.value), name
    photo = _png(np.full((40, 50, 3), 128, np.uint8))
    _upload(canvas, photo)
    assert "needs GAN inversion" in canvas.status.value
    with pytest.raises(ValueError, match="layer"):
        PaintCanvas(gen, "layer1", result, inverter=Inverter(gen, layer="output"))
    view = PaintCanvas(gen, "layer1", result, scale=SCALE, background=False,
                       inverter=Inverter(gen, layer="layer1", steps=5, layer_steps=20))
    _upload(view, photo)
    view.wait()
    assert view.last_error is None and "reconstructed at PSNR" in view.status.value
    assert view.photo.shape == (32, 32, 3) and view.painter.inversion.layer == "layer1"
    assert np.array_equal(view.image, view.painter.original()) and view.render().shape[1] > 3 * 32 * 4


def test_new_sample_and_save(canvas, tmp_path):
    before = canvas.image.copy()
    seed = next(s for s in range(100) if torch.randn(1, 3, generator=torch.Generator().manual_seed(s))[0, 0] > 1.2)
    canvas.seed.value = seed  # a sample with a door
    canvas.new_button.click()
    canvas.wait()
    assert not np.array_equal(before, canvas.image)
    size = Image.open(canvas.save(tmp_path / "paint.png")).size
    assert size == (32 * 4 * 2 + 8, 32 * 4)


def test_paint_canvas_rejects_what_it_cannot_paint(gen, result):
    with pytest.raises(KeyError, match="unknown concepts"):
        PaintCanvas(gen, "layer1", result, concepts=["dragon"], background=False)
    with pytest.raises(ValueError, match="z_dim"):
        PaintCanvas(torch.nn.Sequential(gen.layer1, gen.output), "layer1", result, background=False)


def test_switchboard_turns_units_off_over_every_sample(gen, result, tmp_path):
    board = UnitSwitchboard(gen, "layer1", scene_segmenter, result, concept="wall", samples=4, n_units=3,
                            background=False)
    assert "wall" in board.readout.value and "0 units off" in board.readout.value
    board.all_off.click()
    board.wait()
    assert "(-100%)" in board.readout.value and board.after.sum() == 0
    board.all_on.click()
    board.wait()
    assert "%)" not in board.readout.value and board.after.sum() > 0
    board.ranking.value = "effect"
    board.wait()
    first = board.switches.children[0].children[0]
    assert first.description == "unit 1" and "area drop 1.000" in board.switches.children[0].children[2].value
    assert Image.open(board.save(tmp_path / "board.png")).size[0] > 64
    with pytest.raises(KeyError, match="no concept"):
        UnitSwitchboard(gen, "layer1", scene_segmenter, result, concept="dragon", background=False)


def test_where_can_it_go_shows_the_context(gen, result, tmp_path):
    view = WhereCanItGo(gen, "layer1", scene_segmenter, result, concept="door", seed=3, n_units=1, q=0.99, cells=1,
                        background=False)
    assert view.map.rate_in("wall") == 1.0 and view.map.rate_in("sky") == 0.0
    assert "100% of wall locations" in view.readout.value and "0% of sky locations" in view.readout.value
    assert Image.open(view.save(tmp_path / "where.png")).size[0] > 64


def test_colab_gets_its_custom_widget_manager(monkeypatch):
    import types

    import ganviz.widgets as widgets

    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(1))
    colab = types.ModuleType("google.colab")
    colab.output = output
    assert widgets._enable_colab_widgets() is False and calls == []  # not on Colab: nothing happens
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert widgets._enable_colab_widgets() is True and calls == [1]
