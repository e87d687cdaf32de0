"""The self-speculative objective (scmdm.objectives.speculative): the joint loss by hand, frozen-trunk gradients,
a fresh verifier costs nothing, and training and post-training with it on tiny real QM9 models through the
Trainer and the command line."""

from __future__ import annotations

import json

import pytest
import torch

from scmdm.diffusion import masked_token_nll, subs_log_probs
from scmdm.objectives.speculative import speculative_loss, trainable_parameters
from scmdm.sampling import generate
from scmdm.schedules import get_schedule
from scmdm.tracks import gather_tracks
from tests.conftest import requires_qm9, tiny_model, train_tiny

pytestmark = pytest.mark.usefixtures("single_thread")

REAL, L = 3, 4  # 3 real tokens + MASK, a canvas of 4
MASK = REAL
#: one causal layer, the output head scaled so that drafts are far from uniform; with random_verifier=True the
#: verifier's output projection is drawn, so that its target differs from the draft
VERIFIER = dict(head_scale=3.0, causal_layers=1)


# ---- the loss ---------------------------------------------------------------------------------------------
def test_joint_loss_by_hand_and_frozen_trunk_gradients() -> None:
    model = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True)
    model.train()
    x0 = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    order = torch.tensor([[2, 0, 3, 1], [0, 1, 2, 3]])
    revealed = torch.tensor([1, 3])
    out = speculative_loss(model, x0, MASK, order=order, revealed=revealed)
    x_t = torch.tensor([[MASK, MASK, 2, MASK], [2, 2, 1, MASK]])
    with torch.no_grad():
        draft = masked_token_nll(model(x_t), x0, x_t, MASK)  # the MDM's own prediction at the masked positions
        h, cond = model.encode(x_t)
        log_q = subs_log_probs(model.verify(gather_tracks(h, order), cond, order, gather_tracks(x0, order)),
                               gather_tracks(x_t, order), MASK)
    # row 0: masked block σ(2..4) = positions 0, 3, 1 (tracks 1, 2, 3); row 1: σ(4) = position 3 (track 3)
    target = torch.stack([-(log_q[0, 1, 0] + log_q[0, 2, 0] + log_q[0, 3, 1]), -log_q[1, 3, 0]])
    expected = ((4 / 3) * (draft[0] + target[0]) + (4 / 1) * (draft[1] + target[1])) / 2 / 4
    torch.testing.assert_close(out.loss.detach(), expected)
    torch.testing.assert_close(out.draft + out.target, expected)

    def grads(freeze: bool) -> dict[str, bool]:
        model.zero_grad(set_to_none=True)
        speculative_loss(model, x0, MASK, order=order, revealed=revealed, freeze_trunk=freeze).loss.backward()
        return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}

    free = grads(False)
    assert free["blocks.0.attn_qkv.weight"] and free["causal.blocks.0.attn_qkv.weight"]
    params = trainable_parameters(model)  # what the trainer optimises with a frozen trunk: the verifier only
    assert {id(p) for p in params} == {id(p) for n, p in model.named_parameters() if n.startswith("causal.")}
    frozen = grads(True)  # the trunk runs without gradient; the shared head passes gradient but does not move
    assert {name for name, g in frozen.items() if g} == {name for name in frozen if name.startswith("causal.")}


def test_a_fresh_verifier_costs_nothing_in_the_loss() -> None:
    """Zero-initialised verifier: q = p, so the target term equals the draft term."""
    model = tiny_model(REAL + 1, L, **VERIFIER)
    x0 = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    out = speculative_loss(model, x0, MASK, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.draft, out.target)


