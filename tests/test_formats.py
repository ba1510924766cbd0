"""Real-model formats: random weights in each published key layout, loaded through ganviz, driven by the widgets.

Layouts are checked against the published ones (see docs/models.md): key names, shapes and parameter counts of
torchvision's VGG-16 / ResNet / DeepLabV3, GAN Dissection's ProGAN conversion and rosinality's StyleGAN2 port.
"""
import argparse
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ganviz
from ganviz.adapters import Normalize, SegmenterAdapter
from ganviz.checkpoints import CheckpointError, save_state
from ganviz.dissect import TensorSource
from ganviz.formats import detect_format, load_checkpoint, save_random_checkpoint
from ganviz.models import progan, resnet, segmenters, stylegan2, vgg
from ganviz.trace import Ablate, Trace, count_hooks

torch.set_num_threads(1)


def colour_segmenter():
    return SegmenterAdapter(segmenters.ColorSegmenter(), segmenters.ColorSegmenter.concept_names,
                            preprocess=Normalize((-1, 1)), name="colour")


def _meta_state(build):
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build().state_dict().items()}


def _params(shapes, skip=("running_", "num_batches", "noises.", "kernel")):
    return sum(int(np.prod(s)) for k, s in shapes.items() if not any(p in k for p in skip))


# ------------------------------------------------------------------------------------------------------------------
# Layouts against the published ones
# ------------------------------------------------------------------------------------------------------------------
def test_torchvision_layouts_match_published_parameter_counts():
    # torchvision's model metadata: vgg16 138,357,544; resnet18 11,689,512; resnet50 25,557,032;
    # deeplabv3_resnet50 (aux head) 42,004,074 parameters
    v = _meta_state(lambda: vgg.vgg16(1000))
    assert _params(v) == 138_357_544
    assert [k for k in v if k.endswith("weight")][:3] == ["features.0.weight", "features.2.weight", "features.5.weight"]
    assert v["features.28.weight"] == (512, 512, 3, 3) and v["classifier.0.weight"] == (4096, 25088)
    assert _meta_state(lambda: vgg.vgg16(365))["classifier.6.weight"] == (365, 4096)
    assert _params(_meta_state(lambda: resnet.resnet(18))) == 11_689_512
    r50 = _meta_state(lambda: resnet.resnet(50))
    assert _params(r50) == 25_557_032 and r50["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    d = _meta_state(lambda: segmenters.DeepLabV3(21, aux=True))
    assert _params(d) == 42_004_074
    assert d["classifier.0.convs.4.1.weight"] == (256, 2048, 1, 1) and d["classifier.0.project.0.weight"] == (256, 1280, 1, 1)
    assert d["aux_classifier.0.weight"] == (256, 1024, 3, 3) and "backbone.fc.weight" not in d


def test_progan_layout_matches_the_gandissect_conversion():
    s = _meta_state(lambda: progan.progan(256))
    convs = [k for k in s if k.endswith("conv.weight")]
    assert convs[0] == "layer1.conv.weight" and convs[-1] == "output_256x256.conv.weight" and len(convs) == 15
    assert s["layer1.conv.weight"] == (512, 512, 4, 4) and s["layer2.conv.weight"] == (512, 512, 3, 3)
    assert s["layer9.conv.weight"] == (256, 512, 3, 3) and s["layer11.conv.weight"] == (128, 256, 3, 3) and s["layer14.conv.weight"] == (64, 64, 3, 3)
    assert s["output_256x256.conv.weight"] == (3, 64, 1, 1) and s["layer8.wscale.b"] == (512,) and s["layer9.wscale.b"] == (256,)
    assert set(k.split(".")[-1] for k in s) == {"weight", "b"}  # no conv biases: the bias lives in wscale
    assert 22.9e6 < _params(s) < 23.1e6  # the original 256x256 ProGAN generator has about 23M weights


def test_stylegan2_layout_matches_rosinality():
    s = _meta_state(lambda: stylegan2.StyleGAN2Generator(256, channel_multiplier=2))
    assert [f"style.{i}.weight" in s for i in range(1, 9)] == [True] * 8 and "style.0.weight" not in s
    assert s["input.input"] == (1, 512, 4, 4) and s["conv1.conv.weight"] == (1, 512, 512, 3, 3)
    assert s["conv1.conv.modulation.weight"] == (512, 512) and s["conv1.noise.weight"] == (1,)
    assert s["conv1.activate.bias"] == (512,) and s["to_rgb1.conv.weight"] == (1, 3, 512, 1, 1)
    assert s["convs.0.conv.blur.kernel"] == (4, 4) and "convs.1.conv.blur.kernel" not in s
    assert s["convs.11.conv.weight"] == (1, 128, 128, 3, 3) and s["to_rgbs.5.upsample.kernel"] == (4, 4)
    assert s["to_rgbs.5.bias"] == (1, 3, 1, 1) and "to_rgbs.6.bias" not in s
    assert [s[f"noises.noise_{i}"][-1] for i in range(13)] == [4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    assert stylegan2.config_from_state_dict({k: torch.empty(v, device="meta") for k, v in s.items()})["channels"] == {
        4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}


def test_upfirdn2d_matches_a_direct_computation():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    k = torch.rand(4, 4, dtype=torch.float64)
    got = stylegan2.upfirdn2d(x, k, up=2, pad=(2, 1))
    up = np.zeros((2, 10, 10))
    up[:, ::2, ::2] = x[0].numpy()
    padded = np.pad(up, ((0, 0), (2, 1), (2, 1)))
    kf = k.numpy()[::-1, ::-1]
    want = np.zeros((2, 10, 10))
    for c in range(2):
        for i in range(10):
            for j in range(10):
                want[c, i, j] = (padded[c, i:i + 4, j:j + 4] * kf).sum()
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-12)


def test_modulated_conv_equals_per_sample_convolution():
    torch.manual_seed(0)
    m = stylegan2.ModulatedConv2d(6, 5, 3, style_dim=7)
    x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 7)
    got = m(x, w)
    for n in range(3):
        s = F.linear(w[n], m.modulation.weight * m.modulation.scale, m.modulation.bias)
        weight = m.weight[0] * m.scale * s.view(1, -1, 1, 1)
        weight = weight / weight.pow(2).sum((1, 2, 3), keepdim=True).add(1e-8).sqrt()
        torch.testing.assert_close(got[n], F.conv2d(x[n:n + 1], weight, padding=1)[0], atol=1e-5, rtol=1e-4)


