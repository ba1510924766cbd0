"""Tests for ganviz.cache and the cached dissection: reuse, staleness, interruption, corrupt files."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from ganviz.cache import ResultCache, atomic_write, callable_id, make_key, weights_hash
from ganviz.dissect import DissectionResult, ToyWorldSource, dissect_classifier
from ganviz.trace import count_hooks
from ganviz.zoo.arch import ToyVGG

torch.set_num_threads(1)
ARRAYS = ("thresholds", "quantile_values", "iou", "intersection", "unit_area", "concept_area", "topk_values",
          "topk_indices")


class CountingVGG(ToyVGG):
    """A toy classifier that counts forward calls and can raise at a given call."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(8)
        self.eval()
        self.calls = 0
        self.fail_at: Optional[int] = None

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise KeyboardInterrupt
        return super().forward(x)


SRC = ToyWorldSource(24, seed=1)
KW = dict(batch_size=8, chunk_size=8, progress=False)


def _files(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _assert_same(a: DissectionResult, b: DissectionResult) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.fixture(scope="module")
def reference() -> DissectionResult:
    return dissect_classifier(CountingVGG(), "conv5_3", SRC, **KW)


def test_reuse_on_identical_input(tmp_path, reference):
    tmp_path = tmp_path / "new" / "cache"  # created on first use
    model = CountingVGG()
    first = dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    assert model.calls == 3  # one pass over 3 batches (activations kept for pass 2)
    assert len([f for f in _files(tmp_path) if f.endswith(".npz")]) == 1
    second = dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    assert model.calls == 3  # nothing recomputed
    _assert_same(first, second)
    _assert_same(first, reference)
    assert second.model_hash == weights_hash(model) and second.data == SRC.identity


def test_recompute_after_weight_or_parameter_change(tmp_path):
    model = CountingVGG()
    a = dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    with torch.no_grad():
        model.conv5_3.conv.weight.mul_(1.5)
    calls = model.calls
    b = dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    assert model.calls > calls
    assert not np.array_equal(a.topk_values, b.topk_values)
    with torch.no_grad():  # a buffer counts as weights too
        model.conv5_3.bn.running_mean.add_(0.1)
    calls = model.calls
    dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    assert model.calls > calls
    for change in (dict(quantile=0.995), dict(k=5), dict(n=16), dict(data=ToyWorldSource(24, seed=2))):
        calls = model.calls
        kwargs = {**KW, **{k: v for k, v in change.items() if k != "data"}}
        dissect_classifier(model, "conv5_3", change.get("data", SRC), cache_dir=tmp_path, **kwargs)
        assert model.calls > calls, change
    calls = model.calls
    dissect_classifier(model, "conv4_3", SRC, cache_dir=tmp_path, **KW)
    assert model.calls > calls


def test_interrupt_in_pass_one_leaves_nothing(tmp_path, reference):
    model = CountingVGG()
    model.fail_at = 2
    with pytest.raises(KeyboardInterrupt):
        dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    assert _files(tmp_path) == []
    assert count_hooks(model) == 0
    model.fail_at = None
    _assert_same(dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW), reference)


def test_interrupt_in_pass_two_resumes_from_pass_one(tmp_path, reference):
    model = CountingVGG()
    model.fail_at = 5  # pass 1 = calls 1-3 (streaming pass 2 runs the model again), fails at its 2nd batch
    with pytest.raises(KeyboardInterrupt):
        dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, activation_cache_bytes=0, **KW)
    left = _files(tmp_path)
    assert len(left) == 1 and left[0].endswith(".pass1.npz"), left  # only the pass-1 checkpoint, no temp file
    model.fail_at, model.calls = None, 0
    resumed = dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, activation_cache_bytes=0, **KW)
    assert model.calls == 3  # pass 2 only
    _assert_same(resumed, reference)
    assert [f for f in _files(tmp_path) if f.endswith(".pass1.npz")] == []  # checkpoint removed once done


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cache_file_is_ignored(tmp_path, reference, damage):
    model = CountingVGG()
    dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    (path,) = [tmp_path / f for f in _files(tmp_path)]
    data = path.read_bytes()
    path.write_bytes({"garbage": b"not a zip file" * 10, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    calls = model.calls
    with pytest.warns(RuntimeWarning, match="ignoring unreadable cache file"):
        again = dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, **KW)
    assert model.calls > calls
    _assert_same(again, reference)
    DissectionResult.load(path)  # rewritten, readable again


def test_corrupt_checkpoint_is_ignored(tmp_path, reference):
    model = CountingVGG()
    model.fail_at = 5
    with pytest.raises(KeyboardInterrupt):
        dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, activation_cache_bytes=0, **KW)
    (ckpt,) = [tmp_path / f for f in _files(tmp_path)]
    ckpt.write_bytes(b"junk")
    model.fail_at = None
    with pytest.warns(RuntimeWarning, match="checkpoint"):
        again = dissect_classifier(model, "conv5_3", SRC, cache_dir=tmp_path, activation_cache_bytes=0, **KW)
    _assert_same(again, reference)


