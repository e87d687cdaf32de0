"""Sampler invariants, the cached sampler's exactness (by exact enumeration), and categorical draws."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from scmdm.categorical import apply_top_p, gumbel_noise, sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.model import BackboneConfig, Transformer
from scmdm.sampling import ancestral_sample, topk_sample
from scmdm.sampling.steps import masked_counts
from scmdm.schedules import get_schedule

REAL, LENGTH = 3, 3  # tiny vocabulary (3 real tokens + MASK) and canvas: 27 final sequences
MASK = REAL


def tiny_model(seed: int = 0, time_conditioning: bool = False) -> Transformer:
    """A real (untrained) transformer whose output head is scaled so its predictions are far from uniform
    and depend on context — otherwise every sampler would look right."""
    torch.manual_seed(seed)
    model = Transformer(BackboneConfig(vocab_size=REAL + 1, max_length=LENGTH, depth=1, width=16, heads=2,
                                       time_conditioning=time_conditioning))
    with torch.no_grad():
        model.output_layer.linear.weight.mul_(30.0)
    return model.eval()


def exact_ancestral_distribution(denoiser: Denoiser, steps: int) -> dict[tuple[int, ...], float]:
    """Distribution of the final canvas of the ancestral chain, by enumerating every intermediate state.

    One step from state x at time t to s: each masked position independently stays masked with
    probability 1 − r, r = (α(s) − α(t))/(1 − α(t)), or becomes token v with probability r·p_θ(v | x)."""
    schedule = get_schedule("loglinear")
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    states = {(MASK,) * LENGTH: 1.0}
    for k in range(steps):
        r = float(schedule.unmask_probability(grid[k], grid[k + 1]))
        nxt: dict[tuple[int, ...], float] = {}
        for state, prob in states.items():
            p = denoiser(torch.tensor([state]), grid[k].float().expand(1))[0][0].double().exp()  # [L, V]
            options = []
            for i, token in enumerate(state):
                if token != MASK:
                    options.append([(token, 1.0)])
                else:
                    options.append([(MASK, 1.0 - r)] + [(v, r * float(p[i, v])) for v in range(REAL)])
            for combo in itertools.product(*options):
                q = prob * math.prod(w for _, w in combo)
                if q > 0:
                    key = tuple(tok for tok, _ in combo)
                    nxt[key] = nxt.get(key, 0.0) + q
        states = nxt
    assert all(MASK not in s for s in states)
    return states


def histogram(tokens: torch.Tensor) -> dict[tuple[int, ...], int]:
    counts: dict[tuple[int, ...], int] = {}
    for row in map(tuple, tokens.tolist()):
        counts[row] = counts.get(row, 0) + 1
    return counts


def chi_square_pvalue(samples: torch.Tensor, exact: dict[tuple[int, ...], float]) -> float:
    keys = sorted(exact)
    counts = histogram(samples)
    assert set(counts) <= set(keys), "a sampler produced a sequence of probability zero"
    total = sum(exact.values())
    expected = {k: exact[k] / total * len(samples) for k in keys}
    # Pool outcomes expected fewer than 5 times into one bin (the chi-square approximation needs it).
    big = [k for k in keys if expected[k] >= 5]
    observed = [counts.get(k, 0) for k in big] + [sum(counts.get(k, 0) for k in keys if k not in big)]
    wanted = [expected[k] for k in big] + [sum(expected[k] for k in keys if k not in big)]
    return float(chisquare(observed, wanted).pvalue)


@pytest.mark.parametrize("steps", [2, 5])
def test_ancestral_and_cached_match_the_exact_chain(steps: int) -> None:
    denoiser = Denoiser(tiny_model(), MASK)
    exact = exact_ancestral_distribution(denoiser, steps)
    assert abs(sum(exact.values()) - 1) < 1e-6  # float32 network probabilities
    n = 40_000
    schedule = get_schedule("loglinear")
    results = {}
    for cache in (False, True):
        gen = torch.Generator().manual_seed(123)
        tokens, nfe = ancestral_sample(denoiser, schedule, batch_size=n, length=LENGTH, steps=steps, cache=cache,
                                       generator=gen)
        results[cache] = (tokens, nfe)
        # Goodness of fit over the 27 outcomes with a fixed seed. Under the null the p-value is uniform;
        # a real bug (e.g. wrong reveal probability, or a stale cache) gives p ≈ 0 at n = 40k.
        assert chi_square_pvalue(tokens, exact) > 1e-3
    # Same random numbers ⇒ the cache changes nothing but the work done.
    assert torch.equal(results[False][0], results[True][0])
    assert results[False][1] == steps
    assert results[True][1] < steps


def test_cached_nfe_counts_only_rows_that_changed() -> None:
    denoiser = Denoiser(tiny_model(), MASK)
    schedule = get_schedule("loglinear")
    steps, batch = 12, 64
    gen = torch.Generator().manual_seed(0)
    tokens, nfe = ancestral_sample(denoiser, schedule, batch_size=batch, length=LENGTH, steps=steps, cache=True,
                                   generator=gen)
    assert denoiser.rows == round(nfe * batch)  # NFE is exactly the rows the network saw
    # Each row needs a forward pass at step 0 and after every step in which it changed; with 3 positions
    # a row changes in at most 3 steps (one per position), so its NFE is between 1 and 1 + 3 (capped at T).
    assert 1 <= nfe <= 1 + LENGTH


def test_cached_sampler_refuses_time_conditioned_models() -> None:
    denoiser = Denoiser(tiny_model(time_conditioning=True), MASK)
    with pytest.raises(ValueError, match="time conditioning"):
        ancestral_sample(denoiser, get_schedule("loglinear"), batch_size=2, length=LENGTH, steps=4, cache=True)


class RecordingDenoiser(Denoiser):
    """The real denoiser, recording every canvas it is shown (to check the trajectory)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inputs: list[torch.Tensor] = []

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor,
                 hint: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.inputs.append(x_t.clone())
        return super().__call__(x_t, t, hint)


