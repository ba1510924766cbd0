"""Units vs SAE features vs concept directions, measured on the toy world's ground truth (issue 16).

    python benchmarks/features_vs_units.py                      # prints the table, writes docs/features_vs_units.md
    python benchmarks/features_vs_units.py --threads 0 --out /tmp/table.md    # torch's own thread count

For the toy classifier's ``conv5_3`` and the toy GAN's ``layer4``, each layer is read in three bases -- its units
(:class:`~ganviz.basis.IdentityBasis`), a TopK SAE trained here (:func:`ganviz.sae.train_sae`, cached) and Net2Vec
concept directions (:func:`ganviz.directions.net2vec_directions`) -- and every basis goes through the same,
unchanged tools inside :func:`ganviz.basis.with_basis`:

* dissection (``dissect_classifier`` / ``dissect_generator`` on ``f"{layer}.basis.features"``) on data the SAE and
  the directions were not fitted on: features with IoU >= 0.04, concepts covered (best label of at least one such
  feature) and the mean over concepts of the best feature's IoU;
* (GAN) the number of features to remove so that trees lose >= 70% of their area and the watermark vanishes from
  >= 80% of the samples that had it (the bars examples/03 checks), features ranked by their
  gradient x activation attribution to the concept's segmented area (one backward pass instead of one generation
  per candidate), counts found by doubling then bisection over that ranking, measured with the segmenter;
* (GAN) door insertion as GAN Dissection does it: the 20 door features with the highest IoU (only those reaching
  IoU >= 0.04) switched on at their 0.995-quantile level in a 3x3 block of ``layer4``, at every position of
  ``--door-latents`` samples; the share of trials in a wall (and in the sky) where door pixels appear;
* (classifier) the hat flip: the top 1, 2 and 3 hat features by IoU removed from correctly classified baseball
  fields (how many flip, and to which classes); a greedy search as ``ganviz.find_flip`` does (up to 3 features per
  field, each the one that lowers the baseball probability most) limited to the 20 features with the highest hat
  IoU; and ``find_flip`` itself over all features, with the labels of the features it removed.

Training data, fitting data and evaluation data are disjoint seeds.  Runtime on this machine's 2 shared CPU cores
with one torch thread: see docs/features_vs_units.md (two SAE trainings included the first time; SAEs and
dissections are cached under ``--cache``).
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

import ganviz
from ganviz.ablation import find_flip, single_unit_effects
from ganviz.basis import IdentityBasis, with_basis
from ganviz.directions import net2vec_directions
from ganviz.dissect import GeneratorSource, TensorSource, ToyWorldSource, dissect_classifier, dissect_generator
from ganviz.edits import Ablate, Replace
from ganviz.generator_units import GeneratorProbe
from ganviz.plumbing import frozen, segment
from ganviz.sae import train_sae
from ganviz.toyworld import CONCEPTS, SCENE_CLASSES, render_batch
from ganviz.trace import Trace, edited_forward
from ganviz.zoo.evaluate import WATERMARK_MIN_SHARE

MIN_IOU = 0.04
TREE_DROP = 0.70
WATERMARK_GONE = 0.80
BASES = ("units", "SAE features", "concept directions")
DOOR_FEATURES, DOOR_CELLS, DOOR_QUANTILE = 20, 3, 0.995


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def coverage(result: ganviz.DissectionResult) -> Dict[str, Any]:
    """Interpretable features, concepts covered and mean best IoU per concept present in the data."""
    labels = result.labels(MIN_IOU)
    present = result.concept_area > 0
    return {"features": result.num_units, "interpretable": len(labels),
            "covered": len({lab.concept for lab in labels}), "present": int(present.sum()),
            "mean_best_iou": float(result.iou.max(0)[present].mean())}


def sae_note(basis: Any) -> Dict[str, Any]:
    r = basis.report
    return {"fve": r.fve, "dead": r.dead_fraction, "l0": r.mean_l0, "seconds": r.seconds, "n_features": r.n_features,
            "k": r.k, "steps": r.steps}


# -- the classifier -------------------------------------------------------------------------------------------------


def eval_images(n: int, seed: int) -> Tuple[TensorSource, torch.Tensor]:
    images, labels, classes = render_batch(range(n), seed)
    source = TensorSource(torch.from_numpy(images), torch.from_numpy(labels).long(), concept_names=CONCEPTS)
    return source, torch.from_numpy(classes)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, edit: Optional[Tuple[str, Any]] = None) -> torch.Tensor:
    out = []
    for i in range(0, len(x), 100):
        with Trace(model, [], retain_output=False, edit=None if edit is None else {edit[0]: edit[1]}) as tr:
            out.append(tr.run(x[i:i + 100]).argmax(1))
    return torch.cat(out)


def by_iou(model: torch.nn.Module, layer: str, result: ganviz.DissectionResult, x: torch.Tensor) -> str:
    """The top 1, 2, 3 hat features by IoU removed from the baseball fields ``x``: how many flip, and where."""
    hat = result.units_for("hat", n=3)
    out = []
    for n in range(1, len(hat) + 1):
        pred = predict(model, x, (layer, Ablate(hat[:n])))
        flipped = pred[pred != SCENE_CLASSES.index("baseball_field")]
        where = collections.Counter(SCENE_CLASSES[int(c)] for c in flipped).most_common(2)
        out.append(f"{len(flipped)}/{len(x)}" + (f" ({', '.join(f'{c} {k}' for c, k in where)})" if where else ""))
    ious = ", ".join(f"{result.iou[u, CONCEPTS.index('hat')]:.2f}" for u in hat)
    return f"IoU {ious}: " + " / ".join(out)


def greedy(model: torch.nn.Module, layer: str, x: torch.Tensor, pool: Optional[List[int]], steps: int = 3
           ) -> Tuple[str, collections.Counter]:
    """Per baseball field: remove up to ``steps`` features, each time the one (of ``pool``; None: all, as
    ``find_flip``) that lowers the baseball probability most.  Returns where the fields went and the removed
    features' labels."""
    baseball = SCENE_CLASSES.index("baseball_field")
    outcomes: collections.Counter = collections.Counter()
    removed_all: collections.Counter = collections.Counter()
    for img in x:
        if pool is None:
            res = find_flip(model, layer, img[None], max_units=steps)
            removed, new = res.units, (res.new_class if res.flipped else None)
        else:
            removed, new = [], None
            for _ in range(min(steps, len(pool))):
                left = [u for u in pool if u not in removed]
                effects = single_unit_effects(model, layer, img[None], baseball, units=left, removed=removed)
                removed.append(left[int(effects[left].argmax())])
                pred = int(predict(model, img[None], (layer, Ablate(removed)))[0])
                if pred != baseball:
                    new = pred
                    break
        outcomes[SCENE_CLASSES[new] if new is not None else "not flipped"] += 1
        removed_all.update(removed if new is not None else [])
    text = ", ".join(f"{c} {k}" for c, k in outcomes.most_common())
    return text, removed_all