def test_progan_first_layer_follows_the_wscale_formula():
    torch.manual_seed(0)
    g = progan.progan(32)
    for p in g.parameters():
        torch.nn.init.normal_(p)
    z = torch.randn(2, 512)
    with Trace(g, "layer1") as tr:
        tr.run(z)
    zn = z / z.pow(2).mean(1, keepdim=True).add(1e-8).sqrt()
    w = g.layer1.conv.weight  # a 4x4 conv with padding 3 on a 1x1 map: output (i, j) uses tap (3 - i, 3 - j)
    pre = torch.einsum("nc,ocij->noij", zn, w.flip(2, 3)) * (2 ** 0.5 / 4 / 512 ** 0.5) + g.layer1.wscale.b.view(1, -1, 1, 1)
    torch.testing.assert_close(tr["layer1"].output, F.leaky_relu(pre, 0.2), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# Generators: file -> ganviz -> generate, dissect, paint, ablate, widgets
# ------------------------------------------------------------------------------------------------------------------
def _exercise_generator(gen, layer, tmp_path):
    """Generate, dissect ``layer`` over a few samples, paint one stroke, ablate one unit, drive the widgets."""
    from ganviz.widgets import InversionView, PaintCanvas, UnitSwitchboard

    seg = colour_segmenter()
    z = gen.sample_latents(2, seed=1)
    images = gen.images(z)
    assert images.shape == (2, gen.resolution, gen.resolution, 3)
    result = gen.dissect(seg, layer, n=8, batch_size=4, progress=False)
    assert result.layer == layer and result.concept_names == seg.concept_names and result.iou.shape[1] == 6
    with Trace(gen.model, layer, stop=True) as tr:
        tr.run(z.to(gen.device))
    assert result.num_units == tr[layer].output.shape[1]
    # paint one stroke: the image changes, more inside the stroke than outside
    painter = gen.painter(result, seed=2)
    concept = painter.concepts(0.0)[0]
    r = gen.resolution
    painter.paint(concept, [(r * 0.2, r * 0.3), (r * 0.7, r * 0.3)], strength="high", radius=r / 8)
    diff = np.abs(painter.image().astype(int) - painter.original()).sum(-1)
    stroke = painter.strokes[0].mask > 0
    assert diff[stroke].mean() > 0 and diff[stroke].mean() > diff[~stroke].mean()
    # ablate one unit: the output changes
    with Trace(gen.model, layer, retain_output=False, edit=Ablate([0])) as tr:
        ablated = tr.run(z.to(gen.device))
    assert not torch.allclose(ablated, gen.generate(z))
    # the widgets take the model through its adapter
    canvas = PaintCanvas(gen, result, concepts=[concept], seed=3, background=False)
    assert isinstance(canvas, PaintCanvas) and canvas.painter.image_size == (r, r)
    before = canvas.image.copy()
    canvas.stroke([(r * 0.1, r * 0.5), (r * 0.9, r * 0.5)])
    canvas.wait()
    assert canvas.last_error is None and (canvas.image != before).any()
    board = UnitSwitchboard(gen, seg, result, concept=concept, samples=2, rank_samples=2, background=False)
    assert isinstance(board, UnitSwitchboard)
    shown = board.images.copy()
    board.set_all(0.0)
    assert board.last_error is None and (board.images != shown).any()
    # invert one of its own images (a few steps), fine-tune, and show it in the inversion view
    target = gen.images(gen.sample_latents(1, seed=4))[0]
    view = InversionView(gen.inverter(layer, steps=3, layer_steps=5, finetune_steps=3), target=target,
                         background=False)
    view.run()
    view.wait()
    assert view.last_error is None and view.result.steps == 11 and view.result.generator is not None
    assert view.result.image.shape == (1, 3, r, r) and "PSNR" in view.status.value
    assert count_hooks(gen.model) == 0
    return result


def test_progan_checkpoint_generates_dissects_paints_and_ablates(tmp_path):
    torch.manual_seed(3)
    reference = progan.progan(64)
    for p in reference.parameters():
        torch.nn.init.normal_(p)
    path = save_state(reference, tmp_path / "churchoutdoor.pth")
    gen = ganviz.load_checkpoint(path)  # the one-liner, format detected from the keys
    assert isinstance(gen, ganviz.GeneratorAdapter) and gen.resolution == 64 and gen.z_dim == 512
    assert gen.layers == tuple(f"layer{i}" for i in range(1, 11)) and gen.default_layer == "layer4"
    assert gen.layer_resolution["layer4"] == 8 and gen.layer_resolution["layer10"] == 64
    z = gen.sample_latents(2)
    torch.testing.assert_close(gen.generate(z), reference(z))  # the file's weights, not a fresh init
    _exercise_generator(gen, "layer4", tmp_path)


def test_progan_256_and_the_older_feature_naming(tmp_path):
    path = save_random_checkpoint("progan", tmp_path / "g256.pth", resolution=256)
    gen = load_checkpoint(path, "progan")
    assert gen.resolution == 256 and len(gen.layers) == 14 and gen.generate(gen.sample_latents(1)).shape == (1, 3, 256, 256)
    # the earlier conversion named blocks features.{i} and the RGB layer output.*; both are accepted
    state = torch.load(path, weights_only=True)
    old = {k.replace(f"layer{k.split('.')[0][5:]}.", f"features.{int(k.split('.')[0][5:]) - 1}.", 1)
           if k.startswith("layer") else k.replace("output_256x256.", "output."): v for k, v in state.items()}
    assert "features.13.conv.weight" in old and "output.wscale.b" in old
    torch.save(old, tmp_path / "old.pth")
    again = load_checkpoint(tmp_path / "old.pth")
    z = gen.sample_latents(1, seed=5)
    torch.testing.assert_close(again.generate(z), gen.generate(z))



def test_progan_older_port_with_stored_wscale_scales(tmp_path):
    # ptrblck/prog_gans_pytorch_inference (the features.{i} / output naming) keeps the scale as a parameter
    # wscale.scale of shape (1,) and computes x * scale + b after the bias-free conv; it must be used, not refused
    torch.manual_seed(0)
    sizes = [32, 32, 16, 8]
    old, blocks = {}, [(32, 32, 4, 3, False), (32, 32, 3, 1, False), (32, 16, 3, 1, True), (16, 16, 3, 1, False),
                       (16, 8, 3, 1, True), (8, 8, 3, 1, False)]
    for i, (cin, cout, k, _, _) in enumerate(blocks):
        old[f"features.{i}.conv.weight"] = torch.randn(cout, cin, k, k)
        old[f"features.{i}.wscale.scale"] = torch.rand(1) * 0.1 + 0.01
        old[f"features.{i}.wscale.b"] = torch.randn(cout) * 0.1
    old["output.conv.weight"], old["output.wscale.scale"] = torch.randn(3, 8, 1, 1), torch.rand(1) * 0.1 + 0.01
    old["output.wscale.b"] = torch.randn(3) * 0.1
    torch.save(old, tmp_path / "old_port.pth")
    gen = load_checkpoint(tmp_path / "old_port.pth")
    assert gen.resolution == 16 and gen.model.sizes == sizes

    def pixel_norm(x):
        return x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)

    z = gen.sample_latents(2, seed=3)
    x = z.view(2, -1, 1, 1)
    for i, (_, _, _, pad, up) in enumerate(blocks):
        x = pixel_norm(x)
        if up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.conv2d(x, old[f"features.{i}.conv.weight"], padding=pad)
        x = F.leaky_relu(x * old[f"features.{i}.wscale.scale"] + old[f"features.{i}.wscale.b"].view(1, -1, 1, 1), 0.2)
    want = F.conv2d(pixel_norm(x), old["output.conv.weight"]) * old["output.wscale.scale"] + old["output.wscale.b"].view(1, -1, 1, 1)
    torch.testing.assert_close(gen.generate(z), want, atol=1e-4, rtol=1e-4)

