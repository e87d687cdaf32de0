"""Bad input gives one clear error (or a counted note), never a traceback: data files, too-long
sequences, unknown tokens, and how the command line reports them."""

from __future__ import annotations

from pathlib import Path

import pytest

from scmdm.cli import main
from scmdm.config import load_config
from scmdm.domains import prepare_data
from scmdm.domains.molecule.data import load_smiles_file
from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.errors import TokenizerError

pytest.importorskip("rdkit")

MOLECULES = ["CCO", "CCN", "CC(=O)O", "c1ccccc1", "CCCC", "OCCO", "CN", "CC#N", "C1CC1", "CC(C)O", "COC",
             "CC=O", "NCCO", "CCOC", "C1CCC1", "CCC(=O)N", "OC1CC1", "N#CC#N", "CC(N)C", "FC(F)F"]
SMALL = ["model.depth=1", "model.width=32", "model.heads=2", "data.valid_fraction=0.1", "data.test_fraction=0.1",
         "train.batch_size=4", "train.steps=2", "train.warmup_steps=1", "train.eval_every=0", "train.save_every=0",
         "train.val_sequences=2", "train.val_num_t=2", "train.threads=1", "train.device=cpu"]


def _file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_unparseable_lines_are_counted_and_located(tmp_path, capsys) -> None:
    f = _file(tmp_path / "m.smi", ["# header", "CCO", "CC^O", "CCN", "", "not_a_molecule", "C1CC"])
    assert load_smiles_file(f) == ["CCO", "CCN"]
    err = capsys.readouterr().err
    assert "3 of 5 SMILES in" in err and "line 3 'CC^O'" in err and "line 6 'not_a_molecule'" in err
    assert "line 7 'C1CC'" in err  # an unclosed ring
    bad = _file(tmp_path / "bad.smi", ["xyz", "CC^O"])
    with pytest.raises(ValueError, match=r"none of the 2 SMILES .* could be parsed by RDKit \(first: line 1 'xyz'"):
        load_smiles_file(bad)


def test_empty_binary_and_folder_sources(tmp_path) -> None:
    with pytest.raises(ValueError, match="contains no SMILES"):
        load_smiles_file(_file(tmp_path / "e.smi", ["", "   ", "# c"]))
    (tmp_path / "z.smi").write_bytes(b"")
    with pytest.raises(ValueError, match="contains no SMILES"):
        load_smiles_file(tmp_path / "z.smi")
    (tmp_path / "b.smi").write_bytes(b"CCO\nCCN\n\x89PNG\x00\xff\n")
    with pytest.raises(ValueError, match=r"not UTF-8 text \(line 3, byte 8\)"):
        load_smiles_file(tmp_path / "b.smi")
    with pytest.raises(ValueError, match="is a folder"):
        load_smiles_file(tmp_path)


def test_unknown_tokens_are_aggregated_with_line_numbers(tmp_path) -> None:
    lines = MOLECULES + ["CCBr", "BrCCBr", "CCCl", "C[Si](C)(C)C"]
    f = _file(tmp_path / "new.smi", lines)
    tokenizer = SmilesTokenizer.build(MOLECULES)
    with pytest.raises(TokenizerError) as info:
        prepare_data(load_config(None, [f"data.source={f}"]), tokenizer)
    message = str(info.value)
    assert f"data.source={f}: 4 of {len(lines)} SMILES contain tokens not in the" in message
    assert "'Br' (in 2), 'Cl' (in 1), '[Si]' (in 1)" in message
    assert f"{f}:21 'CCBr'" in message and f"{f}:22 'BrCCBr'" in message  # canonical SMILES, original line


def test_characters_outside_smiles_are_named() -> None:
    tokenizer = SmilesTokenizer.build(["CCO"])
    with pytest.raises(TokenizerError, match=r"2 of 3 SMILES contain characters that are not SMILES tokens "
                                             r"\[' ', '\^'\]"):
        tokenizer.encode_many(["CCO", "C^C", "C C"], 8)


