r"""Evaluation of generated images with scmdm's own small CNN classifier — **not Inception FID**.

No Inception weights exist offline, so image quality is measured in the feature space of a small CNN that
scmdm trains on the training split of the same data set at the same number of grey levels K. Its numbers are
comparable only with each other (same data set, K and classifier), never with published FID / IS values.

Classifier (architecture version :data:`ARCH_VERSION`): input ℓ/(K−1) ∈ [0, 1] per pixel, then
conv3×3(1→16) ReLU maxpool2 · conv3×3(16→32) ReLU maxpool2 · flatten · linear(→128) ReLU = the 128-d
*features* · linear(→10) = the class logits. Trained with Adam (lr 1e-3, batch 128, cross-entropy,
``epochs`` passes in a seeded order). The weights are cached as safetensors in
``scmdm.cache.cache_dir()`` (``$SCMDM_CACHE`` or ``~/.cache/scmdm``) under a key made of the data set,
K, the architecture version, the training recipe and a SHA-256 of the training images and labels, and are
retrained when missing. Its accuracy on the test split is :attr:`ImageEvaluator.test_accuracy`.

Metrics of samples ``S`` against the reference images ``R`` (the held-out **test** split):

* ``fd_cnn`` — Fréchet distance between Gaussians fit to the CNN features (float64) of ``S`` and of ``R``:
  ``||μ_S − μ_R||² + Tr(C_S + C_R − 2 (C_S C_R)^{1/2})`` (:func:`scmdm.evaluation.frechet_distance`).
* ``classifier_score`` — in the spirit of the Inception Score, with this CNN's class probabilities
  ``p(y|x)``: ``exp( mean_{x∈S} KL( p(y|x) || p̂(y) ) )`` with ``p̂(y) = mean_{x∈S} p(y|x)`` (one split, natural
  log). It is 1 when every sample gets the same class distribution and 10 (the number of classes) when every
  sample is classified with certainty and the classes are used equally.

Diversity of samples ``S`` (:meth:`ImageEvaluator.diversity`; not in the tables of :func:`format_image_table`, for
reading quality against diversity, e.g. over a temperature sweep):

* ``feature_spread`` — ``Tr(C_S) / Tr(C_R)``: the total variance of the samples' CNN features over that of the
  reference images' (1 = as spread as real images; a collapse to few kinds of image is well below 1).
* ``class_entropy`` — ``H(p̂(y))`` in bits, ``p̂(y) = mean_{x∈S} p(y|x)``: how evenly the samples cover the
  classes (log₂ 10 ≈ 3.32 = all ten equally).

Reference row: ``n`` real held-out images — from ``holdout_images`` (the validation split, disjoint from the
test split) when given, else from the test split itself (then ``fd_cnn`` is a slightly optimistic floor).
Baseline: ``pixel-independent`` samples, each pixel drawn independently from its own marginal distribution of
levels over the training images (right per-pixel statistics, no structure).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scmdm.cache import cache_dir
from scmdm.domains.image.data import ImageSplit, load_images, to_unit
from scmdm.evaluation import format_table, frechet_distance

__all__ = ["FD_NOTE", "ARCH_VERSION", "COLUMNS", "ImageMetrics", "ImageEvaluator", "ClassifierCNN",
           "train_classifier", "load_or_train_classifier", "classifier_accuracy", "fashion_mnist_classifier",
           "classifier_score", "class_entropy", "pixel_independent_samples", "save_image_grid", "format_image_table"]

FD_NOTE = "Fréchet distance in the features of scmdm's own CNN, not Inception FID"
ARCH_VERSION = 1
COLUMNS: tuple[str, ...] = ("n_samples", "fd_cnn", "classifier_score")
_BATCH = 500  # fixed feature-extraction batch size


@dataclass
class ImageMetrics:
    """Metrics of one set of image samples (``fd_cnn``: the Fréchet distance in the features of scmdm's own
    CNN, **not Inception FID**; see the module docstring)."""

    n_samples: int
    fd_cnn: float
    classifier_score: float

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------
# The classifier
# ----------------------------------------------------------------------------------------------------

class ClassifierCNN(nn.Module):
    """The classifier of the module docstring; :meth:`features` is everything up to the 128-d ReLU."""

    def __init__(self, height: int, width: int, num_classes: int = 10) -> None:
        super().__init__()
        if height < 4 or width < 4:
            raise ValueError(f"the classifier needs images of at least 4x4 pixels, got {height}x{width}")
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _inputs(images: np.ndarray, levels: int) -> torch.Tensor:
    return torch.from_numpy(to_unit(images, levels))[:, None]


def train_classifier(images: np.ndarray, labels: np.ndarray, levels: int, *, epochs: int, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, progress: bool = True) -> nn.Module:
    """Train :func:`ClassifierCNN` on ``images`` ((N, H, W) levels) and ``labels`` (see the module docstring)."""
    from tqdm.auto import tqdm

    n, height, width = images.shape
    num_classes = int(labels.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ClassifierCNN(height, width, max(num_classes, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = _inputs(images, levels), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    steps = epochs * math.ceil(n / batch_size)
    model.train()
    with tqdm(total=steps, desc=f"training the image classifier (K={levels})", disable=not progress,
              leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                index = order[start:start + batch_size]
                loss = nn.functional.cross_entropy(model(x[index]), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


def _default_epochs(n: int) -> int:
    """Passes for at least 1,000 optimiser steps of 128 images, and at least 2: 102 for the digits' ~1,400
    training images, 3 for Fashion-MNIST's 57,000 (about a minute on one busy CPU core)."""
    return max(2, math.ceil(1000 * 128 / max(n, 1)))


