"""What a domain's data preparation returns (``scmdm.domains.prepare_data``): the tokenizer, the split and the token
tensors of each part, on canvases of ``data.max_length`` — and how ``data.max_length=auto`` sizes that canvas from
the training items' lengths (``auto_length``: the ``data.length_percentile`` percentile, nearest rank)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["PreparedData", "auto_length"]


def auto_length(lengths: Sequence[int], percentile: float) -> int:
    """The smallest canvas that holds ``percentile`` % of the items of these lengths: the nearest-rank percentile
    (the ⌈p/100·N⌉-th smallest length; 100 = the longest), at least 2. By hand: lengths 3, 9, 4, 7 → 9 at 100,
    7 at 75, 4 at 50."""
    if not lengths:
        raise ValueError("data.max_length=auto needs at least one training item")
    ordered = sorted(lengths)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return max(2, ordered[rank - 1])


@dataclass
class PreparedData:
    tokenizer: Any  # the domain's tokenizer (scmdm.tokenizer.Tokenizer)
    split: Any  # the domain's split of items (has verify(dict) and either info() or info.to_dict())
    train: torch.Tensor  # [N_train, L] long
    valid: torch.Tensor
    test: torch.Tensor
    notes: list[str] = field(default_factory=list)  # e.g. "skipped 12 of 130744 molecules longer than ..."

    @property
    def split_info(self) -> dict:
        """The split's JSON description (saved as split.json with every checkpoint)."""
        info = self.split.info
        return info() if callable(info) else info.to_dict()