def hat_flips(model: torch.nn.Module, layer: str, result: ganviz.DissectionResult, fields: torch.Tensor,
              n_greedy: int, n_free: int) -> Dict[str, str]:
    hat_pool = result.units_for("hat", n=20)
    restricted, _ = greedy(model, layer, fields[:n_greedy], hat_pool)
    free, removed = greedy(model, layer, fields[:n_free], None)
    hat = CONCEPTS.index("hat")
    labels = [f"#{u} {result.label(u).concept} {result.label(u).iou:.2f} (hat {result.iou[u, hat]:.2f}) x{k}"
              for u, k in removed.most_common()]
    return {"by_iou": by_iou(model, layer, result, fields), "greedy_hat": restricted, "greedy_all": free,
            "greedy_all_labels": "; ".join(labels)}


def classifier_part(args: argparse.Namespace) -> Dict[str, Any]:
    model, _ = ganviz.load("toy-classifier")
    layer = "conv5_3"
    t0 = time.perf_counter()
    sae = train_sae(model, layer, ToyWorldSource(2000, seed=1), cache_dir=args.cache, progress=args.progress)
    log(f"classifier SAE: {sae.report}")
    directions = net2vec_directions(model, layer, ToyWorldSource(args.n_fit, seed=2), progress=args.progress)
    log(f"classifier directions: {len(directions.names)} concepts ({time.perf_counter() - t0:.0f}s so far)")
    source, classes = eval_images(args.n_classifier, seed=3)
    x = source.load(range(len(source)))[0] * 2 - 1
    pred = predict(model, x)
    baseball = SCENE_CLASSES.index("baseball_field")
    fields = x[(classes == baseball) & (pred == baseball)]
    rows = {}
    for name, basis in zip(BASES, (IdentityBasis(192), sae, directions)):
        with with_basis(model, layer, basis) as view:
            result = dissect_classifier(model, view.layer, source, cache_dir=args.cache, progress=args.progress)
            rows[name] = {**coverage(result), **hat_flips(model, view.layer, result, fields, args.flip_images,
                                                         args.find_flip_images)}
        log(f"classifier {name}: {rows[name]}")
    return {"rows": rows, "sae": sae_note(sae), "baseball_fields": len(fields),
            "seconds": time.perf_counter() - t0}


