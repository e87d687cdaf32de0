"""Tests of scmdm.domains.image.evaluator: its pieces by hand (classifier score, pixel-independent samples, PNG grid)
and the CNN evaluator on real digits (separating real from pixel-independent images, cached and reloaded)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scmdm.domains.image.data import FASHION_MNIST_DIR as FASHION_DIR
from scmdm.domains.image.evaluator import (
    FD_NOTE,
    ImageEvaluator,
    class_entropy,
    classifier_score,
    format_image_table,
    pixel_independent_samples,
    save_image_grid,
)
from tests.conftest import requires_digits


@pytest.fixture(scope="module")
def digits_evaluator(digits, tmp_path_factory):
    """The digits evaluator, its classifier trained (25 passes, ~2 s) and cached in a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCMDM_CACHE", str(tmp_path_factory.mktemp("cache")))
        evaluator = ImageEvaluator.from_split(digits, epochs=25, progress=False)
        evaluator.model  # noqa: B018 -- train and cache it now, inside the temporary cache folder
    return evaluator


# ---- evaluator pieces by hand -------------------------------------------------------------------
def test_classifier_score_by_hand():
    assert classifier_score(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(2.0)  # exp(ln 2)
    assert classifier_score(np.array([[0.3, 0.7], [0.3, 0.7]])) == pytest.approx(1.0)
    # p = (1,0), (½,½): p̂ = (¾,¼); KL₁ = ln(4/3), KL₂ = ½ ln(2/3) + ½ ln 2 = ½ ln(4/3)
    assert classifier_score(np.array([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx(math.exp(0.75 * math.log(4 / 3)))


def test_class_entropy_by_hand():
    assert class_entropy(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(1.0)  # p̂ = (½, ½)
    h = -0.3 * math.log2(0.3) - 0.7 * math.log2(0.7)
    assert class_entropy(np.array([[0.3, 0.7], [0.3, 0.7]])) == pytest.approx(h)
    assert class_entropy(np.eye(10)) == pytest.approx(math.log2(10)) and class_entropy(np.eye(3)[[0, 0]]) == 0
    assert math.isnan(class_entropy(np.zeros((0, 10))))


def test_pixel_independent_samples_follow_each_pixel_marginal():
    train = np.zeros((4, 1, 2), np.uint8)
    train[:, 0, 0] = 3  # pixel (0, 0) is always 3
    train[:2, 0, 1] = 1  # pixel (0, 1) is 1 or 0, half each
    samples = pixel_independent_samples(train, 4, 2000, seed=0)
    assert samples.shape == (2000, 1, 2) and (samples[:, 0, 0] == 3).all()
    assert set(np.unique(samples[:, 0, 1])) == {0, 1} and abs(samples[:, 0, 1].mean() - 0.5) < 0.05


def test_grid_png(tmp_path):
    from PIL import Image

    images = np.zeros((5, 2, 3), np.uint8)
    images[1] = 3
    path = save_image_grid(images, tmp_path / "grid.png", levels=4, columns=3, scale=2, border=1)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (2 * (2 * 2 + 1) + 1, 3 * (3 * 2 + 1) + 1)  # 2 rows, 3 columns of 4×6 cells + borders
    assert grid[1, 1] == 0 and grid[1, 1 + 7] == 255 and grid[0, 0] == 255  # image 0 black, image 1 white


# ---- the CNN evaluator on real digits -----------------------------------------------------------
@requires_digits
def test_cnn_evaluator_separates_real_from_pixel_independent(digits_evaluator, digits):
    assert digits_evaluator.test_accuracy > 0.9
    real = digits_evaluator.reference_row(n=1000)
    (name, baseline), = digits_evaluator.baseline_rows(n=1000)
    assert real.n_samples == baseline.n_samples == len(digits.valid) == 360
    # seen: real 1.9 / 7.6, pixel-independent 30 / 2.8 (fd_cnn / classifier_score)
    assert real.fd_cnn * 5 < baseline.fd_cnn
    assert real.classifier_score > 6 and real.classifier_score > 2 * baseline.classifier_score
    table = format_image_table([("real", real), (name, baseline)], digits_evaluator.note())
    assert FD_NOTE in table and "classifier test accuracy" in table and "not Inception FID" in table
    assert "not Inception FID" in format_image_table([("real", real.as_dict())])


@requires_digits
def test_diversity_of_real_and_collapsed_samples(digits_evaluator, digits):
    """feature_spread is 1 for the reference images themselves and 0 for one image repeated; class entropy of
    real digits is near log2 10, of one image repeated 0 up to the classifier's doubt."""
    real = digits_evaluator.diversity(digits_evaluator.reference_images)
    assert real["feature_spread"] == pytest.approx(1.0) and real["class_entropy"] > 3.2  # log2 10 = 3.32
    collapsed = digits_evaluator.diversity(np.repeat(digits.arrays["test"][:1], 50, axis=0))
    assert collapsed["feature_spread"] == pytest.approx(0.0, abs=1e-9) and collapsed["class_entropy"] < 0.5
    held_out = digits_evaluator.diversity(digits.arrays["valid"])
    assert 0.7 < held_out["feature_spread"] < 1.3  # other real digits: about as spread
    assert all(math.isnan(v) for v in digits_evaluator.diversity(digits.arrays["test"][:1]).values())


@requires_digits
def test_cnn_is_cached_and_reloaded(digits_evaluator, digits, monkeypatch):
    path = digits_evaluator.classifier_file
    assert path is not None and path.exists() and path.suffix == ".safetensors"
    assert "digits_K16_arch1" in path.name
    monkeypatch.setenv("SCMDM_CACHE", str(path.parent))
    again = ImageEvaluator.from_split(digits, epochs=25, progress=False)  # same data and recipe: the same file
    assert again.evaluate(digits.test[:50]) == digits_evaluator.evaluate(digits.test[:50])
    assert again.classifier_file == path
    other = ImageEvaluator.from_split(digits, epochs=1, progress=False)  # another recipe: another classifier
    assert other.model is not None and other.classifier_file != path
    with pytest.raises(ValueError, match=r"samples must be \(H, W\) = \(8, 8\)"):
        digits_evaluator.evaluate(np.zeros((3, 4, 4), np.uint8))


# ---- the CNN at 14×14 (fashion_mnist_14), its cache keyed by the source ---------------------------
def test_the_classifier_takes_every_source_size():
    """conv/pool/conv/pool then a linear layer sized from H and W: 28×28, 14×14 (→ 3×3) and 8×8 (→ 2×2) all give
    128-d features and 10 logits; smaller than 4×4 is refused."""
    import torch

    from scmdm.domains.image.evaluator import ClassifierCNN

    for height, width in ((28, 28), (14, 14), (8, 8), (4, 6)):
        model = ClassifierCNN(height, width)
        x = torch.zeros(3, 1, height, width)
        assert model.features(x).shape == (3, 128) and model(x).shape == (3, 10)
    with pytest.raises(ValueError, match="at least 4x4"):
        ClassifierCNN(3, 8)


def test_cache_is_keyed_by_the_source(tmp_path, monkeypatch):
    """The same pixels under two source names are two classifiers (two files), each named after its source."""
    from scmdm.domains.image.evaluator import load_or_train_classifier

    monkeypatch.setenv("SCMDM_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 16, (40, 14, 14)).astype(np.uint8), np.arange(40) % 10
    _, first = load_or_train_classifier(images, labels, 16, dataset="fashion_mnist_14", epochs=1, progress=False)
    _, second = load_or_train_classifier(images, labels, 16, dataset="fashion_mnist", epochs=1, progress=False)
    assert first != second and first.name.startswith("image_cnn_fashion_mnist_14_K16_arch1_")
    assert second.name.startswith("image_cnn_fashion_mnist_K16_arch1_") and sorted(tmp_path.iterdir()) == sorted(
        [first, second])


@pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST is not installed")
def test_cnn_evaluator_at_14x14_separates_real_from_pixel_independent(tmp_path, monkeypatch):
    """fashion_mnist_14 through the evaluator: a CNN trained on 3,000 of its training images (6 passes, a few
    seconds) classifies the test images and puts real held-out images far closer than pixel-independent ones."""
    from scmdm.domains.image.data import load_images

    monkeypatch.setenv("SCMDM_CACHE", str(tmp_path))
    split = load_images("fashion_mnist_14", levels=16)
    evaluator = ImageEvaluator(split.arrays["train"][:3000], split.arrays["test"][:2000],
                               train_labels=split.labels["train"][:3000], levels=16, dataset=split.source,
                               reference_labels=split.labels["test"][:2000], holdout_images=split.arrays["valid"],
                               epochs=6, progress=False)
    assert evaluator.test_accuracy > 0.65  # seen: 0.73 (chance: 0.1)
    real = evaluator.reference_row(n=500)
    (_, baseline), = evaluator.baseline_rows(n=500)
    assert real.n_samples == baseline.n_samples == 500
    # seen: real 1.7 / 4.6, pixel-independent 136 / 1.3 (fd_cnn / classifier_score)
    assert real.fd_cnn * 20 < baseline.fd_cnn and real.classifier_score > 2 * baseline.classifier_score
    assert evaluator.classifier_file.name.startswith("image_cnn_fashion_mnist_14_K16_")
    with pytest.raises(ValueError, match=r"samples must be \(H, W\) = \(14, 14\)"):
        evaluator.evaluate(np.zeros((3, 28, 28), np.uint8))
