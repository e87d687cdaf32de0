"""Image tokenizer: grey levels in raster-scan order on a canvas of exactly H·W positions.

Vocabulary (K + 3 ids for K grey levels):  PAD=0  EOS=1  level 0 = 2 … level K−1 = K+1  MASK=K+2

An image is a ``uint8`` array of shape (H, W) holding grey *levels* ``0 … K−1`` (not 0…255 intensities; see
:mod:`scmdm.domains.image.data` for the quantisation). Its canvas is the levels row by row — pixel (r, c) at
position ``r·W + c`` — with no EOS and no PAD: every image fills the canvas exactly. PAD and EOS keep their
ids only so that every scmdm tokenizer has the same layout; a model trained on images learns never to
produce them. When decoding, PAD, EOS and MASK become level 0 (black), and :meth:`ImageTokenizer.count_special`
says how many of them a batch held.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from scmdm.errors import TokenizerError
from scmdm.tokenizer import EOS, MASK, PAD, TOO_LONG_ACTIONS, EncodeReport, Tokenizer

__all__ = ["ImageTokenizer"]

_FIRST_LEVEL_ID = 2


class ImageTokenizer(Tokenizer):
    """K grey levels of an H×W image in raster-scan order (see the module docstring)."""

    kind = "image"

    def __init__(self, levels: int, height: int, width: int) -> None:
        if not 2 <= levels <= 256:
            raise ValueError(f"an image tokenizer needs 2..256 grey levels, got {levels}")
        if height < 1 or width < 1:
            raise ValueError(f"image height and width must be positive, got {height}x{width}")
        self.levels, self.height, self.width = int(levels), int(height), int(width)

    @property
    def vocab_size(self) -> int:
        """Number of ids including MASK (the model's output width): K + 3."""
        return self.levels + 3

    @property
    def canvas(self) -> int:
        """Canvas length H·W."""
        return self.height * self.width

    @property
    def itos(self) -> list[str]:
        return [PAD, EOS, *(str(v) for v in range(self.levels)), MASK]

    def encode_many(self, items: Sequence[np.ndarray], length: int, *, too_long: str = "error", where: str = "data",
                    origins: Mapping[str, str] | None = None) -> tuple[torch.Tensor, EncodeReport]:
        """Encode images as a ``[N, H·W]`` long tensor. ``length`` must be H·W (an image is never cut or padded,
        so ``too_long`` has nothing to do); an image of another shape or with a level outside ``0 … K−1`` is an
        error naming it (``origins`` is accepted for the common interface and not used: images have no text)."""
        if too_long not in TOO_LONG_ACTIONS:
            raise ValueError(f"too_long must be error, skip or truncate, got {too_long!r}")
        if length != self.canvas:
            raise TokenizerError(f"{where}: an image canvas is H·W = {self.height}·{self.width} = {self.canvas} "
                                 f"positions, but the canvas length asked for is {length} (set data.max_length to "
                                 f"{self.canvas})")
        report = EncodeReport(total=len(items), action=too_long)
        if not len(items):
            return torch.empty(0, length, dtype=torch.long), report
        for index, image in enumerate(items):
            shape = np.shape(image)
            if shape not in ((self.height, self.width), (self.canvas,)):
                raise TokenizerError(f"{where}: image #{index + 1} has shape {shape}, expected ({self.height}, "
                                     f"{self.width})")
        array = np.stack([np.asarray(image).reshape(-1) for image in items]).astype(np.int64)
        bad = np.flatnonzero((array < 0).any(axis=1) | (array >= self.levels).any(axis=1))
        if len(bad):
            first = bad[0]
            raise TokenizerError(f"{where}: {len(bad)} of {len(items)} images hold values outside the grey levels "
                                 f"0..{self.levels - 1} (image #{first + 1} holds {array[first].min()}.."
                                 f"{array[first].max()}); quantise them first (scmdm.domains.image.data.quantize)")
        return torch.from_numpy(array + _FIRST_LEVEL_ID), report

    def encode(self, image: np.ndarray, length: int | None = None) -> list[int]:
        return self.encode_many([image], self.canvas if length is None else length)[0][0].tolist()

    def decode_batch(self, ids: torch.Tensor) -> list[np.ndarray]:
        """One ``uint8`` (H, W) array of grey levels per row; PAD, EOS and MASK become level 0."""
        if ids.ndim != 2 or ids.shape[1] != self.canvas:
            raise ValueError(f"decode_batch needs a [N, {self.canvas}] tensor, got shape {tuple(ids.shape)}")
        array = ids.detach().cpu().numpy().astype(np.int64)
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {array.min()}..{array.max()}")
        levels = np.where((array >= _FIRST_LEVEL_ID) & (array < self.mask_id), array - _FIRST_LEVEL_ID, 0)
        images = levels.astype(np.uint8).reshape(-1, self.height, self.width)
        return list(images)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> np.ndarray:
        return self.decode_batch(torch.as_tensor(ids).reshape(1, -1))[0]

    def count_special(self, ids: torch.Tensor) -> int:
        """How many positions hold PAD, EOS or MASK (decoded as level 0)."""
        return int(((ids < _FIRST_LEVEL_ID) | (ids >= self.mask_id)).sum())

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": self.kind, "levels": self.levels, "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, data: dict) -> ImageTokenizer:
        cls.check_kind(data)
        try:
            return cls(int(data["levels"]), int(data["height"]), int(data["width"]))
        except KeyError as missing:
            raise ValueError(f"image tokenizer file is malformed: no {missing}") from None

    def __repr__(self) -> str:
        return f"ImageTokenizer(levels={self.levels}, {self.height}x{self.width}, vocab_size={self.vocab_size})"
