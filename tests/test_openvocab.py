"""Open-vocabulary unit labels (SoftWPMI) on hand-built models where the right word is known."""
import numpy as np
import pytest
import torch
from torch import nn

from ganviz.openvocab import WordLabels, default_vocabulary, label_classifier_units, label_generator_units, soft_wpmi
from ganviz.textimage import TextImageModel


class ColourUnits(nn.Module):
    """Unit 0 reads red, unit 1 green, unit 2 blue (a 1x1 conv of the input), then a pooled 'classifier'."""

    def __init__(self):
        super().__init__()
        self.colours = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.colours.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.colours(x).mean((2, 3)))


def colour_text_image() -> TextImageModel:
    """Image embedding: the mean colour (centred); words: 'red', 'green', 'blue' are the axes, 'thing' is none."""
    axes = {"red": [1.0, 0, 0], "green": [0, 1.0, 0], "blue": [0, 0, 1.0], "thing": [0.577, 0.577, 0.577]}

    def text_fn(texts):
        return torch.tensor([axes.get(t, [0.3, 0.3, 0.3]) for t in texts])

    return TextImageModel(lambda x: x.mean((2, 3)) - 0.45, text_fn, lambda x: x, "colours")


@pytest.fixture(scope="module")
def coloured_images():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(300, 3, 1, 1, generator=g) * 0.3 + 0.3
    return (base + 0.02 * torch.rand(300, 3, 8, 8, generator=g)).clamp(0, 1)


def test_each_colour_unit_gets_its_word(coloured_images, tmp_path):
    words = ["thing", "blue", "red", "green"]
    same = torch.clone  # the model reads the images as they are
    model = ColourUnits()
    labels = label_classifier_units(model, "colours", coloured_images, colour_text_image(), words,
                                    preprocess=same, top_k=20, progress=False, cache_dir=tmp_path)
    assert labels.labels() == ["red", "green", "blue"]
    assert labels.top(2, 2)[0][0] == "blue" and labels.units_for("green", labelled_only=True) == [1]
    # cached: the same call returns the stored scores; a different vocabulary is a different entry
    again = label_classifier_units(model, "colours", coloured_images, colour_text_image(), words,
                                   preprocess=same, top_k=20, progress=False, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.scores, labels.scores)
    assert len(list(tmp_path.rglob("*.npz"))) == 1
    labels.save(tmp_path / "w.npz")
    back = WordLabels.load(tmp_path / "w.npz")
    assert back.words == tuple(words) and back.labels() == labels.labels() and back.layer == "colours"


def test_generator_units_are_labelled_from_their_samples():
    class ColourGenerator(nn.Module):
        z_dim = 3

        def __init__(self):
            super().__init__()
            self.layer1 = nn.Identity()

        def forward(self, z):
            maps = self.layer1(z.reshape(-1, 3, 1, 1).expand(-1, 3, 4, 4))
            return torch.tanh(maps)

    labels = label_generator_units(ColourGenerator(), "layer1", colour_text_image(), ["red", "green", "blue"],
                                   n=200, top_k=20, progress=False)
    assert labels.labels() == ["red", "green", "blue"]


def test_soft_wpmi_prefers_specific_words():
    # every image is 'sky' to the text model; only unit 0's top images are 'tree': unit 0 must be 'tree',
    # even though 'sky' describes its images too (the lam term removes words that describe every unit)
    n = 200
    sim = torch.zeros(n, 2)
    sim[:, 0] = 0.5
    sim[:100, 1] = 0.6
    acts = torch.zeros(n, 2)
    acts[:100, 0] = torch.linspace(2, 1, 100)
    acts[100:, 1] = torch.linspace(2, 1, 100)
    scores = soft_wpmi(sim, acts, top_k=50)
    assert scores.shape == (2, 2) and int(scores[0].argmax()) == 1 and int(scores[1].argmax()) == 0


def test_bad_input_is_explained(coloured_images):
    tim = colour_text_image()
    with pytest.raises(ValueError, match="non-empty list"):
        label_classifier_units(ColourUnits(), "colours", coloured_images, tim, "red", progress=False)
    with pytest.raises(ValueError, match="repeated"):
        label_classifier_units(ColourUnits(), "colours", coloured_images, tim, ["red", "red"], progress=False)
    with pytest.raises(ValueError, match="at least one probe image"):
        label_classifier_units(ColourUnits(), "colours", coloured_images, tim, ["red"], n=0, progress=False)
    with pytest.raises(KeyError, match="colour"):
        label_classifier_units(ColourUnits(), "colour", coloured_images, tim, ["red"], progress=False)
    labels = WordLabels("x", ("a", "b"), np.zeros((3, 2), np.float32))
    with pytest.raises(IndexError, match="3 units"):
        labels.label(3)
    with pytest.raises(KeyError, match="vocabulary"):
        labels.units_for("c")


