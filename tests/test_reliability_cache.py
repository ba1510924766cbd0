"""Cache keys that cannot go stale, and entries that know their own key."""
import shutil

import numpy as np
import pytest
import torch

import ganviz
from ganviz.cache import ResultCache, callable_id

SCALE = 2.0


def _reads_a_global(x):
    return x * SCALE


def test_a_function_reading_a_global_changes_identity_with_the_global(monkeypatch):
    before = callable_id(_reads_a_global)
    monkeypatch.setattr(__import__(__name__), "SCALE", 3.0)
    assert callable_id(_reads_a_global) != before


class _Prep:
    def __init__(self, k):
        self.k = k

    def run(self, x):
        return x * self.k


def test_a_bound_method_changes_identity_with_its_object():
    obj = _Prep(1.0)
    before = callable_id(obj.run)
    obj.k = 2.0
    assert callable_id(obj.run) != before
    assert callable_id(_Prep(1.0).run) == callable_id(_Prep(1.0).run)  # no memory addresses in the identity


def test_a_lambda_over_a_module_changes_identity_with_its_weights():
    net = torch.nn.Conv2d(3, 4, 1)
    seg = lambda x: net(x)  # noqa: E731
    before = callable_id(seg)
    with torch.no_grad():
        net.weight.add_(1)
    assert callable_id(seg) != before


def test_to_signed_and_an_adapter_normalize_share_an_identity():
    assert callable_id(ganviz.preprocessing.to_signed) == callable_id(ganviz.Normalize((-1, 1)))
    assert callable_id(ganviz.Normalize((-1, 1))) != callable_id(ganviz.Normalize((0, 1)))


def _writer(value):
    return lambda p: np.savez(p, value=np.array(value))


def _load(p):
    with np.load(p) as f:
        return float(f["value"])


def test_an_entry_copied_over_another_key_is_not_served(tmp_path):
    cache = ResultCache(tmp_path)
    cache.save("a" * 40, _writer(1.0))
    cache.save("b" * 40, _writer(2.0))
    assert cache.load("a" * 40, _load) == 1.0
    shutil.copyfile(cache.path("b" * 40), cache.path("a" * 40))
    with pytest.warns(RuntimeWarning, match="holds entry"):
        assert cache.load("a" * 40, _load) is None


def test_a_directory_where_an_entry_should_be_is_skipped_with_a_warning(tmp_path):
    cache = ResultCache(tmp_path)
    cache.path("c" * 40).mkdir(parents=True)
    with pytest.warns(RuntimeWarning, match="not a regular file"):
        assert cache.load("c" * 40, _load) is None
    with pytest.warns(RuntimeWarning, match="other than a file"):
        cache.save("c" * 40, _writer(3.0))
