"""Image data: Fashion-MNIST (Debian ``dataset-fashion-mnist``) and scikit-learn's 8×8 digits, quantised to
K grey levels, with their class labels.

Sources

* ``fashion_mnist`` — the IDX files in ``/usr/share/datasets/fashion-mnist/`` (gzipped, as Debian ships them;
  plain files are read too): 60,000 training and 10,000 test images, 28×28, 256 intensities, 10 classes.
  ``apt-get install dataset-fashion-mnist`` (or ``make install-data-dna-images``).
* ``fashion_mnist_14`` — the same images downsampled to 14×14 by 2×2 mean pooling (a CPU-sized image set:
  196 pixels a canvas instead of 784); same splits, labels and intensity scale (M = 256, see below).
* ``digits`` — ``sklearn.datasets.load_digits``: 1,797 images, 8×8, 17 intensities (0…16), 10 classes; for
  fast tests. ``pip install scikit-learn``.

Quantisation. A source with M intensities ``v ∈ {0, …, M−1}`` (M = 256 for Fashion-MNIST, 17 for digits) is
mapped to K levels by equal-width bins:

    level = ⌊ v · K / M ⌋            (Fashion-MNIST, K = 16: level = v // 16;  K = 256: level = v)

K must be at most M. A downsampled source (``fashion_mnist_14``: factor f = 2 of ``fashion_mnist``) quantises the
*mean* v̄ = s / f² of each f×f block (s = the sum of its f² intensities, :func:`pool_sums`) by the same rule, in
exact integer arithmetic:

    level = ⌊ v̄ · K / M ⌋ = ⌊ s · K / (M · f²) ⌋     (fashion_mnist_14, K = 16: level = s // 64)

so a block of one intensity v gets the level v would get at full size.

An image item is a ``uint8`` array (H, W) of levels ``0 … K−1``; to show or classify it, level ℓ is intensity
ℓ / (K − 1) ∈ [0, 1] (:func:`to_unit`).

Splits. Fashion-MNIST (either size) keeps its official test set as the test split; the validation split is
⌈60000·valid_fraction⌉ training images chosen by a seeded permutation (``numpy.random.default_rng(seed)``);
``test_fraction`` is not used. Digits have no official split: a seeded permutation puts the first
⌈N·test_fraction⌉ images in test, the next ⌈N·valid_fraction⌉ in validation, the rest in training (the rule of
:func:`scmdm.domains.molecule.data.split_molecules`). ``info()`` gives the settings, sizes and a SHA-256 of each
split's pixels and labels, saved with a checkpoint and compared by ``verify``.

Held-out files (``data.valid_source``, ``data.test_source``, :func:`image_split`): raw PGM files (the samples
format below) of images of the source's size with maxval K − 1, used as the validation or test split without labels
(label −1; the classifier's test accuracy is then not measured); nothing of the source is held out for that split.

As an scmdm data domain (``data.domain=image``, :func:`prepare_images`): ``data.source`` is the source,
``image.levels`` is K (2, 4, 16 or 256), ``data.max_length`` must be H·W (0 derives it), ``data.valid_fraction``,
``data.test_fraction`` and ``data.split_seed`` are the split arguments of :func:`load_images`.

Samples file: *raw PGM* (netpbm ``P5``), one image after another in one file, as the netpbm format allows: for
each image the header ``P5\n<W> <H>\n<K−1>\n`` and then H·W bytes, the grey levels row by row (maxval K − 1, so
the levels are stored exactly; :func:`write_pgm` / :func:`read_pgm`). No pickle, no ``.npy``; netpbm's
``pamsplit`` splits such a file into single images.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scmdm.data import PreparedData
from scmdm.domains.image.tokenizer import ImageTokenizer

__all__ = ["FASHION_MNIST_DIR", "SOURCES", "SHAPES", "LEVELS", "FASHION_HINT", "read_idx", "load_fashion_mnist",
           "load_sklearn_digits", "DOWNSAMPLED", "pool_sums", "quantize", "to_unit", "ImageSplit", "load_images",
           "image_split", "prepare_images", "format_pgm", "parse_pgm", "write_pgm", "read_pgm", "read_pgm_images"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_HINT = "apt-get install dataset-fashion-mnist (or `make install-data-dna-images`)"
#: source name -> number of intensities M of its pixels (of the full-size pixels for a downsampled source)
SOURCES = {"fashion_mnist": 256, "fashion_mnist_14": 256, "digits": 17}
#: source name -> (H, W)
SHAPES = {"fashion_mnist": (28, 28), "fashion_mnist_14": (14, 14), "digits": (8, 8)}
#: downsampled source -> (the source it is made from, the pooling factor f: f×f blocks become one pixel)
DOWNSAMPLED = {"fashion_mnist_14": ("fashion_mnist", 2)}
#: the grey levels K a run may use (``image.levels``)
LEVELS = (2, 4, 16, 256)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
              0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST format: 2 zero bytes, a type byte, a dimension count, big-endian uint32 sizes,
    then the data), gzipped or not."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (header {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{path}: the header says shape {shape} ({math.prod(shape) * dtype.itemsize} bytes) but "
                         f"{len(raw) - offset} bytes follow")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"Fashion-MNIST not found at {folder} (no {stem}[.gz]): {FASHION_HINT}")


def load_fashion_mnist(folder: str | Path = FASHION_MNIST_DIR) -> dict[str, np.ndarray]:
    """``train_images`` (60000, 28, 28) uint8, ``train_labels``, ``test_images``, ``test_labels``."""
    folder = Path(folder)
    out = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(f"Fashion-MNIST {part}: {images.shape[0]} images of shape {images.shape[1:]} and "
                             f"{labels.shape} labels do not match")
        out[f"{part}_images"], out[f"{part}_labels"] = images, labels.astype(np.int64)
    return out


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: (1797, 8, 8) uint8 intensities 0..16 and their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise FileNotFoundError("the digits images need scikit-learn: pip install scikit-learn "
                                "(or `make install-data-dna-images`)") from None
    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


def quantize(intensities: np.ndarray, levels: int, source_levels: int = 256) -> np.ndarray:
    """``⌊v · K / M⌋`` as uint8 for intensities ``v`` in ``0 … M−1`` (K = ``levels``, M = ``source_levels``)."""
    if not 2 <= levels <= source_levels:
        raise ValueError(f"levels must be in 2..{source_levels} (the source has {source_levels} intensities), "
                         f"got {levels}")
    v = np.asarray(intensities)
    if v.size and (v.min() < 0 or v.max() >= source_levels):
        raise ValueError(f"intensities must be in 0..{source_levels - 1}, got {v.min()}..{v.max()}")
    table = (np.arange(source_levels) * levels // source_levels).astype(np.uint8)  # a lookup is ~10x faster
    return table[v if v.dtype == np.uint8 else v.astype(np.int64)]


def pool_sums(images: np.ndarray, factor: int) -> np.ndarray:
    """The sum of every ``factor``×``factor`` block of ``images`` ((N, H, W) or (H, W) intensities; H and W
    multiples of ``factor``) as int64, of shape (…, H/factor, W/factor): ``factor``² times the block's mean."""
    v = np.asarray(images)
    height, width = v.shape[-2:]
    if factor < 1 or height % factor or width % factor:
        raise ValueError(f"cannot pool {height}x{width} images in {factor}x{factor} blocks")
    blocks = v.astype(np.int64).reshape(*v.shape[:-2], height // factor, factor, width // factor, factor)
    return blocks.sum(axis=(-3, -1))


def to_unit(images: np.ndarray, levels: int) -> np.ndarray:
    """Levels ``0 … K−1`` as float32 intensities ``ℓ / (K − 1)`` in [0, 1]."""
    return np.asarray(images, dtype=np.float32) / (levels - 1)


def _sha256(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


@dataclass
class ImageSplit:
    """Quantised images and labels of each split. ``train``/``valid``/``test`` are lists of (H, W) uint8 level
    arrays (views into ``arrays``); ``labels[part]`` are the class labels."""

    arrays: dict[str, np.ndarray]  # part -> (N, H, W) uint8 levels
    labels: dict[str, np.ndarray]  # part -> (N,) int64
    source: str
    levels: int
    settings: dict

    @property
    def train(self) -> list[np.ndarray]:
        return list(self.arrays["train"])

    @property
    def valid(self) -> list[np.ndarray]:
        return list(self.arrays["valid"])

    @property
    def test(self) -> list[np.ndarray]:
        return list(self.arrays["test"])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return tuple(self.arrays["train"].shape[1:])  # type: ignore[return-value]

    def info(self) -> dict:
        """JSON-able description: source, levels, shape, settings, sizes and the SHA-256 of each split."""
        return {"domain": "image", "source": self.source, "levels": self.levels, "shape": list(self.shape),
                **self.settings, "sizes": {k: len(v) for k, v in self.arrays.items()},
                "sha256": {k: _sha256(v, self.labels[k]) for k, v in self.arrays.items()}}

    def verify(self, expected: dict) -> None:
        """Raise if this split differs from ``expected`` (the ``info()`` saved with a checkpoint)."""
        now = self.info()
        if expected.get("sha256") != now["sha256"]:
            raise ValueError(f"the image split differs from the one saved with the checkpoint (saved: "
                             f"{expected.get('source')} K={expected.get('levels')} {expected.get('sizes')}, now: "
                             f"{self.source} K={self.levels} {now['sizes']}); held-out images may have been trained on")


def load_images(source: str = "fashion_mnist", *, levels: int = 16, valid_fraction: float = 0.05,
                test_fraction: float = 0.05, seed: int = 0, folder: str | Path = FASHION_MNIST_DIR) -> ImageSplit:
    """Load ``source`` (``fashion_mnist``, ``fashion_mnist_14`` or ``digits``), quantise to ``levels`` grey levels
    and split it (see the module docstring for every rule)."""
    if source not in SOURCES:
        raise ValueError(f"unknown image source {source!r}; choose one of {', '.join(SOURCES)}")
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(f"valid_fraction and test_fraction must be in [0, 1) and sum below 1, got "
                         f"{valid_fraction} and {test_fraction}")
    m = SOURCES[source]
    if not 2 <= levels <= m:
        raise ValueError(f"{source} has {m} intensities, so levels must be in 2..{m}, got {levels}")
    rng = np.random.default_rng(seed)
    full_size, factor = DOWNSAMPLED.get(source, (source, 1))

    def levels_of(intensities: np.ndarray) -> np.ndarray:
        if factor == 1:
            return quantize(intensities, levels, m)
        return quantize(pool_sums(intensities, factor), levels, m * factor * factor)  # ⌊s·K/(M·f²)⌋

    if full_size == "fashion_mnist":
        data = load_fashion_mnist(folder)
        images, labels = data["train_images"], data["train_labels"]
        perm = rng.permutation(len(images))
        n_valid = math.ceil(len(images) * valid_fraction)
        parts = {"train": perm[n_valid:], "valid": perm[:n_valid]}
        arrays = {k: levels_of(images[v]) for k, v in parts.items()}
        split_labels = {k: labels[v] for k, v in parts.items()}
        arrays["test"], split_labels["test"] = levels_of(data["test_images"]), data["test_labels"]
        settings = {"valid_fraction": valid_fraction, "seed": seed, "test": "official t10k"}
        if factor > 1:
            settings["pooling"] = f"{factor}x{factor} mean of {full_size}"
    else:
        images, labels = load_sklearn_digits()
        perm = rng.permutation(len(images))
        n_test, n_valid = math.ceil(len(images) * test_fraction), math.ceil(len(images) * valid_fraction)
        parts = {"train": perm[n_test + n_valid:], "valid": perm[n_test:n_test + n_valid], "test": perm[:n_test]}
        arrays = {k: quantize(images[v], levels, m) for k, v in parts.items()}
        split_labels = {k: labels[v] for k, v in parts.items()}
        settings = {"valid_fraction": valid_fraction, "test_fraction": test_fraction, "seed": seed}
    return ImageSplit(arrays=arrays, labels=split_labels, source=source, levels=levels, settings=settings)


def read_pgm_images(path: str | Path, levels: int, shape: tuple[int, int], *, key: str) -> np.ndarray:
    """(N, H, W) levels of a raw PGM file of images of ``shape`` with maxval ``levels`` − 1; errors name ``key``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{key}: PGM file {path} does not exist")
    try:
        images, maxval = read_pgm(path)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None
    if maxval != levels - 1:
        raise ValueError(f"{key}: {path} holds images of {maxval + 1} grey levels (PGM maxval {maxval}), the run has "
                         f"image.levels={levels}")
    if bad := [i for i, image in enumerate(images) if image.shape != tuple(shape)][:1]:
        raise ValueError(f"{key}: {path}: image #{bad[0] + 1} is {images[bad[0]].shape[1]}x{images[bad[0]].shape[0]} "
                         f"(W x H), the source's are {shape[1]}x{shape[0]}")
    return np.stack(images).astype(np.uint8)


def image_split(config: Any) -> ImageSplit:
    """:func:`load_images` with the settings of a run's config (``data.source``, ``image.levels``,
    ``data.valid_fraction``, ``data.test_fraction``, ``data.split_seed``), the held-out PGM files in place of the
    parts they replace."""
    d, levels = config.data, config.image.levels
    try:
        split = load_images(d.resolved_source, levels=levels, valid_fraction=0.0 if d.valid_source else
                            d.valid_fraction, test_fraction=0.0 if d.test_source else d.test_fraction,
                            seed=d.split_seed)
    except ValueError as err:
        raise ValueError(f"data.source={d.resolved_source!r}, image.levels={levels}: {err}") from None
    for key in ("valid", "test"):
        path = getattr(d, f"{key}_source")
        if path:
            images = read_pgm_images(path, levels, split.shape, key=f"data.{key}_source")
            split.arrays[key], split.labels[key] = images, np.full(len(images), -1, dtype=np.int64)
            split.settings[f"{key}_source"] = str(path)
    return split


def prepare_images(config: Any, tokenizer: ImageTokenizer | None = None, *, quiet: bool = False) -> PreparedData:
    """Prepared data of ``data.domain=image``: :func:`image_split`, raster-scan canvases of H·W levels
    (:class:`ImageTokenizer`); ``data.subset`` keeps the first N training images (a random sample: the split order
    is a seeded permutation)."""
    d, levels = config.data, config.image.levels
    split = image_split(config)
    expected = ImageTokenizer(levels, *split.shape)
    if tokenizer is None:
        tokenizer = expected
    elif tokenizer != expected:
        raise ValueError(f"the model's tokenizer is {tokenizer!r} but data.source={split.source!r} with "
                         f"image.levels={levels} needs {expected!r}")
    tensors = {}
    for name in ("train", "valid", "test"):
        images = split.arrays[name]
        if name == "train" and d.subset:
            images = images[:d.subset]
        if not len(images):
            raise ValueError(f"the {name} split of data.source={split.source!r} is empty (data.valid_fraction="
                             f"{d.valid_fraction}, data.test_fraction={d.test_fraction})")
        tensors[name], _ = tokenizer.encode_many(images, d.max_length, where=f"data.source={split.source}")
    height, width = split.shape
    notes = [f"{split.source}: {', '.join(f'{k} {len(v)}' for k, v in tensors.items())} images of {height}x{width} "
             f"pixels, {levels} grey levels (canvas {height * width} tokens, vocabulary {tokenizer.vocab_size})"]
    if not quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return PreparedData(tokenizer=tokenizer, split=split, notes=notes, **tensors)


# ---- the samples file: raw PGM, one image after another ----------------------------------------------------
def format_pgm(images: Sequence[np.ndarray] | np.ndarray, levels: int) -> bytes:
    """Raw PGM (``P5``) bytes of ``images`` ((H, W) level arrays, levels 0 … K−1), maxval K − 1, one image after
    another."""
    if not 2 <= levels <= 256:
        raise ValueError(f"a PGM samples file holds 2..256 grey levels, got {levels}")
    chunks = []
    for index, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"image #{index + 1} has shape {image.shape}, not (H, W)")
        if image.size and (image.min() < 0 or image.max() >= levels):
            raise ValueError(f"image #{index + 1} holds levels {image.min()}..{image.max()}, outside 0..{levels - 1}")
        height, width = image.shape
        chunks.append(f"P5\n{width} {height}\n{levels - 1}\n".encode("ascii") + image.astype(np.uint8).tobytes())
    return b"".join(chunks)


def parse_pgm(data: bytes, *, where: str = "PGM data") -> tuple[list[np.ndarray], int]:
    """The images of raw PGM bytes (one or more ``P5`` images, maxval <= 255; ``#`` comments in headers are
    allowed) and their maxval (all images must share it)."""
    images: list[np.ndarray] = []
    maxvals: set[int] = set()
    position, n = 0, len(data)

    def token() -> bytes:
        nonlocal position
        while position < n:
            if data[position:position + 1].isspace():
                position += 1
            elif data[position:position + 1] == b"#":
                end = data.find(b"\n", position)
                position = n if end < 0 else end + 1
            else:
                break
        start = position
        while position < n and not data[position:position + 1].isspace() and data[position:position + 1] != b"#":
            position += 1
        return data[start:position]

    while True:
        while position < n and data[position:position + 1].isspace():
            position += 1
        if position >= n:
            break
        number = len(images) + 1
        magic = token()
        if magic != b"P5":
            raise ValueError(f"{where}: image #{number} does not start with the raw PGM magic P5 (found "
                             f"{magic[:8]!r}); scmdm writes image samples as raw PGM")
        try:
            width, height, maxval = (int(token()) for _ in range(3))
        except ValueError:
            raise ValueError(f"{where}: image #{number} has a malformed PGM header") from None
        if not (width > 0 and height > 0 and 0 < maxval < 256):
            raise ValueError(f"{where}: image #{number} has width {width}, height {height}, maxval {maxval} "
                             "(need positive sizes and a maxval below 256)")
        position += 1  # the single whitespace character after maxval
        end = position + width * height
        if end > n:
            raise ValueError(f"{where}: image #{number} is truncated ({n - position} of {width * height} bytes)")
        image = np.frombuffer(data, dtype=np.uint8, count=width * height, offset=position).reshape(height, width)
        if image.max() > maxval:
            raise ValueError(f"{where}: image #{number} holds {image.max()}, above its maxval {maxval}")
        images.append(image.copy())
        maxvals.add(maxval)
        position = end
    if not images:
        raise ValueError(f"{where} holds no images")
    if len(maxvals) > 1:
        raise ValueError(f"{where}: the images have different maxvals {sorted(maxvals)}")
    return images, maxvals.pop()


def write_pgm(images: Sequence[np.ndarray] | np.ndarray, path: str | Path, levels: int) -> Path:
    """:func:`format_pgm` written to ``path``."""
    path = Path(path)
    path.write_bytes(format_pgm(images, levels))
    return path


def read_pgm(path: str | Path) -> tuple[list[np.ndarray], int]:
    """:func:`parse_pgm` of the file ``path``."""
    path = Path(path)
    return parse_pgm(path.read_bytes(), where=str(path))
