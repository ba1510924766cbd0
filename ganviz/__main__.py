"""Command line: ``ganviz app`` (the GAN Paint web app) and ``python -m ganviz dissect --model toy-classifier ...``.

Models are named by bundled-zoo name (``toy-classifier``, ``toy-gan``, ``toy-segmenter``) or by an import path
``pkg.module:factory`` whose call returns an ``nn.Module``.  Under ``torchrun --nproc_per_node N`` (environment
variables ``RANK`` and ``WORLD_SIZE`` set) the images are sharded over the processes and rank 0 writes the result.
Subcommands register themselves with ``add_*_parser`` functions.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "add_dissect_parser", "add_app_parser", "add_talk_parser", "load_model"]


def load_model(spec: str, device: Any = "cpu") -> Tuple[Any, Any]:
    """``(model, info)`` for a zoo name or an import path ``pkg.module:factory`` (``info`` is None for those).

    A factory may return a module or ``(module, info)``.  The model is moved to ``device`` and put in eval mode.
    """
    from . import zoo

    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise SystemExit(f"error: cannot import {module_name!r} for model {spec!r}: {exc}") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise SystemExit(f"error: {module_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        made = obj() if callable(obj) else obj
        model, info = made if isinstance(made, tuple) else (made, None)
        return model.to(device).eval(), info
    try:
        return zoo.load(spec, device=device)
    except KeyError as exc:
        raise SystemExit(f"error: {exc.args[0]} (or give an import path pkg.module:factory)") from None
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None


def add_dissect_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Register the ``dissect`` subcommand on ``sub`` (the result of ``parser.add_subparsers()``)."""
    p = sub.add_parser("dissect", help="label the units of a layer with concepts (Network/GAN Dissection)",
                       description="Dissect one layer of a classifier (over toy-world images) or a generator "
                                   "(over z samples segmented by a segmenter); writes the result (.npz), a "
                                   "summary (.json) and a bar chart of units per concept (.png).")
    p.add_argument("--model", required=True, help="zoo name (toy-classifier, toy-gan) or pkg.module:factory")
    p.add_argument("--layer", help="dotted layer name (default: the zoo model's default layer)")
    p.add_argument("--images", type=int, default=5000, help="number of images / samples (default 5000)")
    p.add_argument("--out", default=".", help="output folder (default: current folder)")
    p.add_argument("--kind", choices=("auto", "classifier", "generator"), default="auto",
                   help="model kind (auto: from the zoo, else generator if the model has z_dim)")
    p.add_argument("--segmenter", default=None,
                   help="segmenter (zoo name or import path); default toy-segmenter for generators, "
                        "ground-truth toy-world labels for classifiers")
    p.add_argument("--seed", type=int, default=1, help="toy-world seed / latent seed (default 1)")
    p.add_argument("--size", type=int, default=None, help="toy-world image size (default: the model's)")
    p.add_argument("--z-dim", type=int, default=None, help="latent size of an import-path generator")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 64; 32 for generators)")
    p.add_argument("--chunk-size", type=int, default=512, help="images per sharding chunk (default 512)")
    p.add_argument("--sketch-resolution", type=int, default=2048,
                   help="quantile sketch resolution (default 2048: rank error well below 0.1%%)")
    p.add_argument("--k", type=int, default=100, help="top-k images kept per unit (default 100)")
    p.add_argument("--quantile", type=float, default=0.99, help="activation quantile of a unit's mask (0.99)")
    p.add_argument("--min-iou", type=float, default=0.04, help="IoU to call a unit interpretable (0.04)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--cache", default=None, help="cache folder: reuse identical dissections")
    p.add_argument("--activation-cache-mb", type=int, default=512,
                   help="keep activations between the two passes when they fit (MiB, 0 = recompute)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_dissect)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ganviz`` parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="python -m ganviz", description="ganviz command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_dissect_parser(sub)
    add_app_parser(sub)
    add_talk_parser(sub)
    return parser


def add_app_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Register the ``app`` subcommand: serve a packaged app notebook with Voila."""
    p = sub.add_parser("app", help="open the GAN Paint web app on the bundled GAN (Voila)",
                       description="Serve the GAN Paint app (a Voila page) on the bundled toy GAN.")
    p.add_argument("name", nargs="?", default="paint", help="app name (default: paint)")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")

    def run(args: argparse.Namespace) -> int:
        from .apps import serve

        return serve(args.name, args.port, not args.no_browser, args.ip)

    p.set_defaults(func=run)
    return p


def add_talk_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Register the ``talk`` subcommand: serve the lecture app, or export it as a static HTML slide deck."""
    p = sub.add_parser("talk", help="open the lecture app on the bundled models (Voila), or --export slides",
                       description="The talk's sections in order, each with its live widget and measured number.")
    p.add_argument("--port", type=int, default=8867)
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    p.add_argument("--export", metavar="HTML", help="write the talk as one self-contained HTML slide deck (the "
                   "current pictures and numbers; a few minutes on a CPU) instead of serving it")

    def run(args: argparse.Namespace) -> int:
        if args.export:
            from .apps.talk import Talk

            print(f"wrote {Talk().export(args.export)}")
            return 0
        from .apps import serve

        return serve("talk", args.port, not args.no_browser, args.ip)

    p.set_defaults(func=run)
    return p


def _init_distributed(device_arg: Optional[str]) -> Tuple[bool, Any]:
    """Initialise torch.distributed from torchrun's environment; returns ``(initialised_here, device)``."""
    import torch
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        device = device_arg or ("cuda" if torch.cuda.is_available() else "cpu")
        return False, torch.device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_arg is None or device_arg.startswith("cuda"))
    if use_cuda:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_arg or "cpu")
    if dist.is_initialized():
        return False, device
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True, device


