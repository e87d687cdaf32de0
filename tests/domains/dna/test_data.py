"""Tests of scmdm.domains.dna.data: FASTA files, the genome catalogue, windows and splits of the real genomes
(held-out region or strain, reverse complements, stride), windows with ambiguity codes."""

from __future__ import annotations

import math

import pytest

from scmdm.config import load_config
from scmdm.domains import get_domain, prepare_data
from scmdm.domains.dna.data import (
    format_fasta,
    genome_files,
    load_dna,
    read_fasta,
    read_genome,
    resolve_genomes,
    reverse_complement,
    write_fasta,
)
from tests.conftest import ECOLI, requires_genomes


# ---- files ------------------------------------------------------------------------------------------------
def test_fasta_round_trip(tmp_path):
    path = write_fasta(["ACGT", "NNAC"], tmp_path / "samples.fa")
    assert path.read_text() == ">sample_1\nACGT\n>sample_2\nNNAC\n"
    assert read_fasta(path) == [("sample_1", "ACGT"), ("sample_2", "NNAC")]
    (tmp_path / "wrapped.fa").write_text(">a x\nacg\nTT\n\n>b\nG\n")
    assert read_fasta(tmp_path / "wrapped.fa") == [("a x", "ACGTT"), ("b", "G")]
    (tmp_path / "empty.fa").write_text("ACGT\n")
    with pytest.raises(ValueError, match="holds no FASTA records"):
        read_fasta(tmp_path / "empty.fa")


def test_fasta_samples_file_by_hand() -> None:
    text = format_fasta(["ACGT", "NNAC"])
    assert text == ">sample_1\nACGT\n>sample_2\nNNAC\n"
    assert get_domain("dna").parse_samples(text) == ["ACGT", "NNAC"]
    assert get_domain("dna").parse_samples(">a\nac\ngt\n>b\nTT") == ["ACGT", "TT"]  # wrapped lines, lower case
    with pytest.raises(ValueError, match="no FASTA records"):
        get_domain("dna").parse_samples("ACGT\n")


# ---- windows and splits of the real genomes ----------------------------------------------------------------
@requires_genomes
def test_genome_catalogue():
    names = list(genome_files())
    assert len(names) == 20 and ECOLI in names
    assert resolve_genomes("E.Coli") == ["E.Coli/DH1", ECOLI]
    assert resolve_genomes("MG1655-K12") == [ECOLI]
    assert len(resolve_genomes("all")) == 20
    with pytest.raises(ValueError, match="unknown genome 'E.Colo'; available: .*E.Coli/DH1"):
        resolve_genomes("E.Colo")


