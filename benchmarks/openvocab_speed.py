"""Open-vocabulary labelling of a layer vs a plain dissection of the same layer, timed in one run (ratios).

    python benchmarks/openvocab_speed.py            # about 3 minutes on one CPU core
    python benchmarks/openvocab_speed.py --n 500 --repeats 1

Over the same 2,000 toy scenes (rendered on the fly by all four): Network Dissection of the toy classifier's
``conv5_3`` with the bundled segmenter's masks, the same with the toy world's exact masks, and SoftWPMI labels from
the toy text-image model with the default vocabulary (224 words), from whole images and from 3x3 regions (each
cropped and encoded), and Network Dissection with the text-image model's word maps as the segmenter
(``WordSegmenter``, the same 224 words). No caches; each is run ``--repeats`` times in turn and the fastest run counts. The bar (issue
17): labelling <= 2x a plain dissection.
"""
from __future__ import annotations

import argparse
import time

import torch

import ganviz
from ganviz.dissect import ToyWorldSource, dissect_classifier
from ganviz.openvocab import default_vocabulary, label_classifier_units
from ganviz.textimage import WordSegmenter
from ganviz.zoo.toy_clip import toy_text_image


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clf, _ = ganviz.load("toy-classifier")
    seg, _ = ganviz.load("toy-segmenter")
    tim = toy_text_image()
    source = ToyWorldSource(args.n, seed=1)
    words = default_vocabulary()
    word_maps = WordSegmenter(toy_text_image(dense=True), words)
    jobs = {
        "dissection (segmenter masks)": lambda: dissect_classifier(clf, "conv5_3", source, segmenter=seg,
                                                                   progress=False),
        "dissection (exact masks)": lambda: dissect_classifier(clf, "conv5_3", source, progress=False),
        "open-vocabulary labels": lambda: label_classifier_units(clf, "conv5_3", source, tim, words,
                                                                 progress=False),
        "open-vocabulary, 3x3 regions": lambda: label_classifier_units(clf, "conv5_3", source, tim, words,
                                                                       regions=3, progress=False),
        "dissection (word maps)": lambda: dissect_classifier(clf, "conv5_3", source, segmenter=word_maps,
                                                             progress=False),
    }
    best = {k: float("inf") for k in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            t = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - t)
    for name, sec in best.items():
        print(f"{name:32s} {sec:7.1f} s")
    for labelling in list(jobs)[2:]:
        for name in list(jobs)[:2]:
            print(f"{labelling} / {name}: {best[labelling] / best[name]:.2f}x (bar <= 2x)")
    return best


if __name__ == "__main__":
    main()
