"""Self-conditioning (scmdm.selfcond): the injection rules by hand, the null condition is the base model,
stop-gradient, the carried hint and its corruptions, the rate coin, the lagged first pass, and the samplers carry
p_prev at no extra NFE. Training with it (the two-pass objective): tests/objectives/test_selfcond.py."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scmdm.denoiser import Denoiser
from scmdm.diffusion import subs_log_probs
from scmdm.model import Transformer
from scmdm.sampling import ancestral_sample, generate, topk_sample
from scmdm.schedules import get_schedule
from scmdm.selfcond import (
    INJECTIONS,
    SelfConditioningInput,
    carried_hint,
    corrupt_hint,
    first_pass_hint,
    lagged_input,
    self_condition_coin,
    two_pass_logits,
)
from tests.conftest import tiny_model

V, MASK, L = 5, 4, 6  # 4 real tokens + MASK (last)


def model_pair(injection: str, seed: int = 0) -> tuple[Transformer, Transformer]:
    """A base model and a self-conditioned one holding the same weights (built one after the other from one seed)."""
    base = tiny_model(V, L, seed=seed, depth=2)
    sc = tiny_model(V, L, seed=None, depth=2, self_conditioning=injection)
    missing, unexpected = sc.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("self_cond.") for k in missing)
    return base, sc


def random_hint(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, V, generator=g).index_fill(-1, torch.tensor([MASK]), -math.inf)
    return logits.softmax(-1)


def test_injection_rules_by_hand() -> None:
    E = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [0.0, 4.0], [10.0, 10.0]])  # row 4 = MASK
    x = torch.tensor([[MASK, 0, MASK]])
    p = torch.tensor([[[0.5, 0.5, 0.0, 0.0, 0.0],     # masked: e = (0.5, 0.5)
                       [1.0, 0.0, 0.0, 0.0, 0.0],     # unmasked: never injected
                       [0.0, 0.0, 0.0, 1.0, 0.0]]])   # masked, one-hot on token 3: e = (0, 4)
    delta = SelfConditioningInput("mask_add", 2, MASK)(x, p, E)
    assert torch.allclose(delta, torch.tensor([[[0.5, 0.5], [0.0, 0.0], [0.0, 4.0]]]))
    # gated: g = 1 − H/log(V − 1); H = log 2 → g = 1 − log2/log4 = 0.5; one-hot → g = 1
    delta = SelfConditioningInput("gated", 2, MASK)(x, p, E)
    expected = torch.tensor([[[0.5 * (0.5 - 10), 0.5 * (0.5 - 10)], [0.0, 0.0], [0.0 - 10, 4.0 - 10]]])
    assert torch.allclose(delta, expected)
    # so a confident hint replaces the MASK embedding by the predicted token's: E[MASK] + Δ = E[3]
    assert torch.allclose(E[MASK] + delta[0, 2], E[3])
    uniform = torch.tensor([[[0.25, 0.25, 0.25, 0.25, 0.0]] * 3])
    assert torch.allclose(SelfConditioningInput("gated", 2, MASK)(x, uniform, E), torch.zeros(1, 3, 2), atol=1e-6)
    dropped = torch.zeros(1, 3, V)
    assert torch.equal(SelfConditioningInput("gated", 2, MASK)(x, dropped, E), torch.zeros(1, 3, 2))
    projection = SelfConditioningInput("projection", 2, MASK)
    assert torch.equal(projection(x, p, E), torch.zeros(1, 3, 2))  # zero-initialised
    with torch.no_grad():
        projection.proj.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.allclose(projection(x, p, E), torch.tensor([[[0.5, 0.5], [0.0, 0.0], [4.0, 0.0]]]))


@pytest.mark.parametrize("injection", INJECTIONS)
def test_null_condition_is_the_base_model(injection: str) -> None:
    base, sc = model_pair(injection)
    x = torch.tensor([[MASK, 1, MASK, 2, MASK, MASK], [0, MASK, MASK, MASK, 3, 1]])
    t = torch.full((2,), 0.6)
    assert torch.allclose(sc(x, t), base(x, t), atol=1e-6)
    hint = random_hint((2, L))
    delta = sc.self_cond(x, hint, sc.vocab_embed.embedding)
    assert delta.shape == (2, L, 16)
    assert torch.equal(delta[x != MASK], torch.zeros_like(delta[x != MASK]))  # unmasked positions: nothing
    with_hint = sc(x, t, p_prev=hint)
    if injection == "projection":  # zero-initialised: post-training starts exactly at the base model
        assert torch.allclose(with_hint, base(x, t), atol=1e-6)
    else:  # parameter-free injections change the output as soon as a hint is given
        assert not torch.allclose(with_hint, base(x, t), atol=1e-3)
    with pytest.raises(ValueError, match="without self-conditioning"):
        base(x, t, p_prev=hint)


def test_stop_gradient_no_gradient_reaches_pass_one() -> None:
    _, sc = model_pair("mask_add")
    sc.train()
    x = torch.tensor([[MASK, 1, MASK, 2, MASK, MASK], [0, MASK, MASK, MASK, 3, 1]])
    x0 = torch.tensor([[0, 1, 2, 2, 3, 0], [0, 1, 1, 3, 3, 1]])
    t = torch.full((2,), 0.6)

    def grads(logits: torch.Tensor) -> list[torch.Tensor]:
        sc.zero_grad()
        torch.nn.functional.cross_entropy(logits.reshape(-1, V), x0.reshape(-1)).backward()
        return [p.grad.clone() for p in sc.parameters()]

    two_pass = grads(two_pass_logits(sc, x, t, MASK))
    with torch.no_grad():
        hint = subs_log_probs(sc(x, t), x, MASK).exp()
    constant_hint = grads(sc(x, t, p_prev=hint))  # the hint as a constant: pass 2's gradient only
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(two_pass, constant_hint, strict=True))
    through_both = grads(sc(x, t, p_prev=subs_log_probs(sc(x, t), x, MASK).exp()))  # without stop-gradient
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(two_pass, through_both, strict=True))


def test_carry_forms_and_corruption() -> None:
    log_p = torch.tensor([[[0.7, 0.2, 0.1, 0.0, 0.0]]]).log()
    assert torch.allclose(carried_hint(log_p, "distribution"), log_p.exp())
    sharp = carried_hint(log_p, "sharpened", sharpen_temperature=0.5)  # p² / Σp² = (.49, .04, .01)/.54
    assert torch.allclose(sharp[0, 0, :3], torch.tensor([0.49, 0.04, 0.01]) / 0.54)
    draws = carried_hint(log_p.expand(1, 20000, V), "token", generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws.sum(-1), torch.ones(1, 20000))
    assert torch.allclose(draws.mean(1)[0, :3], torch.tensor([0.7, 0.2, 0.1]), atol=0.015)  # ≈ 4.6 std of 0.7
    g = torch.Generator().manual_seed(0)
    dropped = corrupt_hint(log_p.exp().expand(1, 20000, V), dropout=0.3, generator=g)
    assert abs((dropped.sum(-1) == 0).float().mean().item() - 0.3) < 0.015
    noisy = corrupt_hint(log_p.exp(), noise=1.0, generator=g)
    assert torch.allclose(noisy.sum(-1), torch.ones(1, 1)) and noisy[0, 0, MASK] == 0
    with pytest.raises(ValueError, match="distribution, sharpened, token"):
        carried_hint(log_p, "argmax")


def test_rate_coin() -> None:
    assert not any(self_condition_coin(0.0, seed=0, step=s) for s in range(100))
    assert all(self_condition_coin(1.0, seed=0, step=s) for s in range(100))
    coins = [self_condition_coin(0.5, seed=3, step=s) for s in range(2000)]
    assert coins == [self_condition_coin(0.5, seed=3, step=s) for s in range(2000)]  # a function of (seed, step)
    assert abs(sum(coins) / 2000 - 0.5) < 0.05  # 4.5 std


class CountingModel(torch.nn.Module):
    """Wraps a model; records every forward call and the hint it received."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model, self.config, self.calls = model, model.config, []

    @property
    def self_conditioned(self) -> bool:
        return self.model.self_conditioned

    def forward(self, x_t, t=None, input_embedding=None, p_prev=None):
        out = self.model(x_t, t, input_embedding, p_prev)
        self.calls.append((x_t.clone(), p_prev, out.detach().clone()))
        return out