def test_default_vocabulary_ships():
    words = default_vocabulary()
    assert len(words) > 200 and len(set(words)) == len(words)
    assert {"tree", "dome", "door", "person", "sky"} <= set(words)


def test_word_probe_ranks_units_for_typed_words_and_checks_them(coloured_images):
    from ganviz.openvocab import word_probe_classifier

    model = ColourUnits()
    probe = word_probe_classifier(model, "colours", coloured_images, colour_text_image(), ["thing", "red", "green"],
                                  preprocess=torch.clone, progress=False)
    probe.top_k = 20
    assert probe.units("green", 1) == [1]
    assert probe.units("blue", 1) == [2]  # a word outside the vocabulary is scored against it
    # units are read by their strongest activation in each image (pool="max")
    assert probe.top_images(0, 3) == [int(i) for i in coloured_images[:, 0].amax((1, 2)).topk(3).indices]
    check = probe.check("red", 0)
    assert check.measure == "p(class)" and check.samples == 16 and check.after != check.before
    assert "when off" in check.text()
    with pytest.raises(ValueError, match="type a word"):
        probe.scores("  ")
    with pytest.raises(IndexError, match="3 units"):
        probe.top_images(3)


def test_word_search_widget_lists_units_images_and_checks(coloured_images, tmp_path):
    from ganviz.openvocab import word_probe_classifier
    from ganviz.widgets import WordSearch

    probe = word_probe_classifier(ColourUnits(), "colours", coloured_images, colour_text_image(),
                                  ["thing", "red", "green", "blue"], preprocess=torch.clone, progress=False)
    probe.top_k = 20
    view = WordSearch(probe, n_units=2, n_images=3, background=False)
    assert "type a word" in view.status.value
    view.text.value = "blue"
    assert view.wait(30) and view.last_error is None
    assert view.rows[0][0] == 2 and len(view.rows) == 2
    assert "when off" in view.table.value and "blue" in view.status.value and view.strip.value
    assert view.state.word == "blue"
    picture = view.render()
    assert picture.ndim == 3 and picture.shape[0] > 2 * 8
    view.text.value = "   "
    assert view.wait(30) and "type a word first" in view.status.value and view.rows == []
    with pytest.raises(ValueError, match="n_units"):
        WordSearch(probe, n_units=0)
    view.text.value = "red"
    assert view.wait(30) and view.save(tmp_path / "words.png").stat().st_size > 0


def test_a_perfect_describer_separates_parts_only_at_crop_level():
    """Red and blue patches of equal size appear together in every image (like wall and window), so image-level
    shares say nothing about which is which; 8 px crops tell the red unit from the blue one."""
    from ganviz.dissect import TensorSource
    from ganviz.openvocab import labels_from_masks

    g = torch.Generator().manual_seed(0)
    n = 120
    images = torch.full((n, 3, 32, 32), 0.2)
    labels = torch.zeros(n, 32, 32, dtype=torch.long)  # 0 background
    for i in range(n):
        r, b = torch.randint(0, 24, (2, 2), generator=g)
        images[i, 0, r[0]:r[0] + 8, r[1]:r[1] + 8] = 1.0
        labels[i, r[0]:r[0] + 8, r[1]:r[1] + 8] = 1
        images[i, 2, b[0]:b[0] + 8, b[1]:b[1] + 8] = 1.0
        labels[i, b[0]:b[0] + 8, b[1]:b[1] + 8] = 2
    data = TensorSource(images, labels, concept_names=["ground", "red", "blue"])
    crops = labels_from_masks(ColourUnits(), "colours", data, crop=8, preprocess=torch.clone)
    assert crops.label(0) == "red" and crops.label(2) == "blue"
    whole = labels_from_masks(ColourUnits(), "colours", data, preprocess=torch.clone)
    assert whole.scores.shape == (3, 3)
    assert "crops" in crops.model and "images" in whole.model
    with pytest.raises(ValueError, match="label maps"):
        labels_from_masks(ColourUnits(), "colours", images, preprocess=torch.clone)


