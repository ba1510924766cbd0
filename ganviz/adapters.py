"""Adapters: what ganviz needs to know to drive a model it did not train (and the bundled ones alike).

* :class:`ClassifierAdapter`: preprocessing and normalisation, class names, suggested layers.
* :class:`GeneratorAdapter`: latent sampling, layer names and resolutions, output range and resolution, the
  layers where painting works.
* :class:`SegmenterAdapter`: images (in [-1, 1]) to per-pixel concept labels, and the concept names.

The adapter is the one description of a model: every widget takes an adapter or a bare module, which
:func:`as_classifier` and :func:`as_generator` wrap with the given hints (the toy models' defaults otherwise)::

    gan = as_generator(generator)                       # z_dim from generator.z_dim, output in [-1, 1]
    clf = as_classifier(model, class_names, preprocess) # an adapter passes through unchanged
    PaintCanvas(gan, result); AblationPanel(clf, data)  # (ganviz.widgets)

:func:`ganviz.load_checkpoint` returns an adapter for a checkpoint file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .plumbing import eval_mode, model_device, seeded_latents, z_dim_of
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, Normalize, Range, to_signed
from .trace import get_module

__all__ = ["ClassifierAdapter", "GeneratorAdapter", "SegmenterAdapter", "as_classifier", "as_generator",
           "read_class_names", "Normalize", "IMAGENET_MEAN", "IMAGENET_STD"]


def read_class_names(source: str | Path | Sequence[str]) -> tuple[str, ...]:
    """Class names from a list or a text file, one per line (Places365's ``/a/abbey 0`` lines become ``abbey``)."""
    if isinstance(source, (str, Path)) and Path(source).is_file():
        names = []
        for line in Path(source).read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            name = parts[0] if len(parts) > 1 and parts[-1].isdigit() else line
            if name.startswith("/") and len(name) > 3 and name[2] == "/":
                name = name[3:]
            names.append(name)
        return tuple(names)
    if isinstance(source, str):
        raise FileNotFoundError(f"no class-name file at {source}")
    return tuple(str(s) for s in source)


def _check_layers(model: nn.Module, layers: Sequence[str], default: str) -> tuple[tuple[str, ...], str]:
    layers = tuple(layers)
    if not layers:
        raise ValueError("an adapter needs at least one layer name")
    for name in layers:
        get_module(model, name)
    default = default or layers[-1]
    get_module(model, default)
    return layers, default


def _default_layers(model: nn.Module) -> tuple[str, ...]:
    """A bare module's suggested layers: its top-level children holding a convolution (all its children when none
    does), shallow to deep."""
    children = [(name, child) for name, child in model.named_children()]
    convs = [name for name, child in children
             if any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in child.modules())]
    layers = tuple(convs or [name for name, _ in children])
    if not layers:
        raise ValueError(f"{type(model).__name__} has no submodules to inspect: pass layers=[...] or an adapter")
    return layers


def _hints(**hints: Any) -> dict[str, Any]:
    return {k: v for k, v in hints.items() if v is not None}


@dataclass(eq=False)
class ClassifierAdapter:
    """An image classifier: ``model(preprocess(images in [0, 1]))`` gives class logits.

    ``class_names`` may be empty for a model whose classes are not known (a dissection needs none; the widgets that
    show predictions ask for them).
    """

    model: nn.Module
    class_names: Sequence[str]
    layers: Sequence[str]
    default_layer: str = ""
    resolution: int = 224
    preprocess: Callable[[Tensor], Tensor] = field(default_factory=Normalize)
    name: str = ""
    layer_titles: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)
        self.layers, self.default_layer = _check_layers(self.model, self.layers, self.default_layer)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """Class logits of images in [0, 1] ``(N, 3, H, W)``."""
        out = self.model(self.preprocess(images.to(self.device)))
        if self.class_names and out.shape[-1] != len(self.class_names):
            raise ValueError(f"the model gives {out.shape[-1]} outputs but {len(self.class_names)} class names "
                             "were given")
        return out

    def predict(self, images: Tensor, top: int = 5) -> list[list[tuple[str, float]]]:
        """``[[(class name, probability), ...] per image]``, the ``top`` most likely classes."""
        self.require_class_names("predict")
        p = self.logits(images).float().softmax(-1).cpu()
        values, idx = p.topk(min(top, p.shape[-1]), dim=-1)
        return [[(self.class_names[int(i)], float(v)) for v, i in zip(vs, ix)] for vs, ix in zip(values, idx)]

    def require_class_names(self, what: str) -> None:
        """Raise a ValueError saying what to pass when the class names are unknown."""
        if not self.class_names:
            raise ValueError(f"{what} needs the class names of {self.name or type(self.model).__name__}: pass "
                             "class_names=[...] (one per output, or a text file of them) or a ClassifierAdapter")

    def dissect(self, data: Any, layer: str | None = None, **kwargs: Any):
        """:func:`ganviz.dissect_classifier` of ``layer`` (default: ``default_layer``) with this preprocessing."""
        from .dissect import dissect_classifier

        return dissect_classifier(self.model, layer or self.default_layer, data, preprocess=self.preprocess,
                                  **kwargs)