def test_too_long_error_skip_truncate(tmp_path, capsys) -> None:
    long = "CCCCCCCCCCCCCCCCCC"  # 18 tokens + EOS
    f = _file(tmp_path / "m.smi", [*MOLECULES, long, long + "O"])
    base = [f"data.source={f}", "data.max_length=12", "data.valid_fraction=0.1", "data.test_fraction=0.1"]
    with pytest.raises(TokenizerError, match=r"2 of 22 molecules need more than the 12 canvas positions \(train \d, "
                                             r"valid \d, test \d; the longest needs 20.*data.max_length to 20.*"
                                             r"molecule.too_long=skip"):
        prepare_data(load_config(None, base))
    skipped = prepare_data(load_config(None, [*base, "molecule.too_long=skip"]))
    n = len(skipped.train) + len(skipped.valid) + len(skipped.test)
    assert n == 20
    assert "note: skipped 2 of 22 molecules longer than the 12-token canvas" in capsys.readouterr().err
    truncated = prepare_data(load_config(None, [*base, "molecule.too_long=truncate"]), quiet=True)
    assert len(truncated.train) + len(truncated.valid) + len(truncated.test) == 22
    assert truncated.notes[0].startswith("truncated 2 of 22 molecules")
    rows = [r for part in (truncated.train, truncated.valid, truncated.test) for r in part.tolist()]
    assert sum(1 for r in rows if r[-1] == truncated.tokenizer.eos_id) == 2  # cut to 11 tokens + EOS


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys) -> None:
    cases = [
        ([f"data.source={tmp_path / 'missing.smi'}"], "does not exist"),
        ([f"data.source={_file(tmp_path / 'e.smi', ['# nothing'])}"], "contains no SMILES"),
        ([f"data.source={_file(tmp_path / 'm.smi', [*MOLECULES, 'C' * 30])}", "data.max_length=12"],
         "1 of 21 molecules need more than the 12 canvas positions"),
        (["molecule.too_long=sometimes"], "molecule.too_long must be one of error, skip, truncate, got 'sometimes'"),
        (["train.keep_checkpoints=0"], "train.keep_checkpoints must be positive"),
        (["train.lr=.nan"], "train.lr must be a finite number"),
        (["train.device=gpu"], "train.device must be auto, cpu, mps, cuda or cuda:N"),
        (["train.steps=-5"], "train.steps must be positive, got -5"),
        (["diffusion.schedule=quadratic"], "diffusion.schedule must be one of loglinear, cosine, linear"),
    ]
    for overrides, message in cases:
        assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", *SMALL, *overrides]) == 2, overrides
        err = capsys.readouterr().err.strip()
        assert message in err and "Traceback" not in err, (overrides, err)
        assert err.splitlines()[-1].startswith("scmdm train: error: ") and len(err.splitlines()) == 1, err


