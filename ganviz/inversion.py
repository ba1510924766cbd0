"""GAN inversion: find a latent (and a layer's features, and a slightly tuned generator) that reproduce an image.

``invert`` starts from an encoder's guess (or a random latent), optimises ``z`` against a pixel loss (plus an
optional feature loss), then, when ``layer`` is given, the layer's whole feature map as free parameters with the
generator frozen: the layer has far more degrees of freedom than ``z``, so the reconstruction gets closer, and
unit edits at that layer (GAN Paint) still apply to it.  ``finetune`` then changes the later layers of a copy of
the generator a little (regularised towards the original) until the reconstruction is near exact.  Each keeps
the best state so far; ``stop()`` returning True or a KeyboardInterrupt ends it early and returns that.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import PathLike, ResultCache, callable_id, make_key, weights_hash
from .plumbing import eval_mode, frozen, model_device, seeded_latents, z_dim_of
from .imaging import fit_photo, from_uint8
from .edits import Compose, Edit, Replace
from .trace import Trace, get_module
from .adam_loop import AdamLoop, per_image_loss, rows_where

__all__ = ["psnr", "InversionResult", "reconstruct", "encode", "invert", "invert_many", "later_layers", "finetune",
           "Inverter"]


def psnr(a: Tensor, b: Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB of two image batches (``data_range``: 2 for images in [-1, 1])."""
    mse = float(F.mse_loss(a.float(), b.float()))
    return float("inf") if mse == 0 else 10 * math.log10(data_range ** 2 / mse)


@dataclass
class InversionResult:
    """The best latent (and features, and fine-tuned generator) found, the image they make, and the loss history.

    ``generator`` is the fine-tuned copy made by :func:`finetune` (None: the original generator reproduces
    ``image`` from ``z`` and ``features``); ``target`` is the image that was inverted.
    """

    z: Tensor
    image: Tensor
    psnr: float
    losses: List[float] = field(default_factory=list)
    layer: Optional[str] = None
    features: Optional[Tensor] = None
    interrupted: bool = False
    generator: Optional[nn.Module] = None
    target: Optional[Tensor] = None
    drift: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.losses)

    def difference(self) -> Tensor:
        """Per-pixel mean absolute difference ``(H, W)`` between the reconstruction and the target."""
        if self.target is None:
            raise ValueError("this result does not hold its target")
        return (self.image.float() - self.target.to(self.image.device).float()).abs().mean(1)[0]


def reconstruct(generator: nn.Module, result: InversionResult, edit: Optional[Mapping[str, Edit]] = None) -> Tensor:
    """Regenerate ``result`` (with its fine-tuned generator when it has one), optionally with layer ``edit``s.

    The inverted features replace the layer's output first; an edit at the same layer applies on top of them.
    """
    model = result.generator if result.generator is not None else generator
    edits: Dict[str, Edit] = dict(edit or {})
    if result.features is not None and result.layer is not None:
        fixed = result.features
        base = Replace(lambda _: fixed)
        edits[result.layer] = Compose(base, edits[result.layer]) if result.layer in edits else base
    with torch.no_grad(), eval_mode(model), Trace(model, [], retain_output=False, edit=edits or None) as tr:
        return tr.run(result.z)


def _as_target(generator: nn.Module, target: Tensor, many: bool = False) -> Tensor:
    target = torch.as_tensor(target)
    if target.ndim == 3:
        target = target[None]
    if target.ndim != 4 or (len(target) != 1 and not many) or len(target) == 0:
        raise ValueError(f"invert {'images (N, C, H, W)' if many else 'one image (1, C, H, W)'}, got shape "
                         f"{tuple(target.shape)}")
    return target.to(model_device(generator)).float()


@torch.no_grad()
def encode(encoder: nn.Module, image: Tensor) -> Tensor:
    """The encoder's latent for an image batch ``(N, C, H, W)`` (in the generator's output range)."""
    with eval_mode(encoder):
        return encoder(image.to(model_device(encoder)).float())


