"""Sparse dictionaries (TopK sparse autoencoders) trained on a layer's activations, and dictionaries made elsewhere.

    basis = train_sae(classifier, "conv5_3", ToyWorldSource(2000, seed=1), cache_dir="~/.cache/ganviz")
    basis.report                    # SAEReport(fve=0.98, dead_fraction=0.02, mean_l0=16.0, ...)
    basis = train_sae(generator, "layer4", GeneratorSource(2000, 128, seed=1))    # a generator: latents
    with with_basis(classifier, "conv5_3", basis) as view: ...                     # see ganviz.basis
    save_dictionary(basis, "conv5_3.sae.safetensors"); load_dictionary("conv5_3.sae.safetensors")

The autoencoder follows Gao et al. 2024 ("Scaling and evaluating sparse autoencoders"): the decoder bias is
subtracted before encoding, the activation keeps the ``k`` largest pre-activations (TopK), decoder rows are kept
at unit norm (their gradient's radial part removed, then renormalised after every step), and an auxiliary loss
(AuxK, coefficient ``aux_coef``) lets the ``aux_k`` largest *dead* features (silent for ``dead_after`` vectors)
model the residual.  Decoder rows start at centred activation vectors drawn from the data (which keeps the
bundled models' low-rank layers from leaving most features dead), the encoder at the decoder's transpose.
Activations are scaled to unit mean squared norm per channel for training; the returned
:class:`~ganviz.basis.DictionaryBasis` works on raw activations, with feature values in activation units
(unit-norm decoder rows).  Training resumes from a checkpoint file after an interruption, and finished
dictionaries are cached by the model's weights, layer, data identity and every setting (:mod:`ganviz.cache`).

``load_dictionary`` reads a safetensors (or ``torch.save``) file with keys ``W_enc [C, F]``, ``b_enc [F]``,
``W_dec [F, C]``, ``b_dec [C]`` (see :data:`KEY_ALIASES` for the other spellings it accepts).
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .basis import ACTIVATIONS, BasisError, DictionaryBasis
from .cache import ResultCache, atomic_write, callable_id, make_key, weights_hash
from .checkpoints import CheckpointError, check_regular_file, read_checkpoint, strip_prefixes
from .directions import collect_activations, data_source
from .dissect.sources import DataSource
from .plumbing import model_device
from .preprocessing import identity, to_signed
from .progress import progress as progress_bar

__all__ = ["SAE_FORMAT", "KEY_ALIASES", "SAEConfig", "SAEReport", "TopKSAE", "collect_activations",
           "evaluate_dictionary", "fit_sae", "train_sae", "save_dictionary", "load_dictionary"]

SAE_FORMAT = 1
"""Version of the training recipe and file layout (part of every cache key)."""

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class SAEConfig:
    """Settings of :func:`train_sae` (defaults reach FVE >= 0.9 with <= 5% dead features on the toy models).

    ``expansion``: features per channel; ``k``: active features per position; ``steps`` of ``batch_size``
    vectors at learning rate ``lr`` (Adam; warm-up over 100 steps, linear decay over the last 20%); ``aux_k``
    (default: ``4 k``, at most half the features; 0 switches AuxK off), ``aux_coef`` and ``dead_after``
    (vectors) for AuxK; ``holdout``: share of the items kept aside to measure the report on; ``positions``:
    positions sampled per item (``None``: all); ``init``: ``"data"`` (decoder rows from centred activations) or ``"random"``.
    """

    expansion: float = 4.0
    k: int = 16
    steps: int = 2000
    batch_size: int = 512
    lr: float = 2e-3
    aux_k: Optional[int] = None
    aux_coef: float = 1 / 32
    dead_after: int = 25_000
    holdout: float = 0.1
    positions: Optional[int] = None
    seed: int = 0
    init: str = "data"

    def check(self) -> None:
        """Raise ``ValueError`` for settings that cannot train."""
        if self.expansion <= 0 or self.k < 1 or self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"expansion, k, steps, batch_size and lr must be positive: {self}")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must lie strictly between 0 and 1, got {self.holdout}")
        if self.init not in ("data", "random"):
            raise ValueError(f"init must be 'data' or 'random', got {self.init!r}")
        if self.positions is not None and self.positions < 1:
            raise ValueError(f"positions must be >= 1 or None, got {self.positions}")


@dataclass(frozen=True)
class SAEReport:
    """How well a dictionary reads a layer, measured on held-out activations.

    ``fve``: fraction of variance explained, ``1 - sum|x - x_hat|^2 / sum|x - mean|^2``; ``dead_fraction``:
    share of features that never fire on the held-out vectors; ``mean_l0``: active features per position.
    """

    fve: float
    dead_fraction: float
    mean_l0: float
    n_features: int = 0
    k: int = 0
    steps: int = 0
    train_vectors: int = 0
    heldout_vectors: int = 0
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SAEReport":
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class TopKSAE(nn.Module):
    """The trainable autoencoder (on scaled activations): parameters ``W_enc [C, F]``, ``b_enc``, ``W_dec [F, C]``
    (unit-norm rows), ``b_dec``; :meth:`to_basis` gives the :class:`DictionaryBasis` for raw activations."""

    def __init__(self, width: int, n_features: int, k: int) -> None:
        super().__init__()
        if not 1 <= k <= n_features:
            raise ValueError(f"k must lie in 1..{n_features} (the features), got {k}")
        self.k = int(k)
        self.W_dec = nn.Parameter(torch.randn(n_features, width))
        self.W_enc = nn.Parameter(torch.zeros(width, n_features))
        self.b_enc = nn.Parameter(torch.zeros(n_features))
        self.b_dec = nn.Parameter(torch.zeros(width))
        self.tie_encoder()

    @torch.no_grad()
    def tie_encoder(self) -> None:
        """Unit-norm decoder rows, encoder set to their transpose (the initialisation)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_enc.copy_(self.W_dec.T)

    def pre_activations(self, x: Tensor) -> Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x_hat, values, indices, pre)`` for vectors ``x [N, C]``: the ``k`` active features' values and
        indices ``[N, k]`` (decoded sparsely: ``k`` rows per vector, not all ``F``)."""
        pre = self.pre_activations(x)
        vals, idx = pre.topk(self.k, dim=-1)
        vals = torch.relu(vals)
        return self.decode_sparse(vals, idx) + self.b_dec, vals, idx, pre

    def decode_sparse(self, vals: Tensor, idx: Tensor) -> Tensor:
        """``sum_j vals[:, j] * W_dec[idx[:, j]]`` without the bias (an embedding bag: ``k`` rows per vector)."""
        return F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum")

    @torch.no_grad()
    def constrain_decoder(self, grad_only: bool = False) -> None:
        """Remove the radial part of the decoder's gradient, or renormalise its rows to unit norm."""
        if grad_only:
            if self.W_dec.grad is not None:
                self.W_dec.grad -= (self.W_dec.grad * self.W_dec).sum(1, keepdim=True) * self.W_dec
        else:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def to_basis(self, scale: float) -> DictionaryBasis:
        """The dictionary for activations ``scale`` times those it was trained on (features in raw units)."""
        return DictionaryBasis(self.W_enc.detach().cpu().clone(), self.b_enc.detach().cpu() * scale,
                               self.W_dec.detach().cpu().clone(), self.b_dec.detach().cpu() * scale,
                               activation="topk", k=self.k)


