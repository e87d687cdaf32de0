"""Two processes under torchrun (gloo on CPU) train as one process with the same global batch.

``torchrun --standalone --nproc_per_node=2 -m scmdm train ...`` on a tiny real QM9 model, compared with the same
run in one process. The per-row terms of the loss are summed in another order across processes and
micro-batches, so the two agree to float32 round-off, not bit for bit. Tolerances:

* AdamW moments (linear in the gradients): 1e-5 of each tensor's largest entry (measured ≤ 4e-7). A wrong
  normalisation (a factor W or rows/B missing) or a wrong row or noise split changes them by far more.
* weights and EMA: 1e-5 absolute, 1 % of one step at lr 1e-3 (measured ≤ 1e-6): AdamW divides each moment by
  √v + ε, which turns the round-off of an entry whose gradient is nearly zero into a visible step.
* loss and gradient norm of every step, validation NELBO: relative 1e-5.

Resuming in distributed mode from a checkpoint continues bit for bit. Each launch costs ~5–15 s (starting
Python, torch and the data in every process), hence ``slow``; ``make test`` runs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import scmdm
from scmdm.checkpoint import read_weights
from scmdm.config import load_config
from scmdm.training import Trainer, read_metrics
from tests.conftest import EXACT, OBJECTIVES, requires_qm9

pytestmark = [pytest.mark.slow, requires_qm9]
WEIGHTS, MOMENTS = 1e-5, 1e-5


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m scmdm ARGS`` with this checkout's scmdm, one thread each."""
    source = str(Path(scmdm.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "scmdm", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def largest_difference(a: Path, b: Path, name: str, *, relative: bool = False) -> float:
    """The largest difference between two checkpoints' tensors of one file (relative: to each tensor's largest
    entry)."""
    x, y = read_weights(a / f"{name}.safetensors"), read_weights(b / f"{name}.safetensors")
    assert x.keys() == y.keys(), name
    return max((x[k].double() - y[k].double()).abs().max().item()
               / (y[k].double().abs().max().item() or 1.0 if relative else 1.0) for k in x)


def assert_agree(a: Path, b: Path) -> None:
    for name in ("model", "ema"):
        assert largest_difference(a, b, name) <= WEIGHTS, name
    assert largest_difference(a, b, "optimizer", relative=True) <= MOMENTS


def test_two_processes_train_as_one_and_resume_exactly(tmp_path, tiny_data) -> None:
    """DDP, 2 processes × 2 micro-batches against 1 × 1: the self-conditioned objective (two passes, token
    carry, hint dropout and noise, one-pass steps leaving the projection without gradient)."""
    overrides = [*EXACT, *OBJECTIVES["selfcond"], "train.device=cpu", "train.eval_every=2", "train.save_every=2",
                 "train.keep_checkpoints=5"]
    two = tmp_path / "two"
    proc = torchrun("train", "--out", str(two), "--no-progress", *overrides, "train.grad_accum=2", cwd=tmp_path)
    assert proc.stdout.count("trained to step 4") == 1  # rank 0 alone reports
    one = Trainer(load_config(None, overrides), tmp_path / "one", data=tiny_data, show_progress=False).fit()

    last = two / "checkpoints" / "step_0000004"
    assert_agree(last, one.checkpoint)
    rng = read_weights(last / "rng.safetensors")
    assert "torch_rank1" in rng and torch.equal(rng["noise"], read_weights(one.checkpoint / "rng.safetensors")["noise"])
    rows_two, rows_one = read_metrics(two / "metrics.jsonl"), read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one] == [1, 2, 2, 3, 4, 4]  # written once
    for a, b in zip(rows_two, rows_one, strict=True):
        for key in ("loss_bits", "grad_norm", "val_nelbo_bits", "val_nelbo_sc_bits"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5), (a["step"], key)

    # stopped after step 2: a fresh folder with only that checkpoint, resumed by two processes
    resumed = tmp_path / "resumed"
    shutil.copytree(two / "checkpoints" / "step_0000002", resumed / "checkpoints" / "step_0000002")
    proc = torchrun("train", "--out", str(resumed), "--no-progress", *overrides, "train.grad_accum=2", cwd=tmp_path)
    assert proc.stderr.count("resuming from") == 1
    for name in ("model", "ema", "optimizer", "rng"):
        assert largest_difference(resumed / "checkpoints" / "step_0000004", last, name) == 0.0, name


def test_fsdp_posttraining_of_the_verifier_on_two_processes(tmp_path, tiny_data) -> None:
    """``posttrain --speculative`` under FSDP: the frozen-trunk verifier objective, sharded over 2 processes,
    against one process; the checkpoint holds full tensors and the trunk did not move."""
    from scmdm.workflows import post_train_config

    Trainer(load_config(None, [*EXACT, "train.steps=2"]), tmp_path / "base", data=tiny_data, show_progress=False).fit()
    overrides = ["train.steps=3", "train.warmup_steps=1", "train.eval_every=0", "train.save_every=0",
                 "train.val_sequences=64", "train.val_num_t=2", "train.device=cpu", "train.threads=1"]
    two = tmp_path / "two"
    torchrun("posttrain", "--from", str(tmp_path / "base"), "--out", str(two), "--speculative", "--no-progress",
             *overrides, "train.fsdp=true", cwd=tmp_path)
    config = post_train_config(tmp_path / "base", overrides, "speculative")
    one = Trainer(config, tmp_path / "one", data=tiny_data, show_progress=False, init_from=tmp_path / "base").fit()
    last = two / "checkpoints" / "step_0000003"
    assert_agree(last, one.checkpoint)
    base = read_weights(sorted((tmp_path / "base" / "checkpoints").glob("step_*"))[-1] / "ema.safetensors")
    weights = read_weights(last / "model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in base.items())  # the trunk is frozen
    assert weights["causal.out_proj.weight"].abs().sum() > 0  # the verifier learned
