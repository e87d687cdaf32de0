"""Text tokenizers: one id per character (``CharTokenizer``), byte-level BPE trained locally with Hugging Face
``tokenizers`` (``BpeTokenizer``), or a pretrained model's own Hugging Face tokenizer (``HfTokenizer``, e.g. GPT-2's
for MDLM's OpenWebText model). Both are ``scmdm.tokenizer.Tokenizer``\\ s:

    ids   0 = <pad>, 1 = <eos>, 2 … V−2 = the text units, V−1 = <mask> (always the last id)

Two canvas layouts:

* **Packed windows** (what ``scmdm.domains.text.data`` trains on): a split's text is encoded once, as one stream
  ``encode(text)``, and cut into consecutive windows of exactly L ids — every position holds text, there is no
  EOS and no PAD (the canvas is the window). A model trained this way essentially never emits EOS/PAD.
* **One item per canvas** (``encode_many``, as for SMILES): ``t₁ … t_n EOS PAD … PAD``, for variable-length
  items such as single verses; items longer than the canvas are an error, skipped or truncated.

``decode`` stops at the first EOS or PAD (so both layouts decode right) and renders MASK as ``?``.

BPE details: the pre-tokenizer is GPT-2's byte-level one (``add_prefix_space=False``), so any UTF-8 text
encodes and ``decode(encode(text)) == text`` exactly. Text is pre-split into lines (each keeping its
``\\n``) for training and encoding — a line break is always a token boundary; this makes encoding a 4 MB
book collection take ~2 s instead of ~8 s and changes nothing else. ``vocab_size`` counts every id, the three
specials included, so it is the model's output width; it must be at least 259 (256 bytes + 3 specials).
Training is deterministic for a given text and size. A tokenizer is stored as JSON (its HF serialisation inside
``tokenizer.json``), never pickled.

``HfTokenizer`` keeps a pretrained tokenizer's ids as they are and appends MASK as a new last id, as MDLM does
(GPT-2: 50,257 ids + MASK = 50257, vocabulary 50,258). Its EOS is the tokenizer's own end-of-text token (GPT-2's
``<|endoftext|>``, id 50256), which also serves as BOS and PAD; it is read from a ``tokenizer.json`` or from GPT-2's
``vocab.json`` + ``merges.txt``. Its text windows are packed the way MDLM packs OpenWebText
(``scmdm.domains.text.data.pack_windows``), and it decodes every id, special tokens included.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from scmdm.errors import TokenizerError
from scmdm.tokenizer import EOS, MASK, PAD, TOO_LONG_ACTIONS, EncodeReport, Tokenizer, VocabularyTokenizer

__all__ = ["CharTokenizer", "BpeTokenizer", "HfTokenizer", "TEXT_TOKENIZERS", "MIN_BPE_VOCAB", "EOS_CANDIDATES"]

MIN_BPE_VOCAB = 256 + 3
MASK_TEXT = "?"
#: the end-of-text tokens ``HfTokenizer`` looks for, in this order, when none is named
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")


def _label(index: int, text: str, origins: Mapping[str, str] | None) -> str:
    shown = text if len(text) <= 40 else text[:37] + "..."
    if origins and text in origins:
        return f"{origins[text]} {shown!r}"
    return f"item #{index + 1} {shown!r}"


def _canvases(encoded: Sequence[list[int]], items: Sequence[str], length: int, *, eos_id: int, pad_id: int,
              too_long: str, where: str, origins: Mapping[str, str] | None) -> tuple[torch.Tensor, EncodeReport]:
    """``t₁ … t_n EOS PAD …`` rows of ``length``; too-long items handled by ``too_long`` (error | skip | truncate)."""
    if too_long not in TOO_LONG_ACTIONS:
        raise ValueError(f"too_long must be error, skip or truncate, got {too_long!r}")
    report = EncodeReport(total=len(items), action=too_long)
    rows = []
    for index, ids in enumerate(encoded):
        ids = [*ids, eos_id]
        if len(ids) > length:
            report.count_too_long(len(ids), _label(index, items[index], origins))
            if too_long == "skip":
                continue
            ids = ids[:length - 1] + [eos_id]
        rows.append(ids + [pad_id] * (length - len(ids)))
    if report.too_long and too_long == "error":
        raise TokenizerError(f"{where}: {report.too_long} of {len(items)} items need more than the {length} canvas "
                             f"positions (the longest needs {report.longest}, EOS included; first: "
                             f"{', '.join(report.examples[:3])}); raise data.max_length or set too_long=skip "
                             "or truncate")
    tensor = torch.tensor(rows, dtype=torch.long) if rows else torch.empty(0, length, dtype=torch.long)
    return tensor, report


def _cut(ids: Sequence[int] | torch.Tensor, eos_id: int, pad_id: int) -> list[int]:
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    out = []
    for i in ids:
        if i in (eos_id, pad_id):
            break
        out.append(i)
    return out


class _TextTokenizer(Tokenizer):
    """What both text tokenizers add to ``Tokenizer``: one item per canvas, from ``encode(text)``."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` (no EOS, no PAD)."""

    def encode_many(self, items: Sequence[str], length: int, *, too_long: str = "error", where: str = "data",
                    origins: Mapping[str, str] | None = None) -> tuple[torch.Tensor, EncodeReport]:
        """One canvas per item, ``t₁ … t_n EOS PAD …`` (see the module docstring; packed windows are made by
        ``scmdm.domains.text.data.pack_windows``)."""
        return _canvases([self.encode(item) for item in items], items, length, eos_id=self.eos_id,
                         pad_id=self.pad_id, too_long=too_long, where=where, origins=origins)


