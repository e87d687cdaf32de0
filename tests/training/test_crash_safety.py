"""Crash safety: a training run killed with SIGKILL at several moments resumes from its last checkpoint and
ends with exactly the weights of an uninterrupted run; a non-finite loss keeps the last good checkpoint."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scmdm.checkpoint import load_checkpoint
from scmdm.cli import main
from scmdm.training import read_metrics
from tests.conftest import requires_qm9

STEPS = 16
TINY = ["model.depth=1", "model.width=32", "model.heads=2", "model.dropout=0.1", "data.subset=512",
        "train.batch_size=64", f"train.steps={STEPS}", "train.warmup_steps=2", "train.eval_every=4",
        "train.save_every=2", "train.keep_checkpoints=2", "train.val_sequences=64", "train.val_num_t=2",
        "train.log_every=1", "train.ema_decay=0.9", "train.threads=1", "train.device=cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _launch(run: Path, log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "scmdm.cli", "train", "--out", str(run), "--no-progress", *TINY],
                            stdout=handle, stderr=subprocess.STDOUT, env=ENV)


def _newest_step(run: Path) -> int:
    steps = [int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("step_*")] if run.exists() else []
    return max(steps, default=-1)


def _kill_after_checkpoint(proc: subprocess.Popen, run: Path, step: int, delay: float) -> int:
    """SIGKILL ``proc`` ``delay`` seconds after a checkpoint of at least ``step`` appears; return the newest
    checkpoint step on disk afterwards. Fails if the process finished before it could be killed."""
    deadline = time.monotonic() + 120
    while _newest_step(run) < step:
        assert proc.poll() is None, f"training finished (rc {proc.returncode}) before checkpoint {step} was seen"
        assert time.monotonic() < deadline, "timed out waiting for a checkpoint"
        time.sleep(0.002)
    time.sleep(delay)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    return _newest_step(run)


def _tensors(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {name: load_file(str(folder / f"{name}.safetensors")) for name in ("model", "ema", "optimizer")}


@requires_qm9
def test_sigkill_at_several_moments_then_resume_gives_identical_weights(tmp_path) -> None:
    rng = random.Random(20240611)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    log = tmp_path / "killed.log"

    assert _launch(straight, tmp_path / "straight.log").wait(timeout=300) == 0

    # 1st kill: right after the first checkpoint appears; 2nd: a few ms after a later one (so possibly in
    # the middle of the next save); 3rd: after a random checkpoint plus a random delay, both from a seeded RNG.
    moments = [(2, 0.0), (8, rng.uniform(0.0, 0.02)), (rng.choice([10, 12]), rng.uniform(0.0, 0.05))]
    on_disk = []
    for step, delay in moments:
        on_disk.append(_kill_after_checkpoint(_launch(killed, log), killed, step, delay))
    assert on_disk[0] >= 2 and on_disk[-1] < STEPS, on_disk

    # what a kill in the middle of a write leaves behind: a temporary folder and a half-written metrics line
    leftover = killed / "checkpoints" / f".tmp_step_{on_disk[-1] + 1:07d}_999999"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(os.urandom(100))
    with (killed / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 99, "loss_b')
    assert load_checkpoint(killed).state["step"] == on_disk[-1]  # the leftover is ignored

    assert _launch(killed, log).wait(timeout=300) == 0
    output = log.read_text()
    assert output.count("resuming from") == len(moments), output
    assert f"trained to step {STEPS}" in output

    # exactly the weights, EMA weights and optimizer moments of the uninterrupted run
    a = _tensors(straight / "checkpoints" / f"step_{STEPS:07d}")
    b = _tensors(killed / "checkpoints" / f"step_{STEPS:07d}")
    for kind in a:
        assert a[kind].keys() == b[kind].keys()
        for name in a[kind]:
            assert torch.equal(a[kind][name], b[kind][name]), (kind, name)

    # leftovers cleaned up, the newest train.keep_checkpoints kept
    names = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert names == [f"step_{STEPS - 2:07d}", f"step_{STEPS:07d}"]

    # metrics.jsonl: every line complete JSON, every step logged once, with the uninterrupted run's losses
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    train_rows = [(r["step"], r["loss_bits"]) for r in rows if "loss_bits" in r]
    assert train_rows == [(r["step"], r["loss_bits"]) for r in read_metrics(straight / "metrics.jsonl")
                          if "loss_bits" in r]
    assert [s for s, _ in train_rows] == list(range(1, STEPS + 1))
    val = [(r["step"], r["val_nelbo_bits"]) for r in rows if "val_nelbo_bits" in r]
    assert val == [(r["step"], r["val_nelbo_bits"]) for r in read_metrics(straight / "metrics.jsonl")
                   if "val_nelbo_bits" in r]


def test_read_metrics_skips_a_half_written_line(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss_bits": 2.0}\n{"step": 2, "loss_bits": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


@requires_qm9
def test_non_finite_loss_in_the_cli_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch) -> None:
    import scmdm.objectives.nelbo

    real_loss = scmdm.objectives.nelbo.nelbo_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real_loss(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 3:  # steps 1-3 are fine, step 4 diverges
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(scmdm.objectives.nelbo, "nelbo_loss", poisoned)
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--no-progress", *[o for o in TINY if "save_every" not in o],
            "train.save_every=2", "train.eval_every=0"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "the training loss became nan at step 3" in err and "step_0000002, is kept" in err
    loaded = load_checkpoint(run)  # the last good checkpoint still loads
    assert loaded.state["step"] == 2 and all(torch.isfinite(t).all() for t in loaded.model.state_dict().values())


def test_nan_gradient_is_caught_before_the_update(tmp_path) -> None:
    pytest.importorskip("rdkit")
    from scmdm.config import load_config
    from scmdm.domains import prepare_data
    from scmdm.training import Trainer

    smiles = tmp_path / "m.smi"
    smiles.write_text("\n".join(["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCC", "OCCO", "CN", "CCl"] * 2) + "\n")
    config = load_config(None, ["model.depth=1", "model.width=32", "model.heads=2", f"data.source={smiles}",
                                "data.valid_fraction=0.2", "data.test_fraction=0.2", "train.batch_size=2",
                                "train.grad_clip=0", "train.val_sequences=2", "train.threads=1"])
    trainer = Trainer(config, tmp_path / "run", data=prepare_data(config), show_progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.vocab_embed.embedding.register_hook(lambda g: g * float("inf"))
    with pytest.raises(FloatingPointError, match="gradient norm became"):
        trainer.train_step()
    for name, tensor in trainer.model.state_dict().items():  # untouched
        assert torch.equal(tensor, before[name]), name


#: a tiny run checkpointed and validated every 2 steps (the ``tiny_data`` settings)
EVERY_2 = ["train.save_every=2", "train.eval_every=2", "train.keep_checkpoints=5", "train.threads=1",
           "train.device=cpu"]


@requires_qm9
def test_a_non_finite_validation_stops_before_the_checkpoint(tmp_path, capsys, monkeypatch, tiny_data) -> None:
    """Validation at step 2 is fine, at step 4 it is NaN: training stops (exit 1, one line) without writing step 4,
    so the rotation never gets to delete the good step-2 checkpoint for it."""
    import scmdm.objectives.nelbo
    from tests.conftest import TINY as TINY_SETTINGS

    real, calls = scmdm.objectives.nelbo.validation_nelbo, []

    def diverged(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs) if len(calls) == 1 else float("nan")

    monkeypatch.setattr(scmdm.objectives.nelbo, "validation_nelbo", diverged)
    monkeypatch.setattr("scmdm.training.trainer.prepare_data", lambda *a, **k: tiny_data)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY_SETTINGS, *EVERY_2, "train.steps=4",
                 "train.keep_checkpoints=1"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("the validation NELBO became nan at step 4; stopped without writing a checkpoint; the last checkpoint, "
            f"{run}/checkpoints/step_0000002, is kept") in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002"]


@requires_qm9
def test_resume_from_an_older_checkpoint_when_the_newest_is_damaged(tmp_path, capsys, monkeypatch, tiny_data) -> None:
    """The newest checkpoint is damaged: the error says which older one is intact and how to resume from it; doing so
    (--from-checkpoint) moves the damaged one aside and ends with exactly the weights of an uninterrupted run."""
    from scmdm.files import verify_folder
    from tests.conftest import TINY as TINY_SETTINGS
    from tests.conftest import train_tiny

    monkeypatch.setattr("scmdm.training.trainer.prepare_data", lambda *a, **k: tiny_data)
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--no-progress", *TINY_SETTINGS, *EVERY_2]
    assert main([*argv, "train.steps=4"]) == 0
    ema = run / "checkpoints" / "step_0000004" / "ema.safetensors"
    data = bytearray(ema.read_bytes())
    data[-5] ^= 0xFF
    ema.write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*argv, "train.steps=6"]) == 2
    err = capsys.readouterr().err
    assert f"{ema} is damaged" in err and f"an older intact checkpoint exists: {run}/checkpoints/step_0000002" in err
    assert main([*argv, "train.steps=6", "--from-checkpoint", "9"]) == 2
    assert "no checkpoint" in (err := capsys.readouterr().err) and "this run has: step_0000002, step_0000004" in err
    assert main([*argv, "train.steps=6", "--from-checkpoint", "step_0000002"]) == 0
    err = capsys.readouterr().err
    assert f"moved {run}/checkpoints/step_0000004 aside to {run}/checkpoints/superseded_step_0000004" in err
    assert f"resuming from {run}/checkpoints/step_0000002 (step 2 of 6)" in err
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_0000002", "step_0000004", "step_0000006", "superseded_step_0000004"]
    assert verify_folder(run / "checkpoints" / "step_0000006") == []
    _, straight = train_tiny(tmp_path / "straight", tiny_data, [*EVERY_2, "train.steps=6"])
    a, b = _tensors(straight.checkpoint), _tensors(run / "checkpoints" / "step_0000006")
    for kind in a:
        assert all(torch.equal(a[kind][k], b[kind][k]) for k in a[kind]), kind
