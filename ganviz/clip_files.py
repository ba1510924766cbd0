"""CLIP checkpoints from local files, offline, as :class:`~ganviz.textimage.TextImageModel`.

    tim = load_text_image("ckpt/clip-vit-base-patch32")      # a Hugging Face CLIPModel directory
    tim = load_text_image("ViT-B-32.pt", tokenizer="ckpt/clip-vit-base-patch32")   # an open_clip-layout state dict

Hugging Face: ``config.json`` (model_type ``clip``), the weights and the tokenizer files, as
``CLIPModel.save_pretrained`` plus ``CLIPProcessor.save_pretrained`` write them; needs ``transformers``.  Images
are resized (shorter side, bicubic), centre-cropped and normalised as ``preprocessor_config.json`` says, else with
CLIP's published mean and std at the vision config's image size.  open_clip: the state dict of a ViT CLIP
(:mod:`ganviz.models.clip`; open_clip itself is not needed), its tokenizer a Hugging Face CLIP tokenizer directory
(the same BPE vocabulary) or any callable giving token ids.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence, Union

import torch
from torch import Tensor

from .textimage import TextImageModel, resize_center_crop

__all__ = ["load_text_image"]


def _pooled(out: Any) -> Tensor:
    """transformers 4.x returns the projected embedding, 5.x a model output holding it as ``pooler_output``."""
    if isinstance(out, Tensor):
        return out
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, name, None)
        if isinstance(value, Tensor):
            return value
    raise TypeError(f"cannot find the embedding in a {type(out).__name__}")


def _hf_clip(path: Path, device: Union[str, torch.device]) -> TextImageModel:
    from .checkpoints import CheckpointError
    from .hf import _check_dir, read_preprocessing, require_transformers

    transformers = require_transformers()
    p = _check_dir(path)
    config = transformers.AutoConfig.from_pretrained(str(p), local_files_only=True)
    if getattr(config, "model_type", "") != "clip":
        raise CheckpointError(f"{p} holds a {config.model_type!r} model, not a CLIP (config.json model_type "
                              "'clip', a CLIPModel)")
    model, info = transformers.CLIPModel.from_pretrained(str(p), local_files_only=True, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(f"{p} lacks weights of its CLIPModel (they would be random): {', '.join(missing[:8])}")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{p} has no tokenizer files (vocab.json and merges.txt, or tokenizer.json, as "
                                f"CLIPProcessor.save_pretrained writes): {err}") from err
    model = model.to(device).eval()
    prep = read_preprocessing(p, SimpleNamespace(model_type="clip", image_size=config.vision_config.image_size))
    size = prep.image_size[0]
    norm = prep.normalize

    def text_fn(texts: Sequence[str]) -> Tensor:
        batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(device)
        return _pooled(model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))

    return TextImageModel(lambda x: _pooled(model.get_image_features(pixel_values=x)), text_fn,
                          lambda x: norm(resize_center_crop(x, size)), p.name, model)


def _open_clip_file(path: Path, device: Union[str, torch.device], tokenizer: Any,
                    quick_gelu: bool) -> TextImageModel:
    from .checkpoints import load_state
    from .models.clip import clip_from_state_dict
    from .preprocessing import CLIP_MEAN, CLIP_STD, Normalize

    if tokenizer is None:
        raise ValueError("an open_clip state dict holds no tokenizer: pass tokenizer= a Hugging Face CLIP "
                         "tokenizer directory (vocab.json + merges.txt, the same BPE as OpenAI's) or a callable "
                         "mapping a list of strings to token ids (N, 77)")
    if isinstance(tokenizer, (str, os.PathLike)):
        from .hf import require_transformers

        hf_tok = require_transformers().AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    state, _ = load_state(path)
    model = clip_from_state_dict(state, quick_gelu=quick_gelu).to(device)
    ctx = model.context_length

    def tokens(texts: Sequence[str]) -> Tensor:
        if callable(tokenizer) and not isinstance(tokenizer, (str, os.PathLike)):
            ids = tokenizer(list(texts))
        else:
            ids = hf_tok(list(texts), padding="max_length", truncation=True, max_length=ctx, return_tensors="pt")
        if isinstance(ids, Mapping):  # a Hugging Face tokenizer object called directly
            ids = ids["input_ids"]
        return torch.as_tensor(ids)

    norm = Normalize((0.0, 1.0), CLIP_MEAN, CLIP_STD)
    size = model.visual.image_size
    return TextImageModel(model.encode_image, lambda t: model.encode_text(tokens(t).to(device)),
                          lambda x: norm(resize_center_crop(x, size)), path.name, model)


def load_text_image(path: Union[str, "os.PathLike[str]"], device: Union[str, torch.device] = "cpu",
                    tokenizer: Any = None, quick_gelu: bool = True) -> TextImageModel:
    """A CLIP from local files, offline: a Hugging Face ``CLIPModel`` directory (config.json, weights and
    tokenizer files, as ``save_pretrained`` writes), or an open_clip-layout state dict file (``.pt``, ``.bin``,
    ``.safetensors``; ``tokenizer``: a Hugging Face CLIP tokenizer directory or a callable; ``quick_gelu``:
    True for OpenAI's weights and ``-quickgelu`` models, False for open_clip's other pretrained weights)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.is_dir():
        return _hf_clip(p, device)
    if p.is_file():
        return _open_clip_file(p, device, tokenizer, quick_gelu)
    raise FileNotFoundError(f"no CLIP checkpoint at {p}: expected a Hugging Face CLIPModel directory or an "
                            "open_clip state dict file (nothing is downloaded)")
