"""Inversion widgets driven like the front end: target/reconstruction/difference, progress, stop, uploads, grid."""
import time
from datetime import datetime

import numpy as np
import pytest
import torch

from ganviz.imaging import to_uint8
from ganviz.inversion import Inverter
from ganviz.trace import count_hooks
from ganviz.widgets import InversionGrid, InversionView, PaintCanvas

from _factories import SCENE_CONCEPTS, SceneGenerator, scene_dissection, scene_segmenter
from _uploads import converted, good_png, refused


@pytest.fixture()
def gen():
    return SceneGenerator()


def _target(gen):
    """Wall on the left, sky on the right, and a red 'door' patch in the sky, which this generator cannot make."""
    image = to_uint8(gen(torch.tensor([[0.0, 0.0, 0.0]]))[0], (-1, 1)).copy()
    image[4:10, 20:26] = (255, 0, 0)
    return image


def _view(gen, steps=30, **kw):
    return InversionView(Inverter(gen, steps=steps, lr=0.1), segmenter=scene_segmenter,
                         concept_names=SCENE_CONCEPTS, background=False, **kw)


def _upload(view, data, name="photo.png"):
    view.upload.value = ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
                          "last_modified": datetime.now()},)


def test_inverting_shows_reconstruction_difference_loss_and_what_is_missing(gen):
    view = _view(gen, target=_target(gen))
    view.run()
    view.wait()
    result = view.result
    assert view.last_error is None and result is not None and result.steps == 30
    assert view.recon_image.value and view.diff_image.value and bytes(view.plot.value).startswith(b"\x89PNG")
    assert view.progress.value == 30 and f"PSNR {result.psnr:.1f} dB" in view.status.value
    assert view.lost_concepts() == ["door"] and "door" in view.missing.value
    recon = to_uint8(result.image[0], (-1, 1))
    assert (recon[4:10, 20:26] != (255, 0, 0)).any(axis=-1).all()  # the patch is what it could not reproduce
    shown = view.render()
    assert shown.shape[1] > 3 * 32 * 3 and not view.run_button.disabled and view.stop_button.disabled
    assert view.state.result is result and view.state.running is False
    assert count_hooks(gen) == 0


def test_stop_ends_a_long_inversion_with_the_best_so_far(gen):
    view = InversionView(Inverter(gen, steps=1_000_000), target=_target(gen), background=True)
    view.run()
    time.sleep(0.5)
    assert view.stop_button.disabled is False and view.run_button.disabled is True
    view.stop()
    assert view.wait(30)
    assert view.result.interrupted and 0 < view.result.steps < 1_000_000
    assert "stopped early" in view.status.value and view.last_error is None


def test_uploads_get_clear_messages_and_odd_formats_are_converted(gen):
    view = _view(gen)
    for name, (data, message) in refused().items():
        _upload(view, data, name)
        assert isinstance(view.last_error, ValueError), name
        assert __import__("re").search(message, view.status.value), (name, view.status.value)
    view.last_error = None
    for name, (data, note) in converted().items():
        _upload(view, data, name)
        view.wait()
        assert view.last_error is None and view.result is not None and view.target.shape == (32, 32, 3), name
    _upload(view, good_png((300, 200)), "wide.png")
    view.wait()
    assert view.last_error is None and view.result.target.shape == (1, 3, 32, 32)


def test_a_finished_inversion_reaches_a_paint_canvas(gen):
    canvas = PaintCanvas(gen, scene_dissection(gen), scale=4, background=False)
    view = InversionView(Inverter(gen, layer="layer1", steps=5, layer_steps=40, layer_lr=0.1),
                         target=_target(gen), background=False)
    view.on_result(canvas.painter.set_inversion)
    view.on_result(lambda r: canvas.refresh())
    view.run()
    view.wait()
    canvas.wait()
    assert canvas.painter.inversion is view.result
    assert np.array_equal(canvas.image, to_uint8(view.result.image[0], (-1, 1)))


def test_bad_targets_and_settings_are_refused(gen):
    view = _view(gen)
    with pytest.raises(ValueError, match="no target"):
        view.run()
    with pytest.raises(ValueError, match="32x32"):
        view.set_target(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        view.set_target(np.zeros((32, 32, 3), np.float32))


def test_grid_names_per_image_what_the_reconstruction_lost(gen):
    plain = to_uint8(gen(torch.tensor([[2.0, 0.0, 0.0]]))[0], (-1, 1))  # a door on the wall: reproducible
    images = np.stack([_target(gen), plain, _target(gen)])
    grid = InversionGrid(Inverter(gen, steps=40, lr=0.1), images, scene_segmenter, SCENE_CONCEPTS,
                         background=False)
    grid.wait()
    assert grid.last_error is None and len(grid.rows.children) == 3 and grid.progress.value == 3
    assert grid.lost[0] == ["door"] and grid.lost[2] == ["door"] and "door" not in grid.lost[1]
    assert "missing: door" in grid.rows.children[0].children[1].value
    assert grid.render().shape[0] > 3 * 32 * 2
    with pytest.raises(ValueError, match="no images"):
        InversionGrid(Inverter(gen), np.zeros((0, 32, 32, 3), np.uint8), scene_segmenter, SCENE_CONCEPTS)


def test_before_any_target_the_pictures_are_blank_not_broken(gen):
    view = _view(gen)
    for image in (view.target_image, view.recon_image, view.diff_image, view.plot):
        assert bytes(image.value).startswith(b"\x89PNG")
    assert "upload an image" in view.status.value


def test_a_generator_adapter_brings_its_own_inverter(gen):
    from ganviz.adapters import as_generator

    view = InversionView(as_generator(gen), background=False)
    assert view.inverter.layer == "layer1" and view.inverter.finetune_steps == 300 and view.finetune.value
    assert view.target_image.layout.width == "192px" and view.state.result is None
    with pytest.raises(TypeError, match="Inverter"):
        InversionView(gen)