# -- measuring ------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_dictionary(basis: DictionaryBasis, vectors: Tensor, batch: int = 8192) -> Tuple[float, float, float]:
    """``(fve, dead_fraction, mean_l0)`` of ``basis`` on activation vectors ``[N, C]`` (see :class:`SAEReport`)."""
    vectors = vectors.reshape(-1, vectors.shape[-1]).float()
    basis.check_width(vectors, -1, where="the vectors")
    mean = vectors.mean(0)
    err = tot = l0 = 0.0
    fired = torch.zeros(basis.n_features, dtype=torch.bool)
    for v in vectors.split(batch):
        f = basis.encode_vectors(v)
        err += float((v - basis.decode_vectors(f)).pow(2).sum())
        tot += float((v - mean).pow(2).sum())
        active = f > 0
        fired |= active.any(0).cpu()
        l0 += float(active.sum())
    fve = 1.0 - err / tot if tot > 0 else float("nan")
    return fve, 1.0 - float(fired.float().mean()), l0 / max(len(vectors), 1)


# -- training -------------------------------------------------------------------------------------------------------


class _Trainer:
    """One training run's state: the autoencoder, Adam, the dead-feature counters and the sampler."""

    def __init__(self, train: Tensor, config: SAEConfig) -> None:
        self.x, self.config = train, config
        width = train.shape[1]
        self.n_features = max(config.k, int(round(config.expansion * width)))
        self.sae = TopKSAE(width, self.n_features, min(config.k, self.n_features)).to(train.device)
        self.gen = torch.Generator().manual_seed(config.seed)
        self._initialise()
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=config.lr)
        self.since = torch.zeros(self.n_features)  # vectors since each feature last fired
        self.step = 0

    @torch.no_grad()
    def _initialise(self) -> None:
        mean = self.x.mean(0)
        self.sae.b_dec.copy_(mean)
        if self.config.init == "data":
            rows = torch.randint(0, len(self.x), (self.n_features,), generator=self.gen)
            centred = self.x[rows] - mean
            noise = torch.randn(centred.shape, generator=self.gen) * 1e-3  # all-mean rows get a direction too
            self.sae.W_dec.copy_(centred + noise.to(centred.device))
        self.sae.tie_encoder()

    def _lr(self) -> float:
        frac = self.step / self.config.steps
        warm = min(1.0, (self.step + 1) / 100)
        return self.config.lr * warm * (1.0 if frac < 0.8 else max(0.0, (1 - frac) / 0.2))

    def _aux_loss(self, pre: Tensor, err: Tensor) -> Tensor:
        dead = self.since > self.config.dead_after
        aux_k = min(self.n_features // 2, 4 * self.sae.k) if self.config.aux_k is None else self.config.aux_k
        if aux_k <= 0 or not bool(dead.any()):
            return pre.new_zeros(())
        k = min(aux_k, int(dead.sum()))
        vals, idx = pre.masked_fill(~dead.to(pre.device), float("-inf")).topk(k, dim=-1)
        target = err.detach()
        residual = (target - self.sae.decode_sparse(torch.relu(vals), idx)).pow(2).sum(1).mean()
        return residual / target.pow(2).sum(1).mean().clamp_min(1e-12)

    def train_step(self) -> float:
        """One step on a random batch; returns the normalised reconstruction loss."""
        idx = torch.randint(0, len(self.x), (self.config.batch_size,), generator=self.gen)
        x = self.x[idx.to(self.x.device)]
        x_hat, vals, idx, pre = self.sae(x)
        err = x - x_hat
        mse = err.pow(2).sum(1).mean() / (x - x.mean(0)).pow(2).sum(1).mean().clamp_min(1e-12)
        loss = mse + self.config.aux_coef * self._aux_loss(pre, err)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.sae.constrain_decoder(grad_only=True)
        for group in self.opt.param_groups:
            group["lr"] = self._lr()
        self.opt.step()
        self.sae.constrain_decoder()
        self.since += len(x)
        self.since[idx[vals > 0].cpu()] = 0
        self.step += 1
        return float(mse.detach())

    def state(self, key: str) -> Dict[str, Any]:
        return {"key": key, "step": self.step, "sae": self.sae.state_dict(), "opt": self.opt.state_dict(),
                "since": self.since.clone(), "rng": self.gen.get_state()}

    def load(self, state: Dict[str, Any]) -> None:
        self.sae.load_state_dict(state["sae"])
        self.opt.load_state_dict(state["opt"])
        self.since.copy_(state["since"])
        self.gen.set_state(state["rng"])
        self.step = int(state["step"])


def _resume(trainer: _Trainer, path: Optional[Path], key: str) -> None:
    """Continue from the checkpoint at ``path`` when it belongs to this run (same key)."""
    if path is None or not path.is_file():
        return
    try:
        state = read_checkpoint(path)
        if not isinstance(state, dict) or state.get("key") != key:
            return
        trainer.load(state)
    except (CheckpointError, KeyError, RuntimeError, ValueError) as err:
        warnings.warn(f"ignoring unreadable SAE checkpoint {path}: {err}", RuntimeWarning, stacklevel=3)


def _save_checkpoint(trainer: _Trainer, path: Optional[Path], key: str) -> None:
    if path is not None:
        state = trainer.state(key)
        atomic_write(path, lambda tmp: torch.save(state, tmp), suffix=".pt")


def _run(trainer: _Trainer, path: Optional[Path], key: str, every: int, progress: bool) -> None:
    """Train to ``config.steps``, checkpointing every ``every`` steps and when interrupted."""
    steps = trainer.config.steps
    with progress_bar(total=steps, desc="training SAE", unit="step", disable=not progress) as bar:
        bar.update(trainer.step)
        try:
            while trainer.step < steps:
                loss = trainer.train_step()
                bar.update(1)
                if trainer.step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}")
                if every and trainer.step % every == 0 and trainer.step < steps:
                    _save_checkpoint(trainer, path, key)
        except BaseException:
            trainer.sae.constrain_decoder()
            try:
                _save_checkpoint(trainer, path, key)
            except Exception as err:  # keep the original error
                warnings.warn(f"could not write the SAE checkpoint {path}: {err}", RuntimeWarning, stacklevel=3)
            raise


