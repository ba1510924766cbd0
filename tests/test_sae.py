"""Sparse dictionaries (ganviz.sae): recovery of a planted dictionary, training from a model with cache and resume,
the report, and dictionary files (round trip, other key spellings, bad files).  Nothing here trains the bundled
models (benchmarks/features_vs_units.py does)."""
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

import ganviz.sae as sae_module
from ganviz.basis import BasisError, DictionaryBasis, with_basis
from ganviz.checkpoints import CheckpointError
from ganviz.dissect import TensorSource
from ganviz.preprocessing import identity
from ganviz.sae import (SAEConfig, SAEReport, evaluate_dictionary, fit_sae, load_dictionary, save_dictionary,
                        train_sae)
from ganviz.trace import count_hooks

C, ATOMS, ACTIVE = 16, 32, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def planted(n: int = 5000, seed: int = 0):
    """Vectors made of ``ACTIVE`` of ``ATOMS`` unit-norm atoms (magnitudes 1..2) plus an offset; the atoms."""
    g = torch.Generator().manual_seed(seed)
    atoms = F.normalize(torch.randn(ATOMS, C, generator=g), dim=1)
    idx = torch.stack([torch.randperm(ATOMS, generator=g)[:ACTIVE] for _ in range(n)])
    codes = torch.zeros(n, ATOMS).scatter(1, idx, 1 + torch.rand(n, ACTIVE, generator=g))
    return codes @ atoms + 0.5, atoms


FAST = dict(expansion=2, k=ACTIVE, steps=1000, batch_size=512, lr=1e-2)


def test_a_planted_dictionary_is_recovered():
    x, atoms = planted()
    basis = fit_sae(x, progress=False, **FAST)
    best = (atoms @ basis.W_dec.T).max(1).values  # each atom's closest feature (cosine: rows are unit norm)
    assert (best > 0.9).float().mean() >= 0.9, best
    r = basis.report
    assert r.fve > 0.85 and r.dead_fraction <= 0.05 and r.mean_l0 <= ACTIVE and r.n_features == 2 * C
    assert torch.allclose(basis.W_dec.norm(dim=1), torch.ones(2 * C), atol=1e-5)


def identity_model() -> nn.Module:
    return nn.Sequential(OrderedDict(layer=nn.Identity(), head=nn.Flatten())).eval()


