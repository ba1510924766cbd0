"""Model factories importable by path (``_factories:classifier``) for command-line tests, and small stand-ins
shared by test files (tests/browser/conftest.py puts this folder on ``sys.path`` for the browser tests)."""
from __future__ import annotations

import torch

from ganviz.zoo.arch import ToyGenerator, ToySegmenter, ToyVGG


class Bomb(torch.nn.Module):
    """Identity, or raises ``error`` when armed (a KeyboardInterrupt only once, like one Ctrl+C)."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.error is not None:
            error = self.error
            if isinstance(error, KeyboardInterrupt):
                self.error = None
            raise error
        return x


class ConceptMaps(torch.nn.Module):
    """Images -> ``k`` concept maps ``[B, k, H, W]``: the label coded in channel 0 (``(label + 1) / (k + 1)``, 0 for
    none), the intensity in channel 1."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = torch.round(x[:, 0] * (self.k + 1)).long() - 1
        onehot = torch.nn.functional.one_hot(labels.clamp_min(0), self.k).permute(0, 3, 1, 2).float()
        return onehot * (labels >= 0)[:, None].float() * x[:, 1:2]


def classifier() -> ToyVGG:
    """A randomly initialised toy classifier, identical in every process (fixed seed)."""
    torch.manual_seed(0)
    return ToyVGG(8).eval()


def generator() -> ToyGenerator:
    """A randomly initialised toy generator, identical in every process (fixed seed)."""
    torch.manual_seed(0)
    return ToyGenerator(128).eval()


def segmenter() -> ToySegmenter:
    """A randomly initialised toy segmenter (16 concepts), identical in every process."""
    torch.manual_seed(0)
    return ToySegmenter(16).eval()


class _Layout(torch.nn.Module):
    """z (N,3) -> an 8x8 feature map: unit 0 "door" (relu z0 everywhere), unit 1 "wall" (left half, 1 + relu z1),
    unit 2 "sky" (right half, 1 + relu z2)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        f = torch.zeros(n, 3, 8, 8, device=z.device)
        f[:, 0] = torch.relu(z[:, 0]).view(n, 1, 1)
        f[:, 1, :, :4] = 1.0 + torch.relu(z[:, 1]).view(n, 1, 1)
        f[:, 2, :, 4:] = 1.0 + torch.relu(z[:, 2]).view(n, 1, 1)
        return f


def _step(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """``x > threshold`` as 0/1 values, with a sigmoid's gradient (straight through), so inversion can run."""
    soft = torch.sigmoid((x - threshold) * 4)
    return (x > threshold).float() + soft - soft.detach()


class _Paint(torch.nn.Module):
    """Feature map -> 32x32 image in [-1, 1]: red = door where there is wall, green = wall, blue = sky."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        f = torch.nn.functional.interpolate(f, scale_factor=4, mode="nearest")
        wall = _step(f[:, 1:2], 0.5)
        red = _step(f[:, 0:1], 1.0) * wall
        rgb = torch.cat([red, wall * (1 - red), _step(f[:, 2:3], 0.5)], 1)
        return rgb * 2 - 1


class SceneGenerator(torch.nn.Sequential):
    """A hand-made generator whose 'door' can only appear on 'wall' (the left half); ``layer1`` is 8x8."""

    z_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = _Layout()
        self.output = _Paint()


SCENE_CONCEPTS = ("background", "sky", "wall", "door")


def scene_segmenter(images: torch.Tensor) -> torch.Tensor:
    """Labels of SceneGenerator images: 3 door (red), 2 wall (green), 1 sky (blue), 0 background."""
    r, g, b = (images > 0).unbind(1)
    labels = torch.zeros(r.shape, dtype=torch.long, device=images.device)
    labels[b] = 1
    labels[g] = 2
    labels[r] = 3
    return labels


def scene_dissection(generator: SceneGenerator):
    """``layer1`` of a SceneGenerator dissected over 200 samples with :func:`scene_segmenter`."""
    import ganviz

    return ganviz.dissect_generator(generator, "layer1", scene_segmenter, n=200, concept_names=SCENE_CONCEPTS,
                                    progress=False)


def flat_view(value: int):
    """A widget view that shows one flat grey level (64x64), for tests of what lays views out (the talk app)."""
    import numpy as np

    from ganviz.widgets._base import ViewBase

    class Flat(ViewBase):
        def render(self) -> np.ndarray:
            return np.full((64, 64, 3), value, np.uint8)

    return Flat(background=False)