def load_or_train_classifier(images: np.ndarray, labels: np.ndarray, levels: int, *, dataset: str,
                             epochs: int | None = None, seed: int = 0, progress: bool = True,
                             cache: bool = True) -> tuple[nn.Module, Path | None]:
    """The cached classifier for this training data (trained and saved if missing), and its file."""
    from safetensors.torch import load_file, save_file

    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    epochs = _default_epochs(len(images)) if epochs is None else epochs
    recipe = {"arch": ARCH_VERSION, "dataset": dataset, "levels": levels, "shape": list(images.shape[1:]),
              "epochs": epochs, "batch_size": 128, "lr": 1e-3, "seed": seed}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    digest.update(images.tobytes())
    digest.update(labels.astype("<i8").tobytes())
    path = cache_dir() / f"image_cnn_{dataset}_K{levels}_arch{ARCH_VERSION}_{digest.hexdigest()[:16]}.safetensors"
    height, width = images.shape[1:]
    num_classes = max(int(labels.max()) + 1, 10)
    if cache and path.exists():
        model = ClassifierCNN(height, width, num_classes)
        model.load_state_dict(load_file(path))
        return model.eval(), path
    model = train_classifier(images, labels, levels, epochs=epochs, seed=seed, progress=progress)
    if not cache:
        return model, None
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata={k: str(v) for k, v in recipe.items()})
    os.replace(tmp, path)
    return model, path


def _forward(model: nn.Module, images: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, 128], class probabilities [N, C]) in float64, in fixed batches, under inference mode."""
    feats, probs = [], []
    with torch.inference_mode():
        for start in range(0, len(images), _BATCH):
            h = model.features(_inputs(images[start:start + _BATCH], levels))
            feats.append(h.double().numpy())
            probs.append(torch.softmax(model.head(h).double(), dim=-1).numpy())
    if not feats:
        return np.zeros((0, 128)), np.zeros((0, 10))
    return np.concatenate(feats), np.concatenate(probs)


def classifier_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, levels: int) -> float:
    """Fraction of ``images`` whose most probable class is the label."""
    _, probs = _forward(model, np.asarray(images), levels)
    return float((probs.argmax(axis=1) == np.asarray(labels)).mean())


def classifier_score(probs: np.ndarray) -> float:
    """``exp(mean_x KL(p(y|x) || p̂(y)))``, ``p̂ = mean_x p(y|x)``, natural log, for rows ``probs`` = p(y|x)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return math.nan
    marginal = probs.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(probs > 0, probs * (np.log(probs) - np.log(marginal)), 0.0).sum(axis=1)
    return float(np.exp(kl.mean()))


