"""Tests of scmdm.domains.dna.tokenizer: the layout, round trips (by hand and on real windows), errors, saving."""

from __future__ import annotations

import pytest
import torch

from scmdm.domains.dna.tokenizer import DnaTokenizer
from scmdm.errors import TokenizerError
from tests.conftest import requires_genomes


def test_tokenizer_layout_and_round_trip():
    tok = DnaTokenizer()
    assert (tok.pad_id, tok.eos_id, tok.mask_id, tok.vocab_size) == (0, 1, 6, 7)
    ids, report = tok.encode_many(["ACGT", "TTGA"], 4)
    assert ids.tolist() == [[2, 3, 4, 5], [5, 5, 4, 2]]
    assert report.total == 2 and report.too_long == 0
    assert tok.decode_batch(ids) == ["ACGT", "TTGA"]
    # PAD, EOS and MASK decode to N: a sample never changes length
    assert tok.decode_batch(torch.tensor([[0, 1, 6, 2]])) == ["NNNA"]


@requires_genomes
def test_tokenizer_round_trip_on_real_windows(ecoli):
    tok = DnaTokenizer()
    windows = ecoli.test[:200]
    ids, _ = tok.encode_many(windows, 256)
    assert ids.shape == (200, 256) and ids.min() >= 2 and ids.max() <= 5
    assert tok.decode_batch(ids) == windows


def test_tokenizer_errors_name_the_problem():
    tok = DnaTokenizer()
    with pytest.raises(TokenizerError, match=r"1 of 2 DNA windows contain characters other than A, C, G, T: \['N'\]"):
        tok.encode_many(["ACGT", "ACNT"], 4)
    with pytest.raises(TokenizerError, match="shorter than the 4-base canvas"):
        tok.encode_many(["ACG"], 4)
    with pytest.raises(TokenizerError, match="longer than the 3-base canvas"):
        tok.encode_many(["ACGT"], 3)
    ids, report = tok.encode_many(["ACGT", "ACG"], 3, too_long="truncate")
    assert tok.decode_batch(ids) == ["ACG", "ACG"] and report.too_long == 1
    ids, report = tok.encode_many(["ACGT", "ACG"], 3, too_long="skip")
    assert tok.decode_batch(ids) == ["ACG"] and report.too_long == 1
    with pytest.raises(ValueError, match="too_long"):
        tok.encode_many(["ACG"], 3, too_long="drop")


def test_tokenizer_save_load(tmp_path):
    tok = DnaTokenizer()
    tok.save(tmp_path / "tokenizer.json")
    assert DnaTokenizer.load(tmp_path / "tokenizer.json") == tok
    with pytest.raises(ValueError, match="kind 'smiles' is not 'dna'"):
        DnaTokenizer.from_dict({"kind": "smiles", "itos": []})
