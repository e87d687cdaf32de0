"""Tests of scmdm.training: the learning-rate schedule, the EMA and the batch order by hand; saving, resuming and
fitting a tiny real QM9 model; a non-finite loss stops with the last good checkpoint kept."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scmdm.checkpoint import load_checkpoint
from scmdm.config import load_config
from scmdm.training import EMA, Trainer, batch_indices, learning_rate
from tests.conftest import TINY, requires_qm9, train_tiny


def test_learning_rate_by_hand() -> None:
    kw = dict(lr=1.0, warmup=4, total=14, min_ratio=0.1)
    assert learning_rate(0, **kw) == 0.25 and learning_rate(3, **kw) == 1.0
    assert learning_rate(9, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine: cos(π/2) = 0
    assert learning_rate(14, **kw) == pytest.approx(0.1)


def test_ema_update_rule() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model, step=0)  # warm-up: d_0 = min(0.9, 1/10) = 0.1 → 0.1·1 + 0.9·3 = 2.8
    assert ema.state_dict()["weight"].item() == pytest.approx(2.8)
    assert ema.decay_at(5) == pytest.approx(6 / 15)
    with torch.no_grad():
        model.weight.fill_(4.0)
    ema.update(model, step=100)  # d_100 = min(0.9, 101/110) = 0.9 → 0.9·2.8 + 0.1·4 = 2.92
    assert ema.state_dict()["weight"].item() == pytest.approx(2.92)


def test_batch_order_is_a_function_of_the_step() -> None:
    a = batch_indices(7, num_examples=100, batch_size=30, seed=1)
    assert torch.equal(a, batch_indices(7, num_examples=100, batch_size=30, seed=1))
    epoch = torch.cat([batch_indices(s, num_examples=100, batch_size=30, seed=1) for s in range(3)])
    assert len(set(epoch.tolist())) == 90  # one epoch = 3 full batches without repetition
    with pytest.raises(ValueError, match="exceeds"):
        batch_indices(0, num_examples=10, batch_size=30, seed=1)


@requires_qm9
def test_save_load_resume_is_exact(tmp_path, tiny_data) -> None:
    config = load_config(None, TINY)
    straight = Trainer(config, tmp_path / "a", data=tiny_data, show_progress=False)
    losses = [straight.train_step()["loss"] for _ in range(6)]

    first = Trainer(config, tmp_path / "b", data=tiny_data, show_progress=False)
    for _ in range(3):
        first.train_step()
    first.save()
    del first
    resumed = Trainer(config, tmp_path / "b", data=tiny_data, show_progress=False)
    assert resumed.step == 3
    resumed_losses = [resumed.train_step()["loss"] for _ in range(3)]
    assert resumed_losses == losses[3:]  # identical next-step losses (dropout, times, masks, batches)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    for name, tensor in straight.ema.state_dict().items():
        assert torch.equal(tensor, resumed.ema.state_dict()[name]), name


@requires_qm9
def test_fit_writes_checkpoint_metrics_and_plot(tmp_path, tiny_data) -> None:
    trainer, result = train_tiny(tmp_path, tiny_data, ["train.save_every=3", "train.eval_every=3"])
    assert result.step == 6 and math.isfinite(result.val_nelbo_bits)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss_bits" in r] == [1, 2, 3, 4, 5, 6]
    assert any("val_nelbo_bits" in r for r in rows)
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    names = {p.name for p in result.checkpoint.iterdir()}
    assert {"model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors", "config.json",
            "tokenizer.json", "split.json", "state.json"} <= names
    loaded = load_checkpoint(tmp_path)
    assert loaded.path == result.checkpoint and loaded.state["step"] == 6
    ema = Trainer(trainer.config, tmp_path, data=tiny_data, show_progress=False).ema.state_dict()
    for name, tensor in loaded.model.state_dict().items():  # sampling uses the EMA weights
        assert torch.equal(tensor, ema[name])


@requires_qm9
def test_non_finite_loss_stops_with_a_message(tmp_path, tiny_data) -> None:
    trainer = Trainer(load_config(None, TINY), tmp_path, data=tiny_data, show_progress=False)
    trainer.train_step()
    good = trainer.save()
    with torch.no_grad():
        trainer.model.output_layer.linear.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="last good checkpoint.*step_0000001.*is kept"):
        trainer.fit()
    assert load_checkpoint(tmp_path).path == good  # still the newest checkpoint, and it loads
