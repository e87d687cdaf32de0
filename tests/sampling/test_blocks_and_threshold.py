"""Semi-autoregressive blocks (LLaDA) and confidence-threshold decoding (Fast-dLLM): their plans by hand, left-to-right
blocks, the threshold rule at every step, and NFE."""

from __future__ import annotations

import math

import pytest
import torch

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.sampling import block_sample, generate, threshold_sample
from scmdm.sampling.blocks import block_plan
from scmdm.schedules import get_schedule
from tests.conftest import tiny_model

VOCAB, LENGTH = 6, 10
MASK = VOCAB - 1


class Recorder(Denoiser):
    """A denoiser that keeps every canvas it was called on and the probabilities it returned."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x_t, t, hint=None):
        log_p, next_hint = super().__call__(x_t, t, hint)
        self.seen.append((x_t.clone(), log_p))
        return log_p, next_hint


def test_block_plan_by_hand() -> None:
    # 10 positions in blocks of 4: (0, 4), (4, 8), (8, 10); 7 steps: 3, 2, 2; 4 masks in 3 steps: 2, 1, 1
    assert block_plan(10, 4, 7) == [(0, 4, [2, 1, 1]), (4, 8, [2, 2]), (8, 10, [1, 1])]
    with pytest.raises(ValueError, match="3 blocks of 4 need at least 3 steps"):
        block_plan(10, 4, 2)


def test_blocks_are_decoded_left_to_right() -> None:
    denoiser = Recorder(tiny_model(VOCAB, LENGTH, head_scale=5.0), MASK)
    tokens, nfe = block_sample(denoiser, batch_size=16, length=LENGTH, steps=7, block_size=4,
                               generator=torch.Generator().manual_seed(0))
    assert nfe == 7 and (tokens != MASK).all()
    states = [x for x, _ in denoiser.seen] + [tokens]
    for before, after in zip(states, states[1:], strict=False):
        new = (before == MASK) & (after != MASK)
        for row in range(16):
            first_new = int(new[row].float().argmax()) if new[row].any() else None
            if first_new is not None:  # every earlier block is complete when a block gets a token
                assert (before[row, : (first_new // 4) * 4] != MASK).all()
    counts = [int(((a == MASK) & (b != MASK)).sum(1).max()) for a, b in zip(states, states[1:], strict=False)]
    assert counts == [2, 1, 1, 2, 2, 1, 1]  # the plan, step by step


def test_blocks_keep_the_most_confident() -> None:
    """Replaying the sampler's draws (same generator): at every step the positions kept are the block's masked
    positions whose drawn token is the most probable."""
    denoiser = Recorder(tiny_model(VOCAB, LENGTH, head_scale=5.0), MASK)
    tokens, _ = block_sample(denoiser, batch_size=8, length=LENGTH, steps=5, block_size=5,
                             generator=torch.Generator().manual_seed(1))
    replay = torch.Generator().manual_seed(1)
    states = [x for x, _ in denoiser.seen] + [tokens]
    reveals = [n for _, _, ns in block_plan(LENGTH, 5, 5) for n in ns]
    assert reveals == [2, 2, 1, 3, 2]
    for (x, log_p), after, n in zip(denoiser.seen, states[1:], reveals, strict=True):
        draw = sample_categorical(log_p, generator=replay)
        confidence = log_p.gather(-1, draw[..., None]).squeeze(-1)
        block = 0 if (x[:, :5] == MASK).any() else 5
        allowed = (x == MASK) & (torch.arange(LENGTH) >= block) & (torch.arange(LENGTH) < block + 5)
        expected = confidence.masked_fill(~allowed, -math.inf).topk(n, dim=-1).indices
        new = (x == MASK) & (after != MASK)
        assert torch.equal(new, torch.zeros_like(new).scatter(1, expected, True))
        assert torch.equal(after.gather(1, expected), draw.gather(1, expected))


@pytest.mark.parametrize("threshold", [0.5, 0.95])
def test_threshold_rule_at_every_step(threshold: float) -> None:
    denoiser = Recorder(tiny_model(VOCAB, LENGTH, head_scale=8.0), MASK)
    tokens, nfe = threshold_sample(denoiser, batch_size=32, length=LENGTH, threshold=threshold,
                                   generator=torch.Generator().manual_seed(0))
    assert (tokens != MASK).all() and 1 <= nfe <= LENGTH
    calls = denoiser.seen
    assert all((x == MASK).any(dim=1).all() for x, _ in calls)  # a row is evaluated only while it has masks
    assert calls[-1][0].shape[0] < 32  # ... so the batch shrinks as rows finish
    evaluations = sum(x.shape[0] for x, _ in calls)
    assert nfe == pytest.approx(evaluations / 32)
    low, high = (threshold_sample(Denoiser(tiny_model(VOCAB, LENGTH, head_scale=8.0), MASK), batch_size=32,
                                  length=LENGTH, threshold=v, generator=torch.Generator().manual_seed(0))[1]
                 for v in (1e-9, 1.0))
    assert low == 1.0 and high == LENGTH  # everything at once; one position per step


def test_threshold_reveals_exactly_the_confident_positions() -> None:
    """Replaying the sampler's draws: each step reveals exactly the masked positions whose drawn token has
    probability ≥ τ, or the single most probable one when there is none."""
    denoiser = Recorder(tiny_model(VOCAB, LENGTH, head_scale=3.0), MASK)
    tokens, nfe = threshold_sample(denoiser, batch_size=1, length=LENGTH, threshold=0.7,
                                   generator=torch.Generator().manual_seed(2))
    replay = torch.Generator().manual_seed(2)
    states = [x for x, _ in denoiser.seen] + [tokens]
    forced = 0
    for (x, log_p), after in zip(denoiser.seen, states[1:], strict=True):
        draw = sample_categorical(log_p, generator=replay)
        prob = log_p.gather(-1, draw[..., None]).squeeze(-1).double().exp().masked_fill(x != MASK, -math.inf)
        expected = prob >= 0.7
        if not expected.any():
            expected = torch.zeros_like(expected).scatter(1, prob.argmax(1, keepdim=True), True)
            forced += 1
        assert torch.equal((x == MASK) & (after != MASK), expected)
    assert nfe == len(denoiser.seen) and 0 < forced < nfe  # both kinds of step happened


def test_both_through_generate_with_self_conditioning() -> None:
    model = tiny_model(VOCAB, LENGTH, head_scale=5.0, self_conditioning="mask_add")
    for sampler, extra in (("blocks", {"block_size": 5}), ("threshold", {"threshold": 0.8, "block_size": 5})):
        out = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=9, length=LENGTH, steps=6,
                       sampler=sampler, batch_size=4, seed=0, show_progress=False, **extra)
        assert (out.tokens != MASK).all() and out.nfe > 0
