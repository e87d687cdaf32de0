"""Tests of scmdm.domains.image.tokenizer: grey levels in raster order, round trips on real digits, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scmdm.domains.image.tokenizer import ImageTokenizer
from scmdm.errors import TokenizerError
from tests.conftest import requires_digits


@requires_digits
def test_image_tokenizer_round_trip(digits, tmp_path):
    tok = ImageTokenizer(16, 8, 8)
    assert (tok.pad_id, tok.eos_id, tok.mask_id, tok.vocab_size, tok.canvas) == (0, 1, 18, 19, 64)
    ids, report = tok.encode_many(digits.test, 64)
    assert ids.shape == (len(digits.test), 64) and report.total == len(digits.test)
    assert ids[0].tolist() == (digits.test[0].reshape(-1).astype(int) + 2).tolist()  # raster scan, level + 2
    assert all((a == b).all() for a, b in zip(tok.decode_batch(ids), digits.test, strict=True))
    special = ids[:1].clone()
    special[0, :3] = torch.tensor([0, 1, 18])
    assert tok.decode_batch(special)[0].reshape(-1)[:3].tolist() == [0, 0, 0] and tok.count_special(special) == 3
    tok.save(tmp_path / "tokenizer.json")
    assert ImageTokenizer.load(tmp_path / "tokenizer.json") == tok != ImageTokenizer(4, 8, 8)


def test_image_tokenizer_errors():
    tok = ImageTokenizer(4, 2, 2)
    with pytest.raises(TokenizerError, match=r"H·W = 2·2 = 4 positions, but the canvas length asked for is 5"):
        tok.encode_many([np.zeros((2, 2), np.uint8)], 5)
    with pytest.raises(TokenizerError, match=r"image #2 has shape \(3, 2\)"):
        tok.encode_many([np.zeros((2, 2)), np.zeros((3, 2))], 4)
    with pytest.raises(TokenizerError, match=r"1 of 1 images hold values outside the grey levels 0..3"):
        tok.encode_many([np.array([[0, 4], [1, 2]])], 4)
    with pytest.raises(ValueError, match="2..256 grey levels"):
        ImageTokenizer(1, 2, 2)
