"""benchmarks/selfcond_domain.py, the self-conditioning ablation of text, DNA and images: the metrics it adds (6-mer
spectrum entropy by hand), its DNA tables by hand (paired differences, two frontier margins per row, each against the
seed's own control curve), and end to end with --no-docs on tiny real DNA and digits models: post-trains each arm,
samples, scores and caches every row once, reads them back with --cached-only."""

from __future__ import annotations

import json
import math
import sys
from argparse import Namespace
from types import SimpleNamespace

import pytest

from benchmarks import selfcond_domain
from benchmarks.selfcond_domain import SPECS, kmer_entropy, markdown
from scmdm.cli import main as cli
from tests.conftest import DIGITS_MISSING, ECOLI, have_genomes, have_sklearn

#: a 1-layer model trained 6 steps, the DNA and image pipelines' (tests/domains/test_pipelines.py)
MODEL = ["model.depth=1", "model.width=32", "model.heads=2", "train.batch_size=32", "train.steps=6",
         "train.warmup_steps=2", "train.eval_every=0", "train.save_every=0", "train.val_sequences=32",
         "train.val_num_t=2", "train.log_every=1", "train.ema_decay=0.9"]
#: two post-training steps per arm
POST = ["train.batch_size=16", "train.val_sequences=16", "train.val_num_t=2", "train.warmup_steps=1"]


def test_kmer_entropy_by_hand() -> None:
    assert kmer_entropy(["ACGT"], k=1) == pytest.approx(2.0)  # four bases once each
    assert kmer_entropy(["AACC"], k=1) == pytest.approx(1.0)
    assert kmer_entropy(["AAC", "AAC"], k=2) == pytest.approx(1.0)  # AA, AC, AA, AC
    assert kmer_entropy(["AANAA"], k=2) == pytest.approx(0.0)  # AA twice; k-mers holding N are not counted
    assert kmer_entropy(["AAAAAAA"]) == 0.0 and math.isnan(kmer_entropy(["ACG"]))  # k = 6: none in 3 bases
    # 3:1 over two 6-mers: −¾ log2 ¾ − ¼ log2 ¼
    assert kmer_entropy(["AAAAAA", "AAAAAA", "AAAAAA", "CCCCCC"]) == pytest.approx(
        -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))


def dna_row(arm: str, seed: int, tau: float, js: float, gc: float, entropy: float) -> dict:
    return {"arm": arm, "seed": seed, "T": 32, "temperature": tau, "js_6": js, "gc_w1": gc, "kmer_entropy": entropy,
            "nearest_identity": 0.4, "seconds": 10.0 if arm == "control" else 12.0, "process": "p",
            "val_nelbo_bits": 1.9 + seed / 100, "val_nelbo_sc_bits": None if arm == "control" else 1.89}


