"""Hugging Face ``transformers`` image classifiers and semantic segmenters from a local directory, offline.

    clf = load_hf_classifier("ckpt/vit-base-patch16-224")   # config.json + model.safetensors (+ preprocessor)
    logits = clf(clf.preprocessing.normalize(images01))     # a plain nn.Module: normalised images -> logits
    clf.class_names, clf.layers, clf.mlp_layers             # names from config.id2label; hookable layer names
    clf.layer_layouts()                                      # {"vit.layers.0": Layout('tokens_cls', 14, 14, 1), ...}
    adapter = clf.adapter()                                  # a ClassifierAdapter (dissection, ablation, widgets)

    seg = load_hf_segmenter("ckpt/segformer-b0-finetuned-ade-512-512")
    seg(normalised_images)                                   # per-pixel logits [B, K, H, W] at the input's size
    seg.concepts()                                           # {"windowpane": "window", "sea": "water", ...}
    labeler = seg.adapter()                                  # SegmenterAdapter: images in [-1, 1] -> concept labels

Needs the optional ``transformers`` package (``pip install ganviz[hf]``); it is imported only when a model is
loaded.  Nothing is downloaded (``local_files_only=True``): ``path`` is a directory written by
``save_pretrained`` or copied from the Hub.  The class named in ``config.json``'s ``architectures`` is used (any
``...ForImageClassification`` -- ViT, DeiT, ConvNeXt, ResNet, Swin ... -- or ``...ForSemanticSegmentation`` --
SegFormer, UperNet, BEiT ...), else ``AutoModelForImageClassification`` / ``AutoModelForSemanticSegmentation``;
weights the checkpoint lacks (a head that would be random) raise :class:`~ganviz.checkpoints.CheckpointError`.

The wrappers register the transformers model's own children, so layer names are exactly those of
``transformers`` (they changed between versions: ViT blocks are ``vit.encoder.layer.{i}`` in 4.x and
``vit.layers.{i}`` in 5.x; :attr:`HFImageClassifier.layers` lists the right ones) and ``state_dict()`` keys are the
checkpoint's.  Layers found: transformer blocks (a ``ModuleList`` of ``config.num_hidden_layers`` blocks) or CNN
stages (``...stages.{i}``); MLP neurons are the activation modules that sit beside a ``nn.Linear`` (ViT's
``intermediate``/``mlp`` activation, ConvNeXt's channels-last ``act``).  Hooked outputs may be tuples in some
versions: :func:`ganviz.layouts.primary_tensor` takes the tensor out.

Preprocessing (:class:`Preprocessing`): ``preprocessor_config.json`` when present (``image_mean``, ``image_std``,
``do_normalize``, ``do_rescale``/``rescale_factor``, ``crop_size``/``size``), else the defaults of the published
checkpoints of the family (:data:`FAMILY_DEFAULTS`: ViT mean = std = 0.5; DeiT, ConvNeXt, ResNet, Swin, SegFormer,
UperNet: ImageNet's; 224 pixels, 512 for segmenters) with ``config.image_size`` when the config has one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .conceptmaps import MappingLike, concept_names, concepts_for
from .layouts import Layout, LayoutError, infer_layout, primary_tensor
from .preprocessing import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Normalize

__all__ = ["EXTRA_HINT", "FAMILY_DEFAULTS", "Preprocessing", "HFImageClassifier", "HFSegmenter",
           "load_hf", "load_hf_classifier", "load_hf_segmenter", "read_preprocessing", "require_transformers"]

PathLike = Union[str, "os.PathLike[str]"]
Triple = Tuple[float, float, float]

EXTRA_HINT = "pip install ganviz[hf]  (or: pip install 'transformers>=4.40' safetensors)"

_HALF = (0.5, 0.5, 0.5)
FAMILY_DEFAULTS: Dict[str, Tuple[Triple, Triple, int]] = {
    "vit": (_HALF, _HALF, 224), "beit": (_HALF, _HALF, 224), "deit": (IMAGENET_MEAN, IMAGENET_STD, 224),
    "convnext": (IMAGENET_MEAN, IMAGENET_STD, 224), "convnextv2": (IMAGENET_MEAN, IMAGENET_STD, 224),
    "resnet": (IMAGENET_MEAN, IMAGENET_STD, 224), "swin": (IMAGENET_MEAN, IMAGENET_STD, 224),
    "segformer": (IMAGENET_MEAN, IMAGENET_STD, 512), "upernet": (IMAGENET_MEAN, IMAGENET_STD, 512),
    "clip": (CLIP_MEAN, CLIP_STD, 224),
    "": (IMAGENET_MEAN, IMAGENET_STD, 224),
}
"""``model_type`` -> (mean, std, image size) of the family's published checkpoints (``""``: anything else)."""

