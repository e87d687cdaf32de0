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
    compiled = []  # sample.compile=true reaches torch.compile (compiled sampling: sampling/test_hot_paths.py)
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
def test_demo_shows_both_methods_side_by_side(tmp_path, capsys) -> None:
    """The demo on a tiny base and verifier: both post-trained arms run the same steps from the base, and the table
    has the reference, the base, the control, the self-conditioned model and the speculative row."""
    base, spec, out = tmp_path / "base", tmp_path / "spec", tmp_path / "demo"
    assert main(["train", "--out", str(base), "--no-progress", *TINY]) == 0
    assert main(["posttrain", "--from", str(base), "--out", str(spec), "--speculative", "--no-progress",
                 "train.steps=2", "train.batch_size=32", "train.val_sequences=32", "train.val_num_t=2"]) == 0
    capsys.readouterr()
    argv = ["demo", "--out", str(out), "--base", str(base), "--verifier", str(spec), "--no-progress", "train.steps=2",
            "train.batch_size=32", "sample.num_samples=20", "sample.steps=4", "sample.window=3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for row in ("real held-out molecules (n=20)", "base model, ancestral", "control (vanilla post-training)",
                "self-conditioned (mask_add), ancestral", "base + verifier, speculative (W ≤ 3, cosine)"):
        assert row in printed, row
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert len(rows) == 5 and rows["base + verifier, speculative (W ≤ 3, cosine)"]["nfe"] < 24
    for arm in ("control", "selfcond"):
        state = json.loads(sorted((out / arm / "checkpoints").glob("step_*"))[-1].joinpath("state.json").read_text())
        assert state["step"] == 2 and state["init_from"].endswith("step_0000004")
    assert {p.name for p in out.glob("samples_*.smi")} == {f"samples_{arm}.smi" for arm in
                                                           ("base", "control", "selfcond", "speculative")}
    assert main(["demo", "--out", str(out), "--base", str(tmp_path / "nowhere")]) == 2  # one clear line
    assert "the QM9 base model is not at" in capsys.readouterr().err


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
        main(["train", "--help"])
    text = capsys.readouterr().out
    for key in ("train.lr", "model.block_type", "diffusion.schedule", "data.max_length", "text.tokenizer", "dna.stride",
                "image.levels", "molecule.too_long", "selfcond.injection", "speculative.causal_layers"):
        assert key in text, key
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    for key in ("train.steps", "sample.precision", "sample.window", "selfcond.injection", "--base", "--verifier"):
        assert key in text, key


@requires_qm9
def test_every_sampler_from_the_command_line(tmp_path, capsys) -> None:
    """The samplers added beside ancestral / cached / top-k / speculative, by name, with their knobs."""
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY]) == 0
    for knobs in (["sample.sampler=first_hitting"],
                  ["sample.sampler=remdm", "sample.remask=loop", "sample.steps=30"],
                  ["sample.sampler=remdm", "sample.remask=conf", "sample.eta=0.5"],
                  ["sample.sampler=blocks", "sample.block_size=6"],
                  ["sample.sampler=threshold", "sample.threshold=0.6"]):
        out = tmp_path / "s.smi"
        argv = ["sample", str(run), "--out", str(out), "--force", "--no-progress", "sample.num_samples=6", *knobs]
        assert main(argv) == 0, knobs
        assert len(out.read_text().splitlines()) == 6
    assert main(["eval", str(run), "--no-progress", "sample.num_samples=6", "sample.sampler=threshold"]) == 0
    assert "threshold threshold=0.9 block_size=8" in capsys.readouterr().out
    assert main(["sample", str(run), "sample.sampler=remdm", "sample.remask=sometimes"]) == 2
    assert "sample.remask must be one of cap, rescale, conf, loop" in capsys.readouterr().err


def _shown_defaults(text: str, marker: str) -> dict[str, object]:
    """``section.key`` → the value --help shows as taken from ``marker`` (a bundled config's file name)."""
    import ast
    import re

    found = {}
    for match in re.finditer(rf"^  (\w+\.\w+) = (.+?)  \({re.escape(marker)}\)", text, flags=re.MULTILINE):
        found[match.group(1)] = ast.literal_eval(match.group(2))
    return found