class CharTokenizer(_TextTokenizer, VocabularyTokenizer):
    """One id per character: ``<pad>``, ``<eos>``, the sorted characters of the corpus, ``<mask>``."""

    kind = "char"

    def __init__(self, characters: Iterable[str]) -> None:
        chars = list(characters)
        if any(len(c) != 1 for c in chars):
            raise ValueError(f"characters must be single characters, got {[c for c in chars if len(c) != 1][:5]}")
        super().__init__(chars)

    @classmethod
    def build(cls, corpus: Iterable[str]) -> CharTokenizer:
        """Vocabulary = every character in ``corpus``, sorted (by code point) for determinism."""
        seen: set[str] = set()
        for text in corpus:
            seen.update(text)
        return cls(sorted(seen))

    def encode(self, text: str) -> list[int]:
        """One id per character; a character outside the vocabulary is an error naming it and its position."""
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unknown = Counter(c for c in text if c not in stoi)
            first = next(i for i, c in enumerate(text) if c not in stoi)
            context = text[max(0, first - 20):first + 20]
            raise TokenizerError(f"{len(unknown)} character(s) not in the {len(self.itos) - 3}-character vocabulary: "
                                 f"{sorted(unknown)} (first at position {first}: {context!r})") from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        mask = self.mask_id
        return "".join(MASK_TEXT if i == mask else self.itos[i] for i in _cut(ids, self.eos_id, self.pad_id))


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _hf_from_json(serialised: dict) -> Any:
    """A Hugging Face ``tokenizers.Tokenizer`` from its JSON serialisation (``Tokenizer.to_str()`` parsed)."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(json.dumps(serialised))
    except Exception as err:  # the Rust side raises its own exception type
        raise ValueError(f"not a Hugging Face tokenizer serialisation: {err}") from None


def _decode_around_masks(hf: Any, ids: Iterable[int], mask_id: int) -> str:
    """Decode ``ids`` with the Hugging Face tokenizer ``hf``, each ``mask_id`` rendered as ``MASK_TEXT`` (the runs
    between masks are decoded whole, so multi-byte pieces join up)."""
    out, run = [], []
    for i in ids:
        if i == mask_id:
            out += [hf.decode(run, skip_special_tokens=False), MASK_TEXT]
            run = []
        else:
            run.append(i)
    out.append(hf.decode(run, skip_special_tokens=False))
    return "".join(out)


class BpeTokenizer(_TextTokenizer):
    """Byte-level BPE (Hugging Face ``tokenizers``), trained with :meth:`train`; see the module docstring."""

    kind = "bpe"

    def __init__(self, hf: Any) -> None:
        if hf.token_to_id(PAD) != 0 or hf.token_to_id(EOS) != 1 or hf.token_to_id(MASK) != hf.get_vocab_size() - 1:
            raise ValueError("BPE tokenizer is malformed: expected <pad> = 0, <eos> = 1 and <mask> = the last id")
        self.hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> BpeTokenizer:
        """Learn ``vocab_size − 3`` byte-level units and merges from ``texts`` (fewer if the text runs out of
        pairs seen ``min_frequency`` times), then add ``<mask>`` as the last id."""
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < MIN_BPE_VOCAB:
            raise ValueError(f"a byte-level BPE vocabulary needs at least {MIN_BPE_VOCAB} ids (256 bytes + <pad>, "
                             f"<eos>, <mask>), got text.vocab_size={vocab_size}")
        hf = HfTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=min_frequency, show_progress=False,
                                      special_tokens=[PAD, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator((line for text in texts for line in _lines(text)), trainer)
        hf.add_special_tokens([MASK])
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return [i for e in self.hf.encode_batch(_lines(text), add_special_tokens=False) for i in e.ids]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of the ids up to the first EOS/PAD; MASK renders as ``?`` (byte-level pieces that do not form
        whole UTF-8 characters, e.g. at a window's edge, decode to U+FFFD)."""
        return _decode_around_masks(self.hf, _cut(ids, self.eos_id, self.pad_id), self.mask_id)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.hf.to_str())}

    @classmethod
    def from_dict(cls, data: dict) -> BpeTokenizer:
        cls.check_kind(data)
        return cls(_hf_from_json(data["tokenizer"]))