def test_dna_tables_by_hand() -> None:
    """Two frontiers (6-mer JS and GC W1, both at equal 6-mer entropy), each margin per seed against that seed's
    control curve; paired differences per seed; NELBO per base (no per-character division)."""
    rows = [dna_row("control", 0, 0.9, 0.010, 0.020, 11.0), dna_row("control", 0, 1.0, 0.020, 0.040, 12.0),
            dna_row("control", 1, 0.9, 0.012, 0.020, 11.0), dna_row("control", 1, 1.0, 0.022, 0.040, 12.0),
            # seed 0, entropy 11.5: control JS 0.015, GC 0.030 → margins −0.002, −0.005
            dna_row("mask_add@1", 0, 1.0, 0.013, 0.025, 11.5),
            # seed 1, entropy 11.25: control JS 0.0145, GC 0.025 → margins +0.0005, +0.000
            dna_row("mask_add@1", 1, 1.0, 0.015, 0.025, 11.25),
            # outside the control's entropy range: no margin
            dna_row("mask_add@0.5", 0, 1.0, 0.030, 0.050, 12.5), dna_row("mask_add@0.5", 1, 1.0, 0.031, 0.050, 12.5)]
    args = Namespace(temperatures=[1.0, 0.9], T=[32], seeds=[0, 1], arms=["control", "mask_add@0.5", "mask_add@1"],
                     base="runs/dna_ecoli_v2", steps=4, num_samples=5)
    references = {"real held-out windows": {"js_6": 0.005, "gc_w1": 0.013, "kmer_entropy": 11.7},
                  "markov3 chain fit on train": {"js_6": 0.009, "gc_w1": 0.025, "kmer_entropy": 11.9}}
    sc_config = SimpleNamespace(train=SimpleNamespace(lr=1e-4, batch_size=8))
    text = markdown(SPECS["dna"], args, rows, sc_config, references, "cmd", {"step": 7, "val_nelbo_bits": 1.95})
    assert text.startswith("## Self-conditioned post-training: ablation on DNA\n\nCommand: `cmd`")
    assert ("Reference rows (5 each, through the same evaluator): real held-out windows: 6-mer JS 0.00500, GC W1 "
            "0.0130, 6-mer entropy 11.7000; markov3 chain fit on train: 6-mer JS 0.00900") in text
    assert "validation NELBO in bits per base" in text and "Base: `runs/dna_ecoli_v2` (step 7, validation " in text
    # against T, temperature 1.0: the NELBOs straight from the rows (1.90, 1.91), time 12/10 per seed
    assert ("| control | 32 | 0.02100 ± 0.00141 (2) | 0.0400 ± 0.0000 | 12.0000 ± 0.0000 | 0.400 ± 0.000 | "
            "1.9050 ± 0.0071 | – | – |") in text
    assert "| 1.8900 ± 0.0000 | 1.20× ± 0.00 (2) |" in text
    # paired: 0.013 − 0.020 and 0.015 − 0.022; GC 0.025 − 0.040 twice; entropy 11.5 − 12, 11.25 − 12
    assert "| mask_add@1 | 32 | 1.0 | -0.00700 ± 0.00000 | -0.0150 ± 0.0000 | -0.6250 ± 0.1768 | 2 |" in text
    assert "| mask_add@1 − mask_add@0.5 | 32 | 1.0 | -0.01650 ± 0.00071 | -0.0250 ± 0.0000 |" in text
    # the frontier: margins (−0.002, +0.0005) and (−0.005, 0.000); none for mask_add@0.5
    assert ("| 32 | mask_add@1 | 1.0 | 0.01400 ± 0.00141 | 0.0250 ± 0.0000 | 11.3750 ± 0.1768 | "
            "-0.00075 ± 0.00177 (2) | -0.0025 ± 0.0035 (2) |") in text
    assert "| 32 | mask_add@0.5 | 1.0 | 0.03050 ± 0.00071 | 0.0500 ± 0.0000 | 12.5000 ± 0.0000 | – | – |" in text
    assert "| 32 | control | 0.9 | 0.01100 ± 0.00141 | 0.0200 ± 0.0000 | 11.0000 ± 0.0000 | – | – |" in text
    assert ("`margin 6-mer JS` = the arm's 6-mer JS divergence minus the control's at the same 6-mer entropy; "
            "`margin GC W1` = the arm's GC W1 distance minus the control's at the same 6-mer entropy, interpolated"
            in text)
    assert "![quality" not in text  # no figure named, none linked


def test_frontier_figure_one_panel_per_frontier_and_T(tmp_path) -> None:
    from PIL import Image

    rows = [{**r, "T": T} for T in (16, 32) for r in
            (dna_row("control", 0, 0.9, 0.01, 0.02, 11.0), dna_row("control", 0, 1.0, 0.02, 0.04, 12.0),
             dna_row("mask_add@1", 0, 1.0, 0.013, 0.025, 11.5))]
    args = Namespace(temperatures=[0.9, 1.0], T=[32, 16], seeds=[0], arms=["control", "mask_add@1"])
    name = selfcond_domain.plot_frontiers(SPECS["dna"], rows, {"real": {"js_6": 0.005, "kmer_entropy": 11.7}}, args,
                                          tmp_path)
    assert name == "selfcond_dna_frontier.png"
    width, height = Image.open(tmp_path / name).size
    assert width > height  # two T columns, two frontier rows of 4.8 × 4 inches: 864 × 720 pixels at 90 dpi
    assert (width, height) == (864, 720)
    assert selfcond_domain.plot_frontiers(SPECS["dna"], [], {}, args, tmp_path / "none") is None


