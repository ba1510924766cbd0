"""Train the toy text-image model (``python -m ganviz.zoo.train clip``): CLIP's contrastive loss on rendered scenes
and captions written from their ground truth (:mod:`ganviz.toyworld.captions`), a new random caption per scene
and step; then (``--dense-head``) its dense head alone, with the rest frozen, on the words of every place."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..textimage import WordTokenizer
from ..toyworld.captions import CAPTION_WORDS, CLASS_WORDS, CONCEPT_WORDS, SceneFacts, caption, scene_facts
from ..toyworld.concepts import CONCEPTS, SCENE_CLASSES
from .arch import ToyCLIP
from .toy_clip import DENSE_SCALE, TEMPLATES
from .training import Run, autocast_dtype, batch_indices, init_weights, render_dataset, run_loop, to_input

__all__ = ["train_clip", "train_dense_head", "dataset_facts", "vocabulary_embeddings", "cell_shares",
           "dense_word_loss"]


def _facts_chunk(labels: np.ndarray, classes: np.ndarray) -> list[SceneFacts]:
    return [scene_facts(lab, int(c)) for lab, c in zip(labels, classes)]


def dataset_facts(labels: torch.Tensor, classes: torch.Tensor, workers: int = 2) -> list[SceneFacts]:
    """:func:`scene_facts` of every scene (label maps ``(N, H, W)``), in ``workers`` processes."""
    lab, cls = labels.numpy(), classes.numpy()
    chunks = [(lab[i:i + 1000], cls[i:i + 1000]) for i in range(0, len(lab), 1000)]
    if workers <= 1:
        return [f for c in chunks for f in _facts_chunk(*c)]
    with ProcessPoolExecutor(workers) as pool:
        return [f for part in pool.map(_facts_chunk, *zip(*chunks)) for f in part]


def region_crops(images: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor, rng: np.random.Generator,
                 min_side: int = 16, max_side: int = 40) -> tuple[torch.Tensor, list[SceneFacts]]:
    """A random square crop of each scene (``images`` uint8 ``(N, 3, H, W)``, side ``min_side``..``max_side``
    pixels), scaled back to the scene's size, with the facts of what the crop shows (positions and counts are the
    crop's own)."""
    size = images.shape[-1]
    out = torch.empty(images.shape, dtype=torch.float32)
    facts = []
    for i in range(len(images)):
        side = int(rng.integers(min_side, max_side + 1))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
        crop = images[i:i + 1, :, top:top + side, left:left + side].float()
        out[i] = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]
        facts.append(scene_facts(labels[i, top:top + side, left:left + side].numpy(), int(classes[i])))
    return out.add_(0.5).clamp_(0, 255).to(images.dtype), facts


def vocabulary_embeddings(model: ToyCLIP, tokenizer: WordTokenizer) -> torch.Tensor:
    """Text embeddings ``(C + K, D)`` of each concept's canonical word (in :data:`CONCEPTS` order), then of each
    scene class's (in :data:`SCENE_CLASSES` order), each read in every template of
    :data:`~ganviz.zoo.toy_clip.TEMPLATES` and averaged, as ``TextImageModel.encode_words`` reads words."""
    words = [CONCEPT_WORDS[c][0] for c in CONCEPTS] + [CLASS_WORDS[c][0] for c in SCENE_CLASSES]
    with torch.no_grad():
        total = sum(model.encode_text(tokenizer([t.format(w) for w in words])) for t in TEMPLATES)
    return F.normalize(total, dim=-1)


def cell_shares(labels: torch.Tensor, cells: int) -> torch.Tensor:
    """Label maps ``(N, H, W)`` -> the share of each concept in each cell of a ``cells`` x ``cells`` grid
    ``(N, C, cells, cells)``."""
    onehot = F.one_hot(labels.long(), len(CONCEPTS)).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, cells)


def dense_word_loss(local: torch.Tensor, words: torch.Tensor, shares: torch.Tensor, scale: float = 100.0
                    ) -> torch.Tensor:
    """LSeg's pixel-text loss on a grid: the cross-entropy between each place's concept shares ``(N, C, h, w)`` and
    the softmax over words of ``scale`` times the cosine similarity of its local embedding ``(N, D, h, w)`` with
    each word's text embedding ``(W, D)``; words after the first ``C`` are what no place shows (scene-class
    names).  The scale is CLIP's largest: words read in the same templates are close (the toy model's "wall" and
    "window" have cosine 0.92), so a smaller one cannot make a place confident of either."""
    sims = torch.einsum("ndhw,kd->nkhw", F.normalize(local.float(), dim=1), F.normalize(words.float(), dim=-1))
    log_p = F.log_softmax(scale * sims, dim=1)[:, :shares.shape[1]]
    return -(shares * log_p).sum(1).mean()


