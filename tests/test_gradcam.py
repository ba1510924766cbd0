"""Grad-CAM against a model whose evidence is known, and on the bundled classifier."""
import pytest
import torch
from torch import nn

import ganviz
from ganviz.gradcam import gradcam


class Quadrants(nn.Module):
    """Channel 0 copies the red plane, channel 1 the blue plane; class k sums channel k."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x):
        a = self.features(x[:, [0, 2]])
        return a.sum((2, 3))


def test_cam_marks_the_evidence():
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0, :4, :4] = 1  # red evidence top left, blue evidence bottom right
    x[:, 2, 4:, 4:] = 1
    cam, cls = gradcam(Quadrants().train(), x, "features", target=0)
    assert cls == 0 and cam.shape == (1, 8, 8)
    assert cam[0, :3, :3].min() > 0.9 and cam[0, 5:, 5:].max() < 0.1
    cam1, _ = gradcam(Quadrants(), x, "features", target=1, size=(8, 8))
    assert cam1[0, 5:, 5:].min() > 0.9 and cam1[0, :3, :3].max() < 0.1
    with pytest.raises(IndexError, match="out of range"):
        gradcam(Quadrants(), x, "features", target=5)


def test_church_evidence_lies_on_the_building():
    model, info = ganviz.load("toy-classifier")
    ds = ganviz.ToyWorld(200, seed=1)
    church = ganviz.SCENE_CLASSES.index("church")
    on, off = [], []
    for i in range(200):
        image, labels, cls = ds[i]
        if cls != church:
            continue
        cam, _ = gradcam(model, info.to_input(image), "conv5_3", target=church)
        building = torch.isin(labels, torch.tensor([ganviz.CONCEPTS.index(c) for c in ("dome", "wall", "roof")]))
        on.append(cam[0][building].mean())
        off.append(cam[0][~building].mean())
    assert len(on) >= 10
    assert torch.stack(on).mean() > 2 * torch.stack(off).mean()


def test_gradcam_on_a_frozen_model_in_train_mode_matches_and_changes_nothing():
    from ganviz.gradcam import gradcam

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(2, 3, 8, 8)
    want, cls = gradcam(model.eval(), x, "2")
    model.train().requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got, cls2 = gradcam(model, x, "2")
    torch.testing.assert_close(got, want)
    assert cls == cls2 and model.training and all(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running statistics untouched