def _cache_key(model: nn.Module, layer: str, source: DataSource, kind: str, n: int, preprocess: Any,
               config: SAEConfig) -> str:
    return make_key(what="sae", format=SAE_FORMAT, weights=weights_hash(model), layer=layer, kind=kind,
                    data=source.identity, n=n, preprocess=callable_id(preprocess), config=asdict(config))


def train_sae(model: nn.Module, layer: str, data: Any = None, *, n: Optional[int] = None,
              config: Optional[SAEConfig] = None, kind: Optional[str] = None,
              preprocess: Optional[Callable[[Tensor], Tensor]] = None, batch_size: int = 100,
              cache_dir: Optional[PathLike] = None, checkpoint: Optional[PathLike] = None,
              checkpoint_every: int = 500, progress: bool = True, **settings: Any) -> DictionaryBasis:
    """Train a TopK SAE on ``layer``'s activations over the first ``n`` items of ``data``; returns its basis.

    ``data``: images (a :class:`~ganviz.dissect.DataSource` such as ``ToyWorldSource``, or a tensor
    ``[N, 3, H, W]`` in [0, 1], fed as ``preprocess(images)``, default ``images * 2 - 1``) or latents (a
    ``GeneratorSource``, a ``[N, z]`` tensor, or ``None``: 2000 seeded latents of ``model.z_dim``).
    ``settings`` override :class:`SAEConfig` fields (``train_sae(m, "conv5_3", src, k=32, steps=4000)``).
    ``cache_dir``: reuse a dictionary trained with identical weights, data and settings.  ``checkpoint``: the
    resume file (default with a ``cache_dir``: beside the cache entry), written every ``checkpoint_every``
    steps and on interruption, removed when training ends.  The result's ``report`` is an :class:`SAEReport`.
    """
    config = replace(config or SAEConfig(), **settings)
    config.check()
    source, kind = data_source(data, kind, model=model, n=n)
    n = len(source) if n is None else min(int(n), len(source))
    pre = preprocess or (to_signed if kind == "classifier" else identity)
    key = _cache_key(model, layer, source, kind, n, pre, config)
    cache = ResultCache(cache_dir) if cache_dir is not None and source.identity else None
    if cache is not None:
        hit = cache.load(key, load_dictionary, suffix=".safetensors")
        if hit is not None:
            return hit
    ckpt = Path(checkpoint) if checkpoint is not None else (cache.path(key, ".ckpt.pt") if cache else None)
    started = time.perf_counter()
    acts = collect_activations(model, layer, source, n=n, kind=kind, preprocess=pre, batch_size=batch_size,
                               positions=config.positions, seed=config.seed, progress=progress)
    basis = fit_sae(acts, config, checkpoint=ckpt, checkpoint_every=checkpoint_every, progress=progress,
                    run_id=key, device=model_device(model))
    basis.report = replace(basis.report, seconds=time.perf_counter() - started)
    if cache is not None:
        cache.save(key, lambda tmp: save_dictionary(basis, tmp), suffix=".safetensors")
    return basis


