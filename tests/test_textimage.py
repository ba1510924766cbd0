"""Text-image models: Hugging Face CLIPModel directories and open_clip-layout state dicts with random weights,
the same weights through both loaders giving the same embeddings."""
import json
import string

import pytest
import torch

from ganviz.checkpoints import CheckpointError
from ganviz.clip_files import load_text_image
from ganviz.textimage import TextImageModel, resize_center_crop

transformers = pytest.importorskip("transformers")  # a test dependency: installed in CI


def _block(sd, src, dst, out):
    att = src + "self_attn."
    out[dst + "ln_1.weight"], out[dst + "ln_1.bias"] = sd[src + "layer_norm1.weight"], sd[src + "layer_norm1.bias"]
    out[dst + "ln_2.weight"], out[dst + "ln_2.bias"] = sd[src + "layer_norm2.weight"], sd[src + "layer_norm2.bias"]
    out[dst + "attn.in_proj_weight"] = torch.cat([sd[att + f"{p}_proj.weight"] for p in "qkv"])
    out[dst + "attn.in_proj_bias"] = torch.cat([sd[att + f"{p}_proj.bias"] for p in "qkv"])
    for a, b in (("attn.out_proj", "self_attn.out_proj"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
        out[dst + a + ".weight"], out[dst + a + ".bias"] = sd[src + b + ".weight"], sd[src + b + ".bias"]


def hf_to_open_clip(sd, vision_layers, text_layers):
    """The open_clip (OpenAI) key layout of a Hugging Face CLIPModel's weights."""
    o = {"visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
         "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
         "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
         "visual.proj": sd["visual_projection.weight"].T.contiguous(),
         "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
         "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
         "text_projection": sd["text_projection.weight"].T.contiguous(), "logit_scale": sd["logit_scale"]}
    for a, b in (("visual.ln_pre", "vision_model.pre_layrnorm"), ("visual.ln_post", "vision_model.post_layernorm"),
                 ("ln_final", "text_model.final_layer_norm")):
        o[a + ".weight"], o[a + ".bias"] = sd[b + ".weight"], sd[b + ".bias"]
    for i in range(vision_layers):
        _block(sd, f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}.", o)
    for i in range(text_layers):
        _block(sd, f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}.", o)
    return o


OPEN_CLIP_BLOCK = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
                   "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                   "mlp.c_proj.weight", "mlp.c_proj.bias"]
OPEN_CLIP_TOP = ["positional_embedding", "text_projection", "logit_scale", "visual.class_embedding",
                 "visual.positional_embedding", "visual.proj", "visual.conv1.weight", "visual.ln_pre.weight",
                 "visual.ln_pre.bias", "visual.ln_post.weight", "visual.ln_post.bias", "token_embedding.weight",
                 "ln_final.weight", "ln_final.bias"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random-weight CLIPModel (ViT tower, 32 px, patch 8) with a letter-level BPE tokenizer, saved offline."""
    d = tmp_path_factory.mktemp("tinyclip")
    vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate(string.ascii_lowercase)})
    vocab.update({"<|startoftext|>": 52, "<|endoftext|>": 53})
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    transformers.CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"),
                               pad_token="<|endoftext|>").save_pretrained(str(d))
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=54, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=1, max_position_embeddings=77, eos_token_id=53, bos_token_id=52,
                         pad_token_id=53),
        vision_config=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=32)
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    model.save_pretrained(str(d))
    return d, model


def test_hf_clip_directory_loads_offline(tiny_clip):
    d, model = tiny_clip
    tim = load_text_image(d)
    assert isinstance(tim, TextImageModel) and tim.name == d.name
    images = torch.rand(3, 3, 40, 48)
    img = tim.encode_images(images)
    assert img.shape == (3, 32) and torch.allclose(img.norm(dim=1), torch.ones(3), atol=1e-5)
    txt = tim.encode_texts(["tree", "dome", "a red door"])
    assert txt.shape == (3, 32)
    # the wrapper's image path: CLIP's resize + centre crop + normalisation, then the projected class token
    from ganviz.preprocessing import CLIP_MEAN, CLIP_STD, Normalize

    with torch.no_grad():
        x = Normalize((0, 1), CLIP_MEAN, CLIP_STD)(resize_center_crop(images, 32))
        out = model.get_image_features(pixel_values=x)
    ref = torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1)
    assert torch.allclose(img, ref, atol=1e-5)


def test_open_clip_layout_gives_the_same_embeddings(tiny_clip, tmp_path):
    d, model = tiny_clip
    state = hf_to_open_clip(model.state_dict(), 2, 2)
    expected = OPEN_CLIP_TOP + [f"{tower}resblocks.{i}.{k}" for tower in ("visual.transformer.", "transformer.")
                                for i in range(2) for k in OPEN_CLIP_BLOCK]
    assert sorted(state) == sorted(expected)  # exactly open_clip's keys, nothing more
    path = tmp_path / "open_clip_vit.pt"
    torch.save(state, path)
    ours, ref = load_text_image(path, tokenizer=d), load_text_image(d)
    images = torch.rand(4, 3, 32, 32)
    assert torch.allclose(ours.encode_images(images), ref.encode_images(images), atol=1e-5)
    words = ["tree", "dome", "a photo of a church", "x"]
    assert torch.allclose(ours.encode_texts(words), ref.encode_texts(words), atol=1e-5)
    # the activation is not in the weights: GELU instead of QuickGELU changes the embeddings
    gelu = load_text_image(path, tokenizer=d, quick_gelu=False)
    assert not torch.allclose(gelu.encode_images(images), ref.encode_images(images), atol=1e-3)


def test_text_image_loaders_explain_bad_input(tiny_clip, tmp_path):
    d, model = tiny_clip
    with pytest.raises(FileNotFoundError, match="no CLIP checkpoint"):
        load_text_image(tmp_path / "missing")
    path = tmp_path / "oc.pt"
    torch.save(hf_to_open_clip(model.state_dict(), 2, 2), path)
    with pytest.raises(ValueError, match="tokenizer"):
        load_text_image(path)
    resnet = {"visual.layer1.0.conv1.weight": torch.zeros(1), "token_embedding.weight": torch.zeros(2, 2)}
    torch.save(resnet, tmp_path / "rn.pt")
    with pytest.raises(CheckpointError, match="ResNet"):
        load_text_image(tmp_path / "rn.pt", tokenizer=d)
    tim = load_text_image(d)
    with pytest.raises(ValueError, match="non-empty list"):
        tim.encode_texts("tree")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        tim.encode_images(torch.rand(3, 32, 32))