@pytest.mark.parametrize("sampler", ["ancestral", "topk"])
def test_samplers_carry_the_previous_prediction_at_no_extra_cost(sampler: str) -> None:
    base, sc = model_pair("mask_add")
    schedule = get_schedule("loglinear")
    fn = ancestral_sample if sampler == "ancestral" else topk_sample
    nfe = {}
    for name, model in (("base", base), ("sc", sc)):
        counting = CountingModel(model)
        tokens, nfe[name] = fn(Denoiser(counting, MASK), schedule, batch_size=8, length=L, steps=5,
                               generator=torch.Generator().manual_seed(0))
        assert not (tokens == MASK).any()
        nfe[name + "_calls"] = len(counting.calls)
        if name == "sc":
            assert counting.calls[0][1] is None  # first step: the null condition
            for (x_prev, _, logits_prev), (_, hint, _) in itertools.pairwise(counting.calls):
                assert torch.allclose(hint, subs_log_probs(logits_prev.float(), x_prev, MASK).exp())
        else:
            assert all(call[1] is None for call in counting.calls)
    assert nfe["base"] == nfe["sc"] and nfe["base_calls"] == nfe["sc_calls"]
    if sampler == "ancestral":
        assert nfe["sc_calls"] == 5


def test_cached_sampler_refuses_a_self_conditioned_model() -> None:
    _, sc = model_pair("projection")
    with pytest.raises(ValueError, match="self-conditioned model.*p_prev changes every step"):
        generate(sc, get_schedule("loglinear"), mask_id=MASK, num_samples=2, length=L, sampler="cached", steps=3,
                 show_progress=False)