def _optimise_features(generator: nn.Module, layer: str, best: Dict[str, Optional[Tensor]],
                       features_init: Optional[Tensor], loss_of: Callable[[Tensor], Tensor], loop: AdamLoop,
                       lr: float, steps: int) -> None:
    """The second phase of :func:`invert`: Adam on ``layer``'s whole feature map, from the better of the best
    latent's features and ``features_init``; ``best["features"]`` keeps the best map so far."""
    with torch.no_grad(), Trace(generator, layer, stop=True) as tr:
        tr.run(best["z"])
        start = tr[layer].output.detach().clone()
    if features_init is not None:
        guess = torch.as_tensor(features_init).to(start.device, start.dtype)
        if guess.shape != start.shape:
            raise ValueError(f"features_init has shape {tuple(guess.shape)}; {layer!r} makes {tuple(start.shape)}")
        with torch.no_grad():
            fit = [loss_of(Trace(generator, [], retain_output=False,
                                 edit={layer: Replace(lambda _, f=f: f)}).run(best["z"]))
                   for f in (start, guess)]
        start = rows_where(fit[1] < fit[0], guess, start)
    feats = start.clone().requires_grad_(True)
    best["features"] = feats.detach().clone()
    loop.reset_best()  # the first layer step re-measures the best z's loss
    with Trace(generator, [], retain_output=False, edit={layer: Replace(lambda _: feats)}) as tr:
        def layer_step() -> Tuple[Tensor, Tensor]:
            image = tr.run(best["z"])
            return loss_of(image), image

        loop.run([feats], lr, steps, layer_step,
                 lambda better: best.update(features=rows_where(better, feats, best["features"])))


def invert(generator: nn.Module, target: Tensor, *, encoder: Optional[nn.Module] = None,
           z_init: Optional[Tensor] = None, z_dim: Optional[int] = None, steps: int = 200, lr: float = 0.05,
           layer: Optional[str] = None, layer_steps: int = 200, layer_lr: float = 0.01,
           features_init: Optional[Tensor] = None, feature_loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
           feature_weight: float = 1.0, seed: int = 0, stop: Optional[Callable[[], bool]] = None,
           callback: Optional[Callable[[int, float, Tensor], None]] = None) -> InversionResult:
    """Invert ``generator`` on ``target`` (one image ``(1, C, H, W)`` or ``(C, H, W)`` in the output range).

    ``steps`` Adam steps on ``z`` (from ``z_init``, else ``encoder(target)``, else a normal draw with ``seed``),
    then ``layer_steps`` on ``layer``'s features if ``layer`` is given, starting from the features the best
    latent makes or from ``features_init`` (e.g. a layer-wise encoder's guess), whichever fits better.  The loss is
    the pixel MSE plus ``feature_weight * feature_loss(image, target)`` when given.  ``callback(step, loss, image)``
    sees progress.
    """
    return invert_many(generator, _as_target(generator, target), encoder=encoder, z_init=z_init, z_dim=z_dim,
                       steps=steps, lr=lr, layer=layer, layer_steps=layer_steps, layer_lr=layer_lr,
                       features_init=features_init, feature_loss=feature_loss, feature_weight=feature_weight,
                       seed=seed, stop=stop, callback=callback)[0]


