"""What every scmdm tokenizer is: ids on a fixed-length canvas, with the special ids laid out one way.

    id 0 = PAD,  id 1 = EOS,  ids 2 … V−2 = the domain's units,  id V−1 = MASK (the absorbing state, always last)

so ``mask_id = vocab_size − 1`` and ``vocab_size`` (MASK included) is the model's output width. A tokenizer is
stored as JSON (``to_dict`` with its ``kind``; never pickled), and two tokenizers are equal when their
serialisations are. Each domain's tokenizers subclass ``Tokenizer`` (``scmdm.domains.<domain>.tokenizer``) and
add ``encode_many`` (items → canvases, with an ``EncodeReport``) and ``decode`` (a canvas → an item).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["Tokenizer", "VocabularyTokenizer", "EncodeReport", "PAD", "EOS", "MASK", "TOO_LONG_ACTIONS"]

PAD, EOS, MASK = "<pad>", "<eos>", "<mask>"
#: what ``encode_many`` does with an item longer than the canvas
TOO_LONG_ACTIONS = ("error", "skip", "truncate")


@dataclass
class EncodeReport:
    """What ``encode_many`` did with items longer than the canvas."""

    total: int
    too_long: int = 0
    action: str = "error"  # error | skip | truncate
    longest: int = 0  # positions the longest item needs (EOS included where the layout has one)
    examples: list[str] = field(default_factory=list)  # the first few too-long items, with where they are

    def count_too_long(self, needed: int, example: str) -> None:
        """Count one item that needs ``needed`` positions, more than the canvas (``example`` says which)."""
        self.too_long += 1
        self.longest = max(self.longest, needed)
        if len(self.examples) < 4:
            self.examples.append(example)


class Tokenizer(ABC):
    """The base of every tokenizer (module docstring): special ids, equality and JSON persistence."""

    kind = ""

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def eos_id(self) -> int:
        return 1

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids including MASK (the model's output width)."""

    @abstractmethod
    def encode_many(self, items: Sequence[Any], length: int, *, too_long: str = "error", where: str = "data",
                    origins: Mapping[str, str] | None = None) -> tuple[torch.Tensor, EncodeReport]:
        """Items → a ``[N, length]`` long tensor of canvases, and what was done with too-long items."""

    @abstractmethod
    def decode(self, ids: Sequence[int] | torch.Tensor) -> Any:
        """One canvas → one item."""

    def decode_batch(self, ids: torch.Tensor) -> list[Any]:
        """One item per row of ``ids`` [N, L]."""
        return [self.decode(row) for row in ids.tolist()]

    @abstractmethod
    def to_dict(self) -> dict:
        """JSON-able description, holding ``kind``."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        """The tokenizer ``to_dict`` described (ValueError if it is not one of this class)."""

    @classmethod
    def check_kind(cls, data: dict) -> None:
        """ValueError unless ``data`` describes a tokenizer of this class."""
        if data.get("kind") != cls.kind:
            raise ValueError(f"tokenizer kind {data.get('kind')!r} is not {cls.kind!r}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class VocabularyTokenizer(Tokenizer):
    """A tokenizer whose vocabulary is a list of units, ``itos = [PAD, EOS, *units, MASK]`` (``stoi`` its inverse),
    stored as that list."""

    def __init__(self, units: Sequence[str]) -> None:
        specials = {PAD, EOS, MASK}
        body = [u for u in units if u not in specials]
        if len(set(body)) != len(body):
            raise ValueError("duplicate units in the vocabulary")
        self.itos: list[str] = [PAD, EOS, *body, MASK]
        self.stoi: dict[str, int] = {u: i for i, u in enumerate(self.itos)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "itos": self.itos}

    @classmethod
    def from_dict(cls, data: dict) -> VocabularyTokenizer:
        cls.check_kind(data)
        itos = data.get("itos")
        if not isinstance(itos, list) or itos[:2] != [PAD, EOS] or itos[-1:] != [MASK]:
            raise ValueError("tokenizer file is malformed: expected an itos list with <pad>, <eos> first and <mask> "
                             "last")
        return cls(itos[2:-1])