def fit_sae(acts: Tensor, config: Optional[SAEConfig] = None, *, checkpoint: Optional[PathLike] = None,
            checkpoint_every: int = 500, progress: bool = True, run_id: str = "",
            device: Optional[Union[str, torch.device]] = None, **settings: Any) -> DictionaryBasis:
    """Train a TopK SAE on activations ``[N, P, C]`` (items, positions, channels) or ``[N, C]``; the last
    ``holdout`` share of the items is kept aside for the report.  ``fit_sae(collect_activations(...), k=8)``.

    ``checkpoint``: resume file (used only when it was written for the same ``run_id``: default, the settings
    and the data's shape and sum).
    """
    config = replace(config or SAEConfig(), **settings)
    config.check()
    started = time.perf_counter()
    acts = acts.float().cpu() if acts.ndim == 3 else acts.float().cpu()[:, None]
    held = max(1, int(round(len(acts) * config.holdout)))
    if acts.ndim != 3 or len(acts) - held < 1:
        raise ValueError(f"activations {list(acts.shape)} are too few items to train on and hold out "
                         f"{config.holdout:.0%}")
    train, test = acts[:-held].reshape(-1, acts.shape[-1]), acts[-held:].reshape(-1, acts.shape[-1])
    scale = math.sqrt(float(train.pow(2).sum(1).mean()) / train.shape[1]) or 1.0
    trainer = _Trainer((train / scale).to(device or "cpu"), config)
    run_id = run_id or make_key(config=asdict(config), shape=list(acts.shape), sum=float(acts.sum()))
    ckpt = None if checkpoint is None else Path(checkpoint)
    _resume(trainer, ckpt, run_id)
    _run(trainer, ckpt, run_id, checkpoint_every, progress)
    basis = trainer.sae.to_basis(scale)
    fve, dead, l0 = evaluate_dictionary(basis, test)
    basis.report = SAEReport(fve, dead, l0, basis.n_features, trainer.sae.k, config.steps, len(train), len(test),
                             time.perf_counter() - started)
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return basis