_MAX_PREFIX = 8  # class, distillation and register tokens before the patch grid
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def require_transformers() -> Any:
    """The ``transformers`` module, or an ImportError saying how to install the extra."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"loading Hugging Face checkpoints needs the optional 'transformers' package: "
                          f"{EXTRA_HINT}") from err
    return transformers


# -- preprocessing --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocessing:
    """What a checkpoint expects of its input images, for images in [0, 1].

    ``input_range``: the pixel range before normalisation (``(0, 1)`` when the processor rescales by 1/255);
    ``mean``/``std``: per channel, or None when the processor does not normalise; ``image_size``: ``(h, w)``.
    """

    mean: Optional[Triple]
    std: Optional[Triple]
    image_size: Tuple[int, int]
    input_range: Tuple[float, float] = (0.0, 1.0)
    source: str = ""

    @property
    def normalize(self) -> Normalize:
        """Images in [0, 1] -> the model's input (a :class:`ganviz.Normalize`)."""
        return Normalize(self.input_range, self.mean, self.std)


def _size(value: Any) -> Optional[Tuple[int, int]]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            return (int(value["height"]), int(value["width"]))
        if "shortest_edge" in value:
            return (int(value["shortest_edge"]), int(value["shortest_edge"]))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    return None


def _triple(value: Any, what: str, where: Path) -> Triple:
    values = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3))
    if len(values) != 3:
        raise ValueError(f"{where}: {what} has {len(values)} values, expected 3 (one per RGB channel)")
    return values  # type: ignore[return-value]


def read_preprocessing(path: PathLike, config: Any = None) -> Preprocessing:
    """The :class:`Preprocessing` of a checkpoint directory (rules in the module docstring)."""
    model_type = str(getattr(config, "model_type", "") or "")
    mean, std, size = FAMILY_DEFAULTS.get(model_type, FAMILY_DEFAULTS[""])
    config_size = _size(getattr(config, "image_size", None))
    default_size = config_size or (size, size)
    file = Path(path) / "preprocessor_config.json"
    if not file.is_file():
        return Preprocessing(mean, std, default_size, source=f"defaults of {model_type or 'unknown'} checkpoints")
    with open(file, encoding="utf-8") as f:
        d = json.load(f)
    scale = 1.0
    if d.get("do_rescale", True):
        scale = round(255.0 * float(d.get("rescale_factor", 1 / 255)), 9)
    normalise = d.get("do_normalize", True)
    crop = _size(d.get("crop_size")) if d.get("do_center_crop") else None
    return Preprocessing(
        _triple(d.get("image_mean", mean), "image_mean", file) if normalise else None,
        _triple(d.get("image_std", std), "image_std", file) if normalise else None,
        crop or _size(d.get("size")) or default_size, (0.0, scale), source=str(file))


