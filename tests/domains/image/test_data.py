"""Tests of scmdm.domains.image.data: quantisation, IDX files, PGM sample files by hand, the Fashion-MNIST split, its
2×2 mean-pooled 14×14 version (by hand on 4×4 images, then on the real set) and the image settings reaching the split
of the digits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from scmdm.config import load_config
from scmdm.domains import prepare_data
from scmdm.domains.image.data import (
    FASHION_HINT,
    FASHION_MNIST_DIR,
    format_pgm,
    load_images,
    parse_pgm,
    pool_sums,
    quantize,
    read_idx,
    to_unit,
)
from scmdm.domains.image.tokenizer import ImageTokenizer
from tests.conftest import requires_digits

HAVE_FASHION = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists() or (
    FASHION_MNIST_DIR / "train-images-idx3-ubyte").exists()
requires_fashion = pytest.mark.skipif(not HAVE_FASHION, reason=f"Fashion-MNIST is not installed: {FASHION_HINT}")


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


# ---- fashion_mnist_14: 2×2 mean pooling, then the same quantisation -----------------------------
def test_pool_sums_and_pooled_levels_by_hand():
    image = np.array([[0, 255, 16, 16],
                      [255, 255, 16, 16],
                      [15, 16, 7, 9],
                      [16, 16, 1, 3]], dtype=np.uint8)
    sums = pool_sums(image, 2)
    assert sums.tolist() == [[765, 64], [63, 20]] and sums.dtype == np.int64
    assert pool_sums(np.stack([image, image]), 2).shape == (2, 2, 2)
    # level = ⌊mean·K/256⌋ = ⌊s·K/1024⌋: mean 191.25 → 11 (K = 16); a flat block of 16 → 1, as 16 alone is;
    # mean 15.75 → 0; mean 5 → 0 (K = 16) and 0 (K = 4), 5 at K = 256
    assert quantize(sums, 16, 1024).tolist() == [[11, 1], [0, 0]]
    assert quantize(sums, 4, 1024).tolist() == [[2, 0], [0, 0]]
    assert quantize(sums, 256, 1024).tolist() == [[191, 16], [15, 5]]
    assert quantize(sums, 2, 1024).tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError, match="cannot pool 3x4 images in 2x2 blocks"):
        pool_sums(image[:3], 2)


def _write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = b"\0\0\x08" + bytes([array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_fashion_mnist_14_pools_every_split_of_the_same_images(tmp_path):
    """Fake 4×4 IDX files: fashion_mnist_14 is the 2×2-pooled fashion_mnist, split for split, label for label."""
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (20, 4, 4)), rng.integers(0, 256, (6, 4, 4))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(20) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(6) % 10)
    full = load_images("fashion_mnist", levels=256, valid_fraction=0.25, folder=tmp_path)
    small = load_images("fashion_mnist_14", levels=16, valid_fraction=0.25, folder=tmp_path)
    assert small.shape == (2, 2) and small.info()["sizes"] == {"train": 15, "valid": 5, "test": 6}
    assert small.settings["pooling"] == "2x2 mean of fashion_mnist" and "pooling" not in full.settings
    for part in ("train", "valid", "test"):
        assert np.array_equal(small.labels[part], full.labels[part])  # the same images in the same order
        expected = pool_sums(full.arrays[part], 2) * 16 // 1024  # levels 256 = the intensities themselves
        assert np.array_equal(small.arrays[part], expected) and small.arrays[part].dtype == np.uint8
    assert small.arrays["test"].max() <= 15


@requires_fashion
def test_fashion_mnist_14_split():
    full = load_images("fashion_mnist", levels=256)
    split = load_images("fashion_mnist_14", levels=16)
    assert split.shape == (14, 14) and split.info()["sizes"] == {"train": 57000, "valid": 3000, "test": 10000}
    assert split.arrays["train"].dtype == np.uint8 and set(np.unique(split.arrays["train"])) == set(range(16))
    assert np.array_equal(split.labels["valid"], full.labels["valid"])
    assert np.array_equal(split.arrays["test"][:50], pool_sums(full.arrays["test"][:50], 2) // 64)
    config = load_config(None, ["data.domain=image", "data.source=fashion_mnist_14", "data.subset=64"])
    data = prepare_data(config, quiet=True)
    assert config.data.max_length == 196 and data.train.shape == (64, 196)
    assert data.tokenizer == ImageTokenizer(16, 14, 14)


# ---- sample files by hand ----------------------------------------------------------------------
def test_pgm_samples_file_by_hand() -> None:
    image = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint8)  # 2 rows, 3 columns, K = 4
    data = format_pgm([image, image[::-1]], 4)
    assert data == b"P5\n3 2\n3\n\x00\x01\x02\x03\x03\x00" + b"P5\n3 2\n3\n\x03\x03\x00\x00\x01\x02"
    images, maxval = parse_pgm(data)
    assert maxval == 3 and [im.tolist() for im in images] == [image.tolist(), image[::-1].tolist()]
    commented = b"P5 # made by hand\n3 2\n# levels\n3\n" + bytes([0, 1, 2, 3, 3, 0])
    assert parse_pgm(commented)[0][0].tolist() == image.tolist()
    with pytest.raises(ValueError, match="truncated"):
        parse_pgm(data[:-1])
    with pytest.raises(ValueError, match="raw PGM magic P5"):
        parse_pgm(b"P2\n3 2\n3\n0 1 2 3 3 0\n")
    with pytest.raises(ValueError, match="different maxvals"):
        parse_pgm(data + format_pgm([image], 16))
    with pytest.raises(ValueError, match="outside 0..3"):
        format_pgm([image + 1], 4)


# ---- the digits ---------------------------------------------------------------------------------
@requires_digits
def test_image_settings_reach_the_split() -> None:
    config = load_config(None, ["data.domain=image", "data.source=digits", "image.levels=2", "data.subset=100"])
    data = prepare_data(config, quiet=True)
    assert data.tokenizer == ImageTokenizer(2, 8, 8) and data.train.shape == (100, 64)
    assert set(data.train.unique().tolist()) == {2, 3}  # two grey levels: ids 2 and 3
    assert len(data.valid) == len(data.test) == 90  # ⌈1797 · 0.05⌉
    with pytest.raises(ValueError, match=r"data.source='digits' with image.levels=2 needs ImageTokenizer\(levels=2"):
        prepare_data(config, tokenizer=ImageTokenizer(16, 8, 8), quiet=True)


@requires_digits
def test_held_out_pgm_files_and_a_pgm_reference(tmp_path, digits) -> None:
    """PGM files of images of the source's size and levels as the held-out splits (no labels) and as --reference;
    a file of another number of grey levels is one clear error."""
    from scmdm.domains import get_domain
    from scmdm.domains.image.data import image_split, write_pgm

    held = digits.arrays["test"][:40]
    test = write_pgm(held, tmp_path / "test.pgm", 16)
    config = load_config(None, ["data.domain=image", "data.source=digits", f"data.test_source={test}"])
    split = image_split(config)
    assert np.array_equal(split.arrays["test"], held) and (split.labels["test"] == -1).all()
    assert split.info()["test_source"] == str(test) and split.info()["sizes"]["test"] == 40
    evaluator = get_domain("image").evaluator(config, split.info(), reference=str(test))
    assert np.array_equal(evaluator.reference_images, held) and evaluator.reference_labels is None
    assert len(evaluator.holdout_images) == len(split.arrays["valid"]) and str(test) in evaluator.reference_name
    four = write_pgm(held // 4, tmp_path / "k4.pgm", 4)
    with pytest.raises(ValueError, match=r"data.valid_source: .*k4.pgm holds images of 4 grey levels \(PGM maxval 3\), "
                                         r"the run has image.levels=16"):
        image_split(load_config(None, ["data.domain=image", "data.source=digits", f"data.valid_source={four}"]))