class HfTokenizer(_TextTokenizer):
    """A pretrained Hugging Face tokenizer with MASK appended (module docstring)."""

    kind = "hf"

    def __init__(self, hf: Any, eos_token: str | None = None) -> None:
        self.hf = hf
        self.base_size = hf.get_vocab_size(with_added_tokens=True)
        names = (eos_token,) if eos_token else EOS_CANDIDATES
        found = [(name, hf.token_to_id(name)) for name in names if hf.token_to_id(name) is not None]
        if not found:
            raise ValueError(f"the tokenizer has no end-of-text token (looked for {', '.join(names)})")
        self.eos_token, self._eos_id = found[0]

    @classmethod
    def from_path(cls, path: str | Path, eos_token: str | None = None) -> HfTokenizer:
        """From a ``tokenizer.json`` file, or a folder holding one or GPT-2's ``vocab.json`` + ``merges.txt``."""
        from tokenizers import Tokenizer as HfTokenizerModel
        from tokenizers import decoders, models, pre_tokenizers

        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if file.name.endswith(".json") and file.exists() and file.name != "vocab.json":
            try:
                return cls(HfTokenizerModel.from_file(str(file)), eos_token)
            except Exception as err:  # the Rust side raises its own exception type
                raise ValueError(f"{file} is not a Hugging Face tokenizer.json: {err}") from None
        folder = path if path.is_dir() else path.parent
        vocab, merges = folder / "vocab.json", folder / "merges.txt"
        if not (vocab.exists() and merges.exists()):
            raise FileNotFoundError(f"no tokenizer at {path}: expected a tokenizer.json, or GPT-2's vocab.json and "
                                    "merges.txt")
        hf = HfTokenizerModel(models.BPE.from_file(str(vocab), str(merges)))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        specials = [name for name in EOS_CANDIDATES if hf.token_to_id(name) is not None]
        hf.add_special_tokens(specials)  # already in the vocabulary: they keep their ids and are never split
        return cls(hf, eos_token)

    @property
    def vocab_size(self) -> int:
        return self.base_size + 1

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def pad_id(self) -> int:
        return self._eos_id

    @property
    def bos_id(self) -> int:
        return self._eos_id

    def encode(self, text: str) -> list[int]:
        try:
            return self.hf.encode(text, add_special_tokens=False).ids
        except Exception as err:  # the Rust side raises its own exception type (e.g. no [UNK] for a new character)
            raise TokenizerError(f"the tokenizer cannot encode this text ({err}); first characters: "
                                 f"{text[:40]!r}") from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Every id, special tokens included; MASK renders as ``?``."""
        return _decode_around_masks(self.hf, ids.tolist() if isinstance(ids, torch.Tensor) else ids, self.mask_id)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.hf.to_str()), "eos_token": self.eos_token}

    @classmethod
    def from_dict(cls, data: dict) -> HfTokenizer:
        cls.check_kind(data)
        return cls(_hf_from_json(data["tokenizer"]), data.get("eos_token"))

    def __repr__(self) -> str:
        return f"HfTokenizer(vocab_size={self.vocab_size}, eos={self.eos_token!r})"


#: ``text.tokenizer`` → class
TEXT_TOKENIZERS: dict[str, type[_TextTokenizer]] = {"char": CharTokenizer, "bpe": BpeTokenizer, "hf": HfTokenizer}
