"""The command line end to end on a tiny real model: train → sample → eval, demo, and clear errors."""

from __future__ import annotations

import json

import pytest

from scmdm.cli import main

from .conftest import requires_qm9

TINY = ["model.depth=1", "model.width=32", "model.heads=2", "data.subset=512", "train.batch_size=64",
        "train.steps=4", "train.warmup_steps=1", "train.eval_every=0", "train.val_sequences=64", "train.val_num_t=2"]


@requires_qm9
def test_train_sample_eval(tmp_path, capsys, monkeypatch) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY]) == 0
    assert "trained to step 4" in capsys.readouterr().out
    out = tmp_path / "samples.smi"
    assert main(["sample", str(run), "--out", str(out), "--no-progress", "sample.num_samples=20",
                 "sample.steps=8", "sample.sampler=cached"]) == 0
    assert len(out.read_text().splitlines()) == 20
    compiled = []  # sample.compile=true reaches torch.compile (the compiled sampling itself: test_sampling_hot_paths)
    monkeypatch.setattr("torch.compile", lambda model, **kw: compiled.append(model) or model)
    assert main(["sample", str(run), "--out", str(tmp_path / "c.smi"), "--no-progress", "sample.num_samples=4",
                 "sample.steps=4", "sample.compile=true"]) == 0
    assert len(compiled) == 1 and len((tmp_path / "c.smi").read_text().splitlines()) == 4
    metrics = tmp_path / "m.json"
    assert main(["eval", str(run), "--samples", str(out), "--json", str(metrics)]) == 0
    table = capsys.readouterr().out
    assert "real held-out molecules" in table and "validity" in table
    data = json.loads(metrics.read_text())
    assert data["model"]["n_samples"] == 20 and data["reference"]["validity"] == 1.0


@requires_qm9
def test_demo_pipeline_on_a_tiny_budget(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path), "--no-progress", *TINY, "sample.num_samples=30",
                 "sample.steps=8"]) == 0
    out = capsys.readouterr().out
    assert "MDM ancestral T=8" in out and "real held-out molecules (n=30)" in out
    assert (tmp_path / "samples.smi").exists() and (tmp_path / "loss_curve.png").exists()


@requires_qm9
def test_demo_with_the_self_conditioning_comparison(tmp_path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path), "--no-progress", "--selfcond-steps", "2", *TINY,
                 "sample.num_samples=20", "sample.steps=4"]) == 0
    out = capsys.readouterr().out
    assert "[4/4]" in out and "vanilla continuation ancestral T=4" in out
    assert "self-conditioned (mask_add, λ=1) ancestral T=4" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["models"]) == 2 and metrics["selfcond_steps"] == 2
    for arm in ("control", "selfcond"):
        state = json.loads(sorted((tmp_path / arm / "checkpoints").glob("step_*"))[-1].joinpath("state.json")
                           .read_text())
        assert state["step"] == 2 and state["init_from"].endswith("step_0000004")
    assert (tmp_path / "samples_control.smi").exists() and (tmp_path / "samples_selfcond.smi").exists()
    assert main(["demo", "--out", str(tmp_path / "x"), "--selfcond-steps", "2", "sample.sampler=cached"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "x", "train.steps=-3"], "train.steps must be positive"),
    (["train", "--out", "x", "sample.sampler=bogus"], "ancestral, cached, topk"),
    (["train", "--out", "x", "train.nosuchkey=1"], "unknown key 'train.nosuchkey'"),
    (["train", "--out", "x", "--config", "no_such_config"], "no config 'no_such_config'"),
    (["sample", "/nonexistent/run"], "no checkpoint found"),
])
def test_errors_are_one_line_not_tracebacks(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help_lists_every_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for key in ("train.lr", "sample.precision", "model.block_type", "diffusion.schedule", "data.max_length"):
        assert key in text