def as_images(x: torch.Tensor) -> TensorSource:
    """Vectors as 2x2 'images' of C channels (four vectors per item), with an identity for caches."""
    return TensorSource(x[: len(x) // 4 * 4].reshape(-1, 2, 2, C).permute(0, 3, 1, 2).contiguous())


def test_train_sae_reads_a_layer_caches_and_resumes(tmp_path, monkeypatch):
    x, _ = planted(2000)
    model, source = identity_model(), as_images(x)
    kw = dict(preprocess=identity, progress=False, expansion=2, k=ACTIVE, steps=120, batch_size=256, lr=1e-2)
    reference = train_sae(model, "layer", source, **kw)
    assert isinstance(reference.report, SAEReport) and reference.report.train_vectors == 1800

    calls = {"n": 0}
    step = sae_module._Trainer.train_step

    def interrupted(self):
        if self.step == 50:
            raise KeyboardInterrupt
        calls["n"] += 1
        return step(self)

    monkeypatch.setattr(sae_module._Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_sae(model, "layer", source, cache_dir=tmp_path, checkpoint_every=20, **kw)
    assert len(list(tmp_path.glob("*.ckpt.pt"))) == 1 and count_hooks(model) == 0
    monkeypatch.setattr(sae_module._Trainer, "train_step", step)
    resumed = train_sae(model, "layer", source, cache_dir=tmp_path, **kw)
    assert calls["n"] == 50 and not list(tmp_path.glob("*.ckpt.pt"))  # the rest ran after the resume
    assert torch.allclose(resumed.W_dec, reference.W_dec, atol=1e-5)

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached dictionary should have been used")

    monkeypatch.setattr(sae_module, "collect_activations", no_reading)
    cached = train_sae(model, "layer", source, cache_dir=tmp_path, **kw)
    assert torch.equal(cached.W_enc, resumed.W_enc) and cached.report == resumed.report
    with pytest.raises(AssertionError):  # another setting is another entry
        train_sae(model, "layer", source, cache_dir=tmp_path, **{**kw, "k": 2})


def test_a_trained_dictionary_reads_the_layer_exactly_when_nothing_is_edited():
    x, _ = planted(400)
    model, source = identity_model(), as_images(x)
    basis = train_sae(model, "layer", source, preprocess=identity, progress=False, steps=20, k=2, expansion=1)
    images = source.load(range(8))[0]
    with with_basis(model, "layer", basis):
        assert torch.equal(model(images), images.flatten(1))


def test_the_report_measures_what_it_says():
    x = torch.relu(torch.randn(1000, 4))
    x[:, 3] = 0
    basis = DictionaryBasis(torch.eye(4), torch.zeros(4), torch.eye(4), torch.zeros(4), activation="relu")
    fve, dead, l0 = evaluate_dictionary(basis, x)
    assert fve == pytest.approx(1.0) and dead == pytest.approx(0.25)
    assert l0 == pytest.approx(float((x > 0).sum()) / 1000)
    with pytest.raises(BasisError, match="reads 4 channels"):
        evaluate_dictionary(basis, torch.zeros(10, 5))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="positive"):
        fit_sae(torch.zeros(100, 4), k=0)
    with pytest.raises(ValueError, match="holdout"):
        fit_sae(torch.zeros(100, 4), holdout=1.0)
    with pytest.raises(TypeError):
        fit_sae(torch.zeros(100, 4), sparsity=3)
    with pytest.raises(ValueError, match="too few items"):
        fit_sae(torch.zeros(1, 4), progress=False)


# -- files ----------------------------------------------------------------------------------------------------------


def small_dictionary(k=2) -> DictionaryBasis:
    torch.manual_seed(0)
    return DictionaryBasis(torch.randn(6, 10), torch.randn(10), torch.randn(10, 6), torch.randn(6), k=k)


def test_dictionary_files_round_trip(tmp_path):
    basis = small_dictionary().set_names([f"f{i}" for i in range(10)])
    basis.report = SAEReport(0.95, 0.01, 2.0, 10, 2)
    loaded = load_dictionary(save_dictionary(basis, tmp_path / "d.safetensors"))
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(loaded, name), getattr(basis, name))
    assert (loaded.activation, loaded.k, loaded.names, loaded.report) == ("topk", 2, basis.names, basis.report)
    v = torch.randn(5, 6)
    assert torch.equal(loaded.encode_vectors(v), basis.encode_vectors(v))


def test_dictionaries_from_elsewhere_in_other_spellings(tmp_path):
    basis = small_dictionary(k=3)
    v = torch.randn(5, 6)
    linear = {"encoder.weight": basis.W_enc.T.contiguous(), "encoder.bias": basis.b_enc,
              "decoder.weight": basis.W_dec.T.contiguous(), "decoder.bias": basis.b_dec}
    save_file(linear, str(tmp_path / "linear.safetensors"))
    loaded = load_dictionary(tmp_path / "linear.safetensors", k=3)
    assert loaded.activation == "topk" and torch.allclose(loaded.encode_vectors(v), basis.encode_vectors(v))
    flipped = {"W_enc": basis.W_enc.T.contiguous(), "b_enc": basis.b_enc, "W_dec": basis.W_dec.T.contiguous(),
               "b_dec": basis.b_dec}  # stored [F, C] / [C, F]: the biases tell which way round
    save_file(flipped, str(tmp_path / "flipped.safetensors"))
    loaded = load_dictionary(tmp_path / "flipped.safetensors")
    assert loaded.activation == "relu" and loaded.width == 6 and torch.allclose(loaded.W_dec, basis.W_dec)
    torch.save({"state_dict": {"module.W_enc": basis.W_enc, "module.W_dec": basis.W_dec}}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="flat dict of tensors"):
        load_dictionary(tmp_path / "d.pt")
    torch.save({"module.W_enc": basis.W_enc, "module.W_dec": basis.W_dec}, tmp_path / "plain.pt")
    loaded = load_dictionary(tmp_path / "plain.pt", width=6)
    assert torch.equal(loaded.b_dec, torch.zeros(6)) and torch.equal(loaded.b_enc, torch.zeros(10))


def test_bad_dictionary_files(tmp_path):
    basis = small_dictionary()
    save_file({"W_enc": basis.W_enc, "b_enc": basis.b_enc}, str(tmp_path / "no_dec.safetensors"))
    with pytest.raises(BasisError, match=r"no W_dec \(accepted keys: W_dec, w_dec, decoder.weight.*: W_enc, b_enc"):
        load_dictionary(tmp_path / "no_dec.safetensors")
    save_file({"W_enc": basis.W_enc, "W_dec": basis.W_dec, "b_dec": torch.zeros(5)}, str(tmp_path / "b.safetensors"))
    with pytest.raises(BasisError, match=r"b_dec .* must have shape \[6\], got \[5\]"):
        load_dictionary(tmp_path / "b.safetensors")
    path = save_dictionary(basis, tmp_path / "ok.safetensors")
    with pytest.raises(BasisError, match="reads 6 channels, but the layer has 8"):
        load_dictionary(path, width=8)
    with pytest.raises(BasisError, match="unknown activation 'gelu'"):
        load_dictionary(path, activation="gelu")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_dictionary(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="directory"):
        load_dictionary(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_dictionary(tmp_path / "missing.safetensors")
    torch.save({"W_enc": basis.W_enc, "object": SAEConfig()}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_dictionary(tmp_path / "pickled.pt")
