"""Reading a layer in a basis (ganviz.basis): exact empty edits, feature edits, dissection of features, bad input,
and the model put back exactly afterwards."""
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ganviz
from ganviz.basis import (BasisError, DictionaryBasis, DirectionsBasis, IdentityBasis, feature_layer,
                          with_basis)
from ganviz.cache import weights_hash
from ganviz.dissect import TensorSource, dissect_classifier
from ganviz.edits import Ablate, Scale, SetLevel
from ganviz.gradcam import gradcam
from ganviz.preprocessing import identity
from ganviz.trace import LayerNotFoundError, Trace, count_hooks, edited_forward, get_module

from _factories import Bomb, ConceptMaps

K = 4
NAMES = ("a", "b", "c", "d")


def rotation() -> torch.Tensor:
    """Rows: each concept's direction in unit space.  Pairs (0, 1) and (2, 3) are mixed at 45 degrees, so unit 1
    responds to concepts a and b alike (polysemantic) and unit 3 to c and d; unit 0 is a clean 'a' (a - b) and
    unit 2 a clean 'c'."""
    c = s = 1 / math.sqrt(2)
    return torch.tensor([[c, s, 0, 0], [-s, c, 0, 0], [0, 0, c, s], [0, 0, -s, c]])


def concept_net(r: torch.Tensor) -> nn.Module:
    """``read`` (concept maps c) -> ``mix`` (units x = R^T c, a 1x1 conv) -> a small head."""
    mix = nn.Conv2d(K, K, 1, bias=False)
    with torch.no_grad():
        mix.weight.copy_(r.T[:, :, None, None])
    torch.manual_seed(0)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(K, 3))
    return nn.Sequential(OrderedDict(read=ConceptMaps(K), mix=mix, relu=nn.Identity(), head=head)).eval()


