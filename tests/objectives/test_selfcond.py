"""The two-pass self-conditioned objective (scmdm.objectives.selfcond) in training: rate 0 is plain training exactly,
rate 1 and the hint lag change the updates, validation reports both NELBOs, and post-training a checkpoint through the
command line."""

from __future__ import annotations

import json

import torch

from scmdm.checkpoint import load_checkpoint
from scmdm.cli import main
from tests.conftest import requires_qm9, train_tiny


@requires_qm9
def test_rate_zero_is_plain_training_exactly(tmp_path, tiny_data) -> None:
    plain, _ = train_tiny(tmp_path / "plain", tiny_data)
    reference = plain.model.state_dict()
    for injection in ("projection", "mask_add"):
        trainer, result = train_tiny(tmp_path / f"rate0_{injection}", tiny_data,
                                     [f"selfcond.injection={injection}", "selfcond.rate=0"])
        state = trainer.model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in reference.items()), injection
        assert result.validation.get("val_nelbo_sc_bits") is not None  # a self-conditioned model reports both NELBOs
    trainer, _ = train_tiny(tmp_path / "rate1", tiny_data, ["selfcond.injection=mask_add", "selfcond.rate=1"])
    state = trainer.model.state_dict()
    assert not all(torch.equal(state[k], v) for k, v in reference.items())  # two-pass updates do differ
    # a hint lag reaches training (pass 1 sees a more-masked input), and lag 0 is the paper's rule exactly
    lag0, _ = train_tiny(tmp_path / "lag0", tiny_data, ["selfcond.injection=mask_add", "selfcond.rate=1",
                                                        "selfcond.hint_lag=0"])
    assert all(torch.equal(lag0.model.state_dict()[k], v) for k, v in state.items())
    lagged, _ = train_tiny(tmp_path / "lag", tiny_data, ["selfcond.injection=mask_add", "selfcond.rate=1",
                                                         "selfcond.hint_lag=0.125"])
    assert not all(torch.equal(lagged.model.state_dict()[k], v) for k, v in state.items())


@requires_qm9
def test_posttrain_from_a_checkpoint_and_sample(tmp_path, tiny_data, capsys) -> None:
    train_tiny(tmp_path / "base", tiny_data)
    capsys.readouterr()
    code = main(["posttrain", "--from", str(tmp_path / "base"), "--out", str(tmp_path / "sc"), "--no-progress",
                 "selfcond.injection=projection", "train.steps=3", "train.eval_every=0", "train.save_every=0",
                 "train.val_sequences=32"])
    assert code == 0, capsys.readouterr().err
    assert "two-pass (self-conditioned)" in capsys.readouterr().out
    loaded = load_checkpoint(tmp_path / "sc")
    assert loaded.model.self_conditioned and loaded.config.selfcond.injection == "projection"
    assert loaded.config.model.width == 32 and loaded.config.train.lr == 1e-4  # base config + configs/selfcond.yaml
    rows = [json.loads(line) for line in (tmp_path / "sc" / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if "val_nelbo_bits" in r][-1]
    assert {"val_nelbo_bits", "val_nelbo_sc_bits"} <= set(final)
    assert main(["sample", str(tmp_path / "sc"), "--no-progress", "sample.num_samples=4", "sample.steps=4"]) == 0
    assert main(["sample", str(tmp_path / "sc"), "--no-progress", "sample.num_samples=4", "sample.steps=4",
                 "sample.sampler=cached"]) == 2
    assert "self-conditioned" in capsys.readouterr().err