def test_post_training_on_data_with_unknown_tokens(tmp_path, capsys) -> None:
    first = _file(tmp_path / "first.smi", MOLECULES)
    assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", *SMALL, f"data.source={first}"]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")]) == 0
    capsys.readouterr()
    new = _file(tmp_path / "new.smi", [*MOLECULES, "CCBr", "CCl"])
    assert main(["train", "--init-from", str(tmp_path / "model"), "--out", str(tmp_path / "post"), "--no-progress",
                 f"data.source={new}"]) == 2
    err = capsys.readouterr().err
    assert "2 of 22 SMILES contain tokens not in the" in err and "'Br' (in 1), 'Cl' (in 1)" in err
    assert f"{new}:21 'CCBr'" in err and "Traceback" not in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_is_one_line_and_leaves_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", *SMALL, "train.device=cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "scmdm train: error: device 'cuda' requested but CUDA is not available here; use cpu (or auto)"
    assert not out.exists()
    assert main(["sample", str(tmp_path), "--device", "cuda:0"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


# ---- found before the work starts (issue: bad input found only after the work) ---------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A 2-step model on the 20 MOLECULES (a file: no QM9 preparation)."""
    folder = tmp_path_factory.mktemp("small")
    source = _file(folder / "m.smi", MOLECULES)
    assert main(["train", "--out", str(folder / "run"), "--no-progress", *SMALL, f"data.source={source}"]) == 0
    return folder / "run"


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"scmdm {command}: error: ") and "Traceback" not in err, err
    return err


def test_output_paths_are_checked_before_sampling(small_run, tmp_path, capsys, monkeypatch) -> None:
    """--out is checked in the first second: a folder that cannot hold it, or a samples file that exists (unless
    --force), is one line before any sampling; missing folders are made when the samples are written."""
    import scmdm.workflows

    real, sampled = scmdm.workflows.sample_checkpoint, []
    monkeypatch.setattr(scmdm.workflows, "sample_checkpoint", lambda *a, **k: sampled.append(1) or real(*a, **k))
    argv = ["sample", str(small_run), "--no-progress", "sample.num_samples=3", "sample.steps=2"]
    (tmp_path / "file").write_text("")
    assert main([*argv, "--out", str(tmp_path / "file" / "s.smi")]) == 2
    assert "file is a file, not a folder" in _one_line(capsys, "sample")
    existing = _file(tmp_path / "s.smi", ["CCO"])
    assert main([*argv, "--out", str(existing)]) == 2
    assert f"--out {existing} already exists; give --force to overwrite it" in _one_line(capsys, "sample")
    assert sampled == [] and existing.read_text() == "CCO\n"  # nothing sampled, nothing overwritten
    assert main([*argv, "--out", str(existing), "--force"]) == 0
    assert len(existing.read_text().splitlines()) == 3
    assert main([*argv, "--out", str(tmp_path / "new" / "dir" / "s.smi")]) == 0  # missing folders are made
    assert len((tmp_path / "new" / "dir" / "s.smi").read_text().splitlines()) == 3


def test_eval_checks_its_outputs_and_its_samples_file_first(small_run, tmp_path, capsys, monkeypatch) -> None:
    import scmdm.workflows

    built = []
    real = scmdm.workflows.evaluator_for
    monkeypatch.setattr(scmdm.workflows, "evaluator_for", lambda *a, **k: built.append(1) or real(*a, **k))
    metrics = _file(tmp_path / "m.json", ["{}"])
    assert main(["eval", str(small_run), "--json", str(metrics), "sample.num_samples=2"]) == 2
    assert "--json" in _one_line(capsys, "eval") and metrics.read_text() == "{}\n"
    empty = tmp_path / "empty.smi"
    empty.write_bytes(b"")
    assert main(["eval", str(small_run), "--samples", str(empty)]) == 2
    assert f"samples file {empty} is empty" in _one_line(capsys, "eval")
    binary = tmp_path / "b.smi"
    binary.write_bytes(b"CCO\n\x89PNG\x00\xff\n")
    assert main(["eval", str(small_run), "--samples", str(binary)]) == 2
    assert f"samples file {binary}: not UTF-8 text (line 2, byte 4)" in _one_line(capsys, "eval")
    assert built == []  # found before the evaluator (ChemNet statistics) was built
    junk = _file(tmp_path / "junk.smi", ["xyz", "not a molecule"])
    assert main(["eval", str(small_run), "--samples", str(junk)]) == 0
    assert f"warning: none of the 2 samples in {junk} is a valid molecule (first: 'xyz')" in capsys.readouterr().err


def test_sample_and_eval_take_only_the_overrides_they_read(small_run, capsys) -> None:
    for command in ("sample", "eval"):
        assert main([command, str(small_run), "--no-progress", "sample.temperature=.inf"]) == 2
        assert "sample.temperature must be a finite number, got inf" in _one_line(capsys, command)
        assert main([command, str(small_run), "--no-progress", "model.width=0"]) == 2
        reads = "sample.*" if command == "sample" else "sample.* and eval.*"
        assert f"'model.width=0': scmdm {command} reads only {reads} overrides" in _one_line(capsys, command)


def test_failed_data_checks_leave_no_out_folder(tmp_path, capsys) -> None:
    source = _file(tmp_path / "m.smi", MOLECULES)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", *SMALL, f"data.source={source}",
                 "data.valid_fraction=0"]) == 2
    assert "no validation molecules are left" in _one_line(capsys, "train")
    assert not out.exists()


def test_very_long_smiles_lines_never_reach_rdkit(tmp_path) -> None:
    """A 40,000-character line made RDKit crash (exit 139) and a 200,000-character one hang: they are refused, by
    their raw length, before anything is parsed — in a subprocess, so that a crash could not take pytest with it."""
    import subprocess
    import sys

    source = _file(tmp_path / "long.smi", [*MOLECULES, "C" * 40_000, "C" * 200_000])
    argv = [sys.executable, "-m", "scmdm.cli", "train", "--out", str(tmp_path / "run"), "--no-progress", *SMALL,
            f"data.source={source}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "line 21 (40,000 characters), line 22 (200,000 characters)" in err
    assert "not given to RDKit; drop them with molecule.too_long=skip" in err and not (tmp_path / "run").exists()
    proc = subprocess.run([*argv, "molecule.too_long=skip"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipped 2 of 22 SMILES lines" in proc.stderr


def test_a_text_file_without_line_breaks_trains_and_validates(tmp_path, kjv, capsys) -> None:
    """One line of 200,000 characters: the held-out parts are cut where the fractions say, so every split has windows
    and the run ends with its final validation and checkpoint."""
    text = " ".join(body.replace("\n", " ") for _, body in kjv)[:200_000]
    source = tmp_path / "one_line.txt"
    source.write_text(text)
    out = tmp_path / "run"
    assert main(["train", "--domain", "text", "--out", str(out), "--no-progress", *SMALL, f"data.source={source}",
                 "data.max_length=32"]) == 0
    from scmdm.checkpoint import load_checkpoint

    state = load_checkpoint(out).state
    assert state["step"] == 2 and state["val_nelbo_bits"] > 0