def test_the_hint_is_the_untempered_prediction() -> None:
    _, sc = model_pair("mask_add")
    x, t = torch.full((1, L), MASK), torch.ones(1)
    _, hint = Denoiser(sc, MASK, temperature=0.5, top_p=0.9)(x, t)
    assert torch.allclose(hint, subs_log_probs(sc(x, t).float(), x, MASK).exp())
    _, hint = Denoiser(sc, MASK, carry="sharpened", sharpen_temperature=0.25)(x, t)
    assert torch.allclose(hint, (subs_log_probs(sc(x, t).float(), x, MASK) * 4).softmax(-1))


def test_lagged_input_by_hand() -> None:
    """Loglinear α(t) = 1 − t. t = 0.2, lag 0.3 → s = 0.5: a clean token stays clean with probability
    α(s)/α(t) = 0.5/0.8 = 0.625, i.e. is kept when u < 0.625; masked tokens stay masked."""
    schedule = get_schedule("loglinear")
    x_t = torch.tensor([[0, MASK, 2, 3], [0, 1, 2, 3]])
    u = torch.tensor([[0.7, 0.0, 0.5, 0.63], [0.0, 0.0, 0.0, 0.0]])
    x_s, s = lagged_input(x_t, torch.tensor([0.2, 0.9]), 0.3, schedule, MASK, uniforms=u)
    assert torch.allclose(s, torch.tensor([0.5, 1.0]))
    assert x_s.tolist() == [[MASK, MASK, 2, MASK], [MASK] * 4]  # row 2: s clamps to 1, α(1) = 0, all masked
    # the masks are nested and x_s | x₀ is the forward process at s: mask rate 1 − α(s) = 0.5 from t = 0.2
    from scmdm.diffusion import mask_tokens
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, MASK, (200, 100), generator=g)
    t = torch.full((200,), 0.2)
    x_t = mask_tokens(x0, t, schedule, MASK, g)
    x_s, _ = lagged_input(x_t, t, 0.3, schedule, MASK, generator=g)
    assert torch.all(x_s[x_t == MASK] == MASK)
    assert abs((x_s == MASK).float().mean().item() - 0.5) < 0.01  # 20,000 draws: std 0.0035


def test_lagged_first_pass_is_the_prediction_at_the_lagged_input() -> None:
    _, sc = model_pair("mask_add")
    schedule = get_schedule("loglinear")
    x_t = torch.tensor([[0, MASK, 2, MASK, 1, 3], [MASK, 1, MASK, MASK, 0, 2]])
    t = torch.tensor([0.3, 0.5])
    u = torch.rand(x_t.shape, generator=torch.Generator().manual_seed(1))
    from scmdm.selfcond import HintDraws
    lagged = first_pass_hint(sc, x_t, t, MASK, hint_lag=0.25, schedule=schedule, draws=HintDraws(remask=u))
    x_s, s = lagged_input(x_t, t, 0.25, schedule, MASK, uniforms=u)
    assert not torch.equal(x_s, x_t)  # the lag did mask something more
    assert torch.equal(lagged, first_pass_hint(sc, x_s, s, MASK))
    assert not torch.equal(lagged, first_pass_hint(sc, x_t, t, MASK))
    with pytest.raises(ValueError, match="needs the noise schedule"):
        first_pass_hint(sc, x_t, t, MASK, hint_lag=0.25)