def test_help_shows_the_defaults_each_command_uses(capsys) -> None:
    """posttrain's help shows what its own config (selfcond.yaml, or speculative.yaml with --speculative) sets, and
    says the rest comes from the model; every value it shows is the one post-training really gets."""
    from scmdm.config import Config, bundled_configs, load_config

    with pytest.raises(SystemExit):
        main(["posttrain", "--help"])
    text = capsys.readouterr().out
    assert "selfcond.injection = 'mask_add'  (selfcond.yaml); with --speculative: the model's" in text
    assert ("speculative.causal_layers = the model's (built-in default 0); with --speculative: 1 "
            "(speculative.yaml)") in text
    assert "train.batch_size = the model's (built-in default 256)" in text
    shown = _shown_defaults(text, "selfcond.yaml")
    assert len(shown) >= 10 and shown["selfcond.injection"] == "mask_add"
    applied = load_config(bundled_configs()["selfcond"], base=Config().validate())
    for key, value in shown.items():
        section, name = key.split(".")
        assert getattr(getattr(applied, section), name) == value, key
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "sample.steps = the checkpoint's (built-in default 64)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    demo = _shown_defaults(capsys.readouterr().out, "demo.yaml")
    assert demo["train.steps"] == 100 and demo["sample.window"] == 6


@requires_qm9
def test_eval_prints_both_nelbos_of_a_self_conditioned_model_and_writes_its_samples(tmp_path, capsys, monkeypatch,
                                                                                    tiny_data) -> None:
    import shutil

    from scmdm.checkpoint import load_checkpoint
    from tests.conftest import TINY as SETTINGS

    monkeypatch.setattr("scmdm.training.trainer.prepare_data", lambda *a, **k: tiny_data)
    base, sc = tmp_path / "base", tmp_path / "sc"
    assert main(["train", "--out", str(base), "--no-progress", *SETTINGS, "train.threads=1"]) == 0
    assert main(["posttrain", "--from", str(base), "--out", str(sc), "--no-progress", "train.steps=2",
                 "train.eval_every=0", "train.save_every=0", "train.val_sequences=64", "train.val_num_t=2"]) == 0
    state = load_checkpoint(sc).state
    capsys.readouterr()
    out = tmp_path / "drawn" / "s.smi"
    assert main(["eval", str(sc), "--no-progress", "--out", str(out), "sample.num_samples=5", "sample.steps=4"]) == 0
    printed = capsys.readouterr()
    line = next(x for x in printed.out.splitlines() if x.startswith("checkpoint validation"))
    assert (f"validation NELBO (EMA weights) {state['val_nelbo_bits']:.4f}; validation NELBO, two-pass "
            f"(self-conditioned) {state['val_nelbo_sc_bits']:.4f}") in line
    assert len(out.read_text().splitlines()) == 5 and f"wrote the 5 samples it scored to {out}" in printed.err
    assert main(["eval", str(sc), "--out", str(out), "sample.num_samples=5"]) == 2  # never overwritten silently
    assert "already exists; give --force" in capsys.readouterr().err
    assert main(["eval", str(sc), "--samples", str(out), "--out", str(tmp_path / "x.smi")]) == 2
    assert "with --samples they are already in" in capsys.readouterr().err
    # a checkpoint whose state lacks the two-pass value (written before it was recorded): computed, the same number
    old = tmp_path / "old"
    shutil.copytree(load_checkpoint(sc).path, old)
    (old / "checksums.json").unlink()
    recorded = json.loads((old / "state.json").read_text())
    del recorded["val_nelbo_sc_bits"]
    (old / "state.json").write_text(json.dumps(recorded))
    assert main(["eval", str(old), "--no-progress", "sample.num_samples=2", "sample.steps=2"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("checkpoint validation"))
    assert f"two-pass (self-conditioned) {state['val_nelbo_sc_bits']:.4f}" in line
