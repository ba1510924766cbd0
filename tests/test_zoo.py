"""Bundled models: offline loading, checksums, metadata, and the training scripts on a tiny budget."""
import shutil
import socket

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ganviz
from ganviz import zoo
from ganviz.toyworld import CONCEPTS, SCENE_CLASSES
from ganviz.zoo import train
from ganviz.zoo.registry import WEIGHTS_DIR


@pytest.mark.parametrize("name", ["toy-classifier", "toy-vit", "toy-gan", "toy-segmenter", "toy-encoder"])
def test_load_offline_with_metadata(name, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("loading a bundled model touched the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    model, info = zoo.load(name)
    assert not model.training
    assert info.name == name and len(info.sha256) == 64
    assert info.default_layer in info.layers
    assert dict(model.named_modules()).keys() >= set(info.layers)
    assert (WEIGHTS_DIR / info.file).stat().st_size <= 12e6
    if info.kind == "classifier":
        assert info.class_names == SCENE_CLASSES
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, len(SCENE_CLASSES))
        if name == "toy-vit":  # token layers, presented as 8x8 maps
            maps = ganviz.retain(model, torch.zeros(2, 3, 64, 64), list(info.layers))
            assert {tuple(v.shape[2:]) for v in maps.values()} == {(8, 8)}, {k: v.shape for k, v in maps.items()}
        else:
            assert model.conv5_3.conv.out_channels >= 128
    elif info.kind == "generator":
        assert info.z_dim == 128
        out = model(torch.randn(2, 128))
        assert out.shape == (2, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
        assert model.layer4.conv.out_channels >= 128 and model.layer6.conv.out_channels >= 128
    elif info.kind == "encoder":
        assert info.z_dim == 128 and info.extra["generator_sha256"] == zoo.info("toy-gan").sha256
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 128)
        assert model.features(torch.zeros(2, 3, 64, 64)).shape == (2, 256, 8, 8)  # toy-gan's layer4
    else:
        assert info.concept_names == CONCEPTS
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, len(CONCEPTS), 64, 64)


def test_all_weights_are_small():
    sizes = {p.name: p.stat().st_size for p in WEIGHTS_DIR.glob("*.safetensors")}
    assert 0 < sum(sizes.values()) <= 36e6, sizes  # six models, 35.3 MB (toy-gan 11.3, encoder 7.4, clip 7.3)
    assert max(sizes.values()) <= 25e6 and sizes["toy-clip.safetensors"] <= 12e6, sizes