# -- the wrappers -----------------------------------------------------------------------------------------------
class _HFWrapper(nn.Module):
    """A transformers model seen through its own children (same names, same parameters)."""

    def __init__(self, hf_model: nn.Module, preprocessing: Preprocessing, name: str = "") -> None:
        super().__init__()
        for child_name, child in hf_model.named_children():
            self.add_module(child_name, child)
        for pname, param in hf_model.named_parameters(recurse=False):
            self.register_parameter(pname, param)
        for bname, buf in hf_model.named_buffers(recurse=False):
            self.register_buffer(bname, buf)
        object.__setattr__(self, "hf_model", hf_model)  # not a submodule: names stay those of transformers
        config = hf_model.config
        self.config = config
        self.model_type: str = str(getattr(config, "model_type", ""))
        id2label = dict(getattr(config, "id2label", None) or {})
        self.class_names: Tuple[str, ...] = tuple(str(id2label[k]).strip()
                                                  for k in sorted(id2label, key=lambda k: int(k)))
        self.preprocessing, self.name = preprocessing, name
        self.train(hf_model.training)

    @property
    def image_size(self) -> Tuple[int, int]:
        return self.preprocessing.image_size

    def train(self, mode: bool = True) -> "_HFWrapper":
        super().train(mode)
        self.hf_model.training = mode
        return self

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "_HFWrapper":
        super()._apply(fn, *args, **kwargs)
        hf = self.hf_model
        for pname in list(hf._parameters):
            hf._parameters[pname] = self._parameters[pname]
        for bname in list(hf._buffers):
            hf._buffers[bname] = self._buffers[bname]
        return self

    def _logits(self, x: Tensor) -> Tensor:
        out = self.hf_model(pixel_values=x)
        return out.logits if hasattr(out, "logits") else primary_tensor(out)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, model_type={self.model_type!r}, classes={len(self.class_names)}"