def test_a_base_of_another_domain_is_refused(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["selfcond_domain.py"])
    with pytest.raises(SystemExit):
        selfcond_domain.main()
    assert "say --domain (text, dna, image) or --base RUN" in capsys.readouterr().err


def ablate_twice(base, out, domain: str, monkeypatch, capsys) -> tuple[list[dict], dict, str]:
    """Run the ablation on ``base``, then again with --cached-only and without the post-training runs: the same
    rows, nothing sampled again. Returns (rows, payload, printed section)."""
    import shutil

    argv = ["selfcond_domain.py", "--base", str(base), "--out", str(out), "--arms", "control", "mask_add@1",
            "--seeds", "0", "--steps", "2", "--T", "4", "--temperatures", "0.9", "1.0", "--num-samples", "8",
            "--no-docs", *POST]
    monkeypatch.setattr(sys, "argv", argv)
    assert selfcond_domain.main() == 0
    section = capsys.readouterr().out.split("## Self-conditioned post-training", 1)[1]
    payload = json.loads((out / f"selfcond_{domain}.json").read_text())
    cached = (out / "rows.jsonl").read_text()
    for arm in ("control", "mask_add@1"):
        shutil.rmtree(out / arm)
    monkeypatch.setattr(sys, "argv", [*argv, "--cached-only", "--domain", domain])
    assert selfcond_domain.main() == 0
    assert json.loads((out / f"selfcond_{domain}.json").read_text())["rows"] == payload["rows"]
    assert (out / "rows.jsonl").read_text() == cached  # nothing sampled again
    again = capsys.readouterr().out
    assert again.startswith("## Self-conditioned post-training")  # nothing trained or sampled was printed before it
    # the same section, but for the command line it quotes
    assert again.split("\nBase: ", 1)[1] == section.split("\nBase: ", 1)[1]
    return payload["rows"], payload, section


@pytest.mark.skipif(not have_genomes(), reason="the bacterial genomes are not installed")
def test_dna_ablation_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    base = tmp_path / "base"
    assert cli(["train", "--domain", "dna", "--out", str(base), "--no-progress", f"data.source={ECOLI}",
                "data.max_length=64", "data.subset=512", *MODEL]) == 0
    out = tmp_path / "ablation"
    rows, payload, section = ablate_twice(base, out, "dna", monkeypatch, capsys)
    assert [(r["arm"], r["temperature"]) for r in rows] == [("control", 0.9), ("mask_add@1", 0.9), ("control", 1.0),
                                                            ("mask_add@1", 1.0)]
    assert all(0 < r["kmer_entropy"] <= 12 and r["js_6"] > 0 and r["n_samples"] == 8 for r in rows)
    assert rows[0]["val_nelbo_sc_bits"] is None and rows[1]["val_nelbo_sc_bits"] > 0
    assert set(payload["references"]) == {"real held-out windows", "markov3 chain fit on train"}
    assert all(r["n_samples"] == 8 and "kmer_entropy" in r for r in payload["references"].values())
    assert "ablation on DNA" in section and "| mask_add@1 | 4 | 1.0 |" in section
    assert (out / "selfcond_dna_frontier.png").exists() and "(selfcond_dna_frontier.png)" in section
    monkeypatch.setattr(sys, "argv", ["selfcond_domain.py", "--base", str(base), "--domain", "image"])
    with pytest.raises(SystemExit):
        selfcond_domain.main()
    assert "is a dna model, not image" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["selfcond_domain.py", "--base", str(base), "--out", str(out), "--arms",
                                      "projection@1", "--seeds", "0", "--T", "4", "--num-samples", "8", "--no-docs",
                                      "--cached-only"])
    with pytest.raises(SystemExit, match="no rows for arms"):
        selfcond_domain.main()

    # Another session: only the committed results file is left (no runs, no row cache). The sweep resumes from its
    # rows: nothing is post-trained or sampled again. With more post-training steps (another context) nothing of it
    # is reused.
    committed = tmp_path / "clone" / "benchmarks" / "results"
    committed.mkdir(parents=True)
    (committed / "selfcond_dna.json").write_text((out / "selfcond_dna.json").read_text())
    (out / "rows.jsonl").unlink()
    monkeypatch.setattr(selfcond_domain, "ROOT", tmp_path / "clone")
    argv = ["selfcond_domain.py", "--base", str(base), "--out", str(out), "--arms", "control", "mask_add@1",
            "--seeds", "0", "--steps", "2", "--T", "4", "--temperatures", "0.9", "1.0", "--num-samples", "8",
            "--no-docs", *POST]
    monkeypatch.setattr(sys, "argv", argv)
    assert selfcond_domain.main() == 0
    assert not (out / "control").exists() and not (out / "rows.jsonl").exists()
    assert json.loads((out / "selfcond_dna.json").read_text())["rows"] == rows
    assert all(r["context"] == payload["context"] for r in rows)
    assert payload["context"].startswith("sha256:") and " steps=2 train.batch_size=16 " in payload["context"]
    monkeypatch.setattr(sys, "argv", [*argv, "--cached-only", "--steps", "3"])
    with pytest.raises(SystemExit, match="no rows for arms"):
        selfcond_domain.main()


