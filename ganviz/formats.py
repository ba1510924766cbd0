"""One-line loading of real checkpoints: ``ganviz.load_checkpoint(path)`` -> an adapter, format auto-detected.

Formats (key layouts documented with their sources in ``docs/models.md``):

=============  ==========================================================  =====================
format         layout                                                      adapter
=============  ==========================================================  =====================
``progan``     GAN Dissection's ProGAN conversion (``layer1.conv.weight``)  GeneratorAdapter
``stylegan2``  rosinality's stylegan2-pytorch (``g_ema``, ``convs.N``)      GeneratorAdapter
``vgg16``      torchvision VGG-16 (``features.N``, ``classifier.6``)        ClassifierAdapter
               (or ``features.conv1_1``, ``classifier.fc8a``: dissect's)
``resnet``     torchvision ResNet-18 ... 152 (``layer1.0.conv1``, ``fc``)   ClassifierAdapter
``deeplabv3``  torchvision DeepLabV3-ResNet50/101 (``backbone.*``)          SegmenterAdapter
``vit``        timm's ViT / DeiT (``patch_embed.proj``, ``blocks.N.attn.qkv``) ClassifierAdapter
=============  ==========================================================  =====================

A directory holding ``config.json`` (a Hugging Face ``save_pretrained`` folder) loads through
:func:`ganviz.hf.load_hf` (image classifiers and semantic segmenters; needs the optional ``transformers``).

Inception-v3 weights for FID (torchvision's or pytorch-fid's file): :func:`inception_features`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, Normalize
from .adapters import (ClassifierAdapter, GeneratorAdapter,
                       SegmenterAdapter, as_classifier, read_class_names)
from .checkpoints import CheckpointError, load_into, load_state
from .metrics import FeatureExtractor, layer_features
from .hf import load_hf
from .models import inception, progan, resnet, segmenters, stylegan2, vgg, vit

__all__ = ["FORMATS", "detect_format", "load_checkpoint", "save_random_checkpoint", "progan_adapter",
           "stylegan2_adapter", "vgg16_adapter", "resnet_adapter", "deeplabv3_adapter", "inception_features",
           "INCEPTION_VARIANTS", "vit_adapter", "hf_adapter"]

FORMATS = ("progan", "stylegan2", "vgg16", "resnet", "deeplabv3", "vit")
Adapter = Union[ClassifierAdapter, GeneratorAdapter, SegmenterAdapter]


def detect_format(state: Mapping[str, Tensor]) -> str:
    """The format of a state dict, from its key names (see the module docstring)."""
    keys = set(state)
    if {"layer1.conv.weight", "layer1.wscale.b"} <= keys or {"features.0.conv.weight", "features.0.wscale.b"} <= keys:
        return "progan"
    if {"input.input", "conv1.conv.modulation.weight"} <= keys:
        return "stylegan2"
    if {"backbone.conv1.weight", "classifier.4.weight"} <= keys:
        return "deeplabv3"
    if {"features.0.weight", "classifier.6.weight"} <= keys or ("features.conv1_1.weight" in keys and (
            "classifier.fc8a.weight" in keys or "classifier.fc8.weight" in keys)):
        return "vgg16"
    if {"conv1.weight", "layer1.0.conv1.weight", "fc.weight"} <= keys:
        return "resnet"
    if {"patch_embed.proj.weight", "pos_embed", "blocks.0.attn.qkv.weight"} <= keys:
        return "vit"
    raise CheckpointError(f"cannot tell the format of this state dict from its keys ({', '.join(sorted(keys)[:6])}"
                          f"{' ...' if len(keys) > 6 else ''}); supported formats: {', '.join(FORMATS)}")


def _paint_layers(resolutions: Mapping[str, int], out_res: int) -> tuple:
    top = max(8, out_res // 8)
    return tuple(n for n, r in resolutions.items() if 8 <= r <= top)


def progan_adapter(model: progan.ProgressiveGenerator, name: str = "") -> GeneratorAdapter:
    """Adapter of a ProGAN generator: layers ``layer1`` ... ``layerN``; paints at 8x8 ... resolution/8."""
    res = model.layer_resolutions()
    default = "layer4" if model.num_layers >= 4 else f"layer{model.num_layers}"
    return GeneratorAdapter(model, model.z_dim, model.resolution, tuple(res), default,
                            _paint_layers(res, model.resolution), (-1.0, 1.0), name or "progan", res)


def stylegan2_adapter(model: stylegan2.StyleGAN2Generator, name: str = "") -> GeneratorAdapter:
    """Adapter of a StyleGAN2 generator: synthesis layers ``conv1``, ``convs.0`` ...; default ``convs.3`` (16x16)."""
    res = model.layer_resolutions()
    default = "convs.3" if len(model.convs) > 3 else f"convs.{len(model.convs) - 1}"
    return GeneratorAdapter(model, model.style_dim, model.size, tuple(res), default,
                            _paint_layers(res, model.size), (-1.0, 1.0), name or "stylegan2", res)


def _class_names(given: Any, n: int) -> tuple:
    if given is None:
        return tuple(f"class{i}" for i in range(n))
    names = read_class_names(given)
    if len(names) != n:
        raise ValueError(f"{len(names)} class names given but the checkpoint has {n} classes")
    return names


def vgg16_adapter(model: vgg.VGG, class_names: Any = None, name: str = "",
                  preprocess: Optional[Any] = None) -> ClassifierAdapter:
    """Adapter of a torchvision-layout VGG-16: layers are the ReLU outputs (``conv5_3`` is ``features.29``)."""
    titles = vgg.conv_layer_names(model)
    layers = tuple(titles.values())
    return ClassifierAdapter(model, _class_names(class_names, model.num_classes), layers, titles["conv5_3"], 224,
                             preprocess or Normalize((0, 1), IMAGENET_MEAN, IMAGENET_STD), name or "vgg16",
                             {v: k for k, v in titles.items()})


def resnet_adapter(model: resnet.ResNet, class_names: Any = None, name: str = "",
                   preprocess: Optional[Any] = None) -> ClassifierAdapter:
    """Adapter of a torchvision-layout ResNet: layers ``layer1`` ... ``layer4``."""
    layers = ("layer1", "layer2", "layer3", "layer4")
    return ClassifierAdapter(model, _class_names(class_names, model.num_classes), layers, "layer4", 224,
                             preprocess or Normalize((0, 1), IMAGENET_MEAN, IMAGENET_STD), name or "resnet")


def deeplabv3_adapter(model: nn.Module, class_names: Any = None, concepts: Optional[Mapping[str, str]] = None,
                      name: str = "") -> SegmenterAdapter:
    """Adapter of a DeepLabV3 (ours or torchvision's): VOC class names when it has 21 classes."""
    n = int(getattr(model, "num_classes", 0) or model.classifier[-1].out_channels)
    if class_names is None and n == len(segmenters.VOC_CLASSES):
        class_names = segmenters.VOC_CLASSES
    return SegmenterAdapter(model, _class_names(class_names, n), concepts=concepts,
                            preprocess=Normalize((0, 1), IMAGENET_MEAN, IMAGENET_STD), name=name or "deeplabv3")


def vit_adapter(model: vit.VisionTransformer, class_names: Any = None, name: str = "",
                preprocess: Optional[Any] = None, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> ClassifierAdapter:
    """Adapter of a timm-layout ViT / DeiT: layers ``blocks.{i}.mlp.act`` (MLP neurons) and ``blocks.{i}`` (the
    residual stream), in forward order, seen as maps on the patch grid (the model's ``layer_layouts()``).

    Normalisation: ``preprocess``, else ``Normalize((0, 1), mean, std)``, ImageNet's mean and std by default (DeiT,
    most timm ViTs); the original ViT (augreg) weights want ``mean = std = (0.5, 0.5, 0.5)``.  Resolution: the
    model's image height.  Default layer: the last block; with a class-token head the one before it (the last
    block's patch tokens never reach the class token, so removing their units changes nothing).
    """
    depth = len(model.blocks)
    layers = tuple(n for i in range(depth) for n in (f"blocks.{i}.mlp.act", f"blocks.{i}"))
    default = f"blocks.{depth - 2}" if depth > 1 and model.global_pool == "token" else f"blocks.{depth - 1}"
    titles = {n: f"block {n.split('.')[1]}" + (" MLP" if n.endswith(".act") else "") for n in layers}
    return ClassifierAdapter(model, _class_names(class_names, model.num_classes), layers, default,
                             model.image_size[0], preprocess or Normalize((0, 1), tuple(mean), tuple(std)),
                             name or "vit", titles)


def hf_adapter(path: Union[str, "os.PathLike[str]"], device: Union[str, torch.device] = "cpu", class_names: Any = None,
               concepts: Optional[Mapping[str, str]] = None, name: str = "") -> Adapter:
    """The adapter of a Hugging Face checkpoint directory (:func:`ganviz.hf.load_hf`): a classifier's
    :class:`ClassifierAdapter` (class names from the config unless ``class_names``), or a segmenter's
    :class:`SegmenterAdapter` with its classes mapped to concepts by ``concepts`` (default: the ADE20K mapping)."""
    model = load_hf(path, device=device)
    label = name or Path(path).name
    if not hasattr(model, "layers"):  # a segmenter
        return model.adapter(concepts="ade20k" if concepts is None else concepts, name=label)
    adapter = model.adapter(name=label)
    return adapter if class_names is None else as_classifier(adapter, class_names)


def _torchvision_deeplab(state: Dict[str, Tensor]) -> Optional[nn.Module]:
    try:
        from torchvision.models.segmentation import deeplabv3_resnet50
    except ImportError:
        return None
    n = int(state["classifier.4.weight"].shape[0])
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=n,
                               aux_loss="aux_classifier.4.weight" in state)
    return load_into(model, state, "torchvision's DeepLabV3-ResNet50")


def load_checkpoint(path: Union[str, "os.PathLike[str]"], format: Optional[str] = None, *,
                    device: Union[str, torch.device] = "cpu", class_names: Any = None,
                    concepts: Optional[Mapping[str, str]] = None, truncation: Optional[float] = None,
                    use_torchvision: bool = False, name: str = "", preprocess: Optional[Any] = None,
                    num_heads: Optional[int] = None) -> Adapter:
    """Load a checkpoint file (or a Hugging Face directory) into a ganviz adapter, in eval mode on ``device``;
    nothing is downloaded.

    ``format`` is one of :data:`FORMATS` (default: detected from the key names).  The file is read with
    ``weights_only=True`` (or as safetensors); ``state_dict`` / ``g_ema`` wrappers and ``module.`` prefixes are
    unwrapped; missing, unexpected or mismatched keys raise :class:`~ganviz.checkpoints.CheckpointError` naming
    them.  ``class_names``: a list or a text file (e.g. Places365's ``categories_places365.txt``) for
    classifiers and segmenters; ``concepts``: segmenter class -> concept name; ``truncation``: StyleGAN2's (the
    mean latent is the checkpoint's ``latent_avg`` or the mean of 4096 mapped samples); ``use_torchvision``:
    build a DeepLabV3 with torchvision when it is installed; ``preprocess``: a classifier's normalisation (default
    ImageNet's mean/std, see :func:`vit_adapter`); ``num_heads``: a ViT's (default: by its width,
    :func:`ganviz.models.vit.heads_for`).  A directory with ``config.json`` goes to :func:`hf_adapter`.
    """
    if Path(path).is_dir():
        return hf_adapter(path, device, class_names, concepts, name)
    state, extras = load_state(path)
    fmt = format or detect_format(state)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    label = name or Path(path).stem
    adapter: Adapter
    if fmt == "progan":
        adapter = progan_adapter(progan.from_state_dict(state), label)
    elif fmt == "stylegan2":
        model = stylegan2.from_state_dict(state, extras.get("latent_avg"))
        if truncation is not None:
            model.truncation = float(truncation)
        adapter = stylegan2_adapter(model, label)
    elif fmt == "vgg16":
        state = vgg.normalise_state_dict(state)
        if "classifier.6.weight" not in state:
            raise CheckpointError("not a torchvision VGG-16 state dict: no classifier.6.weight")
        bn = any(k.endswith("running_mean") for k in state if k.startswith("features."))
        model = vgg.vgg16(int(state["classifier.6.weight"].shape[0]), batch_norm=bn)
        adapter = vgg16_adapter(load_into(model, state, "a torchvision VGG-16"), class_names, label)
    elif fmt == "resnet":
        try:
            depth = resnet.depth_from_state_dict(state)
        except ValueError as err:
            raise CheckpointError(str(err)) from None
        model = resnet.resnet(depth, int(state["fc.weight"].shape[0]))
        adapter = resnet_adapter(load_into(model, state, f"a torchvision ResNet-{depth}"), class_names, label)
    elif fmt == "vit":
        adapter = vit_adapter(vit.vit_from_state_dict(state, num_heads=num_heads), class_names, label, preprocess)
    else:
        model = (_torchvision_deeplab(state) if use_torchvision else None) or segmenters.deeplabv3_from_state_dict(state)
        adapter = deeplabv3_adapter(model, class_names, concepts, label)
    net = adapter if isinstance(adapter, nn.Module) else adapter.model
    net.to(device).eval()
    return adapter


def save_random_checkpoint(format: str, path: Union[str, "os.PathLike[str]"], *, seed: int = 0,
                           **kwargs: Any) -> Path:
    """Write a randomly initialised state dict in ``format``'s exact layout (for tests, demos, benchmarks).

    kwargs: ``resolution`` (progan), ``size``/``channel_multiplier`` (stylegan2), ``num_classes`` (vgg16,
    resnet, deeplabv3), ``depth`` (resnet), :class:`~ganviz.models.vit.VisionTransformer`'s arguments
    (vit).  StyleGAN2 files are wrapped as ``{"g_ema": ...}`` like the port's.
    """
    from .checkpoints import save_state

    torch.manual_seed(seed)
    if format == "progan":
        model: nn.Module = progan.progan(kwargs.get("resolution", 256))
        for m in model.modules():  # the published weights are N(0, 1) under the equalised-lr scale
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight)
        return save_state(model, path)
    if format == "stylegan2":
        model = stylegan2.StyleGAN2Generator(kwargs.get("size", 256), channel_multiplier=kwargs.get("channel_multiplier", 2))
        return save_state(model, path, wrap="g_ema")
    if format == "vgg16":
        return save_state(vgg.vgg16(kwargs.get("num_classes", 365)), path)
    if format == "resnet":
        return save_state(resnet.resnet(kwargs.get("depth", 18), kwargs.get("num_classes", 1000)), path)
    if format == "deeplabv3":
        return save_state(segmenters.DeepLabV3(kwargs.get("num_classes", 21), aux=kwargs.get("aux", False)), path)
    if format == "vit":  # kwargs: those of ganviz.models.vit.VisionTransformer (image_size, embed_dim, depth, ...)
        return save_state(vit.VisionTransformer(**kwargs), path)
    raise ValueError(f"unknown format {format!r}; formats: {', '.join(FORMATS)}")


