"""The image domain: grey levels in raster order (``tokenizer``), Fashion-MNIST or scikit-learn's digits quantised
to K levels (``data``), the Fréchet distance in scmdm's own CNN features and a classifier score (``evaluator``),
``image.*`` options (``settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scmdm.domains.base import Domain
from scmdm.domains.image.data import image_split, prepare_images, read_pgm, read_pgm_images, write_pgm
from scmdm.domains.image.evaluator import FD_NOTE, ImageEvaluator, format_image_table, save_image_grid
from scmdm.domains.image.settings import ImageSettings, image_shape
from scmdm.domains.image.tokenizer import ImageTokenizer

__all__ = ["DOMAIN", "image_evaluator", "inpainting_templates", "save_inpainting_grid"]


def image_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *,
                    show_progress: bool = False, reference: str | None = None, **_: Any) -> ImageEvaluator:
    """Fréchet distance in the features of scmdm's own CNN (trained on the run's training images on first use and
    cached) against its test images (or the images of the PGM file ``reference``); the reference row from its
    validation images."""
    split = image_split(config)
    if split_info:  # an imported model ({}) has no split to check
        split.verify(split_info)
    test, labels = split.arrays["test"], split.labels["test"]
    name = f"the run's test images ({len(test):,})"
    if reference is not None:
        test = read_pgm_images(reference, split.levels, split.shape, key="--reference")
        labels, name = None, f"the {len(test):,} images of {reference}"
    evaluator = ImageEvaluator(split.arrays["train"], test, train_labels=split.labels["train"], levels=split.levels,
                               dataset=split.source, reference_labels=None if labels is None or (labels < 0).any()
                               else labels, holdout_images=split.arrays["valid"], progress=show_progress)
    evaluator.reference_name = name
    return evaluator


def _length(config: Any) -> int:
    height, width = image_shape(config.data)
    return height * width


def _writer(samples: Sequence[Any], path: Path, tokenizer: Any) -> None:
    """A raw PGM file of every sample at ``path`` and a PNG grid of the first 100 beside it (``.png``)."""
    if tokenizer is None:
        raise ValueError("writing image samples needs the model's tokenizer (its number of grey levels)")
    if path.suffix.lower() == ".png":
        raise ValueError(f"image samples are written as raw PGM (every sample, exact levels) with a PNG grid beside "
                         f"it: give --out {path.with_suffix('.pgm')}, not {path}")
    write_pgm(samples, path, tokenizer.levels)
    save_image_grid(list(samples)[:100], path.with_suffix(".png"), tokenizer.levels, columns=10)


def _reader(path: Path, tokenizer: Any) -> list[Any]:
    images, maxval = read_pgm(path)
    if tokenizer is not None:
        if maxval != tokenizer.levels - 1:
            raise ValueError(f"{path} holds images of {maxval + 1} grey levels (PGM maxval {maxval}) but the model has "
                             f"{tokenizer.levels}")
        if bad := [i for i, im in enumerate(images) if im.shape != (tokenizer.height, tokenizer.width)][:1]:
            raise ValueError(f"{path}: image #{bad[0] + 1} is {images[bad[0]].shape[1]}x{images[bad[0]].shape[0]} "
                             f"(W x H), the model's are {tokenizer.width}x{tokenizer.height}")
    return images


def _rows(rows: Sequence[tuple[str, dict]], columns: Sequence[str], evaluator: Any = None) -> str:
    return format_image_table(rows, evaluator.note() if evaluator is not None else FD_NOTE, columns=columns)


def inpainting_templates(images: Sequence[np.ndarray], tokenizer: Any, *,
                         region: tuple[int, int, int, int] | None = None,
                         mask: np.ndarray | None = None) -> torch.Tensor:
    """Canvases of ``images`` ((H, W) level arrays) with a region to inpaint: the rectangle ``region`` = (x0, y0, x1,
    y1) in pixels (x1, y1 excluded), or the nonzero pixels of ``mask`` (H, W)."""
    if (region is None) == (mask is None):
        raise ValueError("inpainting needs a region (x0,y0,x1,y1) or a mask image, not both")
    height, width = tokenizer.height, tokenizer.width
    if mask is None:
        x0, y0, x1, y1 = region
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"the region {region} is not a rectangle inside the {width}x{height} image "
                             "(x0,y0,x1,y1 with x0 < x1 <= W, y0 < y1 <= H)")
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = True
    mask = np.asarray(mask).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"the mask image is {mask.shape[1]}x{mask.shape[0]}, the model's images {width}x{height}")
    if not mask.any():
        raise ValueError("the mask image has no nonzero pixel: there is nothing to inpaint")
    canvases, _ = tokenizer.encode_many(list(images), height * width, where="the images to inpaint")
    return canvases.masked_fill(torch.from_numpy(mask.reshape(-1)), tokenizer.mask_id)


def save_inpainting_grid(templates: torch.Tensor, samples: Sequence[np.ndarray], path: Path, tokenizer: Any) -> Path:
    """A PNG: each template (the region to inpaint shown mid-grey) beside its filled sample."""
    shown = []
    for template, sample in zip(templates, samples, strict=True):
        given = tokenizer.decode(template)
        given = np.where(template.numpy().reshape(given.shape) == tokenizer.mask_id, (tokenizer.levels - 1) // 2, given)
        shown += [given.astype(np.uint8), np.asarray(sample, dtype=np.uint8)]
    return save_image_grid(shown[:200], path, tokenizer.levels, columns=10)


DOMAIN = Domain(
    name="image", default_source="fashion_mnist", tokenizers={ImageTokenizer.kind: ImageTokenizer},
    prepare=prepare_images, evaluator=image_evaluator, settings=ImageSettings, writer=_writer, reader=_reader,
    sample_suffix=".pgm", item_name="images", reference_label="real held-out images",
    table_columns=("n_samples", "fd_cnn", "classifier_score", "nfe", "seconds"),
    default_length=_length, format_rows=_rows)