def _layer_resolutions(model: nn.Module) -> dict[str, int]:
    table = getattr(model, "layer_resolutions", None)
    return dict(table()) if callable(table) else {}


@dataclass(eq=False)
class GeneratorAdapter:
    """A generator: ``model(z)`` with ``z ~ N(0, 1)`` of shape ``(N, z_dim)`` gives images in ``output_range``."""

    model: nn.Module
    z_dim: int
    resolution: int
    layers: Sequence[str]
    default_layer: str = ""
    paint_layers: Sequence[str] = ()
    output_range: Range = (-1.0, 1.0)
    name: str = ""
    layer_resolution: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.z_dim = int(self.z_dim)
        self.output_range = (float(self.output_range[0]), float(self.output_range[1]))
        self.layers, self.default_layer = _check_layers(self.model, self.layers, self.default_layer)
        self.paint_layers = tuple(self.paint_layers) or (self.default_layer,)
        for name in self.paint_layers:
            get_module(self.model, name)
        self.layer_resolution = dict(self.layer_resolution) or _layer_resolutions(self.model)

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    @property
    def truncation(self) -> float:
        """Truncation applied inside the model's forward (1.0 = none; only StyleGAN2 has one)."""
        return float(getattr(self.model, "truncation", 1.0))

    @truncation.setter
    def truncation(self, value: float) -> None:
        if not hasattr(self.model, "truncation"):
            raise AttributeError(f"{type(self.model).__name__} has no truncation")
        if not 0 <= float(value) <= 1:
            raise ValueError(f"truncation must be in [0, 1], got {value}")
        self.model.truncation = float(value)

    def sample_latents(self, n: int, seed: int = 0) -> Tensor:
        """``n`` standard-normal latents ``(n, z_dim)``, reproducible by ``seed`` (truncation, if any, is in
        the model's forward)."""
        return seeded_latents(n, self.z_dim, seed)

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """Raw generator output for latents ``z`` (in ``output_range``)."""
        return self.model(z.to(self.device))

    def images(self, z: Tensor) -> np.ndarray:
        """Generated images as ``(N, H, W, 3)`` uint8."""
        from .imaging import to_uint8

        return to_uint8(self.generate(z).float().cpu(), self.output_range)

    def to_signed(self, images: Tensor) -> Tensor:
        """Generator output -> [-1, 1] (what :class:`SegmenterAdapter` and the toy segmenter take)."""
        lo, hi = self.output_range
        return images if (lo, hi) == (-1.0, 1.0) else (images - lo) / (hi - lo) * 2 - 1

    def segmenter_preprocess(self) -> Callable[[Tensor], Tensor] | None:
        """What maps generated images to a segmenter's [-1, 1] input (None: they are in [-1, 1] already)."""
        return None if tuple(self.output_range) == (-1.0, 1.0) else self.to_signed

    def dissect(self, segmenter: Callable[[Tensor], Any], layer: str | None = None, **kwargs: Any):
        """:func:`ganviz.dissect_generator` of ``layer`` (default: ``default_layer``)."""
        from .dissect import dissect_generator

        kwargs.setdefault("segmenter_preprocess", self.segmenter_preprocess())
        return dissect_generator(self.model, layer or self.default_layer, segmenter, z_dim=self.z_dim, **kwargs)

    def painter(self, result: Any, z: Tensor | None = None, seed: int = 0, **kwargs: Any):
        """A :class:`ganviz.paint.Painter` on the dissected layer, for ``z`` (default: sampled from ``seed``)."""
        from .paint import Painter

        z = self.sample_latents(1, seed) if z is None else z
        return Painter(self.model, result.layer, result, z, **{"output_range": self.output_range, **kwargs})

    def inverter(self, layer: str | None = None, encoder: nn.Module | None = None, **kwargs: Any):
        """An :class:`ganviz.inversion.Inverter` at ``layer`` (default: ``default_layer``; starts from random
        latents unless an ``encoder`` is given); ``kwargs`` set steps, ``finetune_steps`` and so on."""
        from .inversion import Inverter

        return Inverter(self.model, encoder, layer=layer or self.default_layer,
                        **{"output_range": tuple(self.output_range), "z_dim": self.z_dim, **kwargs})


def as_classifier(model: nn.Module | ClassifierAdapter, class_names: str | Path | Sequence[str] | None = None,
                  preprocess: Callable[[Tensor], Tensor] | None = None, *, layers: Sequence[str] | None = None,
                  default_layer: str | None = None, resolution: int | None = None) -> ClassifierAdapter:
    """The :class:`ClassifierAdapter` of ``model``: an adapter is returned as it is (hints given with it replace
    its fields); a bare module is wrapped with the hints, defaulting to the toy models' conventions: class names
    from ``model.class_names`` (else none), preprocessing :data:`ganviz.preprocessing.to_signed` ([0, 1] ->
    [-1, 1]), its convolutional top-level children as layers (the deepest as default), ``model.resolution`` or 64
    pixels for uploaded images."""
    names = None if class_names is None else read_class_names(class_names)
    hints = _hints(class_names=names, preprocess=preprocess, layers=layers, default_layer=default_layer,
                   resolution=resolution)
    if isinstance(model, ClassifierAdapter):
        return dataclasses.replace(model, **hints) if hints else model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch module or a ClassifierAdapter, got {type(model).__name__}")
    return ClassifierAdapter(
        model, names if names is not None else tuple(getattr(model, "class_names", None) or ()),
        tuple(layers) if layers is not None else _default_layers(model), default_layer or "",
        int(resolution or getattr(model, "resolution", 0) or 64), preprocess or to_signed, type(model).__name__)


