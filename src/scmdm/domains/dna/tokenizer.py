"""DNA tokenizer: the four bases on a fixed-length canvas.

Vocabulary (7 ids):  PAD=0  EOS=1  A=2  C=3  G=4  T=5  MASK=6      (MASK is always the last id)

A DNA window fills its canvas exactly: a window of L bases is the canvas ``b₁ b₂ … b_L`` with no EOS and no
PAD (the windows of one data set all have the same length, so there is nothing to terminate). PAD and EOS
keep their ids only so that every scmdm tokenizer has the same layout; a model trained on windows learns
never to produce them. When decoding, PAD, EOS and MASK all become ``N`` (the IUPAC "any base"), so a
sample never silently loses or gains length; the DNA evaluator counts samples with ``N`` as not valid.

Input must be upper-case ``A C G T`` only (the loader in :mod:`scmdm.domains.dna.data` drops windows holding
anything else); other characters are an error naming them and the windows that hold them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from scmdm.errors import TokenizerError
from scmdm.tokenizer import TOO_LONG_ACTIONS, EncodeReport, VocabularyTokenizer

__all__ = ["DnaTokenizer", "BASES"]

BASES = "ACGT"
_FIRST_BASE_ID = 2
_INVALID = 255
_ENCODE = np.full(256, _INVALID, dtype=np.uint8)  # byte -> token id
for _i, _b in enumerate(BASES.encode()):
    _ENCODE[_b] = _FIRST_BASE_ID + _i
_DECODE = np.frombuffer(b"NN" + BASES.encode() + b"N", dtype=np.uint8)  # token id -> byte


def _where(index: int, item: str, origins: Mapping[str, str] | None) -> str:
    if origins and item in origins:
        return origins[item]
    return f"window #{index + 1} ({item[:12]}{'...' if len(item) > 12 else ''})"


class DnaTokenizer(VocabularyTokenizer):
    """``A C G T`` tokens on a canvas of exactly the window length (see the module docstring)."""

    kind = "dna"

    def __init__(self, units: Sequence[str] = tuple(BASES)) -> None:
        if list(units) != list(BASES):
            raise ValueError(f"DNA tokenizer file is malformed: its units {list(units)} are not {list(BASES)}")
        super().__init__(units)

    def encode_many(self, items: Sequence[str], length: int, *, too_long: str = "error", where: str = "data",
                    origins: Mapping[str, str] | None = None) -> tuple[torch.Tensor, EncodeReport]:
        """Encode DNA windows as a ``[N, length]`` long tensor.

        Every window must have exactly ``length`` bases, or more: longer ones are an error
        (``too_long="error"``), dropped (``"skip"``) or cut to their first ``length`` bases (``"truncate"``).
        Shorter windows and characters other than ``A C G T`` are errors listing how many windows and the
        first few of them (``origins[item]``, when given, says where one came from)."""
        if too_long not in TOO_LONG_ACTIONS:
            raise ValueError(f"too_long must be error, skip or truncate, got {too_long!r}")
        if length < 1:
            raise ValueError(f"the canvas length must be at least 1, got {length}")
        report = EncodeReport(total=len(items), action=too_long)
        short, bad, bad_chars = [], [], set()
        kept = []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise TokenizerError(f"{where}: DNA window #{index + 1} is a {type(item).__name__}, not a str")
            if len(item) < length:
                short.append(index)
                continue
            if len(item) > length:
                report.count_too_long(len(item), _where(index, item, origins))
                if too_long == "skip":
                    continue
                item = item[:length]
            kept.append(item)
            if item.strip(BASES):  # fast path: a pure-ACGT window strips to ""
                chars = set(item) - set(BASES)
                if chars:
                    bad.append(index)
                    bad_chars |= chars
        if short:
            first = ", ".join(_where(i, items[i], origins) + f" has {len(items[i])}" for i in short[:3])
            raise TokenizerError(f"{where}: {len(short)} of {len(items)} DNA windows are shorter than the "
                                 f"{length}-base canvas (a DNA window fills its canvas exactly; first: {first})")
        if bad:
            first = ", ".join(_where(i, items[i], origins) for i in bad[:3])
            raise TokenizerError(f"{where}: {len(bad)} of {len(items)} DNA windows contain characters other than "
                                 f"A, C, G, T: {sorted(bad_chars)} (first: {first}); scmdm.domains.dna.data drops such "
                                 "windows")
        if report.too_long and too_long == "error":
            raise TokenizerError(f"{where}: {report.too_long} of {len(items)} DNA windows are longer than the {length}-"
                                 f"base canvas (the longest has {report.longest}; first: "
                                 f"{', '.join(report.examples[:3])}); set data.max_length to the window length, or "
                                 f"too_long=skip or truncate")
        if not kept:
            return torch.empty(0, length, dtype=torch.long), report
        raw = np.frombuffer("".join(kept).encode("ascii"), dtype=np.uint8)
        ids = _ENCODE[raw].reshape(len(kept), length)
        return torch.from_numpy(ids.astype(np.int64)), report

    def encode(self, item: str, length: int | None = None) -> list[int]:
        """Token ids of one window (``length`` defaults to its own length)."""
        return self.encode_many([item], len(item) if length is None else length)[0][0].tolist()

    def decode_batch(self, ids: torch.Tensor) -> list[str]:
        """One string per row; PAD, EOS and MASK become ``N``."""
        if ids.ndim != 2:
            raise ValueError(f"decode_batch needs a [N, L] tensor, got shape {tuple(ids.shape)}")
        array = ids.detach().cpu().numpy()
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got {array.min()}..{array.max()}")
        text = _DECODE[array].tobytes().decode("ascii")
        width = array.shape[1]
        return [text[i * width:(i + 1) * width] for i in range(array.shape[0])]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self.decode_batch(torch.as_tensor(ids).reshape(1, -1))[0]