# -- files ----------------------------------------------------------------------------------------------------------

KEY_ALIASES: Dict[str, Tuple[Tuple[str, bool], ...]] = {
    "W_enc": (("W_enc", False), ("w_enc", False), ("encoder.weight", True), ("enc.weight", True)),
    "b_enc": (("b_enc", False), ("encoder.bias", False), ("enc.bias", False), ("latent_bias", False)),
    "W_dec": (("W_dec", False), ("w_dec", False), ("decoder.weight", True), ("dec.weight", True)),
    "b_dec": (("b_dec", False), ("decoder.bias", False), ("dec.bias", False), ("pre_bias", False)),
}
"""Accepted key names per weight, with whether the stored matrix is transposed (``nn.Linear`` weights are
``[out, in]``: ``encoder.weight [F, C]``, ``decoder.weight [C, F]``).  Missing biases are zero."""


def save_dictionary(basis: DictionaryBasis, path: PathLike) -> Path:
    """Write ``basis`` as safetensors (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``; activation, k, names and the
    report as metadata), atomically."""
    from safetensors.torch import save_file

    if not isinstance(basis, DictionaryBasis):
        raise TypeError(f"save_dictionary needs a DictionaryBasis, got {type(basis).__name__}")
    tensors = {name: getattr(basis, name).detach().cpu().contiguous() for name in KEY_ALIASES}
    meta = {"format": f"ganviz-dictionary {SAE_FORMAT}", "activation": basis.activation, "k": str(basis.k or "")}
    if basis.names is not None:
        meta["names"] = json.dumps(list(basis.names))
    if isinstance(basis.report, SAEReport):
        meta["report"] = basis.report.to_json()
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), suffix=".safetensors")
    return Path(path)