class HFImageClassifier(_HFWrapper):
    """A transformers image classifier: ``forward(normalised images [B, 3, H, W]) -> logits [B, classes]``.

    ``layers``: residual blocks or stages in forward order; ``mlp_layers``: MLP neuron activations (transformers
    and ConvNeXt; empty for plain CNNs); ``default_layer``: the last of ``layers``.
    """

    def __init__(self, hf_model: nn.Module, preprocessing: Preprocessing, name: str = "") -> None:
        super().__init__(hf_model, preprocessing, name)
        self.layers, self.mlp_layers = _discover_layers(self, self.config)
        self.default_layer = self.layers[-1] if self.layers else ""
        self._layouts: Optional[Dict[str, Layout]] = None

    def forward(self, x: Tensor) -> Tensor:
        return self._logits(x)

    def layer_layouts(self) -> Dict[str, Layout]:
        """Layouts of :attr:`layers` and :attr:`mlp_layers` at :attr:`image_size` (one probe pass, then cached).

        Transformer tokens: the patch grid from ``config.patch_size`` and the prefix (class, distillation) tokens
        as the rest; channels-last maps where a ``nn.Linear`` acts on a 4-D tensor (ConvNeXt's MLP); otherwise
        :func:`~ganviz.layouts.infer_layout`.  Layers whose layout cannot be told are left out.
        """
        if self._layouts is None:
            self._layouts = self._probe_layouts()
        return dict(self._layouts)

    def _probe_layouts(self) -> Dict[str, Layout]:
        names = list(self.layers) + list(self.mlp_layers)
        shapes: Dict[str, Tuple[int, ...]] = {}
        hooks = [self.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: shapes.__setitem__(n, tuple(primary_tensor(o).shape))) for n in names]
        param = next(self.parameters())
        try:
            with torch.no_grad():
                self(torch.zeros(1, 3, *self.image_size, device=param.device, dtype=param.dtype))
        finally:
            for h in hooks:
                h.remove()
        patch = _size(getattr(self.config, "patch_size", None))
        hw = self.image_size
        out: Dict[str, Layout] = {}
        grid = (hw[0] // patch[0], hw[1] // patch[1]) if patch else (0, 0)
        for n in names:
            shape = shapes[n]
            extra = shape[1] - grid[0] * grid[1] if len(shape) == 3 and patch else -1
            try:
                if 0 <= extra <= _MAX_PREFIX:  # the patch grid, then prefix tokens (class, distillation)
                    out[n] = Layout("tokens_cls", *grid, extra) if extra else Layout("tokens", *grid)
                elif len(shape) == 4:  # a Linear acting on a 4-D tensor acts on its last dim: channels last
                    out[n] = infer_layout(shape, hw, "bhwc" if n in self.mlp_layers else "bchw")
                else:
                    out[n] = infer_layout(shape, hw)
            except LayoutError:
                continue  # left to the trace, which asks for a declared layout
        return out

    def adapter(self, name: str = "", layers: Optional[Sequence[str]] = None) -> Any:
        """A :class:`ganviz.ClassifierAdapter` of this model (its preprocessing, class names and layers)."""
        from .adapters import ClassifierAdapter

        layers = list(layers or self.layers)
        if not layers:
            raise ValueError(f"no layers found in this {self.model_type} model; pass layers=[...]")
        return ClassifierAdapter(self, self.class_names, layers, layers[-1], self.image_size[0],
                                 self.preprocessing.normalize, name or self.name)


class HFSegmenter(_HFWrapper):
    """A transformers semantic segmenter: ``forward(normalised images) -> logits [B, classes, H, W]`` at the input's
    size (bilinear, ``align_corners=False``, as transformers' own post-processing upsamples)."""

    def forward(self, x: Tensor) -> Tensor:
        logits = self._logits(x)
        if tuple(logits.shape[-2:]) != tuple(x.shape[-2:]):
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def concepts(self, mapping: MappingLike = "ade20k") -> Dict[str, str]:
        """``{class name: concept name}`` through ``mapping`` (see :mod:`ganviz.conceptmaps`)."""
        return concepts_for(self.class_names, mapping)

    def concept_names(self, mapping: MappingLike = "ade20k") -> Tuple[str, ...]:
        """The concept of each class, in class order."""
        return concept_names(self.class_names, mapping)

    def adapter(self, concepts: Optional[MappingLike] = "ade20k", name: str = "") -> Any:
        """A :class:`ganviz.SegmenterAdapter` labelling images in [-1, 1] with concepts (None: the class names)."""
        from .adapters import SegmenterAdapter

        return SegmenterAdapter(self, self.class_names, concepts=None if concepts is None else self.concepts(concepts),
                                preprocess=self.preprocessing.normalize, name=name or self.name)


# -- loading ----------------------------------------------------------------------------------------------------
def _check_dir(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"no Hugging Face checkpoint directory at {p} (expected a folder with config.json "
                                "and model.safetensors, as save_pretrained writes; nothing is downloaded)")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} has no config.json (found: {', '.join(sorted(f.name for f in p.iterdir()))})")
    if not any((p / w).is_file() for w in _WEIGHTS):
        raise FileNotFoundError(f"{p} has no weights ({' or '.join(_WEIGHTS)}); found: "
                                f"{', '.join(sorted(f.name for f in p.iterdir()))}")
    return p


def _architecture(config: Any) -> str:
    archs = getattr(config, "architectures", None) or []
    return str(archs[0]) if archs else ""