def _red_and_blue_patches(n=120, size=32, patch=8, seed=0):
    """Every image has one red and one blue patch of equal size, at random places."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 0.2)
    for i in range(n):
        r, b = torch.randint(0, size // patch, (2, 2), generator=g) * patch
        images[i, 0, r[0]:r[0] + patch, r[1]:r[1] + patch] = 1.0
        images[i, 2, b[0]:b[0] + patch, b[1]:b[1] + patch] = 1.0
    return images


def test_regions_are_described_by_local_embeddings_or_by_crops_alike():
    images = _red_and_blue_patches()
    crops = colour_text_image()
    dense = TextImageModel(crops.image_fn, crops.text_fn, crops.preprocess, "colours", dense_fn=lambda x: x - 0.45)
    # local embeddings pooled over a region are the region's own embedding: both paths agree
    torch.testing.assert_close(crops.encode_regions(images[:5], 4), dense.encode_regions(images[:5], 4))
    assert crops.encode_regions(images[:5], 1).shape == (5, 1, 1, 3)
    words = ["thing", "blue", "red", "green"]
    for tim in (crops, dense):
        labels = label_classifier_units(ColourUnits(), "colours", images, tim, words, preprocess=torch.clone,
                                        top_k=20, regions=4, progress=False)
        assert labels.label(0) == "red" and labels.label(2) == "blue"
    with pytest.raises(ValueError, match="regions"):
        label_classifier_units(ColourUnits(), "colours", images, crops, words, regions=0, progress=False)
    with pytest.raises(ValueError, match="cannot split"):
        crops.encode_regions(images[:2, :, :2, :2], 4)


def test_words_are_read_in_the_models_templates():
    vectors = {"x": [1.0, 0.0], "y": [0.0, 1.0]}

    def text_fn(texts):  # a template's last word decides the direction, the word itself is ignored
        return torch.tensor([vectors[t.split()[-1]] for t in texts])

    tim = TextImageModel(lambda x: x, text_fn, lambda x: x, "toy", templates=("{} x", "{} y"))
    torch.testing.assert_close(tim.encode_words(["tree"]), torch.tensor([[0.7071, 0.7071]]), atol=1e-4, rtol=0)
    assert "'{} x'" in tim.identity
    with pytest.raises(ValueError, match="templates"):
        TextImageModel(lambda x: x, text_fn, lambda x: x, "toy", templates=("no slot",))


def test_word_segmenter_dissects_units_with_words(tmp_path):
    from ganviz.dissect import dissect_classifier
    from ganviz.textimage import WordSegmenter

    images = _red_and_blue_patches()
    crops = colour_text_image()
    dense = TextImageModel(crops.image_fn, crops.text_fn, crops.preprocess, "colours", dense_fn=lambda x: x - 0.45)
    words = ["thing", "blue", "red", "green"]
    seg = WordSegmenter(dense, words)
    images = torch.where(images == 0.2, 0.6, images)  # a light grey background: 'thing' to this text model
    images = images * 0.9 + 0.05 * torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    logits = seg(images[:2] * 2 - 1)
    assert logits.shape == (2, 4, *images.shape[-2:])
    red = images[0, 0] > 0.8
    assert (logits[0].argmax(0)[red] == words.index("red")).all()
    # a patch is 1/16 of an image: units' masks at the top 5% of their values lie inside their colour's patches
    result = dissect_classifier(ColourUnits(), "colours", images, segmenter=seg, quantile=0.95, progress=False,
                                cache_dir=tmp_path)
    assert result.concept_names[result.best_concept[0]] == "red" and result.best_iou[0] > 0.6
    assert result.concept_names[result.best_concept[2]] == "blue" and result.best_iou[2] > 0.6
    # other words are another cache entry
    other = dissect_classifier(ColourUnits(), "colours", images, segmenter=WordSegmenter(dense, ["red", "blue"]),
                               quantile=0.95, progress=False, cache_dir=tmp_path)
    assert list(other.concept_names) == ["red", "blue"] and len(list(tmp_path.rglob("*.npz"))) >= 2
    with pytest.raises(ValueError, match="local embeddings"):
        WordSegmenter(crops, words)
    with pytest.raises(ValueError, match="distinct"):
        WordSegmenter(dense, ["red", "red"])
