"""Tests of scmdm.diffusion: forward masking, antithetic times, SUBS, the masked NLL and the NELBO."""

from __future__ import annotations

import math

import pytest
import torch

from scmdm.diffusion import (
    mask_tokens,
    masked_token_nll,
    nelbo_loss,
    sample_times,
    subs_log_probs,
    validation_nelbo,
)
from scmdm.model import Transformer
from scmdm.schedules import CosineSchedule, LogLinearSchedule, NoiseSchedule, get_schedule
from tests.conftest import tiny_model

V = 5  # real tokens 0..4
MASK = V  # the mask token is the last id; logits have V + 1 entries


def uniform_logits_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Zero logits over V real tokens + MASK: after SUBS drops MASK, p(x₀ⁱ) = 1/V at every masked position."""
    return torch.zeros(*x_t.shape, V + 1)


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread beats two competing


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------- masking


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()], ids=lambda s: s.name)
@pytest.mark.parametrize("t_value", [0.1, 0.5, 0.9])
def test_mask_rate_matches_one_minus_alpha(schedule: NoiseSchedule, t_value: float) -> None:
    rows, length = 4, 50_000
    x0 = torch.randint(0, V, (rows, length), generator=_gen(1))
    t = torch.full((rows,), t_value)
    x_t = mask_tokens(x0, t, schedule, MASK, generator=_gen(2))
    p = 1.0 - schedule.alpha(torch.tensor(t_value, dtype=torch.float64)).item()
    n = rows * length
    rate = (x_t == MASK).double().mean().item()
    # the masked count is Binomial(n, p): its rate has std sqrt(p(1 − p)/n) (≤ 1.1e-3 here); allow 5σ.
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(rate - p) < 5 * sigma
    # positions that are not masked keep their clean token
    keep = x_t != MASK
    assert torch.equal(x_t[keep], x0[keep])


def test_mask_tokens_uses_the_per_row_time() -> None:
    # t = 0 masks nothing (α = 1) and t = 1 masks everything (loglinear α = 0), row by row.
    x0 = torch.randint(0, V, (2, 1000), generator=_gen(0))
    x_t = mask_tokens(x0, torch.tensor([0.0, 1.0]), LogLinearSchedule(), MASK, generator=_gen(1))
    assert torch.equal(x_t[0], x0[0])
    assert torch.all(x_t[1] == MASK)


# ------------------------------------------------------------------------------------------------ times


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_sample_times_antithetic_is_evenly_spaced(batch_size: int) -> None:
    eps = 1e-3
    t = sample_times(batch_size, eps=eps, generator=_gen(batch_size))
    assert t.shape == (batch_size,)
    assert torch.all((t >= eps) & (t <= 1.0))
    # t_b = ε + (1 − ε)·((u + b/B) mod 1): the fractions are B points spaced 1/B apart on the circle.
    frac = torch.sort((t.double() - eps) / (1 - eps)).values
    gaps = torch.cat([frac.diff(), (frac[:1] + 1.0 - frac[-1:])])  # including the wrap-around gap
    torch.testing.assert_close(gaps, torch.full_like(gaps, 1.0 / batch_size), rtol=0, atol=1e-5)


def test_sample_times_independent_mode_stays_in_range() -> None:
    eps = 0.2
    t = sample_times(10_000, eps=eps, antithetic=False, generator=_gen(0))
    assert torch.all((t >= eps) & (t <= 1.0))
    # U[0.2, 1] has mean 0.6 and std 0.8/√12 ≈ 0.23; the mean of 10⁴ draws has std 2.3e-3.
    assert abs(t.mean().item() - 0.6) < 5 * 0.8 / math.sqrt(12 * 10_000)


# ------------------------------------------------------------------------------------------------- SUBS


def test_subs_log_probs_invariants() -> None:
    logits = torch.randn(3, 6, V + 1, generator=_gen(0)) * 3
    x_t = torch.randint(0, V, (3, 6), generator=_gen(1))
    masked = torch.rand(3, 6, generator=_gen(2)) < 0.5
    masked[0, 0], masked[0, 1] = True, False  # both kinds present
    x_t = torch.where(masked, torch.full_like(x_t, MASK), x_t)
    log_probs = subs_log_probs(logits, x_t, MASK)

    assert log_probs.shape == logits.shape
    # every row is a distribution
    torch.testing.assert_close(torch.logsumexp(log_probs, -1), torch.zeros(3, 6), rtol=0, atol=1e-6)
    # the clean state is never MASK
    assert torch.all(log_probs[masked][:, MASK] == -math.inf)
    # masked rows are the softmax over the real tokens
    expected = torch.log_softmax(logits[..., :V], -1)
    torch.testing.assert_close(log_probs[masked][:, :V], expected[masked])
    # unmasked rows are exactly the one-hot of the observed token
    one_hot = torch.nn.functional.one_hot(x_t[~masked], V + 1).bool()
    observed = log_probs[~masked]
    assert torch.all(observed[one_hot] == 0.0)
    assert torch.all(observed[~one_hot] == -math.inf)


def test_masked_token_nll_hand_case() -> None:
    # vocab {0, 1, MASK = 2}; x₀ = [0, 1, 1], x_t = [MASK, 1, MASK].
    x0 = torch.tensor([[0, 1, 1]])
    x_t = torch.tensor([[2, 1, 2]])
    logits = torch.tensor([[
        [math.log(3.0), 0.0, 7.0],  # MASK logit dropped ⇒ p(0) = 3/(3 + 1) = 0.75
        [9.0, -9.0, 4.0],  # unmasked: carried over, contributes 0 whatever the logits
        [0.0, 0.0, 5.0],  # p(1) = 1/2
    ]])
    nll = masked_token_nll(logits, x0, x_t, mask_id=2)
    expected = -math.log(0.75) - math.log(0.5)  # = log(8/3)
    assert nll.shape == (1,)
    assert nll.item() == pytest.approx(expected, rel=1e-6)
    # same as gathering the SUBS log-probabilities at x₀ over the masked positions
    gathered = subs_log_probs(logits, x_t, 2).gather(-1, x0[..., None])[..., 0]
    assert torch.all(gathered[x_t != 2] == 0.0)  # unmasked: log 1 = 0
    assert nll.item() == pytest.approx(-gathered.sum().item(), rel=1e-6)
    # only the masked positions count: unmasking position 0 leaves −log ½
    assert masked_token_nll(logits, x0, torch.tensor([[0, 1, 2]]), 2).item() == pytest.approx(math.log(2.0))


def test_masked_token_nll_equals_subs_gather_on_random_batch() -> None:
    logits = torch.randn(4, 9, V + 1, generator=_gen(3))
    x0 = torch.randint(0, V, (4, 9), generator=_gen(4))
    x_t = mask_tokens(x0, torch.tensor([0.2, 0.5, 0.8, 1.0]), LogLinearSchedule(), MASK, _gen(5))
    gathered = subs_log_probs(logits, x_t, MASK).gather(-1, x0[..., None])[..., 0]
    torch.testing.assert_close(masked_token_nll(logits, x0, x_t, MASK), -gathered.sum(-1))


# ------------------------------------------------------------------------------------------------ NELBO


@pytest.mark.parametrize("name", ["loglinear", "cosine", "linear"])
def test_nelbo_loss_composition_uniform_model(name: str) -> None:
    schedule = get_schedule(name)
    x0 = torch.randint(0, V, (16, 12), generator=_gen(0))
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def logits_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append((x_t.clone(), t.clone()))
        return uniform_logits_fn(x_t, t)

    out = nelbo_loss(logits_fn, x0, schedule, MASK, generator=_gen(1))
    assert len(calls) == 1
    x_t, t_seen = calls[0]
    assert torch.equal(t_seen, out.t)
    assert torch.equal((x_t == MASK).sum(-1), out.num_masked)
    assert torch.equal(x_t[x_t != MASK], x0[x_t != MASK])
    # uniform model: each masked position costs log V, so loss = mean_b(w(t_b)·#masked_b)·log V / L
    expected = (schedule.loss_weight(out.t) * out.num_masked).mean() * math.log(V) / x0.shape[1]
    assert out.loss.ndim == 0
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=0)


def test_nelbo_loss_composition_with_known_logits() -> None:
    # non-uniform logits: loss = mean_b(w(t_b)·masked_token_nll_b)/L with the x_t the model saw.
    x0 = torch.randint(0, V, (8, 10), generator=_gen(0))
    fixed = torch.randn(8, 10, V + 1, generator=_gen(1))
    seen: dict[str, torch.Tensor] = {}

    def logits_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen["x_t"] = x_t
        return fixed

    schedule = CosineSchedule()
    out = nelbo_loss(logits_fn, x0, schedule, MASK, generator=_gen(2))
    nll = masked_token_nll(fixed, x0, seen["x_t"], MASK)
    torch.testing.assert_close(out.loss, (schedule.loss_weight(out.t) * nll).mean() / 10)


def _uniform_model_loss_moments(schedule: NoiseSchedule, eps: float, length: int) -> tuple[float, float]:
    """Mean and variance of one sequence's term w(t)·#masked/L with t ~ U[ε, 1], #masked ~ Bin(L, 1 − α(t)).

    mean = E_t[w·(1 − α)] = E_t[−α′];  variance = E_t[Var(· | t)] + Var_t(E(· | t))
    = E_t[w²(1 − α)α/L] + Var_t(−α′) = E_t[α′²α/((1 − α)L)] + Var_t(−α′), by a fine midpoint rule."""
    n = 200_000
    t = eps + (1 - eps) * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    a, da = schedule.alpha(t), schedule.alpha_prime(t)
    mean = (-da).mean().item()
    variance = (da**2 * a / ((1 - a) * length)).mean().item() + (-da).var(unbiased=False).item()
    return mean, variance


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()], ids=lambda s: s.name)
def test_nelbo_loss_monte_carlo_mean_of_uniform_model(schedule: NoiseSchedule) -> None:
    # E[loss] = E_t[w(t)·E(#masked | t)]·log V / L = E_t[−α′(t)]·log V = (α(ε) − α(1))/(1 − ε)·log V,
    # i.e. exactly log V for loglinear (w·E#masked/L = (1/t)·t = 1). The M·B per-sequence terms are
    # independent given the times and stratified times only lower the variance, so the mean over all
    # batches has std ≤ sqrt(variance/(M·B))·log V; allow 5σ. (loglinear, L = 32: variance ≈
    # (ln(1/ε) − 1)/L ≈ 0.18, so σ ≈ sqrt(0.18/25600)·log V ≈ 0.0027·log V.)
    eps, batches, batch_size, length = 1e-3, 400, 64, 32
    generator = _gen(7)
    x0 = torch.zeros(batch_size, length, dtype=torch.long)
    losses = [nelbo_loss(uniform_logits_fn, x0, schedule, MASK, eps=eps, generator=generator).loss.item()
              for _ in range(batches)]
    mean, variance = _uniform_model_loss_moments(schedule, eps, length)
    if isinstance(schedule, LogLinearSchedule):
        assert mean == pytest.approx(1.0, abs=1e-9)
    sigma = math.sqrt(variance / (batches * batch_size)) * math.log(V)
    assert abs(sum(losses) / batches - mean * math.log(V)) < 5 * sigma
    assert 5 * sigma < 0.02 * math.log(V)  # the check is tight enough to mean something


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()], ids=lambda s: s.name)
def test_validation_nelbo_of_uniform_model(schedule: NoiseSchedule) -> None:
    # bits = Σ_k w(t_k)·#masked_k·log V / (K·N·L·log 2), #masked_k ~ Bin(N·L, 1 − α(t_k)), t_k = (k + ½)/K.
    # Its mean is (1/K)·Σ_k −α′(t_k)·log₂ V (loglinear: exactly log₂ V) and its variance is
    # Σ_k w_k²(1 − α_k)α_k / (K²·N·L) · (log₂ V)²  (loglinear: Σ_k (1 − t_k)/t_k ≈ 19.6, σ ≈ 0.0043·log₂ V).
    num_t, n, length = 8, 512, 32
    data = torch.randint(0, V, (n, length), generator=_gen(0))
    bits = validation_nelbo(uniform_logits_fn, data, schedule, MASK, num_t=num_t, seed=3, batch_size=200)
    t = (torch.arange(num_t, dtype=torch.float64) + 0.5) / num_t
    a, w = schedule.alpha(t), schedule.loss_weight(t)
    mean = (-schedule.alpha_prime(t)).mean().item() * math.log2(V)
    sigma = math.sqrt((w**2 * (1 - a) * a).sum().item() / (num_t**2 * n * length)) * math.log2(V)
    if isinstance(schedule, LogLinearSchedule):
        assert mean == pytest.approx(math.log2(V), rel=1e-12)
    assert abs(bits - mean) < 5 * sigma
    assert 5 * sigma < 0.03 * math.log2(V)


def test_validation_nelbo_is_deterministic_and_seeded() -> None:
    data = torch.randint(0, V, (40, 16), generator=_gen(0))
    schedule = LogLinearSchedule()
    first = validation_nelbo(uniform_logits_fn, data, schedule, MASK, num_t=4, seed=5, batch_size=16)
    second = validation_nelbo(uniform_logits_fn, data, schedule, MASK, num_t=4, seed=5, batch_size=16)
    other_seed = validation_nelbo(uniform_logits_fn, data, schedule, MASK, num_t=4, seed=6, batch_size=16)
    assert isinstance(first, float)
    assert first == second
    assert first != other_seed


@pytest.mark.parametrize("shape", [(0, 8), (8,)])
def test_validation_nelbo_rejects_empty_or_flat_data(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        validation_nelbo(uniform_logits_fn, torch.zeros(shape, dtype=torch.long), LogLinearSchedule(), MASK)


# --------------------------------------------------------------------------------------------- gradients


#: the models of the gradient tests: two blocks, time-conditioned
TIME_CONDITIONED = dict(depth=2, mlp_ratio=2.0, time_conditioning=True, cond_dim=16)


def _backward_nelbo(model: Transformer) -> dict[str, torch.Tensor]:
    model.train()  # as the trainer runs it
    x0 = torch.randint(0, V, (8, 8), generator=_gen(0))
    out = nelbo_loss(model, x0, LogLinearSchedule(), MASK, generator=_gen(1))
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    grads = {}
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.all(torch.isfinite(param.grad)), name
        grads[name] = param.grad
    return grads


def test_nelbo_gradients_flow_through_prenorm_transformer() -> None:
    grads = _backward_nelbo(tiny_model(V + 1, 8, block_type="prenorm", **TIME_CONDITIONED))
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name


def test_nelbo_gradients_flow_through_adaln_transformer() -> None:
    # adaLN-Zero: at initialisation every gate is 0, so the blocks are the identity and their inner
    # weights (and the time embedding behind the zero adaLN maps) get exactly zero gradient; the
    # gradient reaches the embedding, the output layer and the adaLN maps themselves.
    grads = _backward_nelbo(tiny_model(V + 1, 8, block_type="adaln", **TIME_CONDITIONED))
    for name in ("vocab_embed.embedding", "output_layer.linear.weight", "output_layer.linear.bias",
                 "output_layer.adaLN_modulation.weight", "blocks.0.adaLN_modulation.weight",
                 "blocks.1.adaLN_modulation.bias"):
        assert grads[name].abs().sum() > 0, name
    for name in ("blocks.0.attn_qkv.weight", "blocks.1.mlp.0.weight", "sigma_map.mlp.0.weight"):
        assert torch.all(grads[name] == 0), name
