"""Load the bundled toy-world models offline: safetensors weights, checked against recorded sha256 sums."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..checkpoints import check_regular_file
from ..toyworld import CONCEPTS, SCENE_CLASSES
from .arch import TOY_VIT, ToyCLIP, ToyEncoder, ToyGenerator, ToySegmenter, ToyVGG, toy_vit

__all__ = ["WEIGHTS_DIR", "MANIFEST", "ChecksumError", "ModelInfo", "available", "info", "load", "save_weights",
           "adapter"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"


class ChecksumError(RuntimeError):
    """A weights file does not match the sha256 recorded when it was exported."""


@dataclass
class ModelInfo:
    """What a user needs to drive a bundled model."""

    name: str
    kind: str  # "classifier" | "generator" | "segmenter" | "encoder" | "textimage"
    resolution: int
    input_range: tuple[float, float]  # images are fed (and generated) in this value range
    layers: tuple[str, ...]  # layers worth inspecting, shallow to deep
    default_layer: str
    class_names: tuple[str, ...] = ()
    concept_names: tuple[str, ...] = ()
    z_dim: int = 0
    description: str = ""
    file: str = ""
    sha256: str = ""
    extra: dict = field(default_factory=dict)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] (N,3,H,W) to the model's input range."""
        lo, hi = self.input_range
        return images * (hi - lo) + lo

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        """Map model-range images (e.g. generator output) back to [0, 1]."""
        lo, hi = self.input_range
        return ((images - lo) / (hi - lo)).clamp(0, 1)


def _clip_words(folder: Path = WEIGHTS_DIR) -> int:
    """The toy text-image model's vocabulary size, from its manifest entry (the caption words it was trained on)."""
    from ..toyworld.captions import CAPTION_WORDS

    return len(_read_manifest(folder).get("toy-clip", {}).get("extra", {}).get("vocabulary", CAPTION_WORDS)) + 2


def _specs() -> dict[str, tuple[Callable[[], nn.Module], ModelInfo]]:
    vgg_layers = tuple(f"conv{b}_{k}" for b in range(1, 6) for k in range(1, ToyVGG.depths[b] + 1))
    vit_layers = tuple(n for i in range(TOY_VIT["depth"]) for n in (f"blocks.{i}", f"blocks.{i}.mlp.act"))
    return {
        "toy-vit": (lambda: toy_vit(len(SCENE_CLASSES)), ModelInfo(
            "toy-vit", "classifier", 64, (-1.0, 1.0), vit_layers, "blocks.3.mlp.act", class_names=SCENE_CLASSES,
            description="small vision transformer scene classifier (8x8 patches, 4 blocks; token layers are "
                        "presented as 8x8 maps)")),
        "toy-clip": (lambda: ToyCLIP(_clip_words()), ModelInfo(
            "toy-clip", "textimage", 64, (-1.0, 1.0), tuple(f"visual.{n}" for n in vgg_layers), "visual.conv5_3",
            description="toy text-image model (CLIP-style) trained on toy scenes and captions written from their "
                        "ground truth; load it with ganviz.toy_text_image()")),
        "toy-classifier": (lambda: ToyVGG(len(SCENE_CLASSES)), ModelInfo(
            "toy-classifier", "classifier", 64, (-1.0, 1.0), vgg_layers, "conv5_3", class_names=SCENE_CLASSES,
            description="VGG-style scene classifier (8 toy-world scene classes, 64x64 input)")),
        "toy-gan": (lambda: ToyGenerator(128), ModelInfo(
            "toy-gan", "generator", 64, (-1.0, 1.0), tuple(f"layer{i}" for i in range(1, 9)), "layer4",
            z_dim=128, description="Progressive-GAN-style generator of 64x64 toy-world scenes")),
        "toy-encoder": (lambda: ToyEncoder(128), ModelInfo(
            "toy-encoder", "encoder", 64, (-1.0, 1.0), ("features", "latent"), "features", z_dim=128,
            description="inverts toy-gan: image -> layer4 features (features) -> z (latent), trained on G(z)")),
        "toy-segmenter": (lambda: ToySegmenter(len(CONCEPTS)), ModelInfo(
            "toy-segmenter", "segmenter", 64, (-1.0, 1.0), ("enc1", "enc2", "enc3", "dec2", "dec1"), "dec1",
            concept_names=CONCEPTS, description="U-Net-style segmenter of the 16 toy-world concepts")),
    }