# -- the generator --------------------------------------------------------------------------------------------------


def attribution(generator: Any, layer: str, segmenter: Any, z: torch.Tensor, k: int) -> torch.Tensor:
    """Each feature's gradient x activation share of concept ``k``'s expected segmented area (summed over ``z``):
    the first-order estimate of the area lost when the feature is removed."""
    total = None
    with frozen(generator, segmenter), torch.enable_grad():
        for i in range(0, len(z), 16):
            zb = z[i:i + 16].clone().requires_grad_(True)
            with Trace(generator, layer, detach=False) as tr:
                images = tr.run(zb)
            f = tr[layer].output
            area = segmenter(images).softmax(1)[:, k].sum()
            (g,) = torch.autograd.grad(area, f)
            part = (f * g).detach().sum((0, 2, 3))
            total = part if total is None else total + part
    assert total is not None
    return total


def removal_count(passes: Callable[[int], bool], limit: int) -> Tuple[Optional[int], int]:
    """The smallest ``n <= limit`` with ``passes(n)`` (doubling, then bisection); ``(None, tries)`` if none."""
    tries, lo, n = 0, 0, 1
    while True:
        tries += 1
        if passes(n):
            break
        lo = n
        if n >= limit:
            return None, tries
        n = min(2 * n, limit)
    hi = n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        tries += 1
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return hi, tries


