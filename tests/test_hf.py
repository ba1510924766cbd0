"""Hugging Face checkpoints: each architecture built by transformers with random weights, saved with save_pretrained,
loaded by ganviz in one line and compared with transformers' own forward; ADE20K class -> concept mapping."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ganviz.checkpoints import CheckpointError
from ganviz.conceptmaps import (absent_concepts, ade20k_classes, ade20k_concepts, concept_names, concepts_for,
                                looks_like)
from ganviz.layouts import Layout, primary_tensor, replace_primary
from ganviz.preprocessing import IMAGENET_MEAN, IMAGENET_STD

needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="needs the hf extra: pip install ganviz[hf]")

ADE_HF_NAMES = [("bed " if c == "bed" else c) for c in ade20k_classes()]  # as in the Hub's ADE20K configs


def _scramble(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights well away from transformers' initialisation (zero biases, unit norms, tiny heads)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.mul_(0.5 + torch.rand(b.shape, generator=g))
    return model.eval()


def _images(n: int = 2, hw=(32, 32), seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, *hw, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """{name: (directory, the transformers model that wrote it)} for every architecture."""
    T = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    vit_kw = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64)
    specs = {
        "vit": (T.ViTForImageClassification,
                T.ViTConfig(**vit_kw, id2label={0: "church", 1: "forest", 2: "lake"}, label2id=None)),
        "deit": (T.DeiTForImageClassificationWithTeacher, T.DeiTConfig(**vit_kw, num_labels=4)),
        "convnext": (T.ConvNextForImageClassification,
                     T.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], image_size=64,
                                      num_labels=6)),
        "resnet": (T.ResNetForImageClassification,
                   T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                  layer_type="basic", num_labels=3)),
        "swin": (T.SwinForImageClassification,
                 T.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                              window_size=4, num_labels=3)),
        "segformer": (T.SegformerForSemanticSegmentation,
                      T.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                                        mlp_ratios=[2, 2], decoder_hidden_size=16,
                                        id2label=dict(enumerate(ADE_HF_NAMES)))),
        "upernet": (T.UperNetForSemanticSegmentation,
                    T.UperNetConfig(backbone_config=T.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                                                     out_features=["stage1", "stage2", "stage3",
                                                                                   "stage4"]),
                                    hidden_size=16, use_auxiliary_head=False,
                                    id2label=dict(enumerate(["wall", "building", "sky", "tree", "windowpane",
                                                             "sea"])))),
    }
    out = {}
    for i, (name, (cls, config)) in enumerate(specs.items()):
        torch.manual_seed(i)
        model = _scramble(cls(config), seed=100 + i)
        path = root / name
        model.save_pretrained(path)
        out[name] = (path, model)
    T.ViTImageProcessor(image_mean=[0.1, 0.2, 0.3], image_std=[0.5, 0.6, 0.7],
                        size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    return out


def _load(zoo, name):
    from ganviz.hf import load_hf

    torch.manual_seed(12345)  # anything left to random initialisation would differ from the saved model
    return load_hf(zoo[name][0])


@needs_transformers
@pytest.mark.parametrize("name,hw", [("vit", (32, 32)), ("deit", (32, 32)), ("convnext", (64, 48)),
                                     ("resnet", (40, 56)), ("swin", (32, 32))])
def test_classifiers_match_transformers(zoo, name, hw) -> None:
    from ganviz.hf import HFImageClassifier

    clf = _load(zoo, name)
    model = zoo[name][1]
    assert isinstance(clf, HFImageClassifier) and not clf.training
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = clf(x), model(pixel_values=x).logits
    assert ours.shape == (2, model.config.num_labels)
    assert ours.abs().max() > 0.05
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert clf.class_names == tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    assert set(clf.state_dict()) == set(model.state_dict())


@needs_transformers
def test_class_names_and_preprocessing(zoo) -> None:
    vit, convnext, resnet = _load(zoo, "vit"), _load(zoo, "convnext"), _load(zoo, "resnet")
    assert vit.class_names == ("church", "forest", "lake")
    assert resnet.class_names == ("LABEL_0", "LABEL_1", "LABEL_2")  # transformers' names when none were given
    pre = vit.preprocessing
    assert pre.mean == (0.1, 0.2, 0.3) and pre.std == (0.5, 0.6, 0.7) and pre.image_size == (32, 32)
    assert pre.source.endswith("preprocessor_config.json")
    x = _images()
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.6, 0.7]).view(1, 3, 1, 1)
    assert torch.allclose(pre.normalize(x), expected, atol=1e-6)
    # no preprocessor_config.json: the family's published defaults, the config's image size when it has one
    assert convnext.preprocessing.mean == IMAGENET_MEAN and convnext.preprocessing.std == IMAGENET_STD
    assert convnext.preprocessing.image_size == (64, 64) and resnet.preprocessing.image_size == (224, 224)
    adapter = vit.adapter()
    assert adapter.class_names == vit.class_names and adapter.resolution == 32
    with torch.no_grad():
        assert torch.allclose(adapter.logits(x), vit(pre.normalize(x)))
    assert len(adapter.predict(x, top=2)[0]) == 2


@needs_transformers
def test_layers_and_layouts_of_transformer_blocks(zoo) -> None:
    for name, prefix in (("vit", 1), ("deit", 2)):
        clf = _load(zoo, name)
        assert len(clf.layers) == 2 and len(clf.mlp_layers) == 2
        assert clf.layers[0].endswith((".layer.0", ".layers.0")) and clf.default_layer == clf.layers[-1]
        layouts = clf.layer_layouts()
        assert layouts[clf.layers[1]] == Layout("tokens_cls", 4, 4, prefix)
        assert layouts[clf.mlp_layers[0]] == Layout("tokens_cls", 4, 4, prefix)
        seen = {}
        hooks = [clf.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: seen.__setitem__(n, primary_tensor(o))) for n in clf.layers + clf.mlp_layers]
        with torch.no_grad():
            clf(torch.randn(2, 3, 32, 32))
        for h in hooks:
            h.remove()
        mlp = seen[clf.mlp_layers[0]]
        assert mlp.shape == (2, prefix + 16, 64)  # intermediate_size neurons at every token
        fmap = layouts[clf.mlp_layers[0]].to_map(mlp)
        assert fmap.shape == (2, 64, 4, 4) and torch.equal(fmap[:, :, 2, 3], mlp[:, prefix + 2 * 4 + 3])


@needs_transformers
def test_ablating_an_mlp_unit_through_its_map(zoo) -> None:
    """Editing the map and writing it back == zeroing that channel at the grid tokens only (class token kept)."""
    clf = _load(zoo, "vit")
    layer = clf.mlp_layers[0]  # the last block's grid tokens never reach the class token
    lay = clf.layer_layouts()[layer]
    module = clf.get_submodule(layer)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))

    def through_map(m, i, o):
        fmap = lay.to_map(primary_tensor(o)).clone()
        fmap[:, 5] = 0
        return replace_primary(o, lay.from_map(fmap, primary_tensor(o)))

    def by_hand(m, i, o):
        t = primary_tensor(o).clone()
        t[:, 1:, 5] = 0
        return replace_primary(o, t)

    results = []
    for hook in (through_map, by_hand, None):
        handle = module.register_forward_hook(hook) if hook else None
        with torch.no_grad():
            results.append(clf(x))
        if handle:
            handle.remove()
    assert torch.allclose(results[0], results[1], atol=1e-6)
    assert not torch.allclose(results[0], results[2], atol=1e-4)


@needs_transformers
def test_layers_and_layouts_of_cnn_stages(zoo) -> None:
    convnext, resnet = _load(zoo, "convnext"), _load(zoo, "resnet")
    assert [n.rsplit(".", 1)[-1] for n in convnext.layers] == ["0", "1", "2", "3"]
    assert all(n.endswith("stages." + n[-1]) for n in convnext.layers + resnet.layers)
    assert len(convnext.mlp_layers) == 5 and resnet.mlp_layers == ()  # one per ConvNeXt block; none in a ResNet
    layouts = convnext.layer_layouts()
    assert layouts[convnext.layers[0]] == Layout("bchw", 16, 16)
    assert layouts[convnext.layers[3]] == Layout("bchw", 2, 2)
    assert layouts[convnext.mlp_layers[0]] == Layout("bhwc", 16, 16)  # 4 x 8 neurons, channels last
    seen = {}
    handle = convnext.get_submodule(convnext.mlp_layers[0]).register_forward_hook(
        lambda m, i, o: seen.__setitem__("act", o))
    with torch.no_grad():
        convnext(torch.randn(1, 3, 64, 64))
    handle.remove()
    act = seen["act"]
    assert act.shape == (1, 16, 16, 32)
    fmap = layouts[convnext.mlp_layers[0]].to_map(act)
    assert torch.equal(fmap[0, :, 3, 9], act[0, 3, 9, :])
    assert resnet.layer_layouts()[resnet.layers[-1]] == Layout("bchw", 7, 7)
    swin = _load(zoo, "swin")  # tokens without a class token; the stage merges 2x2 patches at its end
    assert swin.layer_layouts() == {swin.layers[0]: Layout("tokens", 4, 4), swin.layers[1]: Layout("tokens", 4, 4),
                                    swin.mlp_layers[0]: Layout("tokens", 8, 8), swin.mlp_layers[1]: Layout("tokens", 4, 4)}


@needs_transformers
@pytest.mark.parametrize("name", ["segformer", "upernet"])
def test_segmenters_match_transformers_at_the_input_size(zoo, name) -> None:
    from ganviz.hf import HFSegmenter

    seg = _load(zoo, name)
    model = zoo[name][1]
    assert isinstance(seg, HFSegmenter)
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours, theirs = seg(x), model(pixel_values=x).logits
    if name == "segformer":
        assert theirs.shape[-2:] == (16, 12)  # a quarter of the input: ganviz upsamples
        theirs = F.interpolate(theirs, size=(64, 48), mode="bilinear", align_corners=False)
    assert ours.shape == (2, model.config.num_labels, 64, 48) and ours.abs().max() > 0.05
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert seg.preprocessing.image_size == (512, 512) and seg.preprocessing.mean == IMAGENET_MEAN


@needs_transformers
def test_segmenter_classes_reach_concepts_through_the_ade20k_mapping(zoo) -> None:
    seg = _load(zoo, "segformer")
    assert seg.class_names == ade20k_classes() and seg.class_names[7] == "bed"
    concepts = seg.concepts()
    assert concepts["windowpane"] == "window" and concepts["sea"] == "water" and concepts["house"] == "building"
    assert seg.concept_names()[8] == "window"
    labeler = seg.adapter()
    for concept in ("tree", "grass", "sky", "wall", "building", "window", "door", "road", "person", "water"):
        assert concept in labeler.concept_names
    assert "windowpane" not in labeler.concept_names and "sea" not in labeler.concept_names
    images = _images(1, (64, 48)) * 2 - 1  # SegmenterAdapter takes images in [-1, 1]
    with torch.no_grad():
        labels = labeler(images)
        classes = seg(seg.preprocessing.normalize((images + 1) / 2)).argmax(1)
    expected = torch.tensor([labeler.concept_names.index(concepts[seg.class_names[int(c)]])
                             for c in classes.flatten()]).view_as(classes)
    assert labels.shape == (1, 64, 48) and torch.equal(labels, expected)
    up = _load(zoo, "upernet")
    assert up.concept_names() == ("wall", "building", "sky", "tree", "window", "water")
    assert up.adapter(concepts=None).concept_names == up.class_names


@needs_transformers
def test_dtype_device_and_wrapper_sharing(zoo) -> None:
    from ganviz.hf import load_hf_classifier

    clf = load_hf_classifier(zoo["vit"][0], dtype=torch.float64)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = clf(x)
        ref = zoo["vit"][1](pixel_values=x.float()).logits
    assert out.dtype == torch.float64 and torch.allclose(out.float(), ref, atol=1e-5)
    clf.float()
    assert next(clf.hf_model.parameters()).dtype == torch.float32  # the wrapper and the model share parameters
    clf.train()
    assert clf.hf_model.training and clf.get_submodule(clf.layers[0]).training
    clf.eval()
    assert not clf.hf_model.training


@needs_transformers
def test_loading_errors(zoo, tmp_path, monkeypatch) -> None:
    import transformers as T
    from safetensors.torch import load_file, save_file

    from ganviz.hf import load_hf, load_hf_classifier, load_hf_segmenter

    with pytest.raises(FileNotFoundError, match="no Hugging Face checkpoint directory"):
        load_hf(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_hf(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="not an image classifier"):
        load_hf_classifier(zoo["segformer"][0])
    with pytest.raises(CheckpointError, match="not an image segmenter"):
        load_hf_segmenter(zoo["vit"][0])
    bare = T.ViTModel(T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=4, intermediate_size=64))
    bare.save_pretrained(tmp_path / "bare")
    with pytest.raises(CheckpointError, match="names architecture ViTModel"):
        load_hf(tmp_path / "bare")
    headless = tmp_path / "headless"
    zoo["vit"][1].save_pretrained(headless)
    state = load_file(str(headless / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")}, str(headless / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lacks weights .*classifier"):
        load_hf(headless)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install ganviz\[hf\]"):
        load_hf(zoo["vit"][0])


# -- the ADE20K mapping (no transformers needed) -----------------------------------------------------------------
def test_ade20k_class_list_and_mapping_file() -> None:
    classes = ade20k_classes()
    assert len(classes) == 150 and len(set(classes)) == 150
    assert {0: "wall", 1: "building", 2: "sky", 4: "tree", 6: "road", 8: "windowpane", 9: "grass", 12: "person",
            14: "door", 21: "water", 25: "house", 26: "sea", 60: "river", 72: "palm", 128: "lake",
            149: "flag"} == {i: classes[i] for i in (0, 1, 2, 4, 6, 8, 9, 12, 14, 21, 25, 26, 60, 72, 128, 149)}
    mapping = ade20k_concepts()
    assert list(mapping) == list(classes)
    doc = json.loads((Path(__import__("ganviz").__file__).parent / "data" / "ade20k_concepts.json").read_text())
    assert doc["classes"] == list(classes)
    assert {c for c, v in mapping.items() if v == "water"} == {"water", "sea", "river", "lake"}
    assert {c for c, v in mapping.items() if v == "building"} == {"building", "house", "skyscraper", "hovel"}
    assert "dome" in absent_concepts() and "dome" not in mapping.values()


def test_concepts_for_names_in_other_spellings() -> None:
    names = ["wall", "bed ", "windowpane, window", "person, individual, someone", "Sky", "vegetation"]
    assert concepts_for(names) == {"wall": "wall", "bed ": "bed", "windowpane, window": "window",
                                   "person, individual, someone": "person", "Sky": "sky", "vegetation": "vegetation"}
    # a mapping that does not know a name leaves it as it is (spaces trimmed)
    assert concept_names(names, {"vegetation": "tree", "Wall": "building"}) == (
        "building", "bed", "windowpane, window", "person, individual, someone", "Sky", "tree")
    assert looks_like(ADE_HF_NAMES) and not looks_like(["road", "vegetation", "terrain", "rider"])
    with pytest.raises(ValueError, match="unknown concept mapping 'cityscapes'"):
        concepts_for(names, "cityscapes")