def test_source_without_identity_is_not_cached(tmp_path):
    from ganviz.dissect import DatasetSource
    from ganviz.toyworld import ToyWorld

    src = DatasetSource(ToyWorld(8, seed=1), identity="")
    with pytest.warns(RuntimeWarning, match="no identity"):
        dissect_classifier(CountingVGG(), "conv5_3", src, cache_dir=tmp_path, **KW)
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------------------------- primitives
def test_atomic_write_cleans_up_on_error(tmp_path):
    target = tmp_path / "x.bin"

    def bad(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, bad)
    assert _files(tmp_path) == []
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"ok"))
    assert target.read_bytes() == b"ok" and _files(tmp_path) == ["x.bin"]
    assert oct(os.stat(target).st_mode & 0o777) == "0o644"


def test_weights_hash_and_keys():
    a, b = CountingVGG(), CountingVGG()
    assert weights_hash(a) == weights_hash(b)
    with torch.no_grad():
        b.fc.bias[0] += 1e-6
    assert weights_hash(a) != weights_hash(b)
    assert weights_hash(a, None) != weights_hash(a, a)
    half = nn.Linear(2, 2).to(torch.bfloat16)  # dtypes numpy lacks still hash
    assert len(weights_hash(half)) == 64
    assert make_key(q=0.99, layer="x") == make_key(layer="x", q=0.99)
    assert make_key(q=0.99) != make_key(q=0.9900000001)
    assert make_key(x=[1, 2]) != make_key(x=[2, 1])
    with pytest.raises(TypeError):
        make_key(x=object())


def test_callable_id_tracks_code_and_closure():
    def scale(f: float):
        return lambda x: x * f

    assert callable_id(scale(2.0)) == callable_id(scale(2.0))
    assert callable_id(scale(2.0)) != callable_id(scale(3.0))
    assert callable_id(lambda x: x * 2 - 1) != callable_id(lambda x: x * 2 + 1)


class Tokens:
    """A callable object with Python's default repr (which shows its address)."""

    def __init__(self, words):
        self.words = tuple(words)

    def __call__(self, text):
        return [self.words.index(w) for w in text.split()]


def test_callable_id_of_an_object_is_its_state_not_its_address():
    # a closure over a callable object (as a tokenizer in a text encoder): a key that held the object's address
    # changed in every process, so nothing cached under it was ever found again
    def encoder(tokens):
        return lambda text: tokens(text)

    assert callable_id(Tokens(["a", "b"])) == callable_id(Tokens(["a", "b"]))
    assert callable_id(encoder(Tokens(["a", "b"]))) == callable_id(encoder(Tokens(["a", "b"])))
    assert callable_id(Tokens(["a", "b"])) != callable_id(Tokens(["a", "c"]))
    assert " at 0x" not in callable_id(Tokens(["a"])) + callable_id(object())


def test_result_cache_roundtrip(tmp_path):
    cache = ResultCache(tmp_path / "c")
    assert cache.load("k", lambda p: p.read_bytes()) is None
    cache.save("k", lambda tmp: Path(tmp).write_bytes(b"v"), suffix=".bin")
    assert cache.load("k", lambda p: p.read_bytes(), suffix=".bin") == b"v"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.discard("k", suffix=".bin")
        cache.discard("k", suffix=".bin")
    assert _files(tmp_path / "c") == []
