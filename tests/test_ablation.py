"""Single-unit effects: the shortcut that runs the layers before the ablated layer once per image gives the effects
of removing each unit from the input up, and models it does not fit fall back to that."""
import torch
from torch import nn

from ganviz import ablation
from ganviz.edits import Ablate

from _factories import classifier


def brute_force(model, layer, x, target, units):
    """Each unit removed alone, every image run from the input."""
    base = ablation.predict(model, x)[:, target].mean()
    return torch.stack([base - ablation.predict(model, x, layer, Ablate([u]))[:, target].mean() for u in units])


class BatchFromInput(nn.Module):
    """A head that reshapes with the batch size of its input, as some model code does: a batch that starts at a
    later layer does not fit it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 6, 3, padding=1), nn.Linear(6 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self.fc(torch.relu(self.conv(x)).reshape(n, -1))


def test_effects_equal_removing_each_unit_from_the_input_and_the_early_layers_run_once_per_image():
    model = classifier()
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    batches = []
    hook = model.conv1_1.register_forward_hook(lambda m, i, o: batches.append(len(i[0])))
    try:
        effects = ablation.single_unit_effects(model, "conv5_3", x, 3, units=range(0, 192, 5), chunk=16)
    finally:
        hook.remove()
    expected = brute_force(model, "conv5_3", x, 3, range(0, 192, 5))
    assert torch.allclose(effects[::5], expected, atol=1e-5) and (effects.reshape(-1)[1::5] == 0).all()
    # passes through the first layer: the layer's width (1 image), the baseline (3), the first chunk of 16 trials
    # (1 image) and its check (2 of them from the input), then one image for each of the other 8 chunks (3 images,
    # 3 chunks each)
    assert batches == [1, 3, 1, 2] + [1] * 8


def test_a_model_that_reshapes_with_its_input_batch_gets_the_same_effects():
    torch.manual_seed(0)
    model = BatchFromInput().eval()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    effects = ablation.single_unit_effects(model, "conv", x, torch.tensor([0, 1, 2]))
    rows, targets = torch.arange(3), torch.tensor([0, 1, 2])
    base = ablation.predict(model, x)[rows, targets].mean()
    expected = torch.stack([base - ablation.predict(model, x, "conv", Ablate([u]))[rows, targets].mean()
                            for u in range(6)])
    assert torch.allclose(effects, expected, atol=1e-6)


def test_the_shortcut_fans_out_vit_tokens_with_their_class_token():
    import ganviz

    vit, info = ganviz.load("toy-vit")
    x = ganviz.ToyWorldSource(4, seed=3).load(range(2))[0] * 2 - 1
    probs, fanned = ablation._first_trials(vit, "blocks.3", x[:1], torch.eye(128)[:8] * -1 + 1)
    assert fanned and probs.shape == (8, len(info.class_names))
    effects = ablation.single_unit_effects(vit, "blocks.3", x, 1, units=range(0, 128, 9))
    assert torch.allclose(effects[::9], brute_force(vit, "blocks.3", x, 1, range(0, 128, 9)), atol=1e-5)


def test_a_flip_search_is_loaded_from_the_cache(tmp_path):
    model = classifier()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    plain = ablation.find_flip(model, "conv5_3", x, max_units=2, candidates=8)
    calls = []
    hook = model.conv1_1.register_forward_hook(lambda *args: calls.append(1))
    try:
        first = ablation.find_flip(model, "conv5_3", x, max_units=2, candidates=8, cache_dir=tmp_path)
        ran = len(calls)
        again = ablation.find_flip(model, "conv5_3", x, max_units=2, candidates=8, cache_dir=tmp_path)
    finally:
        hook.remove()
    assert ran > 0 and len(calls) == ran and len(list(tmp_path.glob("*.npz"))) == 1  # the second call ran nothing
    for result in (first, again):
        assert result.units == plain.units and len(result.units) in (1, 2)
        assert (result.original_class, result.new_class, result.flipped) == \
            (plain.original_class, plain.new_class, plain.flipped)
        assert len(result.trail) == len(plain.trail) == len(plain.units) + 1
        assert all(abs(a - b).max() < 1e-6 for a, b in zip(result.trail, plain.trail))
    ablation.find_flip(model, "conv5_3", x, max_units=1, candidates=8, cache_dir=tmp_path)  # other settings
    assert len(list(tmp_path.glob("*.npz"))) == 2