def _load_model(path: PathLike, task: str, device: Union[str, torch.device],
                dtype: Optional[torch.dtype]) -> Tuple[nn.Module, Preprocessing, str]:
    from .checkpoints import CheckpointError

    transformers = require_transformers()
    p = _check_dir(path)
    config = transformers.AutoConfig.from_pretrained(str(p), local_files_only=True)
    arch = _architecture(config)
    marker, auto = {"classifier": ("ForImageClassification", "AutoModelForImageClassification"),
                    "segmenter": ("ForSemanticSegmentation", "AutoModelForSemanticSegmentation")}[task]
    if arch and marker not in arch:
        raise CheckpointError(f"{p} holds a {arch}, not an image {task} (a ...{marker} class); "
                              "load_hf(path) picks the right loader")
    cls = getattr(transformers, arch, None) if arch else None
    model, info = (cls or getattr(transformers, auto)).from_pretrained(str(p), local_files_only=True,
                                                                       output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(f"{p} lacks weights of its {type(model).__name__} (they would be random): "
                              f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval(), read_preprocessing(p, config), p.name


def load_hf_classifier(path: PathLike, device: Union[str, torch.device] = "cpu",
                       dtype: Optional[torch.dtype] = torch.float32) -> HFImageClassifier:
    """An :class:`HFImageClassifier` (eval mode, on ``device``, in ``dtype``; None keeps the file's) from ``path``."""
    model, pre, name = _load_model(path, "classifier", device, dtype)
    return HFImageClassifier(model, pre, name)


def load_hf_segmenter(path: PathLike, device: Union[str, torch.device] = "cpu",
                      dtype: Optional[torch.dtype] = torch.float32) -> HFSegmenter:
    """An :class:`HFSegmenter` (eval mode, on ``device``, in ``dtype``; None keeps the file's) from ``path``."""
    model, pre, name = _load_model(path, "segmenter", device, dtype)
    return HFSegmenter(model, pre, name)


def load_hf(path: PathLike, device: Union[str, torch.device] = "cpu",
            dtype: Optional[torch.dtype] = torch.float32) -> Union[HFImageClassifier, HFSegmenter]:
    """A classifier or segmenter, as ``config.json``'s ``architectures`` says."""
    from .checkpoints import CheckpointError

    p = _check_dir(path)
    with open(p / "config.json", encoding="utf-8") as f:
        archs = json.load(f).get("architectures") or []
    arch = str(archs[0]) if archs else ""
    if "ForImageClassification" in arch:
        return load_hf_classifier(p, device, dtype)
    if "ForSemanticSegmentation" in arch:
        return load_hf_segmenter(p, device, dtype)
    raise CheckpointError(f"{p}/config.json names architecture {arch or 'none'}; ganviz loads image classifiers "
                          "(...ForImageClassification) and semantic segmenters (...ForSemanticSegmentation): use "
                          "load_hf_classifier / load_hf_segmenter when the config does not say")


# -- layer discovery --------------------------------------------------------------------------------------------
_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Tanh, nn.Mish, nn.Hardswish, nn.LeakyReLU, nn.Sigmoid)


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, _ACTIVATIONS) or "Activation" in type(module).__name__


def _mlp_activations(root: nn.Module, prefix: str) -> List[str]:
    """Activation modules whose parent also holds a ``nn.Linear`` (an MLP's hidden neurons)."""
    found = []
    for name, module in root.named_modules():
        for child_name, child in module.named_children():
            if _is_activation(child) and any(isinstance(c, nn.Linear) for c in module.children()):
                found.append(".".join(x for x in (prefix, name, child_name) if x))
    return found


def _discover_layers(model: nn.Module, config: Any) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    stages = sorted((n for n, _ in lists if n.split(".")[-1] == "stages"), key=lambda n: n.count("."))
    if stages:
        name = stages[0]
        layers = [f"{name}.{i}" for i in range(len(model.get_submodule(name)))]
    else:
        depth = getattr(config, "num_hidden_layers", None)
        blocks = sorted((n for n, m in lists if len(m) == depth and n.split(".")[-1] in ("layer", "layers", "block",
                                                                                         "blocks")),
                        key=lambda n: n.count("."))
        layers = [f"{blocks[0]}.{i}" for i in range(int(depth))] if blocks else []
    mlp: List[str] = []
    for layer in layers:
        mlp += _mlp_activations(model.get_submodule(layer), layer)
    return tuple(layers), tuple(mlp)
