"""Which unit labels can you trust?  Network Dissection (bundled segmenter) vs open-vocabulary labels (bundled toy
text-image model, SoftWPMI) vs chance, against the toy world's exact ground truth; plus causal checks.

    python benchmarks/label_accuracy.py                 # about 6 minutes on one CPU core; writes docs/labels.md
    python benchmarks/label_accuracy.py --n 500 --out /tmp/labels.md     # quicker, smaller

Ground truth of a classifier unit: its best concept by IoU against the exact masks of ``--n`` held-out scenes (toy
world seed 1), for units reaching IoU >= 0.04. A label agrees when it names that concept: Network Dissection's label
is the unit's best concept by IoU against the segmenter's masks; an open-vocabulary label is the best word of a
vocabulary of the 16 concept names and the 8 scene-class names (each read in the text-image model's prompt
templates), mapped back to its concept (a scene-class word never agrees), described from whole images (CLIP-Dissect)
or from each image's 3x3 regions (each cropped and described as an image of its own) with the unit's map pooled over
the same regions, or by Network Dissection with the text-image model's word maps as the segmenter (``WordSegmenter``:
each location of an image labelled with the word its local embedding is closest to, from the model's dense head).
Chance: a uniformly random word of the same vocabulary (its expected agreement). Causal check
(:mod:`ganviz.label_checks`): switching the unit off lowers the predicted class's probability by >= 5% over held-out
scenes (seed 3) that show the labelled concept. Perfect describer: SoftWPMI with the exact share of each concept in
the whole image (or in each 32 px crop, stride 16) in place of the text-image model's probabilities -- the ceiling
of any image-level (or crop-level) describer, text-image model or not. Generated images have no exact masks, so for
the GAN the reference is Network Dissection's label and the causal check measures the labelled concept's area.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import ganviz
from ganviz.dissect import ToyWorldSource, dissect_classifier, dissect_generator
from ganviz.generator_units import GeneratorProbe
from ganviz.label_checks import classifier_label_checks, generator_label_checks
from ganviz.openvocab import label_classifier_units, label_generator_units, labels_from_masks
from ganviz.textimage import WordSegmenter
from ganviz.plumbing import seeded_latents
from ganviz.zoo.toy_clip import toy_text_image
from ganviz.toyworld import CONCEPTS, SCENE_CLASSES
from ganviz.toyworld.captions import CLASS_WORDS, WORD_CONCEPT
from ganviz.zoo.evaluate import held_out

MIN_IOU = 0.04
REGIONS = 3  # open-vocabulary labels also from each image's 3x3 regions, each cropped and described on its own
VOCABULARY = list(CONCEPTS) + [CLASS_WORDS[c][0] for c in SCENE_CLASSES]


def agreement(labels: dict, truth: dict) -> float:
    return float(np.mean([labels.get(u) == c for u, c in truth.items()])) if truth else float("nan")


def chance() -> float:
    """Expected agreement of a uniformly random vocabulary word (each concept has exactly one word)."""
    return 1.0 / len(VOCABULARY)


def describer_ceiling(model, layer: str, source, truth: dict, crop: int = 0) -> float:
    labels = labels_from_masks(model, layer, source, crop=crop).labels()
    return agreement(dict(enumerate(labels)), truth)


def confirmed(checks: dict, units) -> int:
    return sum(checks[u].confirmed() for u in units if u in checks)


def word_map_labels(result) -> dict:
    """Concepts named by a dissection whose concepts are vocabulary words (a scene-class word names none)."""
    return {u: WORD_CONCEPT.get(result.concept_names[c]) for u, c in enumerate(result.best_concept)}


def classifier_rows(name: str, layer: str, n: int, tim, cache: str) -> dict:
    model, _ = ganviz.load(name)
    seg, _ = ganviz.load("toy-segmenter")
    source = ToyWorldSource(n, seed=1)
    t = time.time()
    exact = dissect_classifier(model, layer, source, progress=False, cache_dir=cache)
    truth = {u: exact.concept_names[c] for u, (c, iou) in enumerate(zip(exact.best_concept, exact.best_iou))
             if iou >= MIN_IOU}
    netdissect = dissect_classifier(model, layer, source, segmenter=seg, progress=False, cache_dir=cache)
    nd = {u: netdissect.concept_names[c] for u, c in enumerate(netdissect.best_concept)}
    words = label_classifier_units(model, layer, source, tim, VOCABULARY, progress=False, cache_dir=cache)
    ov = {u: WORD_CONCEPT.get(w) for u, w in enumerate(words.labels())}
    parts = label_classifier_units(model, layer, source, tim, VOCABULARY, regions=REGIONS, progress=False,
                                   cache_dir=cache)
    ov_parts = {u: WORD_CONCEPT.get(w) for u, w in enumerate(parts.labels())}
    maps = dissect_classifier(model, layer, source, segmenter=word_segmenter(), progress=False, cache_dir=cache)
    x, labels, _ = held_out(400, seed=3)
    nd_checks = classifier_label_checks(model, layer, {u: nd[u] for u in truth}, x, labels, concept_names=CONCEPTS)
    ov_checks = classifier_label_checks(model, layer, {u: ov[u] for u in truth if ov[u]}, x, labels,
                                        concept_names=CONCEPTS)
    return {"model": name, "layer": layer, "units": exact.num_units, "with_ground_truth": len(truth),
            "netdissect": agreement(nd, truth), "open_vocabulary": agreement(ov, truth),
            "open_vocabulary_regions": agreement(ov_parts, truth),
            "open_vocabulary_word_maps": agreement(word_map_labels(maps), truth), "chance": chance(),
            "perfect_image_describer": describer_ceiling(model, layer, source, truth),
            "perfect_crop_describer": describer_ceiling(model, layer, source, truth, crop=32),
            "netdissect_causal": confirmed(nd_checks, truth), "open_vocabulary_causal": confirmed(ov_checks, truth),
            "reference": "exact masks", "seconds": round(time.time() - t)}


def generator_row(n: int, tim, cache: str) -> dict:
    gen, _ = ganviz.load("toy-gan")
    seg, _ = ganviz.load("toy-segmenter")
    t = time.time()
    result = dissect_generator(gen, "layer4", seg, n=n, progress=False, cache_dir=cache)
    truth = {u: result.concept_names[c] for u, (c, iou) in enumerate(zip(result.best_concept, result.best_iou))
             if iou >= MIN_IOU}
    words = label_generator_units(gen, "layer4", tim, VOCABULARY, n=n, progress=False, cache_dir=cache)
    ov = {u: WORD_CONCEPT.get(w) for u, w in enumerate(words.labels())}
    parts = label_generator_units(gen, "layer4", tim, VOCABULARY, n=n, regions=REGIONS, progress=False,
                                  cache_dir=cache)
    ov_parts = {u: WORD_CONCEPT.get(w) for u, w in enumerate(parts.labels())}
    maps = dissect_generator(gen, "layer4", word_segmenter(), n=n, progress=False, cache_dir=cache)
    probe = GeneratorProbe(gen, "layer4", seg, result)
    z = seeded_latents(32, 128, 77)
    nd_checks = generator_label_checks(probe, z, labels=truth)
    ov_checks = generator_label_checks(probe, z, labels={u: ov[u] for u in truth if ov[u]})
    return {"model": "toy-gan", "layer": "layer4", "units": result.num_units, "with_ground_truth": len(truth),
            "netdissect": 1.0, "open_vocabulary": agreement(ov, truth),
            "open_vocabulary_regions": agreement(ov_parts, truth),
            "open_vocabulary_word_maps": agreement(word_map_labels(maps), truth), "chance": chance(),
            "perfect_image_describer": float("nan"), "perfect_crop_describer": float("nan"),
            "netdissect_causal": confirmed(nd_checks, truth), "open_vocabulary_causal": confirmed(ov_checks, truth),
            "reference": "Network Dissection (segmenter)", "seconds": round(time.time() - t)}


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{v:.0%}"


def table(rows: list) -> str:
    head = ("| model | layer | units with a reference label | Network Dissection agrees | open-vocabulary agrees: "
            f"whole images / {REGIONS}x{REGIONS} regions / word maps | chance | perfect describer: whole image / 32 px crops "
            "| causal check passed (ND / open-vocab) | reference |\n|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['model']} | `{r['layer']}` | {r['with_ground_truth']} of {r['units']} | {_pct(r['netdissect'])} | "
        f"{_pct(r['open_vocabulary'])} / {_pct(r['open_vocabulary_regions'])} / "
        f"{_pct(r['open_vocabulary_word_maps'])} | {_pct(r['chance'])} | "
        f"{_pct(r['perfect_image_describer'])} / "
        f"{_pct(r['perfect_crop_describer'])} | {r['netdissect_causal']} / {r['open_vocabulary_causal']}"
        f" | {r['reference']} |\n" for r in rows)


def word_segmenter() -> WordSegmenter:
    """The toy text-image model's word maps over :data:`VOCABULARY`."""
    return WordSegmenter(toy_text_image(dense=True), VOCABULARY)


def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="probe scenes (and GAN samples)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "labels.md"))
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "ganviz"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tim = toy_text_image()
    rows = [classifier_rows("toy-classifier", "conv5_3", args.n, tim, args.cache),
            classifier_rows("toy-vit", "blocks.3.mlp.act", args.n, tim, args.cache),
            generator_row(args.n, tim, args.cache)]
    text = table(rows)
    print(text)
    out = Path(args.out)
    intro = __doc__.split("\n\n", 2)[2].strip()
    out.write_text(f"# Which unit labels can you trust?\n\nWritten by `python benchmarks/label_accuracy.py` "
                   f"(n = {args.n}).\n\n{intro}\n\n{text}\n```json\n{json.dumps(rows, indent=1)}\n```\n")
    return rows


if __name__ == "__main__":
    main()
