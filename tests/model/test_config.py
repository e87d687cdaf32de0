"""Tests of scmdm.model.BackboneConfig: the architecture's checks, each naming what is wrong."""

from __future__ import annotations

import pytest

from scmdm.model import BLOCK_TYPES, BackboneConfig

VOCAB = 7  # 6 real tokens + MASK
LENGTH = 8


@pytest.mark.parametrize(("width", "heads"), [(6, 2), (10, 3), (12, 4)])
def test_config_rejects_bad_head_dimension(width: int, heads: int) -> None:
    # 6/2 = 3 (odd head dim), 10/3 (not a multiple), 12/4 = 3 (odd)
    with pytest.raises(ValueError, match="even head dimension"):
        BackboneConfig(vocab_size=VOCAB, max_length=LENGTH, width=width, heads=heads)


def test_config_rejects_unknown_block_type() -> None:
    with pytest.raises(ValueError, match="unknown block_type 'dit'") as info:
        BackboneConfig(vocab_size=VOCAB, max_length=LENGTH, block_type="dit")
    for name in BLOCK_TYPES:
        assert name in str(info.value)


@pytest.mark.parametrize(("field", "value"), [("depth", 0), ("vocab_size", 0), ("dropout", 1.0),
                                              ("dropout", -0.1)])
def test_config_rejects_out_of_range_values(field: str, value: float) -> None:
    settings = dict(vocab_size=VOCAB, max_length=LENGTH)
    settings[field] = value
    with pytest.raises(ValueError, match=field):
        BackboneConfig(**settings)
