"""Every GPU check in one short command: the CUDA tests, then throughput on the GPU.

    python benchmarks/gpu_check.py            # prints what it measures; exits 1 if a CUDA test fails
    python benchmarks/gpu_check.py --quick    # fewer images
    python benchmarks/gpu_check.py --cpu --quick   # a dry run of the measurements on the CPU

Without CUDA it says so and exits 0: nothing in ganviz depends on a GPU.  Measured: dissection images/s of a
random-weight VGG-16 at 224x224 (``features.29``) and of a random-weight ProGAN 256 (``layer4``, colour
segmenter), each with and without bf16 autocast in the model's forward; paint-stroke latency (brush mask, edit,
full forward) on ProGAN 256 and StyleGAN2 256.  Record the numbers in ``docs/benchmarks.md``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import ganviz
from ganviz.formats import save_random_checkpoint
from ganviz.models.segmenters import ColorSegmenter


def cuda_tests() -> int:
    """Run the tests that exercise CUDA (they skip on a machine without it)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "tests/test_formats.py", "tests/test_trace.py", "-k", "cuda"]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


DEVICE = "cuda"


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def vgg_throughput(n: int, autocast: bool) -> float:
    from ganviz.models.vgg import vgg16

    model = vgg16().eval().to(DEVICE)
    images = torch.rand(n, 3, 224, 224)
    labels = torch.randint(0, 4, (n, 224, 224))
    src = ganviz.TensorSource(images, labels, identity=f"gpu-check {n}", concept_names=["a", "b", "c", "d"])
    ctx = torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=autocast)
    with ctx:
        ganviz.dissect_classifier(model, "features.29", src, n=min(n, 32), batch_size=32, progress=False)
        _sync()
        t = time.perf_counter()
        ganviz.dissect_classifier(model, "features.29", src, batch_size=32, progress=False)
        _sync()
    return n / (time.perf_counter() - t)


def progan_throughput(path: Path, n: int, autocast: bool) -> float:
    gan = ganviz.load_checkpoint(path, device=DEVICE)
    seg = ganviz.SegmenterAdapter(ColorSegmenter(), ColorSegmenter.concept_names,
                                  preprocess=ganviz.Normalize((-1, 1))).to(DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=autocast):
        gan.dissect(seg, "layer4", n=16, progress=False)
        _sync()
        t = time.perf_counter()
        gan.dissect(seg, "layer4", n=n, batch_size=32, progress=False)
        _sync()
    return n / (time.perf_counter() - t)


def paint_latency(path: Path, layer: str, **kwargs) -> float:
    gan = ganviz.load_checkpoint(path, device=DEVICE, **kwargs)
    seg = ganviz.SegmenterAdapter(ColorSegmenter(), ColorSegmenter.concept_names,
                                  preprocess=ganviz.Normalize((-1, 1))).to(DEVICE)
    result = gan.dissect(seg, layer, n=16, progress=False)
    painter = gan.painter(result, seed=0)
    concept = result.concept_names[0]
    times = []
    for i in range(12):
        _sync()
        t = time.perf_counter()
        painter.paint(concept, [(20 + i, 40), (120, 40 + i)], strength="high", radius=8)
        painter.generate()
        _sync()
        times.append(time.perf_counter() - t)
    return sorted(times[2:])[len(times[2:]) // 2] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="a dry run of the measurements on the CPU (no CUDA tests)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = "cpu" if args.cpu else "cuda"
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (ganviz runs on the CPU without one)")
        return 0
    print(torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU dry run", "torch", torch.__version__)
    failed = cuda_tests() if DEVICE == "cuda" else 0
    n = (16 if args.cpu else 128) if args.quick else 1024
    with tempfile.TemporaryDirectory() as tmp:
        progan = save_random_checkpoint("progan", Path(tmp) / "progan256.pth", resolution=256)
        style = save_random_checkpoint("stylegan2", Path(tmp) / "stylegan2_256.pt", size=256)
        for autocast in (False, True):
            tag = "bf16 autocast" if autocast else "float32"
            print(f"VGG-16 224x224 features.29 dissection, {tag}: {vgg_throughput(n, autocast):.1f} images/s")
            print(f"ProGAN 256 layer4 dissection, {tag}: {progan_throughput(progan, n, autocast):.1f} images/s")
        print(f"paint stroke latency, ProGAN 256 layer4: {paint_latency(progan, 'layer4'):.1f} ms (median)")
        print(f"paint stroke latency, StyleGAN2 256 convs.3: {paint_latency(style, 'convs.3'):.1f} ms (median)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