def test_cpu_models_are_channels_last_with_the_same_outputs_and_hash():
    """The speed-up of ``load`` on the CPU changes how weights are laid out in memory, not what they compute or
    which cache entries they find."""
    import copy

    from ganviz.cache import weights_hash

    gan, _ = zoo.load("toy-gan")
    conv = gan.layer4.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    nchw = copy.deepcopy(gan).to(memory_format=torch.contiguous_format)
    assert nchw.layer4.conv.weight.is_contiguous()
    z = torch.randn(4, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(gan(z), nchw(z), atol=1e-4, rtol=0)
    assert weights_hash(gan) == weights_hash(nchw)


def test_corrupted_weights_are_refused(tmp_path):
    shutil.copytree(WEIGHTS_DIR, tmp_path / "w")
    path = tmp_path / "w" / "toy-segmenter.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.ChecksumError, match="corrupted"):
        zoo.load("toy-segmenter", folder=tmp_path / "w")
    zoo.load("toy-classifier", folder=tmp_path / "w")  # the intact ones still load


def test_unknown_and_missing_models(tmp_path):
    with pytest.raises(KeyError, match="available: toy-classifier"):
        zoo.load("toy-gna")
    with pytest.raises(FileNotFoundError, match="python -m ganviz.zoo.train"):
        zoo.load("toy-gan", folder=tmp_path)


def _losses(log):
    return [float(part.split("=")[1]) for line in log.read_text().splitlines()
            for part in line.split() if part.startswith(("loss=", "loss_d="))]


@pytest.mark.parametrize("kind", ["classifier", "vit", "segmenter"])
def test_training_reduces_loss_and_resumes_exactly(kind, tmp_path):
    torch.set_num_threads(1)
    common = [kind, "--data", "96", "--batch", "16", "--workers", "1", "--log-every", "2", "--every", "10",
              "--head-l1", "0"]
    train.main(common + ["--steps", "20", "--out", str(tmp_path / "a")])
    losses = _losses(tmp_path / "a" / kind / "log.txt")
    assert len(losses) == 10 and min(losses[-3:]) < losses[0]
    # interrupted at step 10, then resumed to 20: the same weights as one run of 20 steps
    train.main(common + ["--steps", "20", "--until", "10", "--out", str(tmp_path / "b")])
    ck = torch.load(tmp_path / "b" / kind / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 10
    train.main(common + ["--steps", "20", "--out", str(tmp_path / "b"), "--export-to", str(tmp_path / "w")])
    a = torch.load(tmp_path / "a" / kind / "checkpoint.pt", weights_only=True)["model"]
    b = load_file(str(tmp_path / "w" / f"toy-{kind}.safetensors"))
    for k, v in b.items():
        assert torch.allclose(a[k].float(), v.float(), atol=1e-5), k
    name = f"toy-{kind}"
    model, _ = zoo.load(name, folder=tmp_path / "w")
    assert not model.training


def test_the_dense_head_trains_alone_on_the_words_of_each_place(tmp_path):
    torch.set_num_threads(1)
    train.main(["clip", "--dense-head", "--data", "64", "--batch", "16", "--workers", "1", "--log-every", "1",
                "--steps", "12", "--lr", "3e-3", "--out", str(tmp_path), "--export-to", str(tmp_path / "w")])
    losses = _losses(tmp_path / "clip-dense" / "log.txt")
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
    tuned, info = zoo.load("toy-clip", folder=tmp_path / "w")
    bundled, _ = zoo.load("toy-clip")
    assert info.extra["dense_head_steps"] == 12 and info.extra["steps"] == zoo.info("toy-clip").extra["steps"]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    tokens = torch.tensor([[5, 6, 7, 0]])
    with torch.no_grad():  # only the head moved: image and text embeddings are the bundled model's
        assert torch.equal(tuned.encode_image(x), bundled.encode_image(x))
        assert torch.equal(tuned.encode_text(tokens), bundled.encode_text(tokens))
        assert not torch.allclose(tuned.encode_image_dense(x), bundled.encode_image_dense(x))


def test_an_untrained_dense_head_is_fc_at_every_place():
    from ganviz.zoo.arch import ToyCLIP

    torch.manual_seed(0)
    model = ToyCLIP(10).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():  # MaskCLIP: the image embedding is made from the average of the local ones
        assert torch.allclose(model.encode_image_dense(x).mean((2, 3)), model.visual(x), atol=1e-5)


def test_gan_training_moves(tmp_path):
    torch.set_num_threads(1)
    train.main(["gan", "--data", "64", "--batch", "8", "--workers", "1", "--steps", "6", "--log-every", "1",
                "--sample-every", "3", "--bn-batches", "2", "--out", str(tmp_path), "--export-to", str(tmp_path / "w")])
    log = (tmp_path / "gan" / "log.txt").read_text().splitlines()
    assert len(log) == 6 and len(set(log)) == 6
    assert (tmp_path / "gan" / "samples_000003.png").exists()
    G, info = zoo.load("toy-gan", folder=tmp_path / "w")
    fresh = zoo.registry._specs()["toy-gan"][0]()
    changed = [not torch.equal(p, q) for p, q in zip(G.state_dict().values(), fresh.state_dict().values())]
    assert any(changed)


def test_gan_warm_start_then_checkpoint_ranking(tmp_path):
    from ganviz.zoo import evaluate

    torch.set_num_threads(1)
    train.main(["gan", "--data", "64", "--batch", "8", "--workers", "1", "--steps", "4", "--log-every", "1",
                "--every", "2", "--keep", "--init-from", "bundled", "--d-warmup", "2", "--bn-batches", "1",
                "--out", str(tmp_path)])
    log = (tmp_path / "gan" / "log.txt").read_text().splitlines()
    assert ["warm-up" in line for line in log] == [True, True, False, False]  # only D learns first
    snapshots = sorted(str(p) for p in (tmp_path / "gan").glob("step_*.pt"))
    assert [p[-9:] for p in snapshots] == ["000002.pt", "000004.pt"]
    report = evaluate.main(["--checkpoints", *snapshots, "--n-generator", "16", "--bn-batches", "1"])
    rows = report["ranking"]
    assert sorted(r["checkpoint"] for r in rows) == snapshots
    assert all(0 <= r["probe"] <= 1 and r["frechet_ratio"] > 0 for r in rows)
    assert rows[0]["bars_passed"] >= rows[1]["bars_passed"]


@pytest.mark.parametrize("name,layer,units", [("toy-gan", "layer4", 256), ("toy-classifier", "conv5_3", 192)])
def test_shipped_dissections_belong_to_the_shipped_weights(monkeypatch, name, layer, units):
    """``dissection()`` returns the shipped file (no computing) - so it must be re-exported with new weights."""
    from ganviz.cache import weights_hash
    from ganviz.zoo import dissections

    model, _ = zoo.load(name)
    shipped = dissections.shipped_path(name, layer)
    assert shipped.exists(), f"run: python -m ganviz.zoo.dissections {name} --layer {layer}"
    monkeypatch.setattr(dissections, "_compute", lambda *a, **k: pytest.fail("computed instead of loading"))
    result = zoo.dissection(name, layer, model)
    assert result.model_hash == weights_hash(model) and result.num_units == units
    if name != "toy-gan":
        return
    generator = model
    with pytest.raises(KeyError, match="no layer 'layer9'"):
        zoo.dissection("toy-gan", "layer9", generator)


def test_dissection_of_changed_weights_is_computed_and_cached(monkeypatch, tmp_path):
    from ganviz.zoo import dissections

    monkeypatch.setenv("GANVIZ_CACHE", str(tmp_path))
    monkeypatch.setattr(dissections, "SAMPLES", 64)
    generator, _ = zoo.load("toy-gan")
    with torch.no_grad():
        generator.output.conv.weight.mul_(0.5)  # no longer the shipped weights
    result = zoo.dissection("toy-gan", "layer4", generator, progress=False)
    assert result.num_images == 64 and list(tmp_path.glob("*.npz"))


def test_a_time_budget_stops_training_with_a_checkpoint(tmp_path):
    import time

    from ganviz.zoo.training import Run, run_loop

    layer = torch.nn.Linear(2, 2)
    run = Run(tmp_path, "budget", {"model": layer})

    def body(step):
        time.sleep(0.05)
        return "loss=1"

    run_loop(run, steps=1000, every=500, body=body, minutes=0.2 / 60)   # 0.2 s
    assert 2 <= run.step < 20
    assert torch.load(run.ckpt, weights_only=True)["step"] == run.step  # the same command resumes from here


def test_projected_discriminator_trains_only_its_heads(tmp_path):
    from ganviz.zoo.projected import ProjectedDiscriminator

    torch.set_num_threads(1)
    visual = zoo.load("toy-clip")[0].visual
    frozen = {k: v.clone() for k, v in visual.state_dict().items()}
    D = ProjectedDiscriminator(visual).train()
    assert not D.features.training  # frozen BatchNorm statistics, also in training mode
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    scores = D(x)
    assert scores.shape == (4, 4 * 64)  # pixels, conv2_2, conv3_3, conv5_3: 8x8 cells each
    scores.mean().backward()
    assert all(p.grad is None for p in D.features.parameters()) and all(p.grad is None for p in D.mix.parameters())
    assert all(p.grad is not None for p in D.heads.parameters())
    assert all(torch.equal(frozen[k], v) for k, v in visual.state_dict().items())
    with pytest.raises(KeyError, match="no layer"):
        ProjectedDiscriminator(visual, taps=("conv9_9",))
    train.main(["gan", "--projected", "--data", "64", "--batch", "8", "--workers", "1", "--steps", "2",
                "--log-every", "1", "--bn-batches", "1", "--out", str(tmp_path)])
    assert len((tmp_path / "gan" / "log.txt").read_text().splitlines()) == 2