# ---- training and the command line on tiny QM9 models -----------------------------------------------------
@requires_qm9
def test_train_from_scratch_with_the_joint_loss(tmp_path, tiny_data, capsys) -> None:
    from scmdm.checkpoint import load_checkpoint
    from scmdm.cli import main

    _, result = train_tiny(tmp_path / "spec", tiny_data, ["speculative.causal_layers=1", "speculative.head=separate"])
    assert result.validation.get("val_target_bits") is not None
    rows = [json.loads(line) for line in (tmp_path / "spec" / "metrics.jsonl").read_text().splitlines()]
    assert {"draft_bits", "target_bits"} <= set(rows[0]) and "val_draft_bits" in rows[-1]
    loaded = load_checkpoint(tmp_path / "spec")
    assert loaded.model.speculative and loaded.model.causal.output_layer is not None
    assert main(["sample", str(tmp_path / "spec"), "--no-progress", "sample.num_samples=8",
                 "sample.sampler=speculative", "sample.window=4", "sample.window_schedule=cosine"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8


@requires_qm9
def test_posttrain_speculative_freezes_the_trunk(tmp_path, tiny_data, capsys) -> None:
    from scmdm.checkpoint import load_checkpoint, read_weights
    from scmdm.cli import main

    train_tiny(tmp_path / "base", tiny_data)
    base = load_checkpoint(tmp_path / "base")
    assert main(["sample", str(tmp_path / "base"), "--no-progress", "sample.num_samples=2",
                 "sample.sampler=speculative"]) == 2
    assert "--speculative" in capsys.readouterr().err  # says how to get a verifier
    assert main(["posttrain", "--from", str(tmp_path / "base"), "--out", str(tmp_path / "spec"), "--speculative",
                 "--no-progress", "train.steps=3", "train.eval_every=0", "train.save_every=0",
                 "train.val_sequences=64"]) == 0
    assert "validation NLL of the verifier's target" in capsys.readouterr().out
    spec = load_checkpoint(tmp_path / "spec")
    assert spec.config.speculative.freeze_trunk and spec.config.speculative.causal_layers == 1
    assert spec.config.train.lr == 1e-3 and spec.config.model.width == 32  # configs/speculative.yaml on the base
    raw = read_weights(spec.path / "model.safetensors")
    for name, value in base.model.state_dict().items():  # the trunk did not move (raw and EMA weights)
        assert torch.equal(raw[name], value) and torch.equal(spec.model.state_dict()[name], value), name
    assert not torch.equal(raw["causal.out_proj.weight"], torch.zeros_like(raw["causal.out_proj.weight"]))
    assert spec.state["val_nelbo_bits"] == pytest.approx(base.state["val_nelbo_bits"])  # same draft model
    json_out = tmp_path / "m.json"
    assert main(["eval", str(tmp_path / "spec"), "--no-progress", "sample.num_samples=20",
                 "sample.sampler=speculative", "sample.window=3", "--json", str(json_out)]) == 0
    metrics = json.loads(json_out.read_text())["model"]
    assert metrics["nfe"] <= tiny_data.train.shape[1] and metrics["nfe_causal"] >= metrics["nfe"]
    assert "speculative W=3" in capsys.readouterr().out


@requires_qm9
def test_speculative_posttraining_of_a_self_conditioned_model(tmp_path, tiny_data) -> None:
    from scmdm.checkpoint import load_checkpoint
    from scmdm.training import Trainer
    from scmdm.workflows import post_train_config

    train_tiny(tmp_path / "sc", tiny_data, ["selfcond.injection=mask_add"])
    config = post_train_config(tmp_path / "sc", ["train.steps=2", "train.eval_every=0", "train.val_sequences=32"],
                               "speculative")
    assert config.selfcond.injection == "mask_add" and config.selfcond.rate == 1.0
    result = Trainer(config, tmp_path / "spec", data=tiny_data, show_progress=False, init_from=tmp_path / "sc").fit()
    assert {"val_target_bits", "val_nelbo_sc_bits"} <= set(result.validation)
    loaded = load_checkpoint(tmp_path / "spec")
    assert loaded.model.self_conditioned and loaded.model.speculative
    out = generate(loaded.model, get_schedule("loglinear"), mask_id=loaded.tokenizer.mask_id, num_samples=8,
                   length=loaded.config.data.max_length, sampler="speculative", window=4, show_progress=False)
    assert not (out.tokens == loaded.tokenizer.mask_id).any()
