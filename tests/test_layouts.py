"""Layouts: token and channels-last layer outputs as [B, C, H, W] maps, checked against element-wise indexing."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import pytest
import torch

from ganviz.layouts import KINDS, Layout, LayoutError, infer_layout, parse_layout, primary_tensor, replace_primary

B, C, H, W = 2, 5, 3, 4


def _map() -> torch.Tensor:
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(0))


def _tokens_from_map(fmap: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
    """[B, P + H*W, C] built element by element (row-major grid after the prefix tokens)."""
    b, c, h, w = fmap.shape
    p = 0 if prefix is None else prefix.shape[1]
    out = torch.zeros(b, p + h * w, c)
    if p:
        out[:, :p] = prefix
    for i in range(h):
        for j in range(w):
            for k in range(c):
                out[:, p + i * w + j, k] = fmap[:, k, i, j]
    return out


def _bhwc_from_map(fmap: torch.Tensor) -> torch.Tensor:
    b, c, h, w = fmap.shape
    out = torch.zeros(b, h, w, c)
    for i in range(h):
        for j in range(w):
            out[:, i, j, :] = fmap[:, :, i, j]
    return out


@pytest.mark.parametrize("prefix_tokens", [0, 1, 2])
def test_token_layouts_match_elementwise_indexing(prefix_tokens: int) -> None:
    fmap = _map()
    prefix = torch.randn(B, prefix_tokens, C) if prefix_tokens else None
    tokens = _tokens_from_map(fmap, prefix)
    lay = Layout("tokens_cls" if prefix_tokens else "tokens", H, W, prefix_tokens)
    assert torch.equal(lay.to_map(tokens), fmap)
    assert lay.map_shape(tokens.shape) == (B, C, H, W)
    if prefix_tokens:
        assert torch.equal(lay.prefix(tokens), prefix)
    else:
        assert lay.prefix(tokens) is None

    edited = fmap.clone()
    edited[1, 3, 2, 1] = 100.0
    back = lay.from_map(edited, tokens)
    assert back.shape == tokens.shape and back.is_contiguous()
    changed = (back != tokens).nonzero().tolist()
    assert changed == [[1, prefix_tokens + 2 * W + 1, 3]]
    assert torch.equal(back, _tokens_from_map(edited, prefix))


def test_a_map_of_several_images_goes_back_into_one_images_tokens_with_its_prefix() -> None:
    prefix = torch.randn(1, 2, C)
    tokens = _tokens_from_map(_map()[:1], prefix)
    lay = Layout("tokens_cls", H, W, 2)
    fanned = _map() * 3
    assert torch.equal(lay.from_map(fanned, tokens), _tokens_from_map(fanned, prefix.expand(B, -1, -1)))
    with pytest.raises(LayoutError, match="expected a map of shape"):
        lay.from_map(fanned[:, :2], tokens)            # other channels: refused
    with pytest.raises(LayoutError, match="expected a map of shape"):
        lay.from_map(fanned[:1], _tokens_from_map(_map(), torch.randn(B, 2, C)))  # fewer images: refused


def test_bhwc_and_bchw_and_bc() -> None:
    fmap = _map()
    x = _bhwc_from_map(fmap)
    lay = Layout("bhwc")
    assert torch.equal(lay.to_map(x), fmap)
    edited = fmap * 2
    assert torch.equal(lay.from_map(edited, x), _bhwc_from_map(edited))
    assert lay.prefix(x) is None
    assert Layout("bchw").to_map(fmap) is fmap
    assert Layout("bchw").from_map(edited, fmap) is edited
    v = torch.randn(B, C)
    m = Layout("bc").to_map(v)
    assert m.shape == (B, C, 1, 1) and torch.equal(m[:, :, 0, 0], v)
    assert torch.equal(Layout("bc").from_map(m * 3, v), v * 3)


def test_gradients_flow_through_the_map_and_skip_the_prefix() -> None:
    tokens = torch.randn(B, 1 + H * W, C, requires_grad=True)
    fmap = Layout("tokens_cls", H, W).to_map(tokens)
    fmap[:, 2].sum().backward()
    grad = tokens.grad
    assert torch.all(grad[:, 0] == 0)
    assert torch.all(grad[:, 1:, 2] == 1) and torch.all(grad[:, 1:, [0, 1, 3, 4]] == 0)


def test_from_map_keeps_the_original_prefix_and_casts_to_the_map() -> None:
    tokens = torch.randn(B, 2 + H * W, C, dtype=torch.float64)
    lay = Layout("tokens_cls", prefix_tokens=2)
    lay_r = infer_layout(tokens.shape, declared=Layout("tokens_cls", H, W, 2))
    fmap = torch.zeros(B, C, H, W)
    back = lay_r.from_map(fmap, tokens)
    assert back.dtype == torch.float32
    assert torch.equal(back[:, :2], tokens[:, :2].float()) and torch.all(back[:, 2:] == 0)
    with pytest.raises(LayoutError, match=r"\(2, 5, 4, 3\)"):
        lay_r.from_map(torch.zeros(B, C, W, H), tokens)
    with pytest.raises(LayoutError, match="not the declared"):
        Layout("tokens_cls", 3, 5, 2).resolve(tokens.shape)
    assert lay.resolve((B, 2 + 16, C)).grid == (4, 4)


@pytest.mark.parametrize("shape,hw,expected", [
    ((2, 197, 384), None, "tokens_cls:14x14"),
    ((2, 196, 384), None, "tokens:14x14"),
    ((2, 196, 384), 224, "tokens:14x14"),
    ((2, 281, 384), (224, 320), "tokens_cls:14x20"),
    ((2, 280, 384), (224, 320), "tokens:14x20"),
    ((2, 197, 384), (224, 320), "tokens_cls:14x14"),  # the model resized to a square: the only reading
    ((2, 7, 7, 768), None, "bhwc:7x7"),
    ((2, 7, 10, 768), (224, 320), "bhwc:7x10"),
    ((2, 768, 7, 7), None, "bchw:7x7"),
    ((2, 64, 64, 64), None, "bchw:64x64"),  # a tie stays bchw: every CNN keeps its layout
    ((2, 56, 56, 56), 224, "bchw:56x56"),
    ((2, 16, 14, 20), (224, 320), "bchw:14x20"),
    ((2, 32, 24, 16), None, "bchw:24x16"),  # neither reading square: bchw as always
    ((2, 512, 8, 11), (225, 321), "bchw:8x11"),  # odd sizes: grids rounded at each stride
    ((2, 10), None, "bc:1x1"),
])
def test_inference_rules(shape, hw, expected) -> None:
    assert str(infer_layout(shape, image_hw=hw)) == expected
    assert str(infer_layout(torch.zeros(shape), image_hw=hw)) == expected


@pytest.mark.parametrize("shape,hw,pattern", [
    ((2, 198, 384), None, r"\(2, 198, 384\).*neither 198 tokens nor 197"),  # two prefix tokens: declare
    ((2, 12, 8), None, r"\(2, 12, 8\)"),
    ((2, 12, 5), 64, r"could be tokens 3x4 or tokens 4x3"),
    ((2, 3, 4, 5, 6), None, r"5-D layer output of shape \(2, 3, 4, 5, 6\)"),
    ((7,), None, r"1-D"),
])
def test_ambiguous_or_unknown_shapes_raise_naming_the_shape(shape, hw, pattern) -> None:
    with pytest.raises(LayoutError, match=pattern) as err:
        infer_layout(shape, image_hw=hw)
    assert isinstance(err.value, ValueError)
    if len(shape) == 3:
        assert "declare it" in str(err.value) and "tokens_cls" in str(err.value)


def test_declared_layouts() -> None:
    assert infer_layout((2, 198, 384), declared="tokens_cls+2") == Layout("tokens_cls", 14, 14, 2)
    assert infer_layout((2, 198, 384), declared="tokens_cls:14x14+2").prefix_tokens == 2
    assert infer_layout((2, 64, 64, 64), declared="NHWC") == Layout("bhwc", 64, 64)
    assert infer_layout((2, 12, 5), declared="tokens:3x4").grid == (3, 4)
    assert infer_layout((2, 12, 5), declared=Layout("tokens", width=3)).grid == (4, 3)
    assert infer_layout((2, 281, 8), image_hw=(224, 320), declared="tokens_cls").grid == (14, 20)
    with pytest.raises(LayoutError, match="3-D but layout 'bchw' is 4-D"):
        infer_layout((2, 197, 384), declared="bchw")
    with pytest.raises(LayoutError, match="cannot tell the grid of 12 tokens"):
        infer_layout((2, 12, 5), image_hw=64, declared="tokens")
    with pytest.raises(LayoutError, match="not the declared 3x5"):
        infer_layout((2, 12, 5), declared="tokens:3x5")


def test_layout_values_and_parsing() -> None:
    assert set(KINDS) == {"bchw", "bhwc", "tokens", "tokens_cls", "bc"}
    assert Layout("tokens_cls").prefix_tokens == 1 and Layout("tokens").prefix_tokens == 0
    assert Layout("NLC").kind == "tokens"
    assert parse_layout("tokens_cls:14x14+2") == Layout("tokens_cls", 14, 14, 2)
    for lay in (Layout("tokens_cls", 14, 14, 2), Layout("tokens", 3, 4), Layout("bhwc"), Layout("tokens_cls")):
        assert parse_layout(str(lay)) == lay
    with pytest.raises(ValueError, match="unknown layout kind 'chw'"):
        Layout("chw")
    with pytest.raises(ValueError, match="only 'tokens_cls' layouts have prefix tokens"):
        Layout("tokens", prefix_tokens=1)
    with pytest.raises(ValueError, match="at least one prefix token"):
        Layout("tokens_cls", prefix_tokens=0)
    with pytest.raises(ValueError, match="cannot read layout"):
        parse_layout("tokens:14by14")
    with pytest.raises(TypeError):
        parse_layout(3)  # type: ignore[arg-type]


def test_primary_tensor_of_tuples_and_model_outputs() -> None:
    t, extra = torch.ones(2, 3), torch.zeros(1)
    new = torch.full((2, 3), 7.0)
    assert primary_tensor(t) is t and replace_primary(t, new) is new
    out = (t, extra)
    assert primary_tensor(out) is t
    swapped = replace_primary(out, new)
    assert isinstance(swapped, tuple) and swapped[0] is new and swapped[1] is extra and out[0] is t
    Pair = namedtuple("Pair", "hidden attn")
    swapped = replace_primary(Pair(t, extra), new)
    assert isinstance(swapped, Pair) and swapped.hidden is new
    swapped = replace_primary([None, t], new)
    assert isinstance(swapped, list) and swapped[0] is None and swapped[1] is new
    od = OrderedDict(loss=None, hidden=t)
    assert primary_tensor(od) is t
    swapped = replace_primary(od, new)
    assert swapped["hidden"] is new and od["hidden"] is t
    with pytest.raises(TypeError, match="holds no tensor"):
        primary_tensor(("a", 1))
