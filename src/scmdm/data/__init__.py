"""Data sources, tokenized onto fixed-length canvases.

``prepare_data(config.data)`` is the one entry point: it loads the source, splits it, builds (or
checks against) the tokenizer and returns the token tensors of each split. What that means for each
``data.domain`` is in ``scmdm.domains`` (molecules: ``prepare_molecules`` below; text: ``scmdm.data.text``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from scmdm.config import DataConfig
from scmdm.data.molecules import load_molecules, split_molecules
from scmdm.tokenizers import SmilesTokenizer, TokenizerError

__all__ = ["PreparedData", "prepare_data", "prepare_molecules"]


@dataclass
class PreparedData:
    tokenizer: Any  # SmilesTokenizer, CharTokenizer, BpeTokenizer, ... (the domain's)
    split: Any  # molecules: data.molecules.Split; text: data.text.TextSplit; ... (has verify(dict))
    train: torch.Tensor  # [N_train, L] long
    valid: torch.Tensor
    test: torch.Tensor
    notes: list[str] = field(default_factory=list)  # e.g. "skipped 12 of 130744 molecules longer than ..."

    @property
    def split_info(self) -> dict:
        """The split's JSON description (saved as split.json with every checkpoint)."""
        info = self.split.info
        return info() if callable(info) else info.to_dict()


def prepare_data(config: DataConfig, tokenizer: Any = None, *, quiet: bool = False) -> PreparedData:
    """Load, split and tokenize ``config.domain``'s data (see ``scmdm.domains``); with ``tokenizer`` (e.g. from
    a checkpoint) the data must fit it, otherwise it is built from the data."""
    from scmdm.domains import get_domain

    return get_domain(config.domain).prepare(config, tokenizer, quiet=quiet)


def prepare_molecules(config: DataConfig, tokenizer: SmilesTokenizer | None = None, *,
                      quiet: bool = False) -> PreparedData:
    """Load, split and tokenize molecules. The tokenizer is built from the whole source unless one is given
    (e.g. from a checkpoint), in which case every molecule must fit its vocabulary: all of them are
    checked and the error lists the unknown tokens, how many molecules hold them and where.

    Molecules longer than the canvas (``data.max_length``) are handled by ``data.too_long``; what was
    skipped or truncated is counted in ``notes`` (and printed to stderr unless ``quiet``)."""
    origins: dict[str, str] = {}
    source = config.resolved_source
    molecules = load_molecules(source, origins=origins)
    split = split_molecules(molecules, source=source, seed=config.split_seed,
                            valid_fraction=config.valid_fraction, test_fraction=config.test_fraction)
    if tokenizer is None:
        tokenizer = SmilesTokenizer.build(molecules)
    train = split.train[: config.subset] if config.subset else split.train
    # with too_long=error, count over all splits first (as if skipping), so that the error has the totals
    policy = "skip" if config.too_long == "error" else config.too_long
    tensors, reports = {}, {}
    for name, part in (("train", train), ("valid", split.valid), ("test", split.test)):
        try:
            tensors[name], reports[name] = tokenizer.encode_many(part, config.max_length, too_long=policy,
                                                                 origins=origins)
        except TokenizerError:  # say it for every molecule of the source at once, not one split
            tokenizer.check(molecules, where=f"data.source={source}", origins=origins)
            raise
    n_long = sum(r.too_long for r in reports.values())
    total, longest = sum(r.total for r in reports.values()), max(r.longest for r in reports.values())
    per_split = ", ".join(f"{name} {r.too_long}" for name, r in reports.items())
    examples = [e for r in reports.values() for e in r.examples]
    notes = []
    if n_long and config.too_long == "error":
        raise TokenizerError(f"data.source={source}: {n_long} of {total} molecules need more than the "
                             f"{config.max_length} canvas positions ({per_split}; the longest needs {longest}, EOS "
                             f"included; first: {', '.join(examples[:3])}); raise data.max_length to {longest}, or "
                             f"set data.too_long=skip (drop them) or data.too_long=truncate")
    if n_long:
        verb = "skipped" if config.too_long == "skip" else "truncated"
        notes.append(f"{verb} {n_long} of {total} molecules longer than the {config.max_length}-token canvas "
                     f"({per_split}; the longest needs {longest}; data.too_long={config.too_long})")
    if len(tensors["train"]) == 0:
        raise ValueError(f"no training molecules are left from {source} ({'; '.join(notes)})")
    if not quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return PreparedData(tokenizer=tokenizer, split=split, notes=notes, **tensors)
