"""The ancestral, cached and top-k samplers: their invariants, and the cached sampler's exactness (by exact
enumeration). The categorical draws: tests/test_categorical.py."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scmdm.denoiser import Denoiser
from scmdm.sampling import ancestral_sample, topk_sample
from scmdm.sampling.steps import masked_counts
from scmdm.schedules import get_schedule
from tests.conftest import chi_square_pvalue, tiny_model

REAL, LENGTH = 3, 3  # tiny vocabulary (3 real tokens + MASK) and canvas: 27 final sequences
MASK = REAL
#: the output head scaled so that predictions are far from uniform and depend on context — otherwise every sampler
#: would look right
HEAD_SCALE = 30.0


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


@pytest.mark.parametrize("steps", [2, 5])
def test_ancestral_and_cached_match_the_exact_chain(steps: int) -> None:
    denoiser = Denoiser(tiny_model(REAL + 1, LENGTH, head_scale=HEAD_SCALE), MASK)
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
    denoiser = Denoiser(tiny_model(REAL + 1, LENGTH, head_scale=HEAD_SCALE), MASK)
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
    denoiser = Denoiser(tiny_model(REAL + 1, LENGTH, head_scale=HEAD_SCALE, time_conditioning=True), MASK)
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
    model = tiny_model(6, 10, seed=1)
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
    model = tiny_model(6, 10, seed=2)
    denoiser = RecordingDenoiser(model, 5)
    schedule = get_schedule("loglinear")
    counts = masked_counts(schedule, 10, 4)
    assert counts == [10, 8, 5, 2, 0]  # round(10·t) at t = 1, .75, .5, .25, 0 (Python rounds half to even)
    tokens, _ = topk_sample(denoiser, schedule, batch_size=8, length=10, steps=4,
                            generator=torch.Generator().manual_seed(0))
    assert not (tokens == 5).any()
    masked_per_step = [int((x == 5).sum(1).unique().item()) for x in denoiser.inputs]
    assert masked_per_step == counts[:-1]