def _read_dictionary_file(path: Path) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """Tensors and metadata of a safetensors file (metadata empty for ``torch.save`` files)."""
    meta: Dict[str, str] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception as err:  # SafetensorError, OSError
            raise CheckpointError(f"cannot read {path} as a safetensors file: {err}") from None
    state = read_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors")
    return strip_prefixes(state, ("module.", "_orig_mod.", "sae.", "autoencoder.")), meta


def _pick(state: Dict[str, Tensor], what: str, path: Path) -> Optional[Tensor]:
    for key, transposed in KEY_ALIASES[what]:
        if key in state:
            t = state[key].detach().float()
            return t.T.contiguous() if transposed and t.ndim == 2 else t
    if what.startswith("W"):
        names = ", ".join(k for k, _ in KEY_ALIASES[what])
        raise BasisError(f"{path} has no {what} (accepted keys: {names}); it holds: {', '.join(sorted(state))}")
    return None


def _orient(w_enc: Tensor, w_dec: Tensor, b_enc: Optional[Tensor], b_dec: Optional[Tensor],
            width: Optional[int]) -> Tuple[Tensor, Tensor]:
    """``W_enc [C, F]`` and ``W_dec [F, C]``, transposing matrices stored the other way round when the biases
    (or ``width``) say so unambiguously."""
    c = width if width is not None else (len(b_dec) if b_dec is not None and b_dec.ndim == 1 else None)
    f = len(b_enc) if b_enc is not None and b_enc.ndim == 1 else None
    if w_enc.ndim == 2 and c is not None and w_enc.shape[0] != c and w_enc.shape[1] == c:
        w_enc = w_enc.T.contiguous()
    elif w_enc.ndim == 2 and f is not None and w_enc.shape[1] != f and w_enc.shape[0] == f:
        w_enc = w_enc.T.contiguous()
    if w_dec.ndim == 2 and w_enc.ndim == 2 and w_enc.shape[0] != w_enc.shape[1] and w_dec.shape == w_enc.shape:
        w_dec = w_dec.T.contiguous()  # stored [C, F]: the decoder of an encoder read as [C, F]
    return w_enc, w_dec


def load_dictionary(path: PathLike, *, activation: Optional[str] = None, k: Optional[int] = None,
                    width: Optional[int] = None, names: Optional[Sequence[str]] = None) -> DictionaryBasis:
    """A :class:`DictionaryBasis` from a dictionary file (keys in :data:`KEY_ALIASES`).

    ``activation`` / ``k`` default to the file's metadata, else ``"topk"`` when ``k`` is given and ``"relu"``
    otherwise; ``width`` (the layer's channels) is checked, and orients matrices stored transposed.
    ``load_dictionary("sae.safetensors", k=32, width=192)``.
    """
    path = check_regular_file(path, "dictionary")
    state, meta = _read_dictionary_file(path)
    w_enc, w_dec = _pick(state, "W_enc", path), _pick(state, "W_dec", path)
    b_enc, b_dec = _pick(state, "b_enc", path), _pick(state, "b_dec", path)
    assert w_enc is not None and w_dec is not None
    w_enc, w_dec = _orient(w_enc, w_dec, b_enc, b_dec, width)
    if w_enc.ndim != 2:
        raise BasisError(f"W_enc in {path} must be a matrix, got shape {list(w_enc.shape)}")
    c, f = w_enc.shape
    if width is not None and c != width:
        raise BasisError(f"the dictionary in {path} reads {c} channels, but the layer has {width}")
    k = k if k is not None else (int(meta["k"]) if meta.get("k") else None)
    activation = activation or meta.get("activation") or ("topk" if k is not None else "relu")
    if activation not in ACTIVATIONS:
        raise BasisError(f"unknown activation {activation!r} in {path}; expected one of {', '.join(ACTIVATIONS)}")
    names = names if names is not None else (json.loads(meta["names"]) if meta.get("names") else None)
    basis = DictionaryBasis(w_enc, torch.zeros(f) if b_enc is None else b_enc, w_dec,
                            torch.zeros(c) if b_dec is None else b_dec, activation=activation, k=k, names=names)
    if meta.get("report"):
        basis.report = SAEReport.from_json(meta["report"])
    return basis