@pytest.mark.parametrize("sampler", ["ancestral", "topk"])
@pytest.mark.parametrize("schedule_name", ["loglinear", "cosine", "linear"])
def test_sampler_invariants(sampler: str, schedule_name: str) -> None:
    torch.manual_seed(1)
    model = Transformer(BackboneConfig(vocab_size=6, max_length=10, depth=1, width=16, heads=2)).eval()
    denoiser = RecordingDenoiser(model, 5)
    schedule = get_schedule(schedule_name)
    steps, batch = 7, 16
    fn = ancestral_sample if sampler == "ancestral" else topk_sample
    tokens, nfe = fn(denoiser, schedule, batch_size=batch, length=10, steps=steps,
                     generator=torch.Generator().manual_seed(0))
    assert not (tokens == 5).any(), "a MASK survived the last step"
    assert nfe == denoiser.calls == len(denoiser.inputs) <= steps
    trajectory = denoiser.inputs + [tokens]
    for before, after in itertools.pairwise(trajectory):
        revealed = before != 5
        assert torch.equal(before[revealed], after[revealed]), "a revealed token changed"
    assert (trajectory[0] == 5).all()


def test_topk_reveals_the_scheduled_number_of_most_confident_positions() -> None:
    torch.manual_seed(2)
    model = Transformer(BackboneConfig(vocab_size=6, max_length=10, depth=1, width=16, heads=2)).eval()
    denoiser = RecordingDenoiser(model, 5)
    schedule = get_schedule("loglinear")
    counts = masked_counts(schedule, 10, 4)
    assert counts == [10, 8, 5, 2, 0]  # round(10·t) at t = 1, .75, .5, .25, 0 (Python rounds half to even)
    tokens, _ = topk_sample(denoiser, schedule, batch_size=8, length=10, steps=4,
                            generator=torch.Generator().manual_seed(0))
    assert not (tokens == 5).any()
    masked_per_step = [int((x == 5).sum(1).unique().item()) for x in denoiser.inputs]
    assert masked_per_step == counts[:-1]


def test_sample_categorical_matches_probabilities_in_both_precisions() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.049, 0.001], dtype=torch.float64)
    n = 200_000
    for precision in ("float64", "float32"):
        gen = torch.Generator().manual_seed(7)
        draws = sample_categorical(probs.log().float().expand(n, -1), precision=precision, generator=gen)
        counts = torch.bincount(draws, minlength=5).double()
        assert chisquare(counts.numpy(), (probs * n).numpy()).pvalue > 1e-3
    # the precision switch really changes the noise: same seed, different draws
    log_p = probs.log().expand(1000, -1)
    d64 = sample_categorical(log_p, precision="float64", generator=torch.Generator().manual_seed(1))
    d32 = sample_categorical(log_p, precision="float32", generator=torch.Generator().manual_seed(1))
    assert not torch.equal(d64, d32)
    with pytest.raises(ValueError, match="precision"):
        sample_categorical(probs.log(), precision="float16")


def test_float32_gumbel_noise_is_truncated_float64_is_not() -> None:
    """float32 uniforms are multiples of 2⁻²⁴ below 1, so g = −log(−log u) ≤ −log(−log(1 − 2⁻²⁴)) ≈ 16.64 and
    ≥ −log(−log 2⁻²⁴) ≈ −2.81 (u = 0 gives −∞, never chosen). Tokens whose log-probability is more than
    16.64 + 2.81 ≈ 19.4 nats below the best one can never be drawn in float32 (the truncation that lowers
    the effective temperature, Zheng et al. 2024). float64 noise has no such bound in practice
    (≤ 36.7). We check the sampled noise respects the float32 bound and that float64 noise is float64."""
    g32 = gumbel_noise((2_000_000,), precision="float32", generator=torch.Generator().manual_seed(0))
    finite = g32[torch.isfinite(g32)]
    upper = -math.log(-math.log1p(-(2.0 ** -24)))
    assert g32.dtype == torch.float32 and finite.max().item() <= upper + 1e-4
    assert finite.min().item() >= -math.log(-math.log(2.0 ** -24)) - 1e-4
    g64 = gumbel_noise((10,), precision="float64", generator=torch.Generator().manual_seed(0))
    assert g64.dtype == torch.float64
    # a token 20 nats below the favourite: impossible in float32, by the bound above
    log_p = torch.tensor([0.0, -20.0]).expand(200_000, -1)
    assert (sample_categorical(log_p, precision="float32", generator=torch.Generator().manual_seed(3)) == 0).all()


def test_top_p_and_temperature() -> None:
    log_p = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = apply_top_p(log_p, 0.75).exp()  # 0.5 + 0.3 ≥ 0.75 → keep the first two, renormalized
    assert torch.allclose(kept, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    assert torch.equal(apply_top_p(log_p, 1.0), log_p)
    model = tiny_model()
    x = torch.full((1, LENGTH), MASK)
    base = Denoiser(model, MASK)(x, torch.ones(1))[0].exp()
    cold = Denoiser(model, MASK, temperature=0.5)(x, torch.ones(1))[0].exp()
    expected = base ** 2 / (base ** 2).sum(-1, keepdim=True)  # p^(1/τ) renormalized, τ = 0.5
    assert torch.allclose(cold, expected, atol=1e-5)
