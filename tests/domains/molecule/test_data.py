from __future__ import annotations

import pytest

from scmdm.domains.molecule.data import load_smiles_file, split_molecules


def test_split_is_deterministic_disjoint_and_verified() -> None:
    mols = [f"C{'C' * i}O" for i in range(1000)]
    a = split_molecules(mols, source="x", seed=3, valid_fraction=0.1, test_fraction=0.2)
    b = split_molecules(mols, source="x", seed=3, valid_fraction=0.1, test_fraction=0.2)
    assert a.train == b.train and a.test == b.test
    assert a.info.sizes == {"train": 700, "valid": 100, "test": 200}
    assert not set(a.train) & set(a.test) and not set(a.valid) & set(a.test)
    assert sorted(a.train + a.valid + a.test) == sorted(mols)
    a.verify(b.info)
    c = split_molecules(mols, source="x", seed=4, valid_fraction=0.1, test_fraction=0.2)
    with pytest.raises(ValueError, match="split differs"):
        c.verify(a.info)


def test_smiles_file_errors(tmp_path) -> None:
    empty = tmp_path / "empty.smi"
    empty.write_text("\n# only a comment\n")
    with pytest.raises(ValueError, match="contains no SMILES"):
        load_smiles_file(empty)
    binary = tmp_path / "bin.smi"
    binary.write_bytes(b"CCO\n\xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_smiles_file(binary)
    with pytest.raises(FileNotFoundError):
        load_smiles_file(tmp_path / "missing.smi")


def test_smiles_file_is_canonicalized_and_deduplicated(tmp_path) -> None:
    pytest.importorskip("rdkit")
    f = tmp_path / "m.smi"
    f.write_text("OCC\nCCO\nC1=CC=CC=C1 benzene\n")
    assert load_smiles_file(f) == ["CCO", "c1ccccc1"]
