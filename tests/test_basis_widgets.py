"""Every widget works on features of a basis: install the basis, dissect its feature layer, pass that result."""
import pytest
import torch

import ganviz
from ganviz.basis import DirectionsBasis, IdentityBasis, with_basis
from ganviz.trace import count_hooks
from ganviz.widgets import (AblationPanel, DissectionSummary, GradCamView, PaintCanvas, TopActivationGrid,
                            UnitSwitchboard, WhereCanItGo)

pytestmark = pytest.mark.bundled


def _check(view):
    view.wait()
    assert view.last_error is None, view.last_error
    image = view.render()
    assert image.ndim == 3 and min(image.shape[:2]) >= 64
    return view


def test_generator_widgets_on_concept_directions():
    gen, seg = ganviz.zoo.adapter("toy-gan"), ganviz.load("toy-segmenter")[0]
    basis = DirectionsBasis(torch.randn(16, 256, generator=torch.Generator().manual_seed(0)))
    with with_basis(gen.model, "layer4", basis) as view:
        result = ganviz.dissect_generator(gen.model, view.layer, seg, n=48, progress=False)
        assert result.layer == "layer4.basis.features" and result.num_units == 16
        canvas = _check(PaintCanvas(gen, result, background=False))
        concept = next(iter(result.concept_counts(0.0)))
        canvas.stroke([(10, 30), (50, 30)], concept=concept, strength="high", radius=6)
        assert not (_check(canvas).render() == PaintCanvas(gen, result, background=False).render()).all()
        board = _check(UnitSwitchboard(gen, seg, result, concept=concept, samples=2, n_units=4, background=False))
        board.set_all(0.0)
        assert "4 features off" in _check(board).readout.value
        _check(WhereCanItGo(gen, seg, result, concept=concept, background=False))
        assert "feature" in _check(DissectionSummary(result, background=False)).table.value
    assert count_hooks(gen.model) == 0 and "basis" not in dict(gen.model.named_modules()).__repr__()


def test_classifier_widgets_on_a_basis():
    clf, data = ganviz.zoo.adapter("toy-classifier"), ganviz.ToyWorldSource(48, seed=1)
    with with_basis(clf.model, "conv5_3", IdentityBasis(192)) as view:
        result = ganviz.dissect_classifier(clf.model, view.layer, data, progress=False)
        grid = _check(TopActivationGrid(clf, result, data, per_page=2, background=False))
        assert grid.caption(0).startswith("feature 0: ") and grid.unit.description == "Feature"
        panel = _check(AblationPanel(clf, data, layer=view.layer, result=result, units=[0, 1], background=False))
        panel.set_scale(0, 0.0)
        assert "features removed: [0]" in _check(panel).status.value
        assert panel.reset_button.description == "Restore all features"
        with pytest.raises(ValueError, match=r"features must be integers from 0 to 191 .* has 192 features"):
            panel.set_units([999])
        cam = _check(GradCamView(clf, data, [view.layer], background=False))
        assert "conv5_3.basis.features" in cam.status.value