INCEPTION_VARIANTS = ("auto", "torchvision", "fid")


def inception_features(path: str | os.PathLike[str], device: str | torch.device = "cpu", variant: str = "auto",
                       batch: int = 50) -> FeatureExtractor:
    """The usual FID features: Inception-v3's 2048-d pooled features, from a weights file you supply.

    ``path``: a torchvision ``inception_v3`` state dict (e.g. ``inception_v3_google-0cc3c7bd.pth``; with or
    without ``AuxLogits.*``) or pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the TensorFlow FID
    network, which published FID values use); read safely by :func:`ganviz.checkpoints.load_state`, nothing is
    downloaded.  ``variant``: ``"auto"`` tells them apart from ``fc.weight`` (1000 vs 1008 classes),
    ``"torchvision"`` / ``"fid"`` force one.  Images in [-1, 1] are resized to 299x299 (bilinear, as pytorch-fid)
    and fed in [-1, 1] (pytorch-fid), or ImageNet-normalised for the torchvision weights, which the model maps
    back to [-1, 1] as torchvision's pretrained ``inception_v3`` does (``transform_input``).  Missing,
    unexpected or mis-shaped keys raise :class:`~ganviz.checkpoints.CheckpointError` naming them.  The network
    is available as the extractor's ``model`` attribute.
    """
    if variant not in INCEPTION_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants: {', '.join(INCEPTION_VARIANTS)}")
    state, _ = load_state(path)
    try:
        detected = inception.variant_from_state_dict(state)
    except ValueError as err:
        if variant == "auto" or "fc.weight" not in state:
            raise CheckpointError(f"{path}: {err}") from None
        detected = variant
    variant = detected if variant == "auto" else variant
    fid_net = variant == "fid"
    aux = any(k.startswith("AuxLogits.") for k in state)
    model = inception.Inception3(int(state["fc.weight"].shape[0]), aux_logits=aux, transform_input=not fid_net,
                                 fid=fid_net)
    what = "pytorch-fid's FID Inception-v3" if fid_net else "torchvision's Inception-v3"
    load_into(model, state, what)
    model.to(device).eval()
    if fid_net:
        extract = layer_features(model, "avgpool", size=299, batch=batch)
    else:
        extract = layer_features(model, "avgpool", size=299, mean=IMAGENET_MEAN, std=IMAGENET_STD, batch=batch)
    extract.model = model  # type: ignore[attr-defined]
    return extract
