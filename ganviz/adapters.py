"""Adapters: what ganviz needs to know to drive a model it did not train (and the bundled ones alike).

* :class:`ClassifierAdapter`: preprocessing and normalisation, class names, suggested layers.
* :class:`GeneratorAdapter`: latent sampling, layer names and resolutions, output range and resolution, the
  layers where painting works.
* :class:`SegmenterAdapter`: images (in [-1, 1]) to per-pixel concept labels, and the concept names.

Each adapter builds the widgets with the right settings (``adapter.paint_canvas(result)`` ...), so every widget
takes any model through it.  :func:`ganviz.load_checkpoint` returns one for a checkpoint file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .causal import model_device
from .trace import get_module

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Range = Tuple[float, float]


class Normalize:
    """Images in [0, 1] -> ``input_range``, then ``(x - mean) / std`` per channel (when given).

    A plain object with a descriptive ``repr``, so dissection caches tell two normalisations apart.
    """

    def __init__(self, input_range: Range = (0.0, 1.0), mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None) -> None:
        if (mean is None) != (std is None):
            raise ValueError("pass both mean and std, or neither")
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)

    def __call__(self, images: Tensor) -> Tensor:
        lo, hi = self.input_range
        x = images * (hi - lo) + lo
        if self.mean is not None:
            m = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            s = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = (x - m) / s
        return x

    def __repr__(self) -> str:
        return f"Normalize(input_range={self.input_range}, mean={self.mean}, std={self.std})"


def read_class_names(source: Union[str, Path, Sequence[str]]) -> Tuple[str, ...]:
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


def _check_layers(model: nn.Module, layers: Sequence[str], default: str) -> Tuple[Tuple[str, ...], str]:
    layers = tuple(layers)
    if not layers:
        raise ValueError("an adapter needs at least one layer name")
    for name in layers:
        get_module(model, name)
    default = default or layers[-1]
    get_module(model, default)
    return layers, default


@dataclass(eq=False)
class ClassifierAdapter:
    """An image classifier: ``model(preprocess(images in [0, 1]))`` gives class logits."""

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
        if out.shape[-1] != len(self.class_names):
            raise ValueError(f"the model gives {out.shape[-1]} outputs but {len(self.class_names)} class names "
                             "were given")
        return out

    def predict(self, images: Tensor, top: int = 5) -> list:
        """``[[(class name, probability), ...] per image]``, the ``top`` most likely classes."""
        p = self.logits(images).float().softmax(-1).cpu()
        values, idx = p.topk(min(top, p.shape[-1]), dim=-1)
        return [[(self.class_names[int(i)], float(v)) for v, i in zip(vs, ix)] for vs, ix in zip(values, idx)]

    def dissect(self, data: Any, layer: Optional[str] = None, **kwargs: Any):
        """:func:`ganviz.dissect_classifier` of ``layer`` (default: ``default_layer``) with this preprocessing."""
        from .dissect import dissect_classifier

        return dissect_classifier(self.model, layer or self.default_layer, data, preprocess=self.preprocess,
                                  **kwargs)

    # -- widgets ------------------------------------------------------------------------------------------------
    def top_activation_grid(self, result: Any, data: Any, **kwargs: Any):
        from .widgets import TopActivationGrid

        return TopActivationGrid(self.model, result, data, **{"preprocess": self.preprocess, **kwargs})

    def ablation_panel(self, data: Any, layer: Optional[str] = None, **kwargs: Any):
        from .widgets import AblationPanel

        return AblationPanel(self.model, layer or self.default_layer, self.class_names, data,
                             **{"preprocess": self.preprocess, "resolution": self.resolution, **kwargs})

    def gradcam_view(self, data: Any, layers: Optional[Sequence[str]] = None, **kwargs: Any):
        from .widgets import GradCamView

        return GradCamView(self.model, self.class_names, data, list(layers or self.layers),
                           **{"preprocess": self.preprocess, **kwargs})


def _layer_resolutions(model: nn.Module, layers: Sequence[str]) -> Dict[str, int]:
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
        self.layers, self.default_layer = _check_layers(self.model, self.layers, self.default_layer)
        self.paint_layers = tuple(self.paint_layers) or (self.default_layer,)
        for name in self.paint_layers:
            get_module(self.model, name)
        self.layer_resolution = dict(self.layer_resolution) or _layer_resolutions(self.model, self.layers)
        if not getattr(self.model, "z_dim", None):
            self.model.z_dim = int(self.z_dim)  # the widgets and dissect_generator read it

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
        return torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(int(seed)))

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

    def _seg_pre(self) -> Optional[Callable[[Tensor], Tensor]]:
        return None if tuple(self.output_range) == (-1.0, 1.0) else self.to_signed

    def dissect(self, segmenter: Callable[[Tensor], Any], layer: Optional[str] = None, **kwargs: Any):
        """:func:`ganviz.dissect_generator` of ``layer`` (default: ``default_layer``)."""
        from .dissect import dissect_generator

        kwargs.setdefault("segmenter_preprocess", self._seg_pre())
        return dissect_generator(self.model, layer or self.default_layer, segmenter, z_dim=self.z_dim, **kwargs)

    def painter(self, result: Any, z: Optional[Tensor] = None, seed: int = 0, **kwargs: Any):
        """A :class:`ganviz.paint.Painter` on the dissected layer, for ``z`` (default: sampled from ``seed``)."""
        from .paint import Painter

        z = self.sample_latents(1, seed) if z is None else z
        return Painter(self.model, result.layer, result, z, **{"output_range": self.output_range, **kwargs})

    def inverter(self, layer: Optional[str] = None, encoder: Optional[nn.Module] = None, **kwargs: Any):
        """An :class:`ganviz.inversion.Inverter` at ``layer`` (default: ``default_layer``; starts from random
        latents unless an ``encoder`` is given); ``kwargs`` set steps, ``finetune_steps`` and so on."""
        from .inversion import Inverter

        return Inverter(self.model, encoder, layer=layer or self.default_layer,
                        **{"output_range": tuple(self.output_range), **kwargs})

    # -- widgets ------------------------------------------------------------------------------------------------
    def inversion_view(self, inverter: Any = None, **kwargs: Any):
        """An :class:`ganviz.widgets.InversionView` (default inverter: :meth:`inverter` with fine-tuning)."""
        from .widgets import InversionView

        kwargs.setdefault("width", max(192, min(self.resolution, 384)))
        return InversionView(inverter or self.inverter(finetune_steps=300), **kwargs)

    def _common(self, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        return {"z_dim": self.z_dim, "output_range": self.output_range, **kwargs}

    def paint_canvas(self, result: Any, **kwargs: Any):
        from .widgets import PaintCanvas

        kwargs.setdefault("scale", max(1, 384 // self.resolution))
        return PaintCanvas(self.model, result.layer, result, **self._common(kwargs))

    def switchboard(self, segmenter: Callable[[Tensor], Any], result: Any, **kwargs: Any):
        from .widgets import UnitSwitchboard

        kwargs.setdefault("segmenter_preprocess", self._seg_pre())
        kwargs.setdefault("zoom", max(1, 128 // self.resolution))
        return UnitSwitchboard(self.model, result.layer, segmenter, result, **self._common(kwargs))

    def where_can_it_go(self, segmenter: Callable[[Tensor], Any], result: Any, **kwargs: Any):
        from .widgets import WhereCanItGo

        kwargs.setdefault("segmenter_preprocess", self._seg_pre())
        kwargs.setdefault("zoom", max(1, 256 // self.resolution))
        return WhereCanItGo(self.model, result.layer, segmenter, result, **self._common(kwargs))


class SegmenterAdapter(nn.Module):
    """Images in [-1, 1] ``(N, 3, H, W)`` -> concept labels ``(N, H, W)`` (long), with ``concept_names``.

    ``model`` maps ``preprocess(images)`` to logits ``(N, K, h, w)`` (upsampled to the image size), a dict with
    ``"out"`` (torchvision), or labels ``(N, h, w)``.  ``class_names`` name its K classes; ``concepts`` optionally
    maps class names to concept names (several classes may share one; unmapped classes keep their name), e.g.
    ``{"pottedplant": "plant", "diningtable": "table"}``.  ``preprocess`` takes images in [0, 1].
    """

    def __init__(self, model: Union[nn.Module, Callable[[Tensor], Any]], class_names: Sequence[str], *,
                 concepts: Optional[Mapping[str, str]] = None,
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
