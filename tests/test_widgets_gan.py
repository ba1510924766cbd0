"""GAN widgets driven the way the front end drives them (canvas mouse events, buttons, uploads)."""
import io
import sys
import re
from datetime import datetime

import numpy as np
import pytest
import torch
from ipycanvas.canvas import COMMANDS
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
    view = PaintCanvas(gen, result, seed=3, scale=SCALE, concepts=["door", "wall", "sky"],
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
    scales = []
    monkeypatch.setattr(canvas.canvas, "put_image_data", lambda data, x=0, y=0: sent.append(data.copy()))
    monkeypatch.setattr(canvas.canvas, "scale", lambda x, y=None: scales.append((x, y)))
    manager = canvas.canvas._canvas_manager
    commands = []
    monkeypatch.setattr(manager, "_send_custom", lambda command, buffers=[]: commands.append(command[0]))
    manager._current_canvas = canvas.canvas
    canvas.canvas._handle_frontend_event(None, {"event": "client_ready"}, [])
    assert len(sent) == 1 and sent[0].shape == (32, 32, 4)  # the image at its own size: the canvas enlarges it
    assert commands[0] == COMMANDS["switchCanvas"]  # the browser's new canvas model is targeted again first
    assert np.array_equal(sent[0][..., :3], canvas.image)
    assert scales == [(SCALE, None)] and canvas.canvas.image_smoothing_enabled is False  # enlarged, crisp


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
        PaintCanvas(gen, result, inverter=Inverter(gen, layer="output"))
    view = PaintCanvas(gen, result, scale=SCALE, background=False,
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
        PaintCanvas(gen, result, concepts=["dragon"], background=False)
    with pytest.raises(ValueError, match="z_dim"):
        PaintCanvas(torch.nn.Sequential(gen.layer1, gen.output), result, background=False)


def test_switchboard_turns_units_off_over_every_sample(gen, result, tmp_path):
    board = UnitSwitchboard(gen, scene_segmenter, result, concept="wall", samples=4, n_units=3,
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
        UnitSwitchboard(gen, scene_segmenter, result, concept="dragon", background=False)


def test_where_can_it_go_shows_the_context(gen, result, tmp_path):
    view = WhereCanItGo(gen, scene_segmenter, result, concept="door", seed=3, n_units=1, level_quantile=0.99, cells=1,
                        background=False)
    assert view.map.rate_in("wall") == 1.0 and view.map.rate_in("sky") == 0.0
    assert "100% of wall locations" in view.readout.value and "0% of sky locations" in view.readout.value
    assert Image.open(view.save(tmp_path / "where.png")).size[0] > 64


def test_colab_gets_its_custom_widget_manager_once_where_a_widget_is_built(monkeypatch, gen, result):
    import importlib
    import types

    import ganviz.widgets as widgets
    from ganviz.widgets import _base

    calls = []
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(1))
    monkeypatch.setattr(_base, "_colab_enabled", None)
    assert _base.enable_colab_widgets() is False and calls == []  # not on Colab: nothing happens
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    importlib.reload(widgets)  # importing the widgets does nothing by itself
    assert calls == []
    WhereCanItGo(gen, scene_segmenter, result, concept="door", n_units=1, cells=1, background=False)
    PaintCanvas(gen, result, scale=SCALE, background=False)
    assert calls == [1] and _base.enable_colab_widgets() is True  # switched on once, by the first widget


# -- the adapter is the model protocol ----------------------------------------------------------------------------
class _NoZDim(torch.nn.Sequential):
    """SceneGenerator's layers without a z_dim attribute."""

    def __init__(self, gen):
        super().__init__()
        self.layer1, self.output = gen.layer1, gen.output


def test_widgets_take_an_adapter_or_a_bare_module_with_hints(gen, result):
    from ganviz.adapters import GeneratorAdapter, as_generator

    adapter = as_generator(gen)
    assert isinstance(adapter, GeneratorAdapter) and adapter.z_dim == 3 and adapter.resolution == 32
    assert adapter.output_range == (-1.0, 1.0) and as_generator(adapter) is adapter
    bare = PaintCanvas(gen, result, seed=3, scale=SCALE, background=False)
    through = PaintCanvas(adapter, result, seed=3, scale=SCALE, background=False)
    assert np.array_equal(bare.image, through.image)
    anonymous = _NoZDim(gen)
    with pytest.raises(ValueError, match="z_dim"):
        PaintCanvas(anonymous, result, background=False)
    hinted = PaintCanvas(anonymous, result, z_dim=3, seed=3, scale=SCALE, background=False)
    assert np.array_equal(hinted.image, bare.image) and not hasattr(anonymous, "z_dim")  # no monkeypatching
    wrapped = GeneratorAdapter(anonymous, 3, 32, ["layer1"])
    assert not hasattr(anonymous, "z_dim") and as_generator(wrapped, output_range=(0, 1)).output_range == (0.0, 1.0)
    board = UnitSwitchboard(wrapped, scene_segmenter, result, concept="wall", samples=2, n_units=2,
                            background=False)
    assert board.last_error is None and board.z.shape == (2, 3)


# -- colours by concept name ----------------------------------------------------------------------------------------
VOC = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
ADE = tuple(f"ade-{i}" for i in range(150))


def _renamed_dissection(gen, names, where):
    """SceneGenerator's layer1 dissected with its segmenter's 4 labels moved to indices ``where`` of ``names``."""
    lookup = torch.tensor(where)

    def segmenter(images):
        return lookup[scene_segmenter(images)]

    return ganviz.dissect_generator(gen, "layer1", segmenter, n=200, concept_names=names, progress=False)


@pytest.mark.parametrize("names, where", [(VOC, [0, 5, 19, 20]), (ADE, [0, 40, 99, 149])],
                         ids=["21 concepts", "150 concepts"])
def test_painting_with_other_vocabularies_uses_colours_by_name(gen, names, where):
    from ganviz.imaging import concept_color

    result = _renamed_dissection(gen, names, where)
    door = names[where[3]]  # index 20 or 149: past the 16 toy-world colours
    view = PaintCanvas(gen, result, seed=3, scale=SCALE, background=False)
    assert door in view.concept.options  # the palette comes from the dissection's labels
    view.concept.value = door
    _drag(view, [(2, 4), (6, 4), (12, 4)])
    assert view.last_error is None and len(view.painter.strokes) == 1 and view.state.strokes == 1
    assert view.canvas.fill_style == "rgba({},{},{},0.5)".format(*concept_color(door))
    assert view.image[..., 0].max() == 255  # the door was painted


def test_concept_colours_are_stable_toy_for_toy_names_and_distinct_for_others():
    from ganviz.imaging import concept_color
    from ganviz.toyworld import CONCEPTS, LABEL_COLORS

    assert [concept_color(c) for c in CONCEPTS] == [tuple(c) for c in LABEL_COLORS]
    colours = [concept_color(n) for n in ADE + VOC]
    assert len(set(colours)) == len(colours) and colours == [concept_color(n) for n in ADE + VOC]
    assert all(0 <= v <= 255 and isinstance(v, int) for c in colours for v in c)


# -- uploads and the declared view state ----------------------------------------------------------------------------
def test_one_upload_path_copes_with_older_front_ends(canvas):
    import traitlets

    from ganviz.widgets._base import uploaded_file

    photo = _png(np.full((40, 50, 3), 128, np.uint8))
    assert uploaded_file(()) is None and uploaded_file({}) is None
    assert uploaded_file(({"name": "a.png", "content": memoryview(photo)},)) == (photo, "a.png")
    assert uploaded_file(({"type": "image/png", "content": memoryview(photo)},)) == (photo, "the upload")
    assert uploaded_file({"b.png": {"metadata": {"name": "b.png"}, "content": photo}}) == (photo, "b.png")
    assert uploaded_file({"c.png": {"content": photo}}) == (photo, "c.png")

    class OldUpload(traitlets.HasTraits):  # an ipywidgets 7 front end: a dict of name -> metadata and content
        value = traitlets.Any()

    old = OldUpload()
    canvas.watch_upload(old, canvas._take_upload)
    old.value = {"d.png": {"metadata": {"name": "d.png", "type": "image/png"}, "content": photo}}
    assert canvas.last_error is None and "d.png is a valid 32x32 image" in canvas.status.value
    old.value = ({"type": "image/png", "content": memoryview(b"not a picture")},)
    assert isinstance(canvas.last_error, ValueError) and "not an image" in canvas.status.value


def test_view_state_is_declared_observable_and_linkable(gen, result):
    import traitlets

    a = PaintCanvas(gen, result, concepts=["door", "wall", "sky"], scale=SCALE, background=False)
    b = PaintCanvas(gen, result, concepts=["door", "wall", "sky"], scale=SCALE, background=False)
    assert a.state.trait_metadata("concept", "help") and a.state.palette == ["door", "wall", "sky"]
    seen = []
    a.state.observe(lambda c: seen.append(c["new"]), names="strokes")
    traitlets.link((a.state, "concept"), (b.state, "concept"))
    a.concept.value = "wall"  # the control drives the state, the link the other view's control
    assert b.concept.value == "wall" and b.state.concept == "wall"
    b.state.concept = "sky"
    assert a.concept.value == "sky"
    with pytest.raises(traitlets.TraitError, match="palette"):
        a.state.concept = "tree"
    a.stroke([(2, 4), (12, 4)], "door")
    a.wait()
    assert seen == [1] and a.state.strokes == 1 and a.state.seed == 0
    a.undo()
    a.wait()
    assert seen == [1, 0]
    board = UnitSwitchboard(gen, scene_segmenter, result, concept="wall", samples=2, n_units=2, background=False)
    board.state.concept = "sky"
    assert board.concept.value == "sky" and set(board.state.scales) == set(board.scales)
    with pytest.raises(traitlets.TraitError, match="no concept"):
        board.state.concept = "dragon"
