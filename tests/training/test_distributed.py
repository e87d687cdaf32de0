"""Sharding and gradient accumulation, in one process: the rows rule by hand, pre-drawn noise equals a loss's
own draws, accumulated micro-batches give the one-batch gradient, and the Trainer under DDP and FSDP (a
process group of one) trains as without them. The two-process runs under torchrun are in test_torchrun.py; the
settings both use (EXACT, OBJECTIVES) are in tests/conftest.py."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from scmdm.config import ConfigError, load_config
from scmdm.diffusion import mask_tokens, nelbo_loss, sample_times
from scmdm.distributed import shard_rows
from scmdm.schedules import LogLinearSchedule
from scmdm.selfcond import draw_hint_noise, first_pass_hint
from tests.conftest import EXACT, OBJECTIVES, requires_qm9, tiny_model


def test_shard_rows_by_hand() -> None:
    # 10 rows, 2 processes × 2 micro-batches = 4 pieces of sizes 3, 3, 2, 2 (the first 10 mod 4 = 2 are longer)
    assert shard_rows(10, rank=0, world_size=2, micro_batches=2) == [slice(0, 3), slice(3, 6)]
    assert shard_rows(10, rank=1, world_size=2, micro_batches=2) == [slice(6, 8), slice(8, 10)]
    assert shard_rows(7) == [slice(0, 7)]
    pieces = [s for r in range(3) for s in shard_rows(64, rank=r, world_size=3, micro_batches=2)]
    assert [i for s in pieces for i in range(s.start, s.stop)] == list(range(64))  # each row once, in order
    with pytest.raises(ConfigError, match=r"train.batch_size \(3\) must be at least processes × train.grad_accum"):
        shard_rows(3, rank=0, world_size=2, micro_batches=2)


def test_pre_drawn_noise_is_the_losses_own_draw() -> None:
    """Drawing times, masks and hint noise up front (in the losses' order) gives what the losses draw
    themselves, and a slice of the rows gives those rows' values."""
    model = tiny_model(7, 5, width=8, self_conditioning="mask_add")
    schedule, mask = LogLinearSchedule(), 6
    x0 = torch.randint(0, 6, (6, 5))
    own = nelbo_loss(model, x0, schedule, mask, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = sample_times(6, generator=g)
    x_t = mask_tokens(x0, t, schedule, mask, g)
    assert torch.equal(nelbo_loss(model, x0, schedule, mask, t=t, x_t=x_t).loss, own.loss)
    with pytest.raises(ValueError, match="give both t and x_t"):
        nelbo_loss(model, x0, schedule, mask, t=t)

    kw = dict(carry="token", hint_dropout=0.3, hint_noise=0.5, hint_lag=0.25)
    hint = first_pass_hint(model, x_t, t, mask, **kw, schedule=schedule, generator=torch.Generator().manual_seed(4))
    draws = draw_hint_noise((6, 5, 7), **kw, generator=torch.Generator().manual_seed(4))
    assert draws.remask is not None
    assert torch.equal(first_pass_hint(model, x_t, t, mask, **kw, schedule=schedule, draws=draws), hint)
    rows = slice(2, 5)
    assert torch.equal(first_pass_hint(model, x_t[rows], t[rows], mask, **kw, schedule=schedule,
                                       draws=draws.rows(rows)), hint[rows])
    assert draw_hint_noise((6, 5, 7), carry="distribution") is None  # nothing to draw


def _run(config, path, data, steps: int = 4) -> tuple:
    """Losses, gradient norms and (clipped) gradients of each step, and the trainer."""
    from scmdm.training import Trainer

    trainer = Trainer(config, path, data=data, show_progress=False, resume=False)
    infos, grads = [], []
    for _ in range(steps):
        infos.append(trainer.train_step())
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
    return infos, grads, trainer


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@requires_qm9
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_gradient_accumulation_is_the_one_batch_step(tmp_path, tiny_data, objective: str) -> None:
    """64 rows in 3 micro-batches of 22, 21, 21: the same gradients, weights and EMA as one batch of 64, to
    float32 round-off. Tolerance: gradients to 1e-5 of their largest entry (the per-row terms are summed in
    another order, a relative error of a few float32 epsilons; measured ≤ 1e-6); weights and EMA after 4
    AdamW steps at lr 1e-3 to 1e-5, 1 % of one step (measured ≤ 2e-7; AdamW's division by √v + ε can turn
    the round-off of a nearly-zero gradient entry into a larger step). Weighting the micro-batches equally
    instead of by their rows changes the gradients by about 3 %."""
    one = _run(load_config(None, [*EXACT, *OBJECTIVES[objective]]), tmp_path / "one", tiny_data)
    three = _run(load_config(None, [*EXACT, *OBJECTIVES[objective], "train.grad_accum=3"]), tmp_path / "three",
                 tiny_data)
    for step, (a, b) in enumerate(zip(one[1], three[1], strict=True)):
        scale = max(g.abs().max().item() for g in a.values())
        assert _max_difference(a, b) <= 1e-5 * scale, step
    for a, b in zip(one[0], three[0], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    if objective == "selfcond":
        assert [i["two_pass"] for i in one[0]] == [True, False, True, False]
        assert "self_cond.proj.weight" not in one[1][1] and "self_cond.proj.weight" not in three[1][1]
    else:
        assert all(n.startswith("causal.") for n in one[1][0])  # the trunk is frozen
    assert _max_difference(one[2].model.state_dict(), three[2].model.state_dict()) <= 1e-5
    assert _max_difference(one[2].ema.state_dict(), three[2].ema.state_dict()) <= 1e-5


@contextmanager
def one_process_group(store: Path) -> Iterator[None]:
    """A gloo process group of this one process (what torchrun sets up, with one member)."""
    dist.init_process_group("gloo", store=dist.FileStore(str(store), 1), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@requires_qm9
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_trainer_under_ddp_trains_as_without(tmp_path, tiny_data, objective: str) -> None:
    """Both objectives run through DDP's forward (two passes, a frozen trunk, a projection left without
    gradient on one-pass updates) without DDP complaining, and train as the same run without a group."""
    from torch.nn.parallel import DistributedDataParallel

    config = load_config(None, [*EXACT, *OBJECTIVES[objective], "train.grad_accum=2"])
    reference = _run(config, tmp_path / "plain", tiny_data)[2]
    with one_process_group(tmp_path / "store"):
        trainer = _run(config, tmp_path / "ddp", tiny_data)[2]
        assert isinstance(trainer.runner, DistributedDataParallel)
        assert trainer.runner.find_unused_parameters == (objective == "selfcond")
        weights = trainer.model.state_dict()
        del trainer  # release DDP's reducer while its process group is up: freed after it, gloo may hang
        gc.collect()
    assert _max_difference(reference.model.state_dict(), weights) == 0.0


@requires_qm9
def test_fsdp_checkpoint_holds_full_tensors_and_resumes(tmp_path, tiny_data) -> None:
    """FSDP (one process): sharded training, checkpoints gathered into full tensors, resume into shards. The
    checkpoint holds the weights, EMA and optimizer state a run without FSDP writes, and resuming from it under
    FSDP continues exactly."""
    from scmdm.checkpoint import read_weights
    from scmdm.training import Trainer

    base = [*EXACT, *OBJECTIVES["selfcond"], "train.save_every=2", "train.keep_checkpoints=5"]
    plain = Trainer(load_config(None, base), tmp_path / "plain", data=tiny_data, show_progress=False).fit()
    fsdp = load_config(None, [*base, "train.fsdp=true"])
    with one_process_group(tmp_path / "store"):
        sharded = Trainer(fsdp, tmp_path / "fsdp", data=tiny_data, show_progress=False)
        assert type(sharded.model.blocks[0]).__name__.startswith("FSDP")
        result = sharded.fit()
        # drop the last checkpoint, resume from step 2 under FSDP
        (tmp_path / "fsdp" / "checkpoints" / "step_0000004").rename(tmp_path / "step_0000004")
        resumed = Trainer(fsdp, tmp_path / "fsdp", data=tiny_data, show_progress=False)
        assert resumed.step == 2
        again = resumed.fit()
    for name in ("model", "ema", "optimizer"):  # one process: the same sums in the same order
        a, b = (read_weights(r.checkpoint / f"{name}.safetensors") for r in (plain, result))
        assert _max_difference(a, b) == 0.0, name
    assert result.val_nelbo_bits == plain.val_nelbo_bits
    for name in ("model", "ema", "optimizer"):
        a, b = (read_weights(folder / f"{name}.safetensors") for folder in (tmp_path / "step_0000004",
                                                                              again.checkpoint))
        assert _max_difference(a, b) == 0.0, name


def test_fsdp_without_a_process_group_is_a_config_error(tmp_path) -> None:
    from scmdm.distributed import wrap

    with pytest.raises(ConfigError, match="train.fsdp=true needs a distributed launch: torchrun"):
        wrap(torch.nn.Linear(2, 2), device=torch.device("cpu"), fsdp=True)