def run_dissect(args: argparse.Namespace) -> int:
    """Run the ``dissect`` subcommand."""
    import torch.distributed as dist

    from .dissect import ToyWorldSource, dissect_classifier, dissect_generator

    started, device = _init_distributed(args.device)
    try:
        rank = dist.get_rank() if dist.is_initialized() else 0
        model, info = load_model(args.model, device)
        kind = args.kind
        if kind == "auto":
            kind = getattr(info, "kind", None) or ("generator" if hasattr(model, "z_dim") else "classifier")
        if kind not in ("classifier", "generator"):
            raise SystemExit(f"error: cannot dissect a {kind} model; use --kind classifier or generator")
        layer = args.layer or getattr(info, "default_layer", None)
        if not layer:
            raise SystemExit("error: --layer is required for models outside the zoo")
        common = dict(n=args.images, k=args.k, quantile=args.quantile, device=device, cache_dir=args.cache,
                      progress=not args.no_progress, chunk_size=args.chunk_size,
                      sketch_resolution=args.sketch_resolution,
                      activation_cache_bytes=args.activation_cache_mb << 20)
        if kind == "generator":
            segmenter, _ = load_model(args.segmenter or "toy-segmenter", device)
            z_dim = args.z_dim or getattr(info, "z_dim", 0) or getattr(model, "z_dim", None)
            result = dissect_generator(model, layer, segmenter, z_dim=z_dim, seed=args.seed,
                                       batch_size=args.batch_size or 32, **common)
        else:
            segmenter = load_model(args.segmenter, device)[0] if args.segmenter else None
            size = args.size or getattr(info, "resolution", None) or 64
            data = ToyWorldSource(n=args.images, seed=args.seed, size=size)
            result = dissect_classifier(model, layer, data, segmenter=segmenter,
                                        batch_size=args.batch_size or 64, **common)
        if rank == 0:
            _write_outputs(result, args, layer)
        return 0
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()


def _write_outputs(result: Any, args: argparse.Namespace, layer: str) -> None:
    from .cache import atomic_write

    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"dissect_{layer}")
    result.save(stem + ".npz")
    fig = result.plot_concept_counts(args.min_iou)
    atomic_write(stem + "_concepts.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120), suffix=".png")
    summary = {
        "model": args.model, "layer": layer, "kind": result.model_kind, "images": result.num_images,
        "quantile": result.quantile, "min_iou": args.min_iou,
        "concept_counts": result.concept_counts(args.min_iou),
        "units": [{"unit": u.unit, "concept": u.concept, "iou": round(u.iou, 4),
                   "runners_up": [[c, round(v, 4)] for c, v in u.runners_up]}
                  for u in result.labels(args.min_iou)],
    }

    def write_json(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=1)

    atomic_write(stem + ".json", write_json, suffix=".json")
    print(result.summary(args.min_iou))
    print(f"wrote {stem}.npz, {stem}.json, {stem}_concepts.png")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m ganviz``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .trace import LayerNotFoundError

    try:
        return int(args.func(args) or 0)
    except (LayerNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
