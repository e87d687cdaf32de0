"""Image domain: IDX reading, quantisation, tokenizer, and the CNN evaluator on real digits."""

from __future__ import annotations

import gzip
import importlib.util
import math

import numpy as np
import pytest
import torch

from scmdm.domains.image.data import FASHION_HINT, FASHION_MNIST_DIR, load_images, quantize, read_idx, to_unit
from scmdm.domains.image.evaluator import (
    FD_NOTE,
    ImageEvaluator,
    classifier_score,
    format_image_table,
    pixel_independent_samples,
    save_image_grid,
)
from scmdm.domains.image.tokenizer import ImageTokenizer
from scmdm.errors import TokenizerError

HAVE_FASHION = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists() or (
    FASHION_MNIST_DIR / "train-images-idx3-ubyte").exists()
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
requires_fashion = pytest.mark.skipif(not HAVE_FASHION, reason=f"Fashion-MNIST is not installed: {FASHION_HINT}")
requires_digits = pytest.mark.skipif(not HAVE_SKLEARN, reason="the digits need scikit-learn: pip install scikit-learn "
                                                              "(`make test` installs it)")


@pytest.fixture(scope="module")
def digits():
    if not HAVE_SKLEARN:
        pytest.skip("the digits need scikit-learn (`make test` installs it)")
    return load_images("digits", levels=16, valid_fraction=0.2, test_fraction=0.2)


@pytest.fixture(scope="module")
def digits_evaluator(digits, tmp_path_factory):
    """The digits evaluator, its classifier trained (25 passes, ~2 s) and cached in a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCMDM_CACHE", str(tmp_path_factory.mktemp("cache")))
        evaluator = ImageEvaluator.from_split(digits, epochs=25, progress=False)
        evaluator.model  # noqa: B018 -- train and cache it now, inside the temporary cache folder
    return evaluator


# ---- quantisation and IDX -----------------------------------------------------------------------

def test_quantize_by_hand():
    # level = ⌊v·K/M⌋
    assert quantize(np.array([0, 15, 16, 255]), 16).tolist() == [0, 0, 1, 15]
    assert quantize(np.array([0, 127, 128, 255]), 2).tolist() == [0, 0, 1, 1]
    assert quantize(np.array([0, 63, 64, 255]), 4).tolist() == [0, 0, 1, 3]
    assert quantize(np.arange(256), 256).tolist() == list(range(256))
    assert quantize(np.array([0, 4, 5, 16]), 4, source_levels=17).tolist() == [0, 0, 1, 3]  # 0, 16/17, 20/17, 64/17
    assert to_unit(np.array([0, 1, 3]), 4).tolist() == pytest.approx([0, 1 / 3, 1])
    with pytest.raises(ValueError, match="levels must be in 2..17"):
        quantize(np.array([3]), 32, source_levels=17)
    with pytest.raises(ValueError, match="intensities must be in 0..255, got 0..300"):
        quantize(np.array([0, 300]), 16)


def test_read_idx_plain_and_gzipped(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\0\0\x08\x03" + np.array([2, 3, 4], dtype=">u4").tobytes() + data.tobytes()
    (tmp_path / "plain").write_bytes(raw)
    (tmp_path / "packed.gz").write_bytes(gzip.compress(raw))
    assert (read_idx(tmp_path / "plain") == data).all() and (read_idx(tmp_path / "packed.gz") == data).all()
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\) \(24 bytes\) but 23 bytes follow"):
        read_idx(tmp_path / "short")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_idx(tmp_path / "text")


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_images("fashion_mnist", folder=tmp_path)


@requires_fashion
def test_fashion_mnist_split():
    split = load_images("fashion_mnist", levels=4)
    assert split.info()["sizes"] == {"train": 57000, "valid": 3000, "test": 10000} and split.shape == (28, 28)
    assert split.arrays["train"].max() == 3 and split.arrays["train"].dtype == np.uint8
    assert np.bincount(split.labels["test"]).tolist() == [1000] * 10
    assert len(split.train) == 57000 and split.train[0].shape == (28, 28)
    assert not set(map(bytes, split.arrays["valid"][:500])) & set(map(bytes, split.arrays["train"][:20000]))
    split.verify(load_images("fashion_mnist", levels=4).info())
    with pytest.raises(ValueError, match="differs from the one saved"):
        load_images("fashion_mnist", levels=2).verify(split.info())


# ---- tokenizer ----------------------------------------------------------------------------------

@requires_digits
def test_image_tokenizer_round_trip(digits, tmp_path):
    tok = ImageTokenizer(16, 8, 8)
    assert (tok.pad_id, tok.eos_id, tok.mask_id, tok.vocab_size, tok.canvas) == (0, 1, 18, 19, 64)
    ids, report = tok.encode_many(digits.test, 64)
    assert ids.shape == (len(digits.test), 64) and report.total == len(digits.test)
    assert ids[0].tolist() == (digits.test[0].reshape(-1).astype(int) + 2).tolist()  # raster scan, level + 2
    assert all((a == b).all() for a, b in zip(tok.decode_batch(ids), digits.test, strict=True))
    special = ids[:1].clone()
    special[0, :3] = torch.tensor([0, 1, 18])
    assert tok.decode_batch(special)[0].reshape(-1)[:3].tolist() == [0, 0, 0] and tok.count_special(special) == 3
    tok.save(tmp_path / "tokenizer.json")
    assert ImageTokenizer.load(tmp_path / "tokenizer.json") == tok != ImageTokenizer(4, 8, 8)


def test_image_tokenizer_errors():
    tok = ImageTokenizer(4, 2, 2)
    with pytest.raises(TokenizerError, match=r"H·W = 2·2 = 4 positions, but the canvas length asked for is 5"):
        tok.encode_many([np.zeros((2, 2), np.uint8)], 5)
    with pytest.raises(TokenizerError, match=r"image #2 has shape \(3, 2\)"):
        tok.encode_many([np.zeros((2, 2)), np.zeros((3, 2))], 4)
    with pytest.raises(TokenizerError, match=r"1 of 1 images hold values outside the grey levels 0..3"):
        tok.encode_many([np.array([[0, 4], [1, 2]])], 4)
    with pytest.raises(ValueError, match="2..256 grey levels"):
        ImageTokenizer(1, 2, 2)


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