def train_dense_head(args, images: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    """Train only ``ToyCLIP.dense`` of a trained model (``--init-from``, default the bundled one), starting from
    ``fc`` at every place: AdamW (one-cycle) on :func:`dense_word_loss` between the local embeddings of scenes
    enlarged :data:`DENSE_SCALE` times (as :func:`~ganviz.zoo.toy_clip.toy_text_image` reads them) and the words of
    the concepts in each place (:func:`vocabulary_embeddings`: the frozen text tower reads them as word maps do),
    against the scene-class names as well (no place is a "church").  The image and text embeddings stay exactly as
    they were; other words (synonyms, any phrase) are matched through the text tower alone."""
    tokenizer = WordTokenizer(CAPTION_WORDS)
    torch.manual_seed(args.seed)
    model = ToyCLIP(tokenizer.vocab_size)
    init_weights(model, "toy-clip", args.init_from or "bundled", new=("dense.",))  # older weights have no head
    model.reset_dense()
    model.requires_grad_(False).eval()
    model.dense.requires_grad_(True)
    lr = args.lr or 1e-3
    opt = torch.optim.AdamW(model.dense.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=args.steps, pct_start=0.1)
    run = Run(Path(args.out), "clip-dense", {"model": model, "opt": opt, "sched": sched})
    run.resume()
    words = vocabulary_embeddings(model, tokenizer)

    def body(step: int) -> str:
        idx = batch_indices(args.seed, step, len(images), args.batch)
        rng = np.random.default_rng([args.seed, step])
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        lab = labels[idx].clone()
        lab[flip] = lab[flip].flip(-1)
        with torch.no_grad():
            x = F.interpolate(to_input(images[idx], flip), scale_factor=DENSE_SCALE, mode="bilinear",
                              align_corners=False)
            feats = model.visual.conv_features(x)
        local = model.dense(feats)
        loss = dense_word_loss(local, words, cell_shares(lab, local.shape[-1]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return f"loss={loss.item():.3f}"

    run_loop(run, args.steps, args.every, body, args.log_every, args.until, args.minutes)
    return model.eval()


def train_clip(args) -> nn.Module:
    """AdamW (one-cycle) on the symmetric InfoNCE loss of CLIP with a learned temperature; images flip
    horizontally with their captions' left and right; a share ``--crop-prob`` of each batch are region crops
    (:func:`region_crops`) captioned with what the crop shows, so that parts of scenes get words too."""
    images, labels, classes = render_dataset(args.data, args.world_seed, args.workers)
    if args.dense_head:
        return train_dense_head(args, images, labels)
    facts = dataset_facts(labels, classes, args.workers)
    tokenizer = WordTokenizer(CAPTION_WORDS)
    torch.manual_seed(args.seed)
    dtype = autocast_dtype(torch.device("cpu"), args.autocast)
    model = ToyCLIP(tokenizer.vocab_size)
    model.visual.to(memory_format=torch.channels_last)
    lr = args.lr or 1e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=args.steps, pct_start=0.1)
    run = Run(Path(args.out), "clip", {"model": model, "opt": opt, "sched": sched})
    run.resume()
    model.train()

    def body(step: int) -> str:
        idx = batch_indices(args.seed, step, len(images), args.batch)
        rng = np.random.default_rng([args.seed, step])
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        batch_images, batch_facts = images[idx], [facts[i] for i in idx.tolist()]
        n_crops = int(round(args.crop_prob * len(idx)))
        if n_crops:
            first = idx[:n_crops]
            crops, crop_facts = region_crops(batch_images[:n_crops], labels[first], classes[first], rng)
            batch_images = torch.cat([crops, batch_images[n_crops:]])
            batch_facts = crop_facts + batch_facts[n_crops:]
        texts = [caption(f.mirrored() if m else f, rng) for f, m in zip(batch_facts, flip.tolist())]
        tokens = tokenizer(texts)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            img = model.encode_image(to_input(batch_images, flip))
            txt = model.encode_text(tokens)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == target).float().mean().item()
        return f"loss={loss.item():.3f} batch_acc={acc:.3f} scale={model.logit_scale.exp().item():.1f}"

    run_loop(run, args.steps, args.every, body, args.log_every, args.until, args.minutes)
    return model.eval()