def concept_data(n: int = 48, size: int = 16, seed: int = 0):
    """Images coding random rectangles of the K concepts (later ones on top) and their label maps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((n, size, size), -1, dtype=torch.long)
    for i in range(n):
        for j in range(K):
            if torch.rand(1, generator=g) < 0.7:
                y0, x0 = torch.randint(0, size - 5, (2,), generator=g).tolist()
                h, w = torch.randint(4, 9, (2,), generator=g).tolist()
                labels[i, y0:y0 + h, x0:x0 + w] = j
    images = torch.zeros(n, 3, size, size)
    images[:, 0] = (labels + 1).float() / (K + 1)
    images[:, 1] = 0.5 + 0.5 * torch.rand(n, size, size, generator=g)
    return images, labels


def rotated_dictionary(r: torch.Tensor) -> DictionaryBasis:
    """Features = concept maps: f = x @ R.T (R orthogonal), decoded by f @ R."""
    return DictionaryBasis(r.T, torch.zeros(K), r, torch.zeros(K), activation="relu", names=NAMES)


def structure(model: nn.Module):
    """Everything with_basis must leave as it found it."""
    return ([(name, type(m), m.training, id(m)) for name, m in model.named_modules()],
            {k: v.clone() for k, v in model.state_dict().items()}, count_hooks(model))


def same_structure(a, b) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1]) \
        and a[2] == b[2]


@pytest.fixture(scope="module")
def net():
    return concept_net(rotation())


@pytest.fixture(scope="module")
def data():
    return concept_data()


# -- exactness ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda c: IdentityBasis(c),
                                  lambda c: DictionaryBasis(torch.randn(c, 3 * c), torch.randn(3 * c),
                                                            torch.randn(3 * c, c), torch.randn(c), k=5),
                                  lambda c: DirectionsBasis(torch.randn(7, c), center=torch.randn(c))])
def test_an_empty_edit_reproduces_the_model_exactly(net, data, make):
    x = data[0][:8]
    y0 = net(x)
    torch.manual_seed(1)
    with with_basis(net, "mix", make(K)) as view:
        assert torch.equal(net(x), y0)
        with Trace(net, view.layer, edit=Ablate([])) as tr:  # an edit of nothing
            assert (tr.run(x) - y0).abs().max() <= 1e-6
        assert tr[view.layer].output.shape[1] == view.n_features


@pytest.mark.bundled
@pytest.mark.parametrize("name,layer,width", [("toy-classifier", "conv5_3", 192), ("toy-gan", "layer4", 256)])
def test_bundled_models_are_reproduced_in_every_basis(name, layer, width):
    model, info = ganviz.load(name)
    torch.manual_seed(0)
    x = torch.randn(4, 128) if info.kind == "generator" else torch.rand(4, 3, 64, 64) * 2 - 1
    y0, before = model(x), structure(model)
    f = 4 * width
    bases = [IdentityBasis(width), DirectionsBasis(torch.randn(16, width)),
             DictionaryBasis(torch.randn(width, f) * 0.1, torch.zeros(f), F.normalize(torch.randn(f, width), dim=1),
                             torch.rand(width), k=16)]
    for basis in bases:
        with with_basis(model, layer, basis) as view:
            assert (model(x) - y0).abs().max() <= 1e-5
            assert (edited_forward(model, x, {view.layer: Scale([0, 1], 1.0)}) - y0).abs().max() <= 1e-5
    assert same_structure(before, structure(model))


def test_the_identity_basis_edits_like_units(net, data):
    x = data[0][:8]
    for edit in (Ablate([1, 2]), SetLevel([3], 2.0, mask=torch.ones(16, 16)), Scale([0], 3.0)):
        units = edited_forward(net, x, {"mix": edit})
        with with_basis(net, "mix", IdentityBasis(K)) as view:
            assert torch.equal(edited_forward(net, x, {view.layer: edit}), units)


# -- edits of features ----------------------------------------------------------------------------------------------


def test_ablating_a_feature_removes_its_concept_and_keeps_the_rest(net, data):
    x = data[0][:8]
    c = ConceptMaps(K)(x)
    with with_basis(net, "mix", rotated_dictionary(rotation())) as view:
        with Trace(net, ["mix", view.layer], edit={view.layer: Ablate([1])}) as tr:
            tr.run(x)
        units = tr["mix"].output
    expected = c.clone()
    expected[:, 1] = 0
    assert torch.allclose(units, torch.einsum("jc,bjhw->bchw", rotation(), expected), atol=1e-6)
    assert float(tr[view.layer].output[:, 1].abs().max()) == 0


def test_set_level_writes_a_feature_where_the_mask_is(net, data):
    x = data[0][:4]
    basis = rotated_dictionary(rotation())
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1
    with with_basis(net, "mix", basis) as view:
        with Trace(net, ["mix", view.layer], edit={view.layer: SetLevel([2], 3.0, mask=mask)}) as tr:
            tr.run(x)
    f = basis.encode(tr["mix"].output)
    inside = mask.bool()
    assert torch.allclose(f[:, 2][:, inside], torch.full_like(f[:, 2][:, inside], 3.0), atol=1e-5)
    assert torch.allclose(f[:, 2][:, ~inside], ConceptMaps(K)(x)[:, 2][:, ~inside], atol=1e-5)
    assert torch.allclose(f[:, [0, 1, 3]], ConceptMaps(K)(x)[:, [0, 1, 3]], atol=1e-5)


def test_gradcam_reads_features(net, data):
    x = data[0][:2]
    with with_basis(net, "mix", IdentityBasis(K)) as view:
        cam, cls = gradcam(net, x, view.layer)
    ref, ref_cls = gradcam(net, x, "mix")
    assert cls == ref_cls and torch.allclose(cam, ref, atol=1e-6)
    with with_basis(net, "mix", rotated_dictionary(rotation())) as view:
        cam, _ = gradcam(net, x, view.layer)
    assert cam.shape == (2, 16, 16) and bool(torch.isfinite(cam).all())


def test_features_dissect_where_units_are_polysemantic(net, data):
    source = TensorSource(*data, concept_names=NAMES)
    kw = dict(preprocess=identity, quantile=0.97, progress=False, k=5)  # concepts cover ~7% of the pixels
    units = dissect_classifier(net, "mix", source, **kw)
    with with_basis(net, "mix", IdentityBasis(K)) as view:
        same = dissect_classifier(net, view.layer, source, **kw)
    assert (same.iou == units.iou).all()
    with with_basis(net, "mix", rotated_dictionary(rotation())) as view:
        feats = dissect_classifier(net, view.layer, source, **kw)
    assert feats.layer == "mix.basis.features"
    assert [feats.label(j).concept for j in range(K)] == list(NAMES)  # feature j detects concept j
    best_unit, best_feature = units.iou.max(0), feats.iou.max(0)
    assert (best_feature >= best_unit - 0.02).all()
    assert best_feature[1] > best_unit[1] + 0.1 and best_feature[3] > best_unit[3] + 0.1  # b, d: no clean unit
    assert units.label(1).concept in ("a", "b") and units.label(1).runners_up[0][1] > 0.1  # unit 1 reads a and b


def test_token_layers_keep_their_layout_and_prefix():
    class Tokens(nn.Module):
        def forward(self, x):
            t = x.flatten(2).transpose(1, 2)
            return torch.cat([torch.ones_like(t[:, :1]), t], 1)  # [B, 1 + 16, C]

    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 6, 3, padding=1), tokens=Tokens(),
                                      pool=nn.Flatten())).eval()
    x = torch.rand(2, 3, 4, 4)
    y0 = model(x)
    basis = DictionaryBasis(torch.randn(6, 12), torch.zeros(12), torch.randn(12, 6), torch.zeros(6), k=3)
    with with_basis(model, "tokens", basis) as view:
        with Trace(model, ["tokens", view.layer], edit={view.layer: Ablate(list(range(12)))}) as tr:
            tr.run(x)
        assert torch.equal(model(x), y0)
    assert tr[view.layer].output.shape == (2, 12, 4, 4)  # presented as a map, like any token layer
    raw = tr["tokens"].raw
    assert torch.equal(raw[:, 0], torch.ones(2, 6))  # the class token is never edited


def test_tuple_outputs():
    class Pair(nn.Module):
        def forward(self, x):
            return x * 2, "extra"

    model = nn.Sequential(OrderedDict(pair=Pair()))
    x = torch.randn(2, 5, 3, 3)
    with with_basis(model, "pair", IdentityBasis(5)) as view:
        out = edited_forward(model, x, {view.layer: Ablate([0])})
    assert out[1] == "extra" and float(out[0][:, 0].abs().max()) == 0 and torch.equal(out[0][:, 1:], x[:, 1:] * 2)


# -- the model is put back ------------------------------------------------------------------------------------------


def test_names_inside_and_nothing_left_after(net):
    before, original = structure(net), get_module(net, "mix")
    with with_basis(net, "mix", rotated_dictionary(rotation())) as view:
        assert view.layer == feature_layer("mix") == "mix.basis.features" and view.active
        assert get_module(net, "mix").weight is original.weight  # the layer's own parameters, same names
        assert "mix.basis.weights.W_enc" in net.state_dict() and "mix.weight" in net.state_dict()
    assert get_module(net, "mix") is original and not view.active
    assert same_structure(before, structure(net))
    with pytest.raises(LayerNotFoundError, match=r"exist only while it is installed.*with_basis\(model, 'mix'"):
        get_module(net, view.layer)  # a widget or trace given the features after the block says what to do


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_the_model_is_restored_after_errors_and_interrupts(error):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), bomb=Bomb(), relu=nn.ReLU())).eval()
    before = structure(model)
    with pytest.raises(type(error)):
        with with_basis(model, "conv", IdentityBasis(4)) as view:
            with Trace(model, view.layer, edit=Ablate([1])):
                model.bomb.error = error
                model(torch.rand(1, 3, 8, 8))
    assert same_structure(before, structure(model))
    with pytest.raises(ValueError, match="boom"):  # raised in the with block itself
        with with_basis(model, "conv", IdentityBasis(4)):
            raise ValueError("boom")
    model.bomb.error = None
    assert same_structure(before, structure(model))


def test_train_mode_changes_inside_are_kept_on_the_layer():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 1), drop=nn.Dropout())).train()
    with with_basis(model, "conv", IdentityBasis(4)):
        with ganviz.plumbing.eval_mode(model):
            assert not get_module(model, "conv").original.training
        assert get_module(model, "conv").original.training  # eval_mode restored it
        model.eval()
    assert not model.conv.training and not model.drop.training


# -- bad input ------------------------------------------------------------------------------------------------------


def test_a_basis_of_the_wrong_width_names_both_sizes(net, data):
    before = structure(net)
    with with_basis(net, "mix", IdentityBasis(7)):
        with pytest.raises(BasisError, match=r"reads 7 channels.*'mix' has 4 channels"):
            net(data[0][:2])
    with with_basis(net, "mix", IdentityBasis(7)) as view:
        with pytest.raises(BasisError, match="reads 7 channels"):
            dissect_classifier(net, view.layer, TensorSource(*data, concept_names=NAMES), preprocess=identity,
                               progress=False)
    assert same_structure(before, structure(net))


def test_bad_layers_and_bases_are_refused(net, data):
    with pytest.raises(LayerNotFoundError, match="closest: mix"):
        with_basis(net, "mixx", IdentityBasis(4))
    with pytest.raises(BasisError, match="submodule"):
        with_basis(net, "", IdentityBasis(4))
    with pytest.raises(TypeError, match="Basis"):
        with_basis(net, "mix", "identity")
    with with_basis(net, "mix", IdentityBasis(4)):
        with pytest.raises(BasisError, match="already read in a basis"):
            with_basis(net, "mix", IdentityBasis(4)).install()
        with pytest.raises(BasisError, match="inside a layer already read"):
            with_basis(net, "mix.basis.features", IdentityBasis(4)).install()
    with with_basis(net, "mix", IdentityBasis(4), channel_dim=5):
        with pytest.raises(BasisError, match="channel_dim 5 is out of range"):
            net(data[0][:1])
    assert count_hooks(net) == 0 and type(net.mix) is nn.Conv2d


def test_bad_weights_are_refused():
    with pytest.raises(BasisError, match=r"W_dec .* must have shape \[6, 4\], got \[4, 6\]"):
        DictionaryBasis(torch.zeros(4, 6), torch.zeros(6), torch.zeros(4, 6), torch.zeros(4), k=2)
    with pytest.raises(BasisError, match="b_enc must have shape"):
        DictionaryBasis(torch.zeros(4, 6), torch.zeros(4), torch.zeros(6, 4), torch.zeros(4), k=2)
    with pytest.raises(BasisError, match="needs 1 <= k <= 6"):
        DictionaryBasis(torch.zeros(4, 6), torch.zeros(6), torch.zeros(6, 4), torch.zeros(4))
    with pytest.raises(BasisError, match="activation must be one of"):
        DictionaryBasis(torch.zeros(4, 6), torch.zeros(6), torch.zeros(6, 4), torch.zeros(4), activation="gelu")
    with pytest.raises(BasisError, match="NaN"):
        DirectionsBasis(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(BasisError, match="direction 1 is zero"):
        DirectionsBasis(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(BasisError, match="3 names for 2 features"):
        DirectionsBasis(torch.eye(2), names=["a", "b", "c"])


def test_the_basis_weights_name_the_model_for_caches(net):
    plain = weights_hash(net)
    hashes = set()
    for k in (2, 3):
        basis = DictionaryBasis(torch.eye(4), torch.zeros(4), torch.eye(4), torch.zeros(4), k=k)
        with with_basis(net, "mix", basis):
            hashes.add(weights_hash(net))
    assert len(hashes) == 2 and plain not in hashes and weights_hash(net) == plain


def test_directions_decode_to_the_smallest_change():
    torch.manual_seed(0)
    basis = DirectionsBasis(torch.randn(3, 8), center=torch.randn(8))
    f = torch.randn(5, 3)
    assert torch.allclose(basis.encode_vectors(basis.decode_vectors(f)), f, atol=1e-5)
    x = torch.randn(5, 8)
    f0 = basis.encode_vectors(x)
    f1 = f0.clone()
    f1[:, 0] = 0  # remove feature 0: its read-out becomes 0, the others stay
    y = basis.apply_edit(x, f0, f1, dim=1)
    assert torch.allclose(basis.encode_vectors(y), f1, atol=1e-5)
    assert torch.allclose(y - x, (y - x) @ basis.directions.T @ basis.dual, atol=1e-5)  # within the span
