"""benchmarks/speculative.py's own rules, on a tiny real QM9 model."""

from __future__ import annotations

import json

import pytest

from benchmarks import speculative as benchmark
from tests.conftest import requires_qm9, train_tiny

pytestmark = pytest.mark.usefixtures("single_thread")


@requires_qm9
def test_benchmark_never_extends_a_cached_verifier(tmp_path, tiny_data) -> None:
    """benchmarks/speculative.py reuses a finished verifier run and refuses one trained for another number of
    steps (its rows may be cached): it once silently extended a 400-step verifier to 1,000 steps when a trial
    left out --post-train-steps."""
    train_tiny(tmp_path / "base", tiny_data)
    overrides = ["train.steps=2", "train.eval_every=0", "train.save_every=0", "train.val_sequences=64",
                 "train.log_every=1", "train.warmup_steps=1"]
    run = benchmark.post_train(tmp_path / "base", tmp_path / "spec", "speculative", overrides)
    state = next((run / "checkpoints").glob("step_*/state.json"))
    assert json.loads(state.read_text())["step"] == 2
    written = state.stat().st_mtime_ns
    assert benchmark.post_train(tmp_path / "base", run, "speculative", overrides) == run  # done: reused
    assert state.stat().st_mtime_ns == written and len(list((run / "checkpoints").glob("step_*"))) == 1
    with pytest.raises(SystemExit, match="post-training of 2 steps"):
        benchmark.post_train(tmp_path / "base", run, "speculative", [*overrides, "train.steps=5"])
    assert len(list((run / "checkpoints").glob("step_*"))) == 1  # nothing was trained