def class_entropy(probs: np.ndarray) -> float:
    """``H(p̂)`` in bits of ``p̂ = mean_x p(y|x)`` over the rows ``probs`` = p(y|x)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return math.nan
    marginal = probs.mean(axis=0)
    marginal = marginal[marginal > 0]
    return float(-(marginal * np.log2(marginal)).sum())


def fashion_mnist_classifier(levels: int = 16, *, seed: int = 0, progress: bool = True) -> tuple[nn.Module,
                                                                                                   float]:
    """The Fashion-MNIST classifier at K = ``levels`` (trained on the default split's training images and
    cached, or read from the cache) and its accuracy on the 10,000 official test images."""
    split = load_images("fashion_mnist", levels=levels)
    model, _ = load_or_train_classifier(split.arrays["train"], split.labels["train"], levels,
                                        dataset="fashion_mnist", seed=seed, progress=progress)
    return model, classifier_accuracy(model, split.arrays["test"], split.labels["test"], levels)


# ----------------------------------------------------------------------------------------------------
# Baseline and picture
# ----------------------------------------------------------------------------------------------------

def pixel_independent_samples(train_images: np.ndarray, levels: int, n: int, *, seed: int = 1) -> np.ndarray:
    """``n`` images whose pixels are drawn independently, each from its own marginal distribution of levels
    over ``train_images`` ((N, H, W) levels)."""
    train_images = np.asarray(train_images)
    _, height, width = train_images.shape
    flat = train_images.reshape(len(train_images), -1).astype(np.int64)
    counts = np.stack([np.bincount(flat[:, j], minlength=levels) for j in range(flat.shape[1])])  # [H·W, K]
    cdf = np.cumsum(counts / counts.sum(axis=1, keepdims=True), axis=1)
    u = np.random.default_rng(seed).random((n, flat.shape[1], 1))
    levels_drawn = np.minimum((u > cdf[None]).sum(axis=2), levels - 1)
    return levels_drawn.astype(np.uint8).reshape(n, height, width)


def save_image_grid(images: Sequence[np.ndarray] | np.ndarray, path: str | Path, levels: int, *,
                    columns: int | None = None, scale: int = 3, border: int = 1) -> Path:
    """Write a PNG grid of ``images`` ((H, W) level arrays, level ℓ shown as grey ℓ/(K−1)), each enlarged
    ``scale`` times, ``border`` white pixels between them."""
    from PIL import Image

    images = np.asarray(images)
    if images.ndim != 3 or not len(images):
        raise ValueError(f"save_image_grid needs a non-empty stack of (H, W) images, got shape {images.shape}")
    n, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    cell_h, cell_w = height * scale + border, width * scale + border
    canvas = np.full((rows * cell_h + border, columns * cell_w + border), 255, dtype=np.uint8)
    grey = np.clip(np.round(images.astype(np.float64) / (levels - 1) * 255), 0, 255).astype(np.uint8)
    big = grey.repeat(scale, axis=1).repeat(scale, axis=2)
    for i in range(n):
        r, c = divmod(i, columns)
        canvas[border + r * cell_h:border + r * cell_h + height * scale,
               border + c * cell_w:border + c * cell_w + width * scale] = big[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas, mode="L").save(path)
    return path


# ----------------------------------------------------------------------------------------------------
# Evaluator
# ----------------------------------------------------------------------------------------------------

class ImageEvaluator:
    """Computes :class:`ImageMetrics` for generated images (Fréchet distance in the features of scmdm's own
    CNN, not Inception FID).

    Args:
        train_images: the training images ((H, W) level arrays); the classifier is trained on them.
        reference_images: the held-out **test** images: reference feature statistics.
        train_labels: class labels of ``train_images``.
        levels: number of grey levels K.
        dataset: data set name, part of the classifier's cache key (e.g. ``fashion_mnist``).
        reference_labels: labels of ``reference_images``; when given, :attr:`test_accuracy` is measured.
        holdout_images: other real held-out images (the validation split) for :meth:`reference_row`.
        epochs: classifier training passes (default: enough for 1,000 steps, at least 2; 3 for Fashion-MNIST).
        seed: classifier training seed.
        cache: keep the trained classifier on disk (and reuse it).
    """

    def __init__(self, train_images: Sequence[np.ndarray] | np.ndarray, reference_images: Sequence[np.ndarray] |
                 np.ndarray, *, train_labels: Sequence[int] | np.ndarray, levels: int, dataset: str,
                 reference_labels: Sequence[int] | np.ndarray | None = None,
                 holdout_images: Sequence[np.ndarray] | np.ndarray | None = None, epochs: int | None = None,
                 seed: int = 0, cache: bool = True, progress: bool = True) -> None:
        self.train_images = np.asarray(train_images, dtype=np.uint8)
        self.reference_images = np.asarray(reference_images, dtype=np.uint8)
        self.train_labels = np.asarray(train_labels, dtype=np.int64)
        if self.train_images.ndim != 3 or self.reference_images.ndim != 3:
            raise ValueError(f"images must be stacks of (H, W) arrays, got shapes {self.train_images.shape} and "
                             f"{self.reference_images.shape}")
        if len(self.train_labels) != len(self.train_images):
            raise ValueError(f"{len(self.train_images)} training images but {len(self.train_labels)} labels")
        if len(self.reference_images) < 2:
            raise ValueError(f"need >= 2 reference images for a Fréchet distance, got {len(self.reference_images)}")
        self.levels, self.dataset, self.seed = levels, dataset, seed
        self.shape = tuple(self.train_images.shape[1:])
        self.holdout_images = None if holdout_images is None or not len(holdout_images) else np.asarray(
            holdout_images, dtype=np.uint8)
        self.reference_labels = None if reference_labels is None else np.asarray(reference_labels)
        self._epochs, self._cache, self._progress = epochs, cache, progress
        self._model: nn.Module | None = None
        self._ref_stats: tuple[np.ndarray, np.ndarray] | None = None
        self._accuracy: float | None = None
        self.classifier_file: Path | None = None

    @classmethod
    def from_split(cls, split: ImageSplit, **kwargs: object) -> ImageEvaluator:
        """Training images and labels, the test split as reference, the validation split for the reference row."""
        return cls(split.arrays["train"], split.arrays["test"], train_labels=split.labels["train"],
                   levels=split.levels, dataset=split.source, reference_labels=split.labels["test"],
                   holdout_images=split.arrays["valid"], **kwargs)

    @property
    def model(self) -> nn.Module:
        """The classifier, loaded from the cache or trained on first use."""
        if self._model is None:
            self._model, self.classifier_file = load_or_train_classifier(
                self.train_images, self.train_labels, self.levels, dataset=self.dataset, epochs=self._epochs,
                seed=self.seed, progress=self._progress, cache=self._cache)
        return self._model

    @property
    def test_accuracy(self) -> float:
        """The classifier's accuracy on the reference (test) images (nan without their labels)."""
        if self._accuracy is None:
            self._accuracy = (math.nan if self.reference_labels is None else
                              classifier_accuracy(self.model, self.reference_images, self.reference_labels,
                                                  self.levels))
        return self._accuracy

    def _reference_stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self._ref_stats is None:
            feats, _ = _forward(self.model, self.reference_images, self.levels)
            self._ref_stats = feats.mean(axis=0), np.cov(feats, rowvar=False)
        return self._ref_stats

    def _check(self, samples: np.ndarray) -> np.ndarray:
        if samples.ndim != 3 or tuple(samples.shape[1:]) != self.shape:
            raise ValueError(f"samples must be (H, W) = {self.shape} images, got a stack of shape {samples.shape}")
        if samples.size and samples.max() >= self.levels:
            raise ValueError(f"samples hold level {samples.max()}, but there are only {self.levels} levels "
                             f"(0..{self.levels - 1})")
        return samples

    def evaluate(self, samples: Sequence[np.ndarray] | np.ndarray) -> ImageMetrics:
        """Metrics of ``samples`` ((H, W) uint8 level arrays)."""
        samples = self._check(np.asarray(samples, dtype=np.uint8) if len(samples)
                              else np.zeros((0, *self.shape), np.uint8))
        feats, probs = _forward(self.model, samples, self.levels)
        fd = math.nan
        if len(samples) >= 2:
            mu_r, sigma_r = self._reference_stats()
            fd = frechet_distance(feats.mean(axis=0), np.cov(feats, rowvar=False), mu_r, sigma_r)
        return ImageMetrics(n_samples=len(samples), fd_cnn=fd, classifier_score=classifier_score(probs))

    def diversity(self, samples: Sequence[np.ndarray] | np.ndarray) -> dict[str, float]:
        """``feature_spread`` and ``class_entropy`` of ``samples`` (see the module docstring); nan for fewer than
        two samples."""
        samples = self._check(np.asarray(samples, dtype=np.uint8) if len(samples)
                              else np.zeros((0, *self.shape), np.uint8))
        if len(samples) < 2:
            return {"feature_spread": math.nan, "class_entropy": math.nan}
        feats, probs = _forward(self.model, samples, self.levels)
        _, sigma_r = self._reference_stats()
        spread = float(np.trace(np.cov(feats, rowvar=False)) / np.trace(sigma_r))
        return {"feature_spread": spread, "class_entropy": class_entropy(probs)}

    def _real(self, n: int, seed: int) -> np.ndarray:
        pool = self.holdout_images if self.holdout_images is not None else self.reference_images
        if len(pool) <= n:
            return pool
        return pool[np.sort(np.random.default_rng(seed).choice(len(pool), size=n, replace=False))]

    def reference_row(self, n: int = 1000, seed: int = 1) -> ImageMetrics:
        """The metrics of ``n`` real held-out images (all of them if there are fewer); see the module docstring."""
        return self.evaluate(self._real(n, seed))

    def baseline_rows(self, n: int = 1000, seed: int = 1) -> list[tuple[str, ImageMetrics]]:
        """``pixel-independent`` samples (each pixel from its own marginal over the training images), as many as
        :meth:`reference_row` has (``n``, or fewer when there are fewer held-out images): the Fréchet distance
        of a few samples is biased upwards, so rows are compared at one sample count."""
        samples = pixel_independent_samples(self.train_images, self.levels, len(self._real(n, seed)), seed=seed)
        return [("pixel-independent samples", self.evaluate(samples))]

    def classifier_summary(self) -> str:
        """Which images the CNN was trained on, and how good it is: ``fashion_mnist_14, K=16, classifier test ..."""
        accuracy = (f"classifier test accuracy {self.test_accuracy:.3f}" if self.reference_labels is not None else
                    "classifier accuracy not measured: the reference images have no labels")
        return f"{self.dataset}, K={self.levels}, {accuracy}"

    def note(self) -> str:
        """The line printed under every table: what ``fd_cnn`` is and how good the classifier is."""
        return (f"fd_cnn: {FD_NOTE} ({self.classifier_summary()}); classifier_score: "
                "exp E[KL(p(y|x) || p(y))] with the same CNN.")


def format_image_table(rows: Sequence[tuple[str, ImageMetrics | dict]], note: str = FD_NOTE,
                       columns: Sequence[str] = COLUMNS) -> str:
    """Markdown table of ``[(name, metrics), ...]`` in ``columns`` (4 significant digits), followed by ``note``
    (which says that ``fd_cnn`` is not Inception FID; pass :meth:`ImageEvaluator.note` to add the classifier's
    accuracy)."""
    def cell(value: object) -> object:
        return f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else value

    shown = [(name, {k: cell(v) for k, v in (m.as_dict() if isinstance(m, ImageMetrics) else m).items()})
             for name, m in rows]
    if FD_NOTE not in note:
        note = f"{note} ({FD_NOTE})"
    return format_table(shown, columns=columns) + "\n\n" + note