def test_run_context_names_the_base_steps_and_overrides() -> None:
    assert selfcond_domain.run_context("sha256:00ff", 400, []) == "sha256:00ff steps=400"
    assert (selfcond_domain.run_context("sha256:00ff", 400, ["train.seed=3", "train.lr=3e-4"])
            == "sha256:00ff steps=400 train.lr=3e-4 train.seed=3")  # sorted: the order typed does not matter


@pytest.mark.skipif(not have_sklearn(), reason=DIGITS_MISSING)
def test_image_ablation_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SCMDM_CACHE", str(tmp_path / "cache"))  # the CNN is trained on first use and cached
    base = tmp_path / "base"
    assert cli(["train", "--domain", "image", "--out", str(base), "--no-progress", "data.source=digits",
                "image.levels=4", "data.subset=512", *MODEL]) == 0
    rows, payload, section = ablate_twice(base, tmp_path / "ablation", "image", monkeypatch, capsys)
    assert len(rows) == 4 and all(r["fd_cnn"] > 0 and r["feature_spread"] > 0 and 0 <= r["class_entropy"] <= 3.33
                                  for r in rows)
    real, independent = payload["references"]["real held-out images"], payload["references"][
        "pixel-independent samples"]
    assert real["fd_cnn"] < independent["fd_cnn"] and real["n_samples"] == independent["n_samples"] == 8
    assert "ablation on images" in section and "not Inception FID" in section and "margin @ spread" in section
    assert "The CNN: digits" in section and section.count("not Inception FID") == 1  # fd_cnn is defined once


@pytest.mark.skipif(not have_genomes(), reason="the bacterial genomes are not installed")
def test_hint_sampling_diagnostic_on_dna(tmp_path, monkeypatch, capsys) -> None:
    """benchmarks/selfcond_hint_sampling.py outside QM9: a self-conditioned DNA model's three hint regimes, each with
    the DNA evaluator's metrics and this script's 6-mer entropy; fresh costs two network evaluations a step."""
    from benchmarks import selfcond_hint_sampling

    run = tmp_path / "sc"
    assert cli(["train", "--domain", "dna", "--out", str(run), "--no-progress", f"data.source={ECOLI}",
                "data.max_length=64", "data.subset=512", "selfcond.injection=mask_add", "selfcond.rate=1",
                *MODEL]) == 0
    out = tmp_path / "rows.json"
    monkeypatch.setattr(sys, "argv", ["selfcond_hint_sampling.py", str(run), "--T", "4", "--num-samples", "8",
                                      "--seed", "0", "--out", str(out)])
    assert selfcond_hint_sampling.main() == 0
    rows = json.loads(out.read_text())
    assert [(r["hint"], r["nfe"]) for r in rows] == [("chained", 4), ("fresh", 8), ("null", 4)]
    assert all(r["n_samples"] == 8 and r["js_6"] > 0 and 0 < r["kmer_entropy"] <= 12 for r in rows)
    table = capsys.readouterr().out
    assert "| run | hint | js_6 | gc_w1 | kmer_entropy | nearest_identity | NFE | seconds |" in table
    assert table.count("| fresh |") == 1