_TRAINER = {"generator": "gan", "textimage": "clip"}  # kind -> `python -m ganviz.zoo.train` choice


def available() -> list[str]:
    """Names of the bundled models."""
    return sorted(_specs())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def info(name: str) -> ModelInfo:
    """Metadata of a bundled model (without loading its weights)."""
    specs = _specs()
    if name not in specs:
        raise KeyError(f"no bundled model {name!r}; available: {', '.join(sorted(specs))}")
    meta = specs[name][1]
    entry = _read_manifest(WEIGHTS_DIR).get(name, {})
    return ModelInfo(**{**asdict(meta), "file": entry.get("file", ""), "sha256": entry.get("sha256", ""),
                        "extra": entry.get("extra", {})})


def load(name: str, device: str | torch.device = "cpu", folder: str | Path | None = None
         ) -> tuple[nn.Module, ModelInfo]:
    """Load bundled model ``name`` on ``device`` in eval mode; returns ``(model, info)``.

    The weights file's sha256 is checked against the manifest first; nothing is downloaded.  On the CPU the
    convolution weights are stored channels-last (NHWC), which oneDNN runs faster; values and hashes are unchanged.
    """
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    meta = info(name)
    entry = _read_manifest(folder).get(name)
    if entry is None:
        raise FileNotFoundError(f"no weights for {name!r} in {folder}; train them with "
                                f"`python -m ganviz.zoo.train {_TRAINER.get(meta.kind, meta.kind)} --export`")
    path = folder / entry["file"]
    check_regular_file(path, f"weights file for {name!r}")
    digest = _sha256(path)
    if digest != entry["sha256"]:
        raise ChecksumError(f"weights file {path} is corrupted or was modified: sha256 {digest[:16]}... does not "
                            f"match the recorded {entry['sha256'][:16]}...; reinstall ganviz or re-export the model")
    model = ToyCLIP(_clip_words(folder)) if name == "toy-clip" else _specs()[name][0]()
    model.load_state_dict(load_file(str(path)), strict=True)
    model = model.to(device).eval()
    if torch.device(device).type == "cpu":
        # oneDNN runs NHWC convolutions 1.3-2x faster on CPU (python benchmarks/channels_last.py); outputs agree to 1e-5
        model = model.to(memory_format=torch.channels_last)
    meta.file, meta.sha256, meta.extra = entry["file"], digest, entry.get("extra", {})
    return model, meta


def save_weights(name: str, model: nn.Module, folder: str | Path | None = None, extra: dict | None = None,
                 dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model``'s weights as safetensors (floats as ``dtype``; loading casts them back to the model's) and
    record their sha256 in the folder's manifest."""
    from safetensors.torch import save_file

    folder = Path(folder) if folder is not None else WEIGHTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous().cpu() if v.is_floating_point() else v.detach().contiguous().cpu()
             for k, v in model.state_dict().items()}
    path = folder / f"{name}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)
    manifest = _read_manifest(folder)
    manifest[name] = {"file": path.name, "sha256": _sha256(path), "bytes": path.stat().st_size,
                      "extra": extra or manifest.get(name, {}).get("extra", {})}
    mtmp = folder / (MANIFEST + ".tmp")
    mtmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(mtmp, folder / MANIFEST)
    return path


def adapter(name: str, device: str | torch.device = "cpu", folder: str | Path | None = None):
    """Load bundled model ``name`` wrapped in its :mod:`ganviz.adapters` adapter (the protocol real models use)."""
    from ..adapters import ClassifierAdapter, GeneratorAdapter, SegmenterAdapter
    from ..preprocessing import Normalize

    model, meta = load(name, device, folder)
    if meta.kind == "textimage":
        raise ValueError(f"{name!r} is a text-image model: use ganviz.toy_text_image() (its image tower, "
                         "model.visual, is an ordinary classifier-like module)")
    if meta.kind == "classifier":
        return ClassifierAdapter(model, meta.class_names, meta.layers, meta.default_layer, meta.resolution,
                                 Normalize(meta.input_range), name)
    if meta.kind == "generator":
        res = {n: r for n, r in zip(meta.layers, ToyGenerator.resolutions)}
        return GeneratorAdapter(model, meta.z_dim, meta.resolution, meta.layers, meta.default_layer,
                                ("layer3", "layer4", "layer5", "layer6"), meta.input_range, name, res)
    return SegmenterAdapter(model, meta.concept_names, preprocess=Normalize(meta.input_range), name=name).eval()