def invert_many(generator: nn.Module, targets: Tensor, *, encoder: Optional[nn.Module] = None,
                z_init: Optional[Tensor] = None, z_dim: Optional[int] = None, steps: int = 200, lr: float = 0.05,
                layer: Optional[str] = None, layer_steps: int = 200, layer_lr: float = 0.01,
                features_init: Optional[Tensor] = None,
                feature_loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None, feature_weight: float = 1.0,
                seed: int = 0, stop: Optional[Callable[[], bool]] = None,
                callback: Optional[Callable[[int, float, Tensor], None]] = None) -> List[InversionResult]:
    """:func:`invert` on every image of ``targets`` ``(N, C, H, W)`` at once, one result per image.

    The images are optimised in one batch, each with its own loss, so each follows the path it would follow alone
    (the same start: the encoder's guess, or the one latent drawn with ``seed``), up to float rounding, in less time
    per image.  ``z_init`` and ``features_init`` hold one row per image; ``callback`` sees the mean loss and the
    whole batch.
    """
    target = _as_target(generator, targets, many=True)
    n = len(target)
    if layer is not None:
        get_module(generator, layer)
    if z_init is None and encoder is not None:
        z_init = encode(encoder, target)
    if z_init is None:
        z_init = seeded_latents(1, z_dim_of(generator, z_dim), seed).expand(n, -1)
    z_init = z_init.detach().to(target.device).reshape(len(z_init), -1)
    if len(z_init) != n:
        raise ValueError(f"z_init has {len(z_init)} rows for {n} images")
    z = z_init.clone().requires_grad_(True)
    loss_of = per_image_loss(target, feature_loss, feature_weight)
    loop = AdamLoop(stop, callback, n)
    best: Dict[str, Optional[Tensor]] = {"z": z.detach().clone(), "features": None}
    with frozen(generator):
        def z_step() -> Tuple[Tensor, Tensor]:
            image = generator(z)
            return loss_of(image), image

        loop.run([z], lr, steps, z_step, lambda better: best.update(z=rows_where(better, z, best["z"])))
        if layer is not None and not loop.interrupted:
            _optimise_features(generator, layer, best, features_init, loss_of, loop, layer_lr, layer_steps)
    features = best["features"]
    results = [InversionResult(best["z"][i:i + 1], target[i:i + 1], 0.0, loop.losses(i),
                               layer if features is not None else None,
                               None if features is None else features[i:i + 1], loop.interrupted,
                               target=target[i:i + 1]) for i in range(n)]
    images = reconstruct(generator, InversionResult(best["z"], target, 0.0, [], results[0].layer, features)).detach()
    for i, result in enumerate(results):
        result.image = images[i:i + 1]
        result.psnr = psnr(result.image, result.target)
    return results


def later_layers(generator: nn.Module, layer: str) -> List[str]:
    """Names of the generator's top-level children after the one that holds ``layer`` (the layers it feeds)."""
    get_module(generator, layer)
    names = [n for n, _ in generator.named_children()]
    top = layer.split(".")[0]
    if top not in names:
        raise ValueError(f"{layer!r} is not inside a top-level child of the generator ({', '.join(names)})")
    return names[names.index(top) + 1:]


def _frozen_copy(generator: nn.Module) -> nn.Module:
    """A copy of ``generator`` in eval mode whose parameters need no gradient."""
    return copy.deepcopy(generator).eval().requires_grad_(False)


def finetune(generator: nn.Module, start: InversionResult, *, target: Optional[Tensor] = None,
             layers: Optional[Sequence[str]] = None, steps: int = 300, lr: float = 2e-4, reg: float = 0.3,
             feature_loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None, feature_weight: float = 1.0,
             stop: Optional[Callable[[], bool]] = None,
             callback: Optional[Callable[[int, float, Tensor], None]] = None,
             cache_dir: Optional[PathLike] = None) -> InversionResult:
    """GAN-Paint-style fine-tuning for one image: a copy of the generator whose ``layers`` (default: every layer
    after the inverted one) change a little, so that it reproduces ``target`` from ``start``'s latent/features.

    The loss is the pixel loss plus ``reg`` times the squared weight change relative to the weights' size, which
    keeps the copy close to the original (unit edits at the inverted layer still work).  The original generator
    is not modified; ``result.generator`` is the tuned copy and ``result.drift`` its relative weight change.
    With ``cache_dir``, a finished fine-tuning is stored by the weights, the start, the target and the settings,
    and an identical call loads it.
    """
    target = _as_target(generator, start.target if target is None else target)
    if layers is None:
        if start.layer is None:
            raise ValueError("pass layers= (names of the generator's layers to fine-tune): the inversion has no "
                             "layer whose successors could be chosen")
        layers = later_layers(generator, start.layer)
    if not layers:
        raise ValueError("no layers to fine-tune")
    base = generator if start.generator is None else start.generator
    settings = dict(steps=steps, lr=lr, reg=reg, feature_loss=feature_loss, feature_weight=feature_weight)
    if cache_dir is None:
        return _finetune(generator, base, start, target, layers, stop, callback, **settings)
    cache = ResultCache(cache_dir)
    features = None if start.features is None else start.features.detach().cpu()
    key = make_key(kind="finetune", generator=weights_hash(base), z=start.z.detach().cpu(), layer=start.layer,
                   features=features, target=target.detach().cpu(), layers=list(layers), steps_before=start.steps,
                   **{**settings, "feature_loss": callable_id(feature_loss)})
    hit = cache.load(key, lambda path: _restored(base, dict(np.load(path)), target, start.layer))
    if hit is not None:
        return hit
    result = _finetune(generator, base, start, target, layers, stop, callback, **settings)
    if not result.interrupted:
        cache.save(key, lambda tmp: np.savez(tmp, **_result_arrays(result, _tuned_names(base, layers))))
    return result