def screened_latents(probe: GeneratorProbe, n: int, seed: int, most: int
                     ) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Latents whose samples show trees / the watermark, split into a ranking set and an evaluation set (at most
    ``most`` each)."""
    z = torch.randn(n, 128, generator=torch.Generator().manual_seed(seed))
    out = {}
    for concept, share in (("tree", 0.02), ("watermark", WATERMARK_MIN_SHARE)):
        has = z[torch.as_tensor(probe.area(concept, z) >= share)]
        half = min(len(has) // 2, most)
        out[concept] = (has[:half], has[half:2 * half])
    return out


def removal(probe: GeneratorProbe, layer: str, segmenter: Any, sets: Dict, limit: int) -> Dict[str, Any]:
    found = {}
    for concept in ("tree", "watermark"):
        z_rank, z_eval = sets[concept]
        k = probe.concept_index(concept)
        ranked = attribution(probe.generator, layer, segmenter, z_rank, k).argsort(descending=True).tolist()
        before = probe.area(concept, z_eval)

        def passes(n: int) -> bool:
            after = probe.area(concept, z_eval, Ablate(ranked[:n]))
            if concept == "tree":
                return 1 - after.sum() / max(before.sum(), 1e-12) >= TREE_DROP
            had = before >= WATERMARK_MIN_SHARE
            return bool((after[had] < WATERMARK_MIN_SHARE).mean() >= WATERMARK_GONE)

        n, tries = removal_count(passes, min(limit, len(ranked)))
        found[concept] = (n, tries, min(limit, len(ranked)))
        everything = probe.area(concept, z_eval, Ablate(ranked))
        if concept == "tree":
            found["all: tree"] = f"area {everything.sum() / max(before.sum(), 1e-12) - 1:+.0%}"
        else:
            had = before >= WATERMARK_MIN_SHARE
            found["all: watermark"] = f"gone from {(everything[had] < WATERMARK_MIN_SHARE).mean():.0%}"
    return found


def doors(probe: GeneratorProbe, n: int) -> Dict[str, Any]:
    """Door insertion with the top door features by IoU, in walls and in the sky."""
    z = torch.randn(n, 128, generator=torch.Generator().manual_seed(5))
    k = probe.concept_index("door")
    chosen = probe.result.units_for(k, DOOR_FEATURES, min_iou=MIN_IOU)
    if not chosen:
        return {"used": 0}
    m = probe.insertion_map("door", z, units=chosen, level_quantile=DOOR_QUANTILE, cells=DOOR_CELLS)
    return {"used": len(chosen), "wall": m.rate_in("wall"), "wall_trials": m.trials_in("wall"), "sky": m.rate_in("sky"),
            "sky_trials": m.trials_in("sky")}


def door_cell(d: Dict[str, Any]) -> str:
    if not d["used"]:
        return "no door feature | - | -"
    return (f"{d['used']} | {d['wall']:.0%} of {d['wall_trials']} | {d['sky']:.0%} of {d['sky_trials']}")


def bias_alone(generator: Any, layer: str, segmenter: Any, b_dec: torch.Tensor, sets: Dict) -> str:
    """What the generator draws when ``layer`` holds only the dictionary's bias ``b_dec`` at every position (where
    removing every SAE feature heads, less the reconstruction error)."""
    def fill(x: torch.Tensor) -> torch.Tensor:
        return b_dec.to(x).view(1, -1, 1, 1).expand_as(x).clone()

    with torch.no_grad():
        z = sets["watermark"][1]
        w = CONCEPTS.index("watermark")
        before = (segment(segmenter, generator(z))[0] == w).float().mean((1, 2))
        filled = edited_forward(generator, z, {layer: Replace(fill)})
        after = (segment(segmenter, filled)[0] == w).float().mean((1, 2))
    return f"b_dec alone at every position: watermark area {after.mean():.1%} (was {before.mean():.1%})"


def generator_part(args: argparse.Namespace) -> Dict[str, Any]:
    generator, _ = ganviz.load("toy-gan")
    segmenter, _ = ganviz.load("toy-segmenter")
    layer = "layer4"
    t0 = time.perf_counter()
    sae = train_sae(generator, layer, GeneratorSource(2000, 128, seed=1), cache_dir=args.cache,
                    progress=args.progress)
    log(f"GAN SAE: {sae.report}")
    directions = net2vec_directions(generator, layer, GeneratorSource(args.n_fit // 2, 128, seed=2),
                                    segmenter=segmenter, progress=args.progress)
    log(f"GAN directions: {len(directions.names)} concepts ({time.perf_counter() - t0:.0f}s so far)")
    sets = None
    rows = {}
    for name, basis in zip(BASES, (IdentityBasis(256), sae, directions)):
        with with_basis(generator, layer, basis) as view:
            result = dissect_generator(generator, view.layer, segmenter, n=args.n_generator, seed=3,
                                       cache_dir=args.cache, progress=args.progress)
            probe = GeneratorProbe(generator, view.layer, segmenter, result)
            if sets is None:
                sets = screened_latents(probe, args.screen, seed=4, most=args.most)
                log("screened: " + ", ".join(f"{c} {len(a)}+{len(b)}" for c, (a, b) in sets.items()))
            found = removal(probe, view.layer, segmenter, sets, args.limit)
            rows[name] = {**coverage(result), "tree": found["tree"][::2], "watermark": found["watermark"][::2],
                          "all": f"trees {found['all: tree']}, watermark {found['all: watermark']}",
                          "doors": doors(probe, args.door_latents)}
        log(f"GAN {name}: {rows[name]}")
    assert sets is not None
    rows["SAE features"]["all"] += "; " + bias_alone(generator, layer, segmenter, sae.b_dec, sets)
    return {"rows": rows, "sae": sae_note(sae), "sets": {c: (len(a), len(b)) for c, (a, b) in sets.items()},
            "seconds": time.perf_counter() - t0}


# -- the report -----------------------------------------------------------------------------------------------------


def count(found: Tuple[Optional[int], int], features: int) -> str:
    n, limit = found
    if n is not None:
        return str(n)
    return f"not with all {features}" if limit >= features else f"> {limit}"


def tables(cls: Dict[str, Any], gan: Dict[str, Any], n_greedy: int, n_free: int) -> str:
    lines = ["| model / layer | basis | features | IoU >= 0.04 | concepts covered | mean best IoU per concept |",
             "|---|---|---|---|---|---|"]
    for what, part in (("toy-classifier conv5_3", cls), ("toy-gan layer4", gan)):
        for name, r in part["rows"].items():
            lines.append(f"| {what} | {name} | {r['features']} | {r['interpretable']} | {r['covered']} / "
                         f"{r['present']} | {r['mean_best_iou']:.3f} |")
    lines += ["", "| toy-gan layer4 | features removed: trees -70% | watermark gone from 80% | every feature "
              "removed |", "|---|---|---|---|"]
    for name, r in gan["rows"].items():
        lines.append(f"| {name} | {count(r['tree'], r['features'])} | {count(r['watermark'], r['features'])} | "
                     f"{r['all']} |")
    lines += ["", f"| toy-gan layer4 | door features switched on ({DOOR_CELLS}x{DOOR_CELLS} block, "
              f"{DOOR_QUANTILE} quantile) | door added in a wall | door added in the sky |", "|---|---|---|---|"]
    for name, r in gan["rows"].items():
        lines.append(f"| {name} | {door_cell(r['doors'])} |")
    lines += ["", f"| toy-classifier conv5_3 | top 1 / 2 / 3 hat features by IoU removed: fields flipped (to) | "
              f"greedy, <= 3 of the top-20 hat features ({n_greedy} fields) | greedy, <= 3 of all features "
              f"(find_flip, {n_free} fields) | features it removed: best label, IoU (hat IoU) x times |",
              "|---|---|---|---|---|"]
    for name, r in cls["rows"].items():
        lines.append(f"| {name} | {r['by_iou']} | {r['greedy_hat']} | {r['greedy_all']} | "
                     f"{r['greedy_all_labels'] or '-'} |")
    return "\n".join(lines)


def sae_lines(cls: Dict[str, Any], gan: Dict[str, Any]) -> str:
    out = []
    for what, s in (("toy-classifier conv5_3", cls["sae"]), ("toy-gan layer4", gan["sae"])):
        out.append(f"- {what}: {s['n_features']} features, k = {s['k']}, {s['steps']} steps: fraction of variance "
                   f"explained {s['fve']:.3f}, dead features {s['dead']:.1%}, mean L0 {s['l0']:.1f}, trained in "
                   f"{s['seconds']:.0f} s (reading the activations of 2,000 items included)")
    return "\n".join(out)


def findings(cls: Dict[str, Any], gan: Dict[str, Any]) -> str:
    """Plain sentences comparing the bases, from the measured numbers."""
    out = []
    for what, part in (("toy-classifier conv5_3", cls), ("toy-gan layer4", gan)):
        u, s = part["rows"]["units"], part["rows"]["SAE features"]
        out.append(f"- {what}: SAE features cover {s['covered']} concepts (units {u['covered']}) with a mean best IoU "
                   f"of {s['mean_best_iou']:.3f} (units {u['mean_best_iou']:.3f}).")
    rows = gan["rows"]
    for concept in ("tree", "watermark"):
        u, s = rows["units"][concept][0], rows["SAE features"][concept][0]
        name = "trees" if concept == "tree" else "the watermark"
        if u is not None and s is not None:
            verdict = "fewer" if s < u else "more" if s > u else "as many"
            out.append(f"- Removing {name} took {s} SAE features, {verdict} than the {u} units.")
        else:
            said = {k: (str(n) if n is not None else f"not reached with up to {lim}")
                    for k, (n, lim) in (("units", rows["units"][concept]), ("SAE", rows["SAE features"][concept]))}
            out.append(f"- Removing {name}: units {said['units']}, SAE features {said['SAE']}.")
    d = {name: r["doors"] for name, r in rows.items() if r["doors"]["used"]}
    if d:
        out.append("- Doors switched on in a wall: " + "; ".join(
            f"{k} {v['wall']:.0%} (sky {v['sky']:.0%})" for k, v in d.items()) + ".")
    flips = {name: r["greedy_all"] for name, r in cls["rows"].items()}
    out.append("- Baseball fields under find_flip (<= 3 features): " + "; ".join(f"{k}: {v}" for k, v in flips.items())
               + ".")
    return "\n".join(out)


def write(path: Path, cls: Dict[str, Any], gan: Dict[str, Any], args: argparse.Namespace, total: float) -> None:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    sets = gan["sets"]
    text = f"""# Units vs SAE features vs concept directions