def test_stylegan2_checkpoint_with_truncation(tmp_path):
    torch.manual_seed(4)
    reference = stylegan2.StyleGAN2Generator(32)
    latent_avg = torch.randn(512)
    # a training checkpoint of the port: generator, EMA generator, optimiser state and argparse args
    torch.save({"g": reference.state_dict(), "g_ema": reference.state_dict(), "g_optim": {"state": {}},
                "args": argparse.Namespace(size=32, n_mlp=8), "latent_avg": latent_avg}, tmp_path / "sg2.pt")
    gen = ganviz.load_checkpoint(tmp_path / "sg2.pt", truncation=0.5)
    assert gen.resolution == 32 and gen.z_dim == 512 and gen.default_layer == "convs.3"
    assert gen.layers[:3] == ("conv1", "convs.0", "convs.1") and gen.layer_resolution["convs.3"] == 16
    torch.testing.assert_close(gen.model.w_avg, latent_avg)
    z = gen.sample_latents(3, seed=2)
    with torch.no_grad():
        w = reference.style(z)
        want = reference.synthesis(latent_avg + 0.5 * (w - latent_avg))
    torch.testing.assert_close(gen.generate(z), want)
    gen.truncation = 0.0  # every sample collapses to the mean latent's image
    out = gen.generate(z)
    torch.testing.assert_close(out[0], out[2])
    gen.truncation = 1.0
    assert not torch.allclose(gen.generate(z)[0], gen.generate(z)[2])
    with pytest.raises(ValueError, match="truncation"):
        gen.truncation = 1.5
    _exercise_generator(gen, "convs.3", tmp_path)


