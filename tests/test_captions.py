"""Captions of toy scenes written from their ground truth, and the AUC used to score concept retrieval."""
import numpy as np
import pytest

from ganviz.metrics import roc_auc
from ganviz.textimage import WordTokenizer
from ganviz.toyworld import CONCEPTS, render
from ganviz.toyworld.captions import CAPTION_WORDS, CLASS_WORDS, WORD_CONCEPT, caption, scene_facts, words


def test_facts_count_regions_and_locate_concepts():
    labels = np.zeros((32, 32), np.uint8)
    labels[2:6, 2:6] = CONCEPTS.index("person")  # two separate people, one on the left, one on the right
    labels[2:6, 26:30] = CONCEPTS.index("person")
    labels[20:32, :] = CONCEPTS.index("grass")
    facts = scene_facts(labels, "soccer_field")
    by = {f.concept: f for f in facts.concepts}
    assert set(by) == {"sky", "person", "grass"} and by["person"].count == 2
    assert by["grass"].share == pytest.approx(12 / 32) and by["grass"].y > 0.75
    mirrored = {f.concept: f for f in facts.mirrored().concepts}
    assert mirrored["grass"].x == pytest.approx(1 - by["grass"].x)


def test_captions_name_the_class_and_only_present_concepts():
    rng = np.random.default_rng(0)
    for i in range(40):
        scene = render(i)
        facts = scene_facts(scene.labels, scene.scene_class)
        text = caption(facts, rng)
        assert any(w in text for w in CLASS_WORDS[facts.scene_class])
        present = {f.concept for f in facts.concepts}
        tail = text.split(" with ", 1)[1] if " with " in text else ""
        mentioned = {WORD_CONCEPT[w] for w in words(tail) if w in WORD_CONCEPT}
        assert mentioned <= present, text
        assert set(words(text)) <= set(CAPTION_WORDS)  # the toy text encoder knows every caption word
    tok = WordTokenizer(CAPTION_WORDS)
    assert tok.known("a photo of a church") and not tok.known("a photo of a zebra")
    assert (tok(["a photo of a zebra"])[0, :5] == 1).sum() == 1  # the unknown word is one token
    assert tok(["123"])[0, 0] == 1 and tok(["123"])[0, 1] == 0  # no letters: one unknown word, not all padding


def test_roc_auc_counts_ordered_pairs_with_ties_halved():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    with pytest.raises(ValueError, match="positives and negatives"):
        roc_auc([0.1, 0.2], [1, 1])


def test_region_crops_are_captioned_with_what_they_show():
    import torch

    from ganviz.toyworld import CONCEPTS
    from ganviz.toyworld.render import render_batch
    from ganviz.zoo.train_clip import region_crops

    images, labels, classes = (torch.from_numpy(a) for a in render_batch(range(12), seed=5))
    images = images.permute(0, 3, 1, 2).contiguous()
    crops, facts = region_crops(images, labels, classes, np.random.default_rng(0), min_side=16, max_side=16)
    assert crops.shape == images.shape and crops.dtype == torch.uint8
    for full, part, crop in zip(labels, facts, crops):
        shown = {CONCEPTS[k] for k in np.unique(full.numpy())}
        named = {f.concept for f in part.concepts}
        assert named and named <= shown               # only what the scene has ...
        assert all(f.share >= 0.004 for f in part.concepts)
    # ... and a 16 px crop shows fewer concepts than its whole scene in most scenes
    assert sum(len(p.concepts) < len(scene_facts(lab.numpy(), int(c)).concepts)
               for p, lab, c in zip(facts, labels, classes)) >= 8


def test_dense_word_loss_is_lowest_where_each_place_is_nearest_the_words_of_what_it_shows():
    import torch

    from ganviz.textimage import TextImageModel, WordTokenizer
    from ganviz.toyworld import CONCEPTS, SCENE_CLASSES
    from ganviz.toyworld.captions import CAPTION_WORDS, CLASS_WORDS, CONCEPT_WORDS
    from ganviz.zoo.arch import ToyCLIP
    from ganviz.zoo.toy_clip import TEMPLATES
    from ganviz.zoo.train_clip import cell_shares, dense_word_loss, vocabulary_embeddings

    labels = torch.zeros(2, 8, 8, dtype=torch.uint8)
    labels[:, :, 4:] = CONCEPTS.index("tree")
    labels[1, :2, :2] = CONCEPTS.index("sky")
    shares = cell_shares(labels, 4)  # 2x2 pixel cells
    assert shares.shape == (2, len(CONCEPTS), 4, 4) and torch.allclose(shares.sum(1), torch.ones(2, 4, 4))
    assert shares[1, CONCEPTS.index("sky"), 0, 0] == 1 and shares[0, CONCEPTS.index("tree"), :, 2:].eq(1).all()
    words = torch.eye(len(CONCEPTS), 24)                     # one axis per concept
    right = torch.einsum("nchw,cd->ndhw", shares, words)     # each place at the words of what it shows
    wrong = right.roll(1, dims=1)                             # each place at the next concept's words
    assert dense_word_loss(right, words, shares) < 0.01 < dense_word_loss(wrong, words, shares)
    others = torch.cat([words, torch.eye(len(CONCEPTS) + 1, 24)[-1:]])       # one more word that no place shows:
    assert dense_word_loss(right, others, shares) < 0.01                      # no harm where it is far,
    assert dense_word_loss(right + 3 * others[-1, :, None, None], others, shares) > 1  # a loss where it is near
    tokenizer = WordTokenizer(CAPTION_WORDS)
    model = ToyCLIP(tokenizer.vocab_size).eval()
    vocabulary = vocabulary_embeddings(model, tokenizer)
    tim = TextImageModel(model.encode_image, lambda texts: model.encode_text(tokenizer(texts)), lambda x: x, "t",
                         model, templates=TEMPLATES)
    names = [CONCEPT_WORDS[c][0] for c in CONCEPTS] + [CLASS_WORDS[c][0] for c in SCENE_CLASSES]
    assert torch.allclose(vocabulary, tim.encode_words(names), atol=1e-5)  # the words as word maps read them
