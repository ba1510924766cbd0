"""What every training run of the bundled models shares: rendered data, reproducible batches, checkpoints.

    images, labels, classes = render_dataset(50_000, world_seed=0)
    run = Run(Path("checkpoints"), "gan", {"G": G, "opt": opt}); run.resume()
    run_loop(run, steps, every, body)      # body(step) -> log message; checkpoints every ``every`` steps
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoints import read_checkpoint
from ..toyworld import render_batch

__all__ = ["render_dataset", "batch_indices", "to_input", "Run", "run_loop", "autocast_dtype", "init_weights"]


def render_dataset(n: int, world_seed: int, workers: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``n`` scenes as uint8 tensors ``(images N,3,H,W, labels N,H,W, classes N)`` using a process pool."""
    chunks = [range(i, min(i + 1000, n)) for i in range(0, n, 1000)]
    parts = []
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(render_batch, c, world_seed) for c in chunks]
            for f in tqdm(futures, desc=f"render {n} scenes", unit="k"):
                parts.append(f.result())
    else:
        parts = [render_batch(c, world_seed) for c in tqdm(chunks, desc=f"render {n} scenes", unit="k")]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    classes = torch.from_numpy(np.concatenate([p[2] for p in parts]))
    return images, labels, classes


def batch_indices(seed: int, step: int, n: int, batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n, (batch,), generator=g)


def to_input(images_u8: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float in [-1, 1], channels_last, optional per-sample horizontal flip."""
    x = images_u8.float().div_(127.5).sub_(1.0)
    if flip is not None and flip.any():
        x[flip] = x[flip].flip(-1)
    return x.contiguous(memory_format=torch.channels_last)


class Run:
    """Checkpointing and resume for one training run (modules, optimisers and schedulers by name)."""

    def __init__(self, out: Path, name: str, modules: dict[str, object], keep: bool = False):
        self.dir = out / name
        self.keep = keep
        self.dir.mkdir(parents=True, exist_ok=True)
        self.modules = modules
        self.step = 0
        self.log = open(self.dir / "log.txt", "a")
        self.t0 = time.time()
        self.elapsed0 = 0.0

    @property
    def ckpt(self) -> Path:
        return self.dir / "checkpoint.pt"

    def resume(self) -> None:
        if self.ckpt.exists():
            state = read_checkpoint(self.ckpt)  # tensors and plain containers only, never code
            for k, m in self.modules.items():
                m.load_state_dict(state[k])
            self.step = int(state["step"])
            if "torch_rng" in state:  # dropout masks continue as in an uninterrupted run
                torch.set_rng_state(state["torch_rng"])
            self.elapsed0 = float(state.get("elapsed", 0.0))
            print(f"resumed {self.ckpt} at step {self.step}")

    def elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.t0

    def save(self) -> None:
        state = {k: m.state_dict() for k, m in self.modules.items()}
        state["step"] = self.step
        state["torch_rng"] = torch.get_rng_state()
        state["elapsed"] = self.elapsed()
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save(state, tmp)
        if self.keep:  # a snapshot per checkpoint, to choose the step to ship by evaluation
            shutil.copyfile(tmp, self.dir / f"step_{self.step:06d}.pt")
        os.replace(tmp, self.ckpt)

    def write(self, msg: str) -> None:
        self.log.write(f"step {self.step} t={self.elapsed():.0f}s {msg}\n")
        self.log.flush()


def run_loop(run: Run, steps: int, every: int, body: Callable[[int], str], log_every: int = 50,
             until: int | None = None, minutes: float | None = None) -> None:
    """Call ``body(step)`` from the run's step up to ``steps`` (or ``until``), checkpointing every ``every`` steps
    and at the end; ``minutes`` of wall-clock time also end it (with a checkpoint), for runs on a lent machine."""
    bar = tqdm(total=steps, initial=run.step, desc=run.dir.name)
    stop = steps if until is None else min(until, steps)
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    while run.step < stop:
        msg = body(run.step)
        run.step += 1
        bar.update(1)
        if run.step % log_every == 0:
            bar.set_postfix_str(msg)
            run.write(msg)
        out_of_time = deadline is not None and time.monotonic() >= deadline
        if run.step % every == 0 or run.step == stop or out_of_time:
            run.save()
        if out_of_time:
            print(f"stopped after {minutes:g} minutes at step {run.step}; the same command resumes it")
            break
    bar.close()


def autocast_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    """bf16 autocast where the hardware computes bf16 natively (CUDA, or CPUs with AVX512-BF16/AMX); float32
    elsewhere: on a CPU without it, bf16 is emulated and a GAN step takes about twice as long as in float32."""
    if mode == "off":
        return None
    if mode == "bf16" or device.type == "cuda":
        return torch.bfloat16
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else None


def init_weights(model: torch.nn.Module, name: str, source: str | None, new: tuple[str, ...] = ()) -> None:
    """Warm-start ``model`` from the bundled zoo model ``name`` (``source="bundled"``) or a safetensors file; the
    file may lack parameters whose names start with one of ``new`` (they keep their initial values)."""
    if not source:
        return
    from safetensors.torch import load_file

    from .registry import WEIGHTS_DIR, _read_manifest

    path = WEIGHTS_DIR / _read_manifest(WEIGHTS_DIR)[name]["file"] if source == "bundled" else Path(source)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=False)
    missing = [k for k in missing if not k.startswith(new)] if new else missing
    if missing or unexpected:
        raise RuntimeError(f"{path} does not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    print(f"{name} initialised from {path}")
