"""Widgets under repeated use: rebuilt rows are closed, bad unit indices get clear errors."""
import numpy as np
import pytest
from ipywidgets.widgets import widget as widget_module

import ganviz
from ganviz.widgets import AblationPanel
from _factories import classifier

CLASSES = list(ganviz.SCENE_CLASSES)


@pytest.fixture(scope="module")
def panel():
    return AblationPanel(classifier(), ganviz.ToyWorldSource(4, seed=2), layer="conv5_3", class_names=CLASSES,
                         units=[0, 1, 2], background=False)


def test_rebuilding_unit_rows_does_not_pile_up_widgets(panel):
    panel.set_units([3, 4, 5])
    before = len(widget_module._instances)
    for i in range(20):
        panel.set_units(list(range(i % 5, i % 5 + 3)))
    assert len(widget_module._instances) == before


@pytest.mark.parametrize("units", [[10 ** 9], [-1], [1.5], [True]])
def test_units_out_of_range_or_not_integers_are_refused(panel, units):
    with pytest.raises(ValueError, match="units must be integers from 0 to 191"):
        panel.set_units(units)


@pytest.mark.parametrize("background", [False, True])
def test_an_interrupted_computation_leaves_the_view_idle_and_the_next_event_computes(background):
    from ganviz.widgets import GradCamView

    model = classifier()
    armed = []

    def interrupt_once(module, inputs):
        if armed:
            armed.clear()
            raise KeyboardInterrupt

    model.conv1_1.register_forward_pre_hook(interrupt_once)
    view = GradCamView(model, ganviz.ToyWorldSource(3, seed=2), ["conv5_3"], class_names=CLASSES,
                       background=background)
    assert view.wait(30) and "Grad-CAM" in view.status.value
    armed.append(True)
    view.image_index.value = 1  # Ctrl+C arrives during this computation
    assert view.wait(30) and not view._latest.busy
    assert "interrupted" in view.status.value and isinstance(view.last_error, KeyboardInterrupt)
    view.image_index.value = 2
    assert view.wait(30) and "image 2: Grad-CAM" in view.status.value


def test_pictures_without_content_are_hidden_not_broken_icons(panel):
    from ganviz.widgets.inversion import InversionView
    from ganviz.inversion import Inverter
    from _factories import generator

    assert panel.curve.value == b"" and panel.curve.layout.display == "none"  # before a curve is measured
    panel.curve.value = b"\x89PNG fake"
    assert panel.curve.layout.display is None
    view = InversionView(Inverter(generator(), steps=1), target=np.zeros((64, 64, 3), np.uint8), background=False)
    assert view.plot.value[:4] == b"\x89PNG" and view.plot.layout.display is None  # a starting image: empty plot