def _finetune(generator: nn.Module, base: nn.Module, start: InversionResult, target: Tensor, layers: Sequence[str],
              stop: Optional[Callable[[], bool]], callback: Optional[Callable[[int, float, Tensor], None]], *,
              steps: int, lr: float, reg: float, feature_loss: Optional[Callable[[Tensor, Tensor], Tensor]],
              feature_weight: float) -> InversionResult:
    tuned = _frozen_copy(base)
    params = [p for name in layers for p in get_module(tuned, name).parameters()]
    if not params:
        raise ValueError(f"the layers {list(layers)} have no parameters to fine-tune")
    for p in params:
        p.requires_grad_(True)
    originals = [p.detach().clone() for p in params]
    norm = sum(float(o.pow(2).sum()) for o in originals) + 1e-12
    loss_of = per_image_loss(target, feature_loss, feature_weight)
    loop = AdamLoop(stop, callback)
    best = {"state": [p.detach().clone() for p in params]}
    edits = {} if start.features is None else {start.layer: Replace(lambda _: start.features)}

    def drift() -> Tensor:
        return sum((p - o).pow(2).sum() for p, o in zip(params, originals)) / norm

    with Trace(tuned, [], retain_output=False, edit=edits or None) as tr:
        def step() -> Tuple[Tensor, Tensor]:
            image = tr.run(start.z)
            return loss_of(image) + reg * drift(), image

        loop.run(params, lr, steps, step, lambda _: best.update(state=[p.detach().clone() for p in params]))
    with torch.no_grad():
        for p, b in zip(params, best["state"]):
            p.copy_(b)
        moved = float(drift()) ** 0.5
    for p in tuned.parameters():
        p.requires_grad_(False)
    result = InversionResult(start.z, target, 0.0, start.losses + loop.losses(), start.layer, start.features,
                             loop.interrupted, generator=tuned, target=target, drift=moved)
    result.image = reconstruct(generator, result).detach()
    result.psnr = psnr(result.image, target)
    return result


