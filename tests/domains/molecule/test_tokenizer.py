from __future__ import annotations

import pytest
import torch

from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.errors import TokenizerError
from scmdm.tokenizer import EOS, MASK, PAD


def test_layout_and_hand_example() -> None:
    tok = SmilesTokenizer.build(["CCO", "c1ccccc1Cl", "[nH]1cccc1"])
    assert tok.itos[0] == PAD and tok.itos[1] == EOS and tok.itos[-1] == MASK
    assert SmilesTokenizer.split("C[NH3+]Cl") == ["C", "[NH3+]", "Cl"]
    assert SmilesTokenizer.split("c1ccccc1Br") == ["c", "1", "c", "c", "c", "c", "c", "1", "Br"]
    ids = tok.encode("CCO", length=6)
    c, o = tok.stoi["C"], tok.stoi["O"]
    assert ids == [c, c, o, tok.eos_id, tok.pad_id, tok.pad_id]
    assert tok.decode(ids) == "CCO"
    assert tok.decode([c, tok.mask_id, tok.eos_id, c]) == "C?"  # stops at EOS, MASK shown as '?'


def test_unknown_token_names_molecule_and_token() -> None:
    tok = SmilesTokenizer.build(["CCO"])
    with pytest.raises(TokenizerError, match=r"'CCN'.*'N'"):
        tok.encode("CCN")
    with pytest.raises(TokenizerError, match=r"'CC\^O'.*\['\^'\]"):
        tok.encode("CC^O")
    with pytest.raises(TokenizerError, match="needs 4 positions"):
        tok.encode("CCO", length=3)


def test_save_load_round_trip(tmp_path) -> None:
    tok = SmilesTokenizer.build(["CCO", "C#N"])
    tok.save(tmp_path / "tokenizer.json")
    assert SmilesTokenizer.load(tmp_path / "tokenizer.json") == tok


def test_round_trip_over_all_of_qm9(qm9_smiles: list[str]) -> None:
    tok = SmilesTokenizer.build(qm9_smiles)
    assert len(qm9_smiles) > 130_000
    ids = tok.encode_batch(qm9_smiles, length=24)
    assert ids.shape == (len(qm9_smiles), 24)
    assert not (ids == tok.mask_id).any()
    assert (ids == tok.eos_id).sum(1).eq(1).all()  # exactly one EOS per canvas
    assert tok.decode_batch(ids) == qm9_smiles
    assert torch.equal(tok.encode_batch(tok.decode_batch(ids), 24), ids)
