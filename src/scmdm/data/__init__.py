"""Data sources, tokenized onto fixed-length canvases.

``prepare_data(config.data)`` is the one entry point: it loads the source, splits it, builds (or
checks against) the tokenizer and returns the token tensors of each split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scmdm.config import DataConfig
from scmdm.data.molecules import Split, load_molecules, split_molecules
from scmdm.tokenizers import SmilesTokenizer

__all__ = ["PreparedData", "prepare_data"]


@dataclass
class PreparedData:
    tokenizer: SmilesTokenizer
    split: Split
    train: torch.Tensor  # [N_train, L] long
    valid: torch.Tensor
    test: torch.Tensor


def prepare_data(config: DataConfig, tokenizer: SmilesTokenizer | None = None) -> PreparedData:
    """Load, split and tokenize. The tokenizer is built from the whole source unless one is given
    (e.g. from a checkpoint), in which case every molecule must fit its vocabulary."""
    molecules = load_molecules(config.source)
    split = split_molecules(molecules, source=config.source, seed=config.split_seed,
                            valid_fraction=config.valid_fraction, test_fraction=config.test_fraction)
    if tokenizer is None:
        tokenizer = SmilesTokenizer.build(molecules)
    train = split.train[: config.subset] if config.subset else split.train
    encode = tokenizer.encode_batch
    return PreparedData(tokenizer=tokenizer, split=split, train=encode(train, config.max_length),
                        valid=encode(split.valid, config.max_length), test=encode(split.test, config.max_length))
