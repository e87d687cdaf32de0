"""Tests of scmdm.domains.image.evaluator: its pieces by hand (classifier score, pixel-independent samples, PNG grid)
and the CNN evaluator on real digits (separating real from pixel-independent images, cached and reloaded)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scmdm.domains.image.evaluator import (
    FD_NOTE,
    ImageEvaluator,
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