def _measure_resolution(model: nn.Module, z_dim: int) -> int:
    """The side of one generated image (one forward pass in eval mode, so no BatchNorm statistics move)."""
    with torch.no_grad(), eval_mode(model):
        out = model(torch.zeros(1, z_dim, device=model_device(model)))
    return int(out.shape[-1])


def as_generator(model: nn.Module | GeneratorAdapter, z_dim: int | None = None,
                 output_range: Range | None = None, *, layers: Sequence[str] | None = None,
                 default_layer: str | None = None, resolution: int | None = None) -> GeneratorAdapter:
    """The :class:`GeneratorAdapter` of ``model``: an adapter is returned as it is (hints given with it replace
    its fields); a bare module is wrapped with the hints, defaulting to the toy models' conventions: ``z_dim``
    from ``model.z_dim`` (:func:`ganviz.plumbing.z_dim_of`; a clear error says to pass it when missing), output
    range (-1, 1), its convolutional top-level children as layers (a middle one as default: mid-level layers are
    where a GAN's units match objects), the resolution of one generated image."""
    hints = _hints(z_dim=z_dim, output_range=output_range, layers=layers, default_layer=default_layer,
                   resolution=resolution)
    if isinstance(model, GeneratorAdapter):
        return dataclasses.replace(model, **hints) if hints else model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch module or a GeneratorAdapter, got {type(model).__name__}")
    z_dim = z_dim_of(model, z_dim)
    layers = tuple(layers) if layers is not None else _default_layers(model)
    return GeneratorAdapter(
        model, z_dim, int(resolution or getattr(model, "resolution", 0) or _measure_resolution(model, z_dim)),
        layers, default_layer or layers[(len(layers) - 1) // 2],
        output_range=tuple(output_range) if output_range is not None else (-1.0, 1.0), name=type(model).__name__)


class SegmenterAdapter(nn.Module):
    """Images in [-1, 1] ``(N, 3, H, W)`` -> concept labels ``(N, H, W)`` (long), with ``concept_names``.

    ``model`` maps ``preprocess(images)`` to logits ``(N, K, h, w)`` (upsampled to the image size), a dict with
    ``"out"`` (torchvision), or labels ``(N, h, w)``.  ``class_names`` name its K classes; ``concepts`` optionally
    maps class names to concept names (several classes may share one; unmapped classes keep their name), e.g.
    ``{"pottedplant": "plant", "diningtable": "table"}``.  ``preprocess`` takes images in [0, 1].
    """

    def __init__(self, model: nn.Module | Callable[[Tensor], Any], class_names: Sequence[str], *,
                 concepts: Mapping[str, str] | None = None,
                 preprocess: Callable[[Tensor], Tensor] = Normalize(), name: str = "") -> None:
        super().__init__()
        self.model = model
        self.class_names = tuple(class_names)
        unknown = sorted(set(concepts or {}) - set(self.class_names))
        if unknown:
            raise KeyError(f"concepts maps classes the segmenter does not have: {', '.join(unknown)}; "
                           f"its classes: {', '.join(self.class_names)}")
        mapped = [(concepts or {}).get(c, c) for c in self.class_names]
        self.concept_names = tuple(dict.fromkeys(mapped))
        self.register_buffer("lookup", torch.tensor([self.concept_names.index(c) for c in mapped]),
                             persistent=False)
        self.preprocess, self.name = preprocess, name

    def forward(self, images: Tensor) -> Tensor:
        dev = model_device(self.model) if isinstance(self.model, nn.Module) else images.device
        x = self.preprocess(((images.float() + 1) / 2).to(dev))
        out = self.model(x)
        if isinstance(out, Mapping):
            out = out["out"]
        if out.is_floating_point():
            if out.ndim != 4 or out.shape[1] != len(self.class_names):
                raise ValueError(f"the segmentation model gave {tuple(out.shape)}; expected logits (N, "
                                 f"{len(self.class_names)}, H, W) for its {len(self.class_names)} class names")
            if out.shape[-2:] != images.shape[-2:]:
                out = F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
            out = out.argmax(1)
        elif out.shape[-2:] != images.shape[-2:]:
            out = F.interpolate(out[:, None].float(), size=images.shape[-2:], mode="nearest")[:, 0]
        return self.lookup.to(out.device)[out.long()].to(images.device)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, concepts={len(self.concept_names)}"
