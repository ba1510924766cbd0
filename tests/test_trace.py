"""Tests for ganviz.trace: addressing, retaining, editing, stopping, hook hygiene."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest
import torch
from torch import nn

from ganviz.trace import (
    Ablate,
    Compose,
    LayerNotFoundError,
    Replace,
    Scale,
    SetLevel,
    StopForward,
    Trace,
    count_hooks,
    edited_forward,
    get_module,
    layer_names,
    retain,
)


# --------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------


class Counter(nn.Module):
    """Identity that counts how often it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


class Bomb(nn.Module):
    """Identity, or raises ``self.error`` when set."""

    def __init__(self) -> None:
        super().__init__()
        self.error: Optional[BaseException] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.error is not None:
            raise self.error
        return x


class ConvAct(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Net(nn.Module):
    """3x8x8 image -> stem (4x8x8) -> bomb -> block (4x4x4) -> head (5 logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bomb = Bomb()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), ConvAct(4), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), Counter())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.bomb(self.stem(x))))


@pytest.fixture
def model() -> Net:
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 8, 8)


def upto_block1(m: Net, x: torch.Tensor) -> torch.Tensor:
    return m.block[1](m.block[0](m.stem(x)))


def after_block1(m: Net, a: torch.Tensor) -> torch.Tensor:
    return m.head(m.block[2](a))


# --------------------------------------------------------------------------
# Addressing
# --------------------------------------------------------------------------


def test_get_module_dotted_names(model: Net) -> None:
    assert get_module(model, "block.0") is model.block[0]
    assert get_module(model, "block.1.conv") is model.block[1].conv
    assert get_module(model, "head.2") is model.head[2]
    assert get_module(model, "stem") is model.stem
    assert get_module(model, "") is model
    names = layer_names(model)
    assert "" not in names
    assert {"stem", "block", "block.1", "block.1.conv", "block.1.act", "head.1"} <= set(names)


def test_get_module_shared_alias() -> None:
    shared = nn.Linear(2, 2)
    m = nn.Module()
    m.a = shared
    m.b = shared
    assert get_module(m, "b") is shared


def test_unknown_name_lists_closest() -> None:
    class VGGToy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for n in ["conv1_1", "conv4_3", "conv5_1", "conv5_3", "fc6"]:
                self.add_module(n, nn.Conv2d(1, 1, 1))

    with pytest.raises(LayerNotFoundError) as ei:
        get_module(VGGToy(), "conv5_4")
    msg = str(ei.value)
    assert msg.startswith("no layer 'conv5_4' in VGGToy; closest: ")
    closest = msg.split("closest: ")[1].split(", ")
    assert set(closest) == {"conv5_3", "conv5_1", "conv4_3"}
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, ValueError)


def test_unknown_name_falls_back_to_some_names(model: Net) -> None:
    with pytest.raises(LayerNotFoundError, match="valid names include: stem, bomb"):
        get_module(model, "zzzzzzzzzzzz")
    with pytest.raises(LayerNotFoundError, match="closest: block.1.conv"):
        get_module(model, "block.1.convv")


# --------------------------------------------------------------------------
# Retaining
# --------------------------------------------------------------------------


def test_retained_outputs_match_manual(model: Net, x: torch.Tensor) -> None:
    with Trace(model, ["stem", "block.0", "block.1.conv", "head.1"], retain_input=True) as tr:
        y = model(x)
    s = model.stem(x)
    b0 = model.block[0](s)
    c = model.block[1].conv(b0)
    assert torch.equal(tr["stem"].output, s)
    assert torch.equal(tr.output("block.0"), b0)
    assert torch.equal(tr["block.1.conv"].output, c)
    assert torch.equal(tr["block.1.conv"].input, b0)
    assert torch.equal(tr.input("stem"), x)
    assert torch.equal(tr["head.1"].output, y)
    assert not tr["stem"].output.requires_grad  # detach=True by default
    assert count_hooks(model) == 0


def test_retain_function_and_clone(model: Net, x: torch.Tensor) -> None:
    out = retain(model, x, ["block.1", "stem"])
    assert list(out) == ["block.1", "stem"]
    assert torch.equal(out["block.1"], upto_block1(model, x))
    assert torch.equal(out["stem"], model.stem(x))
    # A cloned record must not alias the tensor passed on to the next layer.
    a = {}
    h = model.block[0].register_forward_pre_hook(lambda m, args: a.setdefault("in", args[0]))
    try:
        with Trace(model, "stem", clone=True) as tr3:
            model(x)
    finally:
        h.remove()
    assert tr3["stem"].output.data_ptr() != a["in"].data_ptr()
    assert torch.equal(tr3["stem"].output, a["in"])
    h = model.block[0].register_forward_pre_hook(lambda m, args: a.__setitem__("in", args[0]))
    try:
        with Trace(model, "stem", clone=False) as tr4:
            model(x)
    finally:
        h.remove()
    assert tr4["stem"].output.data_ptr() == a["in"].data_ptr()


def test_missing_record_message(model: Net, x: torch.Tensor) -> None:
    tr = Trace(model, ["block.1"], retain_output=False)
    tr.run(x)
    with pytest.raises(RuntimeError, match="no output recorded for layer 'block.1'"):
        tr["block.1"].output
    with pytest.raises(KeyError, match="not traced"):
        tr["stem"]


# --------------------------------------------------------------------------
# Edits
# --------------------------------------------------------------------------


def test_ablate_matches_manual(model: Net, x: torch.Tensor) -> None:
    with Trace(model, "block.1", edit=Ablate([1, 3])) as tr:
        y = tr.run(x)
    a = upto_block1(model, x).clone()
    a[:, [1, 3]] = 0
    assert torch.equal(tr["block.1"].output, a)
    assert torch.allclose(y, after_block1(model, a))
    assert torch.allclose(edited_forward(model, x, {"block.1": Ablate([1, 3])}), y)
    # other units untouched
    assert torch.equal(tr["block.1"].output[:, [0, 2]], upto_block1(model, x)[:, [0, 2]])


@pytest.mark.parametrize("factors", [2.5, [0.5, -1.0], torch.tensor([3.0, 0.0]), np.array([1.5, 2.0])])
def test_scale_matches_manual(model: Net, x: torch.Tensor, factors: Any) -> None:
    y = edited_forward(model, x, {"block.1": Scale([0, 2], factors)})
    a = upto_block1(model, x).clone()
    f = torch.as_tensor(np.asarray(factors, dtype=np.float32))
    a[:, 0] = a[:, 0] * (f if f.ndim == 0 else f[0])
    a[:, 2] = a[:, 2] * (f if f.ndim == 0 else f[1])
    assert torch.allclose(y, after_block1(model, a), atol=1e-6)


def test_setlevel_everywhere(model: Net, x: torch.Tensor) -> None:
    with Trace(model, "block.1", edit=SetLevel([2, 0], [7.0, -3.0])) as tr:
        y = tr.run(x)
    a = upto_block1(model, x).clone()
    a[:, 2] = 7.0
    a[:, 0] = -3.0
    assert torch.equal(tr["block.1"].output, a)
    assert torch.allclose(y, after_block1(model, a))


def test_setlevel_large_mask_is_max_pooled(model: Net, x: torch.Tensor) -> None:
    mask = torch.zeros(16, 16)
    mask[1, 2] = 1.0  # -> cell (0, 0)
    mask[9, 14] = 1.0  # -> cell (2, 3)
    mask[15, 4:8] = 1.0  # -> cell (3, 1)
    with Trace(model, ["block.2", "head.1"], edit={"block.2": SetLevel(1, 5.0, mask=mask)}) as tr:
        tr.run(x)
    small = mask.reshape(4, 4, 4, 4).amax(dim=(1, 3))
    assert small.sum() == 3
    b = model.block(model.stem(x)).clone()
    b[:, 1] = torch.where(small.bool(), torch.tensor(5.0), b[:, 1])
    assert torch.equal(tr["block.2"].output, b)
    assert torch.allclose(tr["head.1"].output, model.head[1](b.flatten(1)))


def test_setlevel_soft_small_mask_is_upsampled(model: Net, x: torch.Tensor) -> None:
    soft = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    edit = SetLevel([0, 3], [2.0, -1.0], mask=soft.numpy())  # ndarray accepted, 2x2 -> 4x4
    with Trace(model, "block.2", edit=edit) as tr:
        y = tr.run(x)
    m = soft.repeat_interleave(2, 0).repeat_interleave(2, 1)
    b = model.block(model.stem(x)).clone()
    b[:, 0] = b[:, 0] * (1 - m) + 2.0 * m
    b[:, 3] = b[:, 3] * (1 - m) + -1.0 * m
    assert torch.allclose(tr["block.2"].output, b, atol=1e-6)
    assert torch.allclose(y, model.head(b), atol=1e-6)


def test_setlevel_mixed_and_batched_mask(model: Net, x: torch.Tensor) -> None:
    # 16 rows (pooled down) x 2 cols (upsampled), one mask per batch item, (N,1,H,W)
    mask = torch.zeros(2, 1, 16, 2)
    mask[0, 0, 0, 0] = 1.0
    mask[1, 0, 12, 1] = 1.0
    with Trace(model, "block.2", edit=SetLevel(2, 9.0, mask=mask)) as tr:
        tr.run(x)
    b = model.block(model.stem(x)).clone()
    b[0, 2, 0, 0:2] = 9.0
    b[1, 2, 3, 2:4] = 9.0
    assert torch.equal(tr["block.2"].output, b)


def test_ablate_with_mask(model: Net, x: torch.Tensor) -> None:
    mask = torch.zeros(4, 4)
    mask[:2] = 1
    with Trace(model, "block.2", edit=Ablate([0, 1], mask=mask)) as tr:
        tr.run(x)
    b = model.block(model.stem(x)).clone()
    b[:, 0:2, :2] = 0
    assert torch.equal(tr["block.2"].output, b)


def test_replace_and_compose(model: Net, x: torch.Tensor) -> None:
    fn = lambda t: t * 2 + 1  # noqa: E731
    y1 = edited_forward(model, x, {"block.1": Replace(fn)})
    a = upto_block1(model, x)
    assert torch.allclose(y1, after_block1(model, fn(a)))
    a2 = a.clone()
    a2[:, 1] = 0
    a2 = a2 * 2 + 1
    a2[:, 3] *= 0.5
    edits = [Ablate(1), Replace(fn), Scale(3, 0.5)]
    expect = after_block1(model, a2)
    assert torch.allclose(edited_forward(model, x, {"block.1": edits}), expect)
    assert torch.allclose(edited_forward(model, x, {"block.1": Compose(*edits)}), expect)
    assert torch.allclose(Compose(edits)(a), a2)


def test_edits_on_2d_output(model: Net, x: torch.Tensor) -> None:
    with Trace(model, "head.1", edit=Compose(Ablate([0, 4]), SetLevel(2, 1.5), Scale(1, 3.0))) as tr:
        y = tr.run(x)
    z = model.head[1](model.block(model.stem(x)).flatten(1)).clone()
    z[:, [0, 4]] = 0
    z[:, 2] = 1.5
    z[:, 1] *= 3
    assert torch.allclose(tr["head.1"].output, z)
    assert torch.allclose(y, z)
    with pytest.raises(ValueError, match="use mask=None"):
        SetLevel(0, 1.0, mask=torch.ones(4, 4))(z)


def test_edits_under_autograd_and_dtype(model: Net, x: torch.Tensor) -> None:
    model = model.double()
    xd = x.double().requires_grad_(True)
    soft = torch.rand(8, 8)
    y = edited_forward(model, xd, {"block.1": [SetLevel([0, 1], 0.5, mask=soft), Scale(2, 2.0)]})
    assert y.dtype == torch.float64
    (g,) = torch.autograd.grad(y.sum(), xd)

    xm = x.double().requires_grad_(True)
    a = upto_block1(model, xm)
    m = soft.double()
    a = torch.cat([a[:, :2] * (1 - m) + 0.5 * m, a[:, 2:3] * 2, a[:, 3:]], dim=1)
    ym = after_block1(model, a)
    (gm,) = torch.autograd.grad(ym.sum(), xm)
    assert torch.allclose(y, ym)
    assert torch.allclose(g, gm)


# --------------------------------------------------------------------------
# Stopping and gradients
# --------------------------------------------------------------------------


def test_stop_early(model: Net, x: torch.Tensor) -> None:
    counter = model.head[2]
    with Trace(model, ["block.1", "stem"], stop=True) as tr:
        assert tr.run(x) is None
        assert tr.run(x + 1) is None  # second pass in the same block also stops correctly
    assert counter.calls == 0
    assert torch.equal(tr["block.1"].output, upto_block1(model, x + 1))
    assert torch.equal(tr["stem"].output, model.stem(x + 1))

    with Trace(model, "block.1", stop=True) as tr2:
        model(x)  # StopForward is swallowed by the with block
        raise AssertionError("not reached")  # pragma: no cover
    assert counter.calls == 0
    assert tr2["block.1"].has_output

    out = retain(model, x, "block.1")
    assert counter.calls == 0 and set(out) == {"block.1"}
    with Trace(model, "block.1", stop=False) as tr3:
        y = tr3.run(x)
    assert counter.calls == 1 and y is not None


def test_stop_forward_is_an_exception() -> None:
    assert issubclass(StopForward, Exception)


def test_gradient_wrt_retained_output(model: Net, x: torch.Tensor) -> None:
    with Trace(model, "block.1", detach=False, edit=Scale(0, 2.0)) as tr:
        y = tr.run(x)
    act = tr["block.1"].output
    assert act.requires_grad
    loss = (y ** 2).sum()
    (g,) = torch.autograd.grad(loss, act)

    a = Scale(0, 2.0)(upto_block1(model, x)).detach().requires_grad_(True)
    (gm,) = torch.autograd.grad((after_block1(model, a) ** 2).sum(), a)
    assert torch.allclose(g, gm)
    assert g.abs().sum() > 0

    # retain(grad=True) keeps the graph too
    out = retain(model, x, "block.1", stop=False, grad=True)
    assert out["block.1"].requires_grad


# --------------------------------------------------------------------------
# Hook hygiene
# --------------------------------------------------------------------------


def _trace_plain(m: nn.Module, x: torch.Tensor, layers: List[str]) -> Any:
    with Trace(m, layers) as tr:
        assert count_hooks(m) == len(layers) + 1  # one per layer, and a pre-hook on the model (its image size)
        m(x)
    return tr


def _trace_edit(m: nn.Module, x: torch.Tensor, layers: List[str]) -> Any:
    with Trace(m, layers[:1], edit={layers[-1]: [Ablate(0), Scale(1, 2.0)]}, retain_input=True) as tr:
        assert count_hooks(m) == len(set(layers)) + 1
        return tr.run(x)


def _trace_stop(m: nn.Module, x: torch.Tensor, layers: List[str]) -> Any:
    with Trace(m, layers, stop=True) as tr:
        m(x)
    return tr


def _trace_grad(m: nn.Module, x: torch.Tensor, layers: List[str]) -> Any:
    tr = Trace(m, layers, detach=False, clone=True)
    return tr.run(x)


def _retain(m: nn.Module, x: torch.Tensor, layers: List[str]) -> Any:
    return retain(m, x, layers)


def _edited(m: nn.Module, x: torch.Tensor, layers: List[str]) -> Any:
    return edited_forward(m, x, {n: SetLevel(0, 1.0) for n in layers})


ENTRY_POINTS: Dict[str, Callable[[nn.Module, torch.Tensor, List[str]], Any]] = {
    "trace": _trace_plain,
    "trace_edit": _trace_edit,
    "trace_stop": _trace_stop,
    "trace_run_grad": _trace_grad,
    "retain": _retain,
    "edited_forward": _edited,
}


@pytest.mark.parametrize("scenario", ["ok", "unknown", "runtime_error", "keyboard_interrupt"])
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_hook_hygiene(model: Net, x: torch.Tensor, entry: str, scenario: str) -> None:
    fn = ENTRY_POINTS[entry]
    layers = ["stem", "block.1"]
    assert count_hooks(model) == 0
    if scenario == "ok":
        fn(model, x, layers)
    elif scenario == "unknown":
        with pytest.raises(LayerNotFoundError, match="block.1"):
            fn(model, x, ["stem", "block.11"])
    elif scenario == "runtime_error":
        model.bomb.error = RuntimeError("boom")
        with pytest.raises(RuntimeError, match="boom"):
            fn(model, x, layers)
    else:
        model.bomb.error = KeyboardInterrupt()
        with pytest.raises(KeyboardInterrupt):
            fn(model, x, layers)
    assert count_hooks(model) == 0


def test_failed_registration_removes_earlier_hooks(model: Net, x: torch.Tensor, monkeypatch) -> None:
    import ganviz.trace

    model.extra = nn.Identity()
    real = ganviz.trace.add_forward_hook

    def stubborn(module: nn.Module, fn: Any) -> Any:
        if module is model.extra:
            raise RuntimeError("cannot hook me")
        return real(module, fn)

    monkeypatch.setattr(ganviz.trace, "add_forward_hook", stubborn)
    tr = Trace(model, ["stem", "block.1", "extra"])
    with pytest.raises(RuntimeError, match="cannot hook me"):
        with tr:
            pass  # pragma: no cover
    assert count_hooks(model) == 0
    assert not tr.active


def test_copies_made_during_a_trace_carry_no_hooks(model: Net, x: torch.Tensor) -> None:
    import copy
    import pickle

    with Trace(model, ["stem", "block.1"], edit={"stem": Ablate([0])}) as tr:
        assert count_hooks(model) == 3  # two layers and the model's input-size hook, all outside the modules
        clone, thawed = copy.deepcopy(model), pickle.loads(pickle.dumps(model))
        edited = tr.run(x)
    assert count_hooks(clone) == count_hooks(thawed) == count_hooks(model) == 0
    assert torch.equal(clone(x), model(x)) and not torch.equal(clone(x), edited)


def test_copies_made_while_another_thread_traces_carry_no_hooks(model: Net, x: torch.Tensor) -> None:
    import copy
    import threading

    stop = threading.Event()

    def trace_in_a_loop() -> None:
        while not stop.is_set():
            with Trace(model, ["stem", "block.1"], edit={"stem": Ablate([0])}) as tr:
                tr.run(x)

    worker = threading.Thread(target=trace_in_a_loop)
    worker.start()
    try:
        copies = [copy.deepcopy(model) for _ in range(60)]
    finally:
        stop.set()
        worker.join()
    assert sum(count_hooks(c) for c in copies) == 0 and count_hooks(model) == 0


def test_count_hooks_counts(model: Net) -> None:
    h1 = model.block[0].register_forward_hook(lambda *a: None)
    h2 = model.stem.register_forward_pre_hook(lambda *a: None)
    h3 = model.head.register_full_backward_hook(lambda *a: None)
    try:
        assert count_hooks(model) == 3
    finally:
        for h in (h1, h2, h3):
            h.remove()
    assert count_hooks(model) == 0


def test_unknown_edit_layer_raises_before_hooks(model: Net, x: torch.Tensor) -> None:
    with pytest.raises(LayerNotFoundError, match="closest: block.1"):
        Trace(model, "stem", edit={"block.1x": Ablate(0)})
    assert count_hooks(model) == 0


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


def test_unit_out_of_range_message(model: Net, x: torch.Tensor) -> None:
    with pytest.raises(IndexError) as ei:
        edited_forward(model, x, {"block.1": Ablate([1, 300])})
    assert str(ei.value) == "unit 300 out of range for layer 'block.1' with 4 units (expected 0..3)"
    assert count_hooks(model) == 0
    with pytest.raises(IndexError, match=r"unit -1 out of range .* \(expected 0\.\.3\)"):
        Scale(-1, 2.0)(torch.zeros(1, 4, 2, 2))


@pytest.mark.parametrize("shape", [(8,), (1, 2, 8, 8), (1, 1, 1, 8, 8)])
def test_mask_wrong_rank_message(shape: tuple) -> None:
    with pytest.raises(ValueError, match=r"mask must have shape \(H, W\), \(N, H, W\) or \(N, 1, H, W\)"):
        SetLevel(0, 1.0, mask=torch.zeros(shape))


def test_other_bad_edits(model: Net, x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="one value per unit"):
        Scale([0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SetLevel(0, 1.0, mask=torch.full((4, 4), 2.0))
    with pytest.raises(ValueError, match="batch size 3"):
        edited_forward(model, x, {"block.2": SetLevel(0, 1.0, mask=torch.ones(3, 4, 4))})
    with pytest.raises(TypeError, match="integer"):
        Ablate([0.5])
    with pytest.raises(ValueError, match="exactly one layer"):
        Trace(model, ["stem", "block.1"], edit=Ablate(0))
    assert count_hooks(model) == 0


# --------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_follows_output_device(model: Net, x: torch.Tensor) -> None:
    mask = np.zeros((16, 16), dtype=np.float32)
    mask[:8] = 1.0
    edits = {"block.2": [SetLevel([0, 1], torch.tensor([1.0, 2.0]), mask=mask), Ablate(3)],
             "block.1": Scale(2, torch.tensor([0.5]))}
    y_cpu = edited_forward(model, x, edits)
    m = model.cuda()
    with Trace(m, "block.2", edit=edits) as tr:
        y = tr.run(x.cuda())
    assert y.device.type == "cuda" and tr["block.2"].output.device.type == "cuda"
    assert torch.allclose(y.cpu(), y_cpu, atol=1e-4)
    assert count_hooks(m) == 0


def test_trace_without_layers_or_edits_just_runs_the_model():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    x = torch.randn(4, 3)
    tr = Trace(model, [], retain_output=False)
    assert torch.equal(tr.run(x), model(x))
    with tr:
        assert tr.active
        assert torch.equal(tr.run(x), model(x))
    assert not tr.active and count_hooks(model) == 0


def test_a_trace_acts_only_on_its_own_threads_forward_passes():
    """A widget computing in a background thread must not edit a forward pass that a notebook cell runs."""
    import threading

    model = nn.Sequential(nn.Linear(3, 3), nn.Identity())
    x = torch.randn(2, 3)
    plain = model(x)
    entered, release = threading.Event(), threading.Event()

    def background():
        with Trace(model, "1", edit=Ablate([0, 1, 2])) as tr:
            entered.set()
            release.wait(10)
            assert (tr.run(x) == 0).all()   # its own pass is edited

    t = threading.Thread(target=background)
    t.start()
    entered.wait(10)
    try:
        assert torch.equal(model(x), plain)   # this thread's pass is untouched while the other's hook exists
        with Trace(model, "1") as tr:
            tr.run(x)
            assert torch.equal(tr["1"].output, plain)
    finally:
        release.set()
        t.join()
    assert count_hooks(model) == 0