@dataclass
class Inverter:
    """The whole inversion of one image with fixed settings: encoder guess, latent steps, ``layer`` steps, then
    ``finetune_steps`` of generator fine-tuning (0: none).  An encoder with ``feature_layer == layer`` and a
    ``features`` part (like the bundled toy-encoder) also offers its guess of the layer's features.  Call it on an
    ``(H, W, 3)`` uint8 photo (any size: centre-cropped and resized) or a ``(1, C, H, W)`` tensor in
    ``output_range``; progress goes to ``callback``.  :meth:`many` inverts several images together.  With
    ``cache_dir``, finished inversions are stored by the generator's and encoder's weights, the settings and the
    target's pixels, and an identical call loads them.
    """

    generator: nn.Module
    encoder: Optional[nn.Module] = None
    layer: Optional[str] = None
    steps: int = 150
    layer_steps: int = 150
    finetune_steps: int = 0
    lr: float = 0.05
    layer_lr: float = 0.01
    output_range: Tuple[float, float] = (-1.0, 1.0)
    feature_loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None
    seed: int = 0
    z_dim: Optional[int] = None
    cache_dir: Optional[PathLike] = None
    _resolution: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.layer is not None:
            get_module(self.generator, self.layer)
        elif self.finetune_steps > 0:
            raise ValueError("fine-tuning changes the layers after the inverted one: pass layer= as well")
        if self.encoder is None:
            self.z_dim = z_dim_of(self.generator, self.z_dim)  # a clear error when it cannot be told

    @property
    def resolution(self) -> int:
        """The generator's output side in pixels (measured once with one forward pass)."""
        if self._resolution == 0:
            z_dim = z_dim_of(self.generator, self.z_dim)
            with torch.no_grad(), eval_mode(self.generator):
                out = self.generator(torch.zeros(1, z_dim, device=model_device(self.generator)))
            self._resolution = int(out.shape[-1])
        return self._resolution

    @property
    def total_steps(self) -> int:
        return self.steps + (self.layer_steps if self.layer is not None else 0) + self.finetune_steps

    def as_target(self, photo: Union[np.ndarray, Tensor]) -> Tensor:
        """A uint8 ``(H, W, 3)`` photo of any size -> ``(1, 3, R, R)`` in the output range, centre-cropped and resized
        to the generator's resolution R; a tensor must already be one image of the generator's size."""
        if isinstance(photo, np.ndarray):
            return from_uint8(fit_photo(photo, self.resolution)[0], self.output_range)[None]
        target = torch.as_tensor(photo)  # its size is checked against the generator's images at the first step
        if target.ndim not in (3, 4) or (target.ndim == 4 and len(target) != 1):
            raise ValueError(f"expected one image tensor (1, C, H, W) in the generator's output range, got shape "
                             f"{tuple(target.shape)} (pass a uint8 (H, W, 3) photo to have it cropped and resized)")
        return target.reshape(1, *target.shape[-3:])

    def __call__(self, photo: Union[np.ndarray, Tensor], *, stop: Optional[Callable[[], bool]] = None,
                 callback: Optional[Callable[[int, float, Tensor], None]] = None) -> InversionResult:
        return self._each([self.as_target(photo)], stop, callback, 1)[0]

    def many(self, photos: Union[Sequence[Union[np.ndarray, Tensor]], np.ndarray, Tensor], *, batch_size: int = 16,
             stop: Optional[Callable[[], bool]] = None) -> List[InversionResult]:
        """One result per photo: uint8 ``(H, W, 3)`` photos (a list, or an ``(N, H, W, 3)`` array) or an
        ``(N, C, H, W)`` tensor in ``output_range``.  Those not in the cache are inverted ``batch_size`` at a time
        (each as it would be alone, up to float rounding, in less time per image)."""
        if isinstance(photos, (np.ndarray, Tensor)) and photos.ndim == 4:
            photos = list(photos[:, None] if isinstance(photos, Tensor) else photos)
        targets = [self.as_target(p) for p in photos]
        if not targets:
            raise ValueError("no photos to invert")
        shapes = {tuple(t.shape) for t in targets}
        if len(shapes) > 1:
            raise ValueError(f"the photos give targets of different shapes {sorted(shapes)}: pass uint8 photos "
                             "(cropped and resized to the generator's size) or tensors of one size")
        return self._each(targets, stop, None, max(1, batch_size))

    def _each(self, targets: List[Tensor], stop: Optional[Callable[[], bool]],
              callback: Optional[Callable[[int, float, Tensor], None]], batch_size: int) -> List[InversionResult]:
        """Cached results for ``targets`` (each ``(1, C, H, W)``), the others inverted in batches and stored."""
        cache = None if self.cache_dir is None else ResultCache(self.cache_dir)
        keys = [None if cache is None else self._key(t) for t in targets]
        results: List[Optional[InversionResult]] = [
            None if cache is None else cache.load(key, lambda path, t=t: self._restore(dict(np.load(path)), t))
            for key, t in zip(keys, targets)]
        todo = [i for i, r in enumerate(results) if r is None]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            for i, result in zip(chunk, self._invert(torch.cat([targets[i] for i in chunk]), stop, callback)):
                results[i] = result
                if cache is not None and not result.interrupted:
                    cache.save(keys[i], lambda tmp, r=result: np.savez(tmp, **self._arrays(r)))
        return cast(List[InversionResult], results)  # every entry is filled above

    def _invert(self, target: Tensor, stop: Optional[Callable[[], bool]],
                callback: Optional[Callable[[int, float, Tensor], None]]) -> List[InversionResult]:
        guess = None
        if self.layer is not None and getattr(self.encoder, "feature_layer", None) == self.layer:
            guess = encode(self.encoder.features, target)  # a layer-wise encoder's guess of this layer's features
        results = invert_many(self.generator, target, encoder=self.encoder, steps=self.steps, lr=self.lr,
                              layer=self.layer, layer_steps=self.layer_steps, layer_lr=self.layer_lr,
                              features_init=guess, feature_loss=self.feature_loss, seed=self.seed, z_dim=self.z_dim,
                              stop=stop, callback=callback)
        if self.finetune_steps <= 0:
            return results
        tuned = []
        for result in results:
            if result.interrupted:
                tuned.append(result)
                continue
            offset = result.steps

            def shifted(step: int, loss: float, image: Tensor, offset: int = offset) -> None:
                if callback is not None:
                    callback(offset + step, loss, image)

            tuned.append(finetune(self.generator, result, steps=self.finetune_steps, feature_loss=self.feature_loss,
                                  stop=stop, callback=shifted))
        return tuned

    # -- cache ---------------------------------------------------------------------------------------------------
    def _key(self, target: Tensor) -> str:
        settings = {k: getattr(self, k) for k in ("layer", "steps", "layer_steps", "finetune_steps", "lr", "layer_lr",
                                                 "output_range", "seed", "z_dim")}
        return make_key(kind="inversion", generator=weights_hash(self.generator),
                        encoder=None if self.encoder is None else weights_hash(self.encoder),
                        feature_loss=callable_id(self.feature_loss), target=target.detach().cpu(), **settings)

    def _tuned_names(self) -> List[str]:
        """Names of the parameters that fine-tuning changes."""
        if self.finetune_steps <= 0 or self.layer is None:
            return []
        return _tuned_names(self.generator, later_layers(self.generator, self.layer))

    def _arrays(self, result: InversionResult) -> Dict[str, np.ndarray]:
        return _result_arrays(result, self._tuned_names())

    def _restore(self, arrays: Dict[str, np.ndarray], target: Tensor) -> InversionResult:
        return _restored(self.generator, arrays, target, self.layer)