@requires_genomes
def test_region_holdout_windows(ecoli):
    (_, genome), = read_genome(ECOLI)
    n = len(genome)  # 4,641,652 bases
    n_test = n_valid = math.ceil(n * 0.05)
    n_train = n - n_test - n_valid
    sizes = ecoli.info()["sizes"]
    assert sizes == {"train": n_train // 256, "valid": n_valid // 256, "test": n_test // 256}
    test_region = genome[n - n_test:]
    assert set(ecoli.test) == {test_region[i:i + 256] for i in range(0, n_test - 255, 256)}
    assert all(len(w) == 256 and not w.strip("ACGT") for w in ecoli.train[:500])
    assert not set(ecoli.train) & set(ecoli.test)
    # deterministic, and verify() notices a different split
    again = load_dna(ECOLI, window=256)
    assert again.info() == ecoli.info()
    again.verify(ecoli.info())
    with pytest.raises(ValueError, match="differs from the one saved"):
        load_dna(ECOLI, window=256, seed=1).verify(ecoli.info())  # same windows, another order


@requires_genomes
def test_reverse_complement_and_strain_holdout():
    split = load_dna(ECOLI, window=1024, reverse_complement_train=True)
    plain = load_dna(ECOLI, window=1024)
    assert len(split.train) == 2 * len(plain.train) and split.test == plain.test and split.valid == plain.valid
    assert reverse_complement("AACGT") == "ACGTT"
    assert set(split.train) == set(plain.train) | {reverse_complement(w) for w in plain.train}
    strain = load_dna(ECOLI, window=1024, holdout="strain", test_genomes="E.Coli/DH1", valid_fraction=0.1)
    (_, dh1), = read_genome("E.Coli/DH1")
    assert len(strain.test) == len(dh1) // 1024 and strain.test[0] in dh1
    assert strain.info()["test_fraction"] == 0.0
    with pytest.raises(ValueError, match="both in training and held out"):
        load_dna("E.Coli", holdout="strain", test_genomes="DH1")
    with pytest.raises(ValueError, match="only used with holdout='strain'"):
        load_dna(ECOLI, test_genomes="DH1")


@requires_genomes
def test_windows_with_ambiguity_codes_are_dropped():
    split = load_dna("V.Cholerae/O1_Inaba", window=256)  # 2,102 N in its sequence
    assert sum(split.info()["dropped_non_acgt"].values()) > 0
    assert not any(w.strip("ACGT") for w in split.train + split.valid + split.test)


@requires_genomes
def test_dna_settings_reach_the_split(single_thread) -> None:
    base = load_config(None, ["data.domain=dna", "data.max_length=128", "data.valid_fraction=0.02",
                              "data.test_fraction=0.02"])
    plain = prepare_data(base, quiet=True)
    n = len(plain.train)
    both = load_config(None, ["data.domain=dna", "data.max_length=128", "data.valid_fraction=0.02",
                              "data.test_fraction=0.02", "dna.reverse_complement=true", "dna.stride=64"])
    augmented = prepare_data(both, quiet=True)
    # stride 64 nearly doubles the windows of every split, the reverse complements double the training ones again
    assert 3.9 * n < len(augmented.train) < 4.1 * n and 1.9 * len(plain.valid) < len(augmented.valid)
    assert augmented.split.info()["reverse_complement_train"] and augmented.split.info()["stride"] == 64
    windows = set(augmented.split.train)
    assert all(reverse_complement(w) in windows for w in augmented.split.train[:20])
    strain = load_config(None, ["data.domain=dna", "data.max_length=128", "dna.holdout=strain",
                                "dna.test_genomes=E.Coli/DH1", "data.subset=100"])
    held = prepare_data(strain, quiet=True)
    assert held.split.settings["test_genomes"] == ["E.Coli/DH1"] and len(held.train) == 100
    assert len(held.test) > 30000  # every window of DH1 (4.6 Mbp)
    assert held.train.shape[1] == 128 and int(held.train.max()) <= 5  # bases only: ids 2..5
    with pytest.raises(ValueError, match="data.source='E.Coli', dna.test_genomes='DH1': genomes .* both in training"):
        prepare_data(load_config(None, ["data.domain=dna", "data.source=E.Coli", "dna.holdout=strain",
                                        "dna.test_genomes=DH1"]), quiet=True)


@requires_genomes
def test_held_out_fasta_files_and_a_fasta_reference(tmp_path) -> None:
    """Another strain's bases as the validation and test FASTA files: cut into the run's windows (non-ACGT windows
    dropped), used as given, and --reference takes such a file too; holdout=strain with a test file is refused."""
    from scmdm.domains.dna.data import dna_split

    other = read_genome("E.Coli/DH1")[0][1]
    valid, test = tmp_path / "valid.fa", tmp_path / "test.fa.gz"
    write_fasta([other[:6400]], valid)
    import gzip

    test.write_bytes(gzip.compress(format_fasta([other[6400:9600], other[9600:9700]]).encode()))
    config = load_config(None, ["data.domain=dna", "data.max_length=64", f"data.valid_source={valid}",
                                f"data.test_source={test}"])
    split = dna_split(config)
    assert len(split.valid) == 100 and len(split.test) == 50 + 1  # 6,400 / 64; 3,200 / 64 and 100 // 64
    assert sorted(split.valid) == sorted(other[i:i + 64] for i in range(0, 6400, 64))
    assert split.info()["valid_source"] == str(valid) and split.info()["sizes"]["test"] == 51
    whole = dna_split(load_config(None, ["data.domain=dna", "data.max_length=64"]))
    assert len(split.train) > len(whole.train)  # nothing of the genome held out any more
    evaluator = get_domain("dna").evaluator(config, split.info(), reference=str(valid))
    assert sorted(evaluator.reference_windows) == sorted(split.valid) and str(valid) in evaluator.reference_name
    with pytest.raises(ValueError, match="dna.holdout=strain makes dna.test_genomes the test split"):
        dna_split(load_config(None, ["data.domain=dna", "data.max_length=64", "dna.holdout=strain",
                                     "dna.test_genomes=E.Coli/DH1", f"data.test_source={test}"]))
    empty = tmp_path / "short.fa"
    write_fasta(["ACGT"], empty)
    with pytest.raises(ValueError, match=r"data.test_source: .*short.fa has no window of 64 bases"):
        dna_split(load_config(None, ["data.domain=dna", "data.max_length=64", f"data.test_source={empty}"]))