Produced by `python benchmarks/features_vs_units.py` on {time.strftime('%Y-%m-%d')} in {total / 60:.1f} minutes \
on this machine (torch threads {torch.get_num_threads()}, load average at the end {load}, two SAE trainings \
included unless cached).  Rerun it to reproduce; its docstring says what each column measures.

{tables(cls, gan, args.flip_images, args.find_flip_images)}

Data: SAEs trained on toy world seed 1 (2,000 scenes) and on 2,000 seeded latents; Net2Vec directions fitted on \
seed 2 ({args.n_fit} scenes, {args.n_fit // 2} latents); dissections on seed 3 ({args.n_classifier} scenes, \
{args.n_generator} latents).  Removal counts: features ranked on {sets['tree'][0]} (trees) and \
{sets['watermark'][0]} (watermark) screened latents and evaluated on {sets['tree'][1]} and {sets['watermark'][1]} \
others; criteria: tree area -{TREE_DROP:.0%}, watermark gone from {WATERMARK_GONE:.0%} of the samples that had it.  \
Door insertion on {args.door_latents} latents of seed 5.  Hat flip: the {cls['baseball_fields']} correctly classified baseball fields of the seed-3 scenes.

SAE training (TopK SAE, `ganviz.sae.train_sae` defaults):

{sae_lines(cls, gan)}

What the numbers say (sentences generated from them):

{findings(cls, gan)}

Caveats: the concept directions are one feature per concept, fitted with the labels the dissection scores, so \
their coverage is what a linear read-out of the layer allows rather than a discovery; removing a direction sets \
the layer's component along it to the average (the least change that does so), not to zero.  Removing SAE \
features keeps the reconstruction error (so that an edit of nothing changes nothing), and a removed feature \
leaves the dictionary's pre-encoder bias `b_dec` behind, not zero: removing every feature turns the layer into \
`b_dec` plus the error, not into zeros as removing every unit does ("every feature removed" and the `b_dec` line \
show what that draws).  Removal counts come from one attribution ranking for every basis; \
examples/03 ranks the top-IoU units by their measured effect one by one (25 units for trees, 50 for \
the watermark, on its own latents).
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "features_vs_units.md"))
    p.add_argument("--cache", default=os.environ.get("GANVIZ_CACHE", str(Path.home() / ".cache" / "ganviz")),
                   help="cache folder for SAEs and dissections ('' for none)")
    p.add_argument("--n-classifier", type=int, default=1000, help="scenes dissected")
    p.add_argument("--n-generator", type=int, default=500, help="latents dissected")
    p.add_argument("--n-fit", type=int, default=800, help="scenes for the directions (half as many latents)")
    p.add_argument("--screen", type=int, default=400, help="latents screened for trees / watermarks")
    p.add_argument("--flip-images", type=int, default=20, help="baseball fields for the greedy hat search")
    p.add_argument("--find-flip-images", type=int, default=8, help="baseball fields for find_flip (all features)")
    p.add_argument("--most", type=int, default=48, help="latents per ranking / evaluation set")
    p.add_argument("--door-latents", type=int, default=80, help="samples for door insertion")
    p.add_argument("--limit", type=int, default=256, help="most features removed when searching")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a busy shared machine more threads spin and run several times "
                        "slower, the SAE training most; 0 keeps torch's default)")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    args.cache = args.cache or None
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    cls = classifier_part(args)
    gan = generator_part(args)
    total = time.perf_counter() - start
    print(tables(cls, gan, args.flip_images, args.find_flip_images))
    print(sae_lines(cls, gan))
    print(f"total {total / 60:.1f} minutes (classifier {cls['seconds']:.0f} s, GAN {gan['seconds']:.0f} s)")
    write(Path(args.out), cls, gan, args, total)


if __name__ == "__main__":
    main()