def _tuned_names(generator: nn.Module, layers: Sequence[str]) -> List[str]:
    """Names of the parameters of ``layers`` (which fine-tuning changes)."""
    prefixes = tuple(f"{name}." for name in layers)
    return [n for n, _ in generator.named_parameters() if n.startswith(prefixes)]


def _result_arrays(result: InversionResult, tuned_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """What a result holds that cannot be derived again (its layer, PSNR and target can)."""
    out = {"z": result.z.detach().cpu().numpy(), "image": result.image.detach().cpu().numpy(),
           "losses": np.asarray(result.losses, np.float64), "drift": np.float64(result.drift)}
    if result.features is not None:
        out["features"] = result.features.detach().cpu().numpy()
    if result.generator is not None:
        tuned = dict(result.generator.named_parameters())
        out.update({f"tuned:{n}": tuned[n].detach().cpu().numpy() for n in tuned_names})
    return out


def _restored(generator: nn.Module, arrays: Dict[str, np.ndarray], target: Tensor,
              layer: Optional[str]) -> InversionResult:
    """A result from :func:`_result_arrays`: the fine-tuned layers are copied into a frozen copy of ``generator``."""
    device = model_device(generator)
    tuned_copy = None
    tuned = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith("tuned:")}
    if tuned:
        tuned_copy = _frozen_copy(generator)
        params = dict(tuned_copy.named_parameters())
        with torch.no_grad():
            for name, value in tuned.items():
                params[name].copy_(torch.from_numpy(value))
    features = torch.from_numpy(arrays["features"]).to(device) if "features" in arrays else None
    image, target = torch.from_numpy(arrays["image"]).to(device), target.to(device)
    return InversionResult(torch.from_numpy(arrays["z"]).to(device), image, psnr(image, target),
                           arrays["losses"].tolist(), layer if features is not None else None, features,
                           False, tuned_copy, target, float(arrays["drift"]))
