"""What a domain's data preparation returns (``scmdm.domains.prepare_data``): the tokenizer, the split and the token
tensors of each part, on canvases of ``data.max_length``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["PreparedData"]


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
