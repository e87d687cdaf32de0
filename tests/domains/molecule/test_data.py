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


def _smi(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_held_out_files_are_the_splits_as_given_and_must_not_overlap_training(tmp_path, qm9_smiles) -> None:
    """data.valid_source / data.test_source: the files are the validation and test splits (canonical, as given), the
    source is all training; a held-out molecule that is a training molecule is named in one clear error."""
    from scmdm.config import load_config
    from scmdm.domains import prepare_data

    train = _smi(tmp_path / "train.smi", qm9_smiles[:200])
    valid = _smi(tmp_path / "valid.smi", qm9_smiles[200:230])
    test = _smi(tmp_path / "test.smi", qm9_smiles[230:270])
    config = load_config(None, [f"data.source={train}", f"data.valid_source={valid}", f"data.test_source={test}",
                                "data.max_length=24"])
    data = prepare_data(config, quiet=True)
    assert data.split.train == qm9_smiles[:200] or sorted(data.split.train) == sorted(qm9_smiles[:200])
    assert data.split.valid == qm9_smiles[200:230] and data.split.test == qm9_smiles[230:270]
    assert data.split_info["sizes"] == {"train": 200, "valid": 30, "test": 40}
    assert data.split_info["test_source"] == str(test) and len(data.test) == 40
    only_test = prepare_data(load_config(None, [f"data.source={train}", f"data.test_source={test}",
                                                "data.valid_fraction=0.1", "data.max_length=24"]), quiet=True)
    assert only_test.split_info["sizes"] == {"train": 180, "valid": 20, "test": 40}  # valid from the source
    overlapping = _smi(tmp_path / "overlap.smi", [*qm9_smiles[230:240], qm9_smiles[5], qm9_smiles[7]])
    with pytest.raises(ValueError, match=rf"data.test_source={overlapping}: 2 of its 12 molecules are also training "
                                         rf"molecules of {train} \(first: {overlapping}:11 "):
        prepare_data(load_config(None, [f"data.source={train}", f"data.test_source={overlapping}"]), quiet=True)
    with pytest.raises(FileNotFoundError, match="data.valid_source: SMILES file .*missing.smi does not exist"):
        prepare_data(load_config(None, [f"data.source={train}", f"data.valid_source={tmp_path / 'missing.smi'}"]))


def test_max_length_auto_is_the_longest_training_molecule(tmp_path, capsys) -> None:
    """By hand: training molecules CN, CCO, CCCC, CC(=O)Nc1ccccc1 need 3, 4, 5 and 16 positions (EOS included), so
    auto is 16; at the 50th percentile 4 (the 2nd of 4), and the longer molecules of every split are dropped and
    counted (train 2; validation OCCO: 5; test CC(C)O: 7)."""
    pytest.importorskip("rdkit")
    from scmdm.config import load_config
    from scmdm.domains import prepare_data

    source = _smi(tmp_path / "m.smi", ["CN", "CCO", "CCCC", "CC(=O)Nc1ccccc1"])
    held = [f"data.valid_source={_smi(tmp_path / 'v.smi', ['C#N', 'OCCO'])}",
            f"data.test_source={_smi(tmp_path / 't.smi', ['CC(C)O'])}"]
    config = load_config(None, [f"data.source={source}", *held])
    assert config.data.max_length == "auto"
    data = prepare_data(config)
    assert config.data.max_length == 16 == data.train.shape[1] and len(data.valid) == 2 and len(data.test) == 1
    assert ("note: data.max_length=auto: a canvas of 16 tokens, the longest training molecule (EOS included; 4 of 4 "
            "fit)") in capsys.readouterr().err
    half = load_config(None, [f"data.source={source}", *held, "data.length_percentile=50"])
    trimmed = prepare_data(half, quiet=True)
    assert half.data.max_length == 4 and (len(trimmed.train), len(trimmed.valid), len(trimmed.test)) == (2, 1, 0)
    assert trimmed.notes[1] == ("skipped 4 of 7 molecules longer than the 4-token canvas (train 2, valid 1, test 1; "
                                "the longest needs 16; data.max_length=auto)")


def test_a_gzipped_csv_with_a_smiles_header_reads_like_a_smi_file(tmp_path) -> None:
    """MOSES's train.csv.gz / test.csv.gz: a SMILES header, then one SMILES a line (a CSV's first column)."""
    pytest.importorskip("rdkit")
    import gzip

    path = tmp_path / "train.csv.gz"
    path.write_bytes(gzip.compress(b"SMILES,SPLIT\nOCC,train\nc1ccccc1,train\n"))
    assert load_smiles_file(path) == ["CCO", "c1ccccc1"]
    (tmp_path / "bad.smi.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="bad.smi.gz is not a readable gzip file"):
        load_smiles_file(tmp_path / "bad.smi.gz")


def test_moses_own_test_statistics_are_read_without_unpickling() -> None:
    """The real test_stats.npz of the molsets wheel (`make test` installs it): MOSES's FCD statistics of its 176k
    test molecules, with the other metrics' statistics beside them."""
    import importlib.util
    from pathlib import Path

    from scmdm.domains.molecule.reference import read_fcd_statistics

    spec = importlib.util.find_spec("moses")
    if spec is None or spec.origin is None:
        pytest.skip("needs the molsets wheel: pip install --no-deps molsets==0.3.1 (`make test` installs it)")
    stats = read_fcd_statistics(Path(spec.origin).parent / "dataset" / "data" / "test_stats.npz")
    assert stats.mu.shape == (512,) and stats.sigma.shape == (512, 512) and "MOSES-format" in stats.description
