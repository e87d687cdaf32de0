"""Tokenizers that put sequences of any length on one fixed-length canvas.

Canvas layout (length L):   t₁ t₂ … t_n EOS PAD PAD … PAD      (n + 1 ≤ L)

EOS and PAD are real tokens the model learns to generate; MASK is the absorbing state and is always
the last id. Decoding stops at the first EOS (or PAD, for robustness); anything after it is ignored.

SMILES are split with the usual regular expression (Schwaller et al. 2019): bracket atoms as one
token (``[nH]``, ``[NH3+]``), two-letter elements (``Cl``, ``Br``), ring-bond digits (``1``, ``%12``),
bonds, branches. Text that the expression does not cover completely is an error naming the molecule
and the offending characters, never a silent drop.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import torch

from scmdm.errors import TokenizerError
from scmdm.tokenizer import EOS, MASK, PAD, TOO_LONG_ACTIONS, EncodeReport, VocabularyTokenizer

__all__ = ["SmilesTokenizer", "SMILES_REGEX"]

SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)


def _where(index: int, smiles: str, origins: Mapping[str, str] | None) -> str:
    if origins and smiles in origins:
        return f"{origins[smiles]} {smiles!r}"
    return f"molecule #{index + 1} {smiles!r}"


def _first(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def _check_corpus(smiles: Sequence[str], stoi: Mapping[str, int] | None, *, where: str,
                  origins: Mapping[str, str] | None, vocab_tokens: int = 0) -> None:
    specials = {PAD, EOS, MASK}
    bad_chars: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    examples: list[str] = []
    count = 0
    for index, text in enumerate(smiles):
        tokens = SMILES_REGEX.findall(text)
        if "".join(tokens) != text:
            bad_chars.update(set(SMILES_REGEX.sub("", text)))
        elif stoi is not None and (missing := {t for t in tokens if t not in stoi or t in specials}):
            unknown.update(missing)
        else:
            continue
        count += 1
        if len(examples) < 4:
            examples.append(_where(index, text, origins))
    if not count:
        return
    parts = []
    if bad_chars:
        parts.append(f"characters that are not SMILES tokens {sorted(bad_chars)}")
    if unknown:
        parts.append(f"tokens not in the {vocab_tokens}-token vocabulary " + ", ".join(
            f"{t!r} (in {n})" for t, n in sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0]))))
    raise TokenizerError(f"{where}: {count} of {len(smiles)} SMILES contain {' and '.join(parts)}; "
                         f"first: {_first(examples)}")


class SmilesTokenizer(VocabularyTokenizer):
    """Regex SMILES tokenizer with PAD (id 0), EOS (id 1), the corpus tokens, and MASK (last id)."""

    kind = "smiles"

    @classmethod
    def build(cls, corpus: Iterable[str]) -> SmilesTokenizer:
        """Vocabulary = every token seen in ``corpus``, sorted for determinism."""
        corpus = list(corpus)
        seen: set[str] = set()
        for smiles in corpus:
            tokens = SMILES_REGEX.findall(smiles)
            if "".join(tokens) != smiles:
                _check_corpus(corpus, None, where="corpus", origins=None)  # raises, listing every bad one
            seen.update(tokens)
        return cls(sorted(seen))

    # ---- text <-> tokens ----------------------------------------------------------------------
    @staticmethod
    def split(smiles: str) -> list[str]:
        tokens = SMILES_REGEX.findall(smiles)
        if "".join(tokens) != smiles:
            covered = [False] * len(smiles)
            position = 0
            for token in tokens:
                position = smiles.index(token, position)
                covered[position:position + len(token)] = [True] * len(token)
                position += len(token)
            bad = sorted({smiles[i] for i, ok in enumerate(covered) if not ok})
            raise TokenizerError(f"SMILES {smiles!r} contains characters that are not SMILES tokens: {bad}")
        return tokens

    def encode(self, smiles: str, length: int | None = None) -> list[int]:
        """Token ids followed by EOS, padded with PAD to ``length`` when given."""
        ids = []
        for token in self.split(smiles):
            if token not in self.stoi or token in (PAD, EOS, MASK):
                raise TokenizerError(f"SMILES {smiles!r}: token {token!r} is not in the vocabulary "
                                     f"({len(self.itos) - 3} tokens, built from the training corpus)")
            ids.append(self.stoi[token])
        ids.append(self.eos_id)
        if length is not None:
            if len(ids) > length:
                raise TokenizerError(f"SMILES {smiles!r} needs {len(ids)} positions (with EOS) but the "
                                     f"canvas has {length}")
            ids += [self.pad_id] * (length - len(ids))
        return ids

    def encode_batch(self, smiles: Sequence[str], length: int) -> torch.Tensor:
        """[N, length] long tensor of canvases."""
        return torch.tensor([self.encode(s, length) for s in smiles], dtype=torch.long)

    def check(self, smiles: Sequence[str], *, where: str = "data", origins: Mapping[str, str] | None = None,
              vocabulary: bool = True) -> None:
        """Raise one TokenizerError for a whole corpus: which characters are not SMILES tokens and which
        tokens are not in the vocabulary (``vocabulary=False``: characters only), in how many sequences,
        and the first few of them (with ``origins[smiles]``, e.g. ``file:line``, when given)."""
        _check_corpus(smiles, self.stoi if vocabulary else None, where=where, origins=origins,
                      vocab_tokens=len(self.itos) - 3)

    def encode_many(self, smiles: Sequence[str], length: int, *, too_long: str = "error", where: str = "data",
                    origins: Mapping[str, str] | None = None) -> tuple[torch.Tensor, EncodeReport]:
        """Encode a corpus, checking all of it before failing (see ``check``).

        Sequences longer than the canvas are an error (``too_long="error"``), dropped (``"skip"``) or cut
        to ``length - 1`` tokens + EOS (``"truncate"``); the report counts them."""
        if too_long not in TOO_LONG_ACTIONS:
            raise ValueError(f"too_long must be error, skip or truncate, got {too_long!r}")
        rows: list[list[int]] = []
        report = EncodeReport(total=len(smiles), action=too_long)
        stoi, specials = self.stoi, (PAD, EOS, MASK)
        for index, text in enumerate(smiles):
            tokens = SMILES_REGEX.findall(text)
            if "".join(tokens) != text or any(t not in stoi or t in specials for t in tokens):
                self.check(smiles, where=where, origins=origins)  # raises, listing every bad sequence
            ids = [stoi[t] for t in tokens] + [self.eos_id]
            if len(ids) > length:
                report.count_too_long(len(ids), _where(index, text, origins))
                if too_long == "skip":
                    continue
                ids = ids[:length - 1] + [self.eos_id]
            rows.append(ids + [self.pad_id] * (length - len(ids)))
        if report.too_long and too_long == "error":
            raise TokenizerError(f"{where}: {report.too_long} of {len(smiles)} SMILES need more than the {length} "
                                 f"canvas positions (the longest needs {report.longest}, EOS included; first: "
                                 f"{_first(report.examples)}); raise data.max_length to {report.longest}, or set "
                                 f"molecule.too_long=skip (drop them) or molecule.too_long=truncate")
        tensor = torch.tensor(rows, dtype=torch.long) if rows else torch.empty(0, length, dtype=torch.long)
        return tensor, report

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Tokens up to the first EOS/PAD joined into a string; MASK renders as '?'."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if i in (self.eos_id, self.pad_id):
                break
            out.append("?" if i == self.mask_id else self.itos[i])
        return "".join(out)