def test_stylegan2_mean_latent_is_computed_when_the_checkpoint_has_none(tmp_path):
    path = save_random_checkpoint("stylegan2", tmp_path / "sg2.pt", size=16)
    gen = load_checkpoint(path)
    with torch.no_grad():
        z = torch.randn(4096, 512, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(gen.model.w_avg, gen.model.mapping(z).mean(0), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------------------------
# Classifiers
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def places_vgg(tmp_path_factory):
    torch.manual_seed(5)
    folder = tmp_path_factory.mktemp("vgg")
    model = vgg.vgg16(365).eval()
    # Places365 files often come wrapped as {"state_dict": {"module.features.0.weight": ...}}
    torch.save({"epoch": 90, "arch": "vgg16", "state_dict": {"module." + k: v for k, v in model.state_dict().items()}},
               folder / "vgg16_places365.pth.tar")
    names = folder / "categories_places365.txt"
    names.write_text("".join(f"/{chr(97 + i % 26)}/scene_{i} {i}\n" for i in range(365)))
    return model, folder / "vgg16_places365.pth.tar", names


def test_places365_vgg16_classifies_dissects_and_ablates(places_vgg):
    from ganviz.widgets import AblationPanel, GradCamView, TopActivationGrid

    reference, path, names = places_vgg
    clf = ganviz.load_checkpoint(path, class_names=names)
    assert isinstance(clf, ganviz.ClassifierAdapter) and len(clf.class_names) == 365
    assert clf.class_names[:2] == ("scene_0", "scene_1") and clf.default_layer == "features.29"
    assert clf.layer_titles["features.29"] == "conv5_3"
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = reference(Normalize((0, 1), ganviz.adapters.IMAGENET_MEAN, ganviz.adapters.IMAGENET_STD)(images))
    torch.testing.assert_close(clf.logits(images), want)
    assert len(clf.predict(images[:1], top=3)[0]) == 3
    data = TensorSource(images)
    result = clf.dissect(data, "features.29", segmenter=colour_segmenter(), batch_size=3, k=3, progress=False)
    assert result.num_units == 512 and result.concept_names == segmenters.ColorSegmenter.concept_names
    panel = AblationPanel(clf, data, background=False)
    assert isinstance(panel, AblationPanel)
    top_unit = int(torch.as_tensor(result.threshold_at(0.99)).argmax())
    before = panel.probs.copy()
    panel.set_units([top_unit])
    panel.set_scale(top_unit, 0.0)
    assert panel.last_error is None and not np.allclose(panel.probs, before)
    grid = TopActivationGrid(clf, result, data, per_page=2, images_per_unit=2, detail_images=3, background=False)
    assert isinstance(grid, TopActivationGrid) and len(grid.rows.children) == 2 and grid.last_error is None
    cam = GradCamView(clf, data, layers=["features.22", "features.29"], background=False)
    assert isinstance(cam, GradCamView) and cam.cam.shape == (64, 64) and cam.last_error is None
    assert count_hooks(clf.model) == 0



def test_places365_vgg16_with_network_dissections_research_names(places_vgg, tmp_path):
    # davidbau/dissect experiment/oldvgg16.py: vgg16_places365-0bafbc55.pth names torchvision's modules by role
    names = ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
             "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3", "conv4_1", "relu4_1",
             "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4", "conv5_1", "relu5_1", "conv5_2", "relu5_2",
             "conv5_3", "relu5_3", "pool5"]
    fc = ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8a"]
    reference, _, class_file = places_vgg
    state = {}
    for k, v in reference.state_dict().items():
        part, idx, rest = k.split(".")
        state[f"{part}.{(names if part == 'features' else fc)[int(idx)]}.{rest}"] = v
    assert "features.conv5_3.weight" in state and "classifier.fc8a.weight" in state
    torch.save(state, tmp_path / "vgg16_places365-0bafbc55.pth")
    clf = ganviz.load_checkpoint(tmp_path / "vgg16_places365-0bafbc55.pth", class_names=class_file)
    assert clf.layer_titles["features.29"] == "conv5_3"
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference(Normalize((0, 1), ganviz.adapters.IMAGENET_MEAN, ganviz.adapters.IMAGENET_STD)(images))
    torch.testing.assert_close(clf.logits(images), want)

def test_resnet_classifier_and_a_module_with_its_own_preprocessing(tmp_path):
    torch.manual_seed(6)
    model = resnet.resnet(18, 10).eval()
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    clf = ganviz.load_checkpoint(tmp_path / "r18.pth")
    assert clf.layers == ("layer1", "layer2", "layer3", "layer4") and clf.class_names[-1] == "class9"
    x = torch.rand(2, 3, 64, 64)
    probs = ganviz.ablation.predict(clf.model, clf.preprocess(x), "layer4", Ablate(list(range(64))))
    assert probs.shape == (2, 10) and not torch.allclose(probs, clf.logits(x).softmax(-1))
    # any nn.Module plus a preprocessing function goes through the same adapter
    own = ganviz.ClassifierAdapter(model, [f"c{i}" for i in range(10)], ["layer3", "layer4"],
                                   preprocess=lambda im: im * 2 - 1, resolution=64)
    torch.testing.assert_close(own.logits(x), model(x * 2 - 1))
    with pytest.raises(ganviz.LayerNotFoundError, match="layer5"):
        ganviz.ClassifierAdapter(model, ["a"], ["layer5"])


# ------------------------------------------------------------------------------------------------------------------
# Segmenters
# ------------------------------------------------------------------------------------------------------------------
def test_deeplabv3_segmenter_with_a_concept_mapping(tmp_path):
    torch.manual_seed(7)
    model = segmenters.DeepLabV3(21, aux=True).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "deeplab.pth")
    seg = ganviz.load_checkpoint(tmp_path / "deeplab.pth", concepts={"pottedplant": "plant", "diningtable": "table",
                                                                     "sofa": "furniture", "chair": "furniture"})
    assert isinstance(seg, SegmenterAdapter) and len(seg.concept_names) == 20 and "furniture" in seg.concept_names
    images = torch.rand(2, 3, 40, 48) * 2 - 1
    labels = seg(images)
    assert labels.shape == (2, 40, 48) and labels.dtype == torch.long
    with torch.no_grad():
        classes = model(Normalize((0, 1), ganviz.adapters.IMAGENET_MEAN, ganviz.adapters.IMAGENET_STD)((images + 1) / 2)).argmax(1)
    names = [segmenters.VOC_CLASSES[c] for c in classes.flatten().tolist()]
    mapping = {"pottedplant": "plant", "diningtable": "table", "sofa": "furniture", "chair": "furniture"}
    assert [seg.concept_names[i] for i in labels.flatten().tolist()] == [mapping.get(n, n) for n in names]
    with pytest.raises(KeyError, match="tree"):
        ganviz.load_checkpoint(tmp_path / "deeplab.pth", concepts={"tree": "plant"})
    # it labels a generator's images for dissection like any segmenter
    gen = ganviz.formats.progan_adapter(progan.progan(16))
    result = gen.dissect(seg, "layer2", n=2, batch_size=2, progress=False)
    assert result.concept_names == seg.concept_names


