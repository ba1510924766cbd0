"""Quality bars of the bundled models, measured on freshly rendered scenes (toy world seed 1, not seed 0)."""
import pytest

from ganviz import zoo
from ganviz.toyworld import WATERMARK_FRACTION
from ganviz.zoo import evaluate


@pytest.fixture(scope="module")
def models():
    return {name: zoo.load(name)[0] for name in ("toy-classifier", "toy-segmenter", "toy-gan")}


def test_classifier_accuracy(models):
    r = evaluate.evaluate_classifier(models["toy-classifier"], n=2000)
    assert r["accuracy"] >= 0.95, r
    assert r["per_class_accuracy"]["baseball_field"] >= 0.90, r
    assert r["per_class_accuracy"]["soccer_field"] >= 0.90, r


def test_vit_accuracy():
    r = evaluate.evaluate_classifier(zoo.load("toy-vit")[0], n=2000)
    assert r["accuracy"] >= 0.95, r


def test_text_image_model_zero_shot_accuracy():
    from ganviz.zoo.toy_clip import toy_text_image

    r = evaluate.evaluate_text_image(toy_text_image(), n=1000)
    assert r["zero_shot_accuracy"] >= 0.90, r
    assert r["mean_concept_auc"] >= 0.85 and min(r["per_class_accuracy"].values()) >= 0.9, r  # 0.89 and 0.976


def test_segmenter_accuracy(models):
    r = evaluate.evaluate_segmenter(models["toy-segmenter"], n=1000)
    assert r["pixel_accuracy"] >= 0.95, r
    assert r["mean_iou"] >= 0.80, r
    assert {"sky", "grass", "tree", "wall"} <= set(r["mean_iou_classes"])


@pytest.fixture(scope="module")
def gan_report(models):
    return evaluate.evaluate_generator(models["toy-gan"], models["toy-classifier"], models["toy-segmenter"], n=1000)


def test_generated_scenes_are_recognisable(gan_report):
    assert gan_report["confident_fraction"] >= 0.85, gan_report["confident_fraction"]


def test_generated_concept_areas_match_real(gan_report):
    errors = gan_report["area_relative_error"]
    assert len(errors) >= 5  # sky, grass, tree, road, wall, snow ... cover >= 2% of real pixels
    assert max(map(abs, errors.values())) <= 0.35, errors


def test_generated_watermark_fraction(gan_report):
    assert abs(gan_report["watermark_fraction_generated"] - WATERMARK_FRACTION) <= 0.10, gan_report


def test_generated_features_close_to_real(gan_report):
    assert gan_report["frechet_ratio"] <= 0.25, gan_report