def test_deeplabv3_into_torchvision_when_installed(tmp_path):
    pytest.importorskip("torchvision")
    path = save_random_checkpoint("deeplabv3", tmp_path / "d.pth")
    seg = load_checkpoint(path, use_torchvision=True)
    assert type(seg.model).__module__.startswith("torchvision")
    assert seg(torch.zeros(1, 3, 32, 32)).shape == (1, 32, 32)


def test_the_bundled_toy_models_are_adapters_too():
    gen, clf, seg = (ganviz.zoo.adapter(n) for n in ("toy-gan", "toy-classifier", "toy-segmenter"))
    assert isinstance(gen, ganviz.GeneratorAdapter) and gen.resolution == 64 and gen.layer_resolution["layer4"] == 8
    assert clf.preprocess(torch.ones(1, 3, 2, 2)).max() == 1 and clf.preprocess(torch.zeros(1, 3, 2, 2)).min() == -1
    scene = ganviz.toyworld.render(3, seed=0)
    x = torch.from_numpy(scene.image).permute(2, 0, 1)[None].float() / 255
    labels = seg(x * 2 - 1)
    assert (labels[0].numpy() == scene.labels).mean() > 0.9 and seg.concept_names == ganviz.CONCEPTS


# ------------------------------------------------------------------------------------------------------------------
# Safety and errors
# ------------------------------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this object writes a marker file (stands in for arbitrary code in a crafted checkpoint)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_a_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "marker.txt"
    torch.save({"state_dict": {"layer1.conv.weight": torch.zeros(1)}, "payload": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load .*weights_only"):
        ganviz.load_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()
    # a pickle renamed to .safetensors is not read as one either, and the error says why
    (tmp_path / "evil.safetensors").write_bytes((tmp_path / "evil.pth").read_bytes())
    with pytest.raises(CheckpointError, match="cannot read .*evil.safetensors as a safetensors file"):
        ganviz.load_checkpoint(tmp_path / "evil.safetensors")
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)  # the file really was malicious
    assert marker.read_text() == "code ran"


def test_missing_unexpected_and_mismatched_keys_are_named(tmp_path):
    state = progan.progan(32).state_dict()
    del state["layer3.wscale.b"]
    state["layer9.extra"] = torch.zeros(3)
    state["layer4.conv.weight"] = torch.zeros(512, 512, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        ganviz.load_checkpoint(tmp_path / "bad.pth")
    msg = str(err.value)
    assert "missing keys (1): layer3.wscale.b" in msg and "unexpected keys (1): layer9.extra" in msg
    assert "layer4.conv.weight (file (512, 512, 1, 1), model (512, 512, 3, 3))" in msg


def test_unknown_formats_and_wrong_format_requests(tmp_path):
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="supported formats: progan, stylegan2"):
        ganviz.load_checkpoint(tmp_path / "x.pth")
    torch.save({"meta": {"epoch": 3}}, tmp_path / "y.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        ganviz.load_checkpoint(tmp_path / "y.pth")
    torch.save(resnet.resnet(18).state_dict(), tmp_path / "r.pth")
    with pytest.raises(CheckpointError, match="not a ProGAN state dict"):
        ganviz.load_checkpoint(tmp_path / "r.pth", "progan")
    with pytest.raises(FileNotFoundError):
        ganviz.load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read .*junk.pth"):
        ganviz.load_checkpoint(tmp_path / "junk.pth")
    assert detect_format(resnet.resnet(18).state_dict()) == "resnet"


# ------------------------------------------------------------------------------------------------------------------
# GPU smoke test
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_formats_on_cuda(tmp_path):
    gen = load_checkpoint(save_random_checkpoint("progan", tmp_path / "g.pth", resolution=64), device="cuda")
    assert gen.device.type == "cuda"
    _exercise_generator(gen, "layer4", tmp_path)
    sg = load_checkpoint(save_random_checkpoint("stylegan2", tmp_path / "s.pt", size=32), device="cuda",
                         truncation=0.7)
    assert sg.model.w_avg.device.type == "cuda"
    _exercise_generator(sg, "convs.3", tmp_path)
    clf = load_checkpoint(save_random_checkpoint("resnet", tmp_path / "r.pth", num_classes=10), device="cuda")
    assert clf.logits(torch.rand(2, 3, 64, 64)).device.type == "cuda"


def test_old_files_without_batchnorm_counters_load(tmp_path):
    # torchvision's early ResNet weights (saved before PyTorch 0.4.1) have no num_batches_tracked entries
    reference = resnet.resnet(18).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "resnet18-old.pth")
    clf = ganviz.load_checkpoint(tmp_path / "resnet18-old.pth")
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(clf.model(x), reference(x))
