"""First-hitting sampling: the next reveal time by hand, and the output distribution equal to the exactly enumerated
continuous-time chain (one reveal at a time, uniformly random order) on a tiny model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scmdm.denoiser import Denoiser
from scmdm.sampling import first_hitting_sample, generate
from scmdm.sampling.first_hitting import next_reveal_time
from scmdm.schedules import get_schedule
from tests.conftest import chi_square_pvalue, tiny_model

REAL, LENGTH = 3, 3
MASK = REAL


def test_next_reveal_time_by_hand() -> None:
    """log-linear: τ = 1 − α(τ) = (1 − α(t))·u^(1/n) = t·u^(1/n); cosine inverts α = cos(πt/2)."""
    t, n, u = torch.tensor([0.8]), torch.tensor([4.0]), torch.tensor([0.0625])  # u^(1/4) = 1/2
    assert float(next_reveal_time(get_schedule("loglinear"), t, n, u)) == pytest.approx(0.4)
    cosine = get_schedule("cosine")
    tau = next_reveal_time(cosine, torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.5]))
    assert float(cosine.alpha(tau)) == pytest.approx(0.5)  # one masked position: α(τ) = 1 − u
    for name in ("loglinear", "cosine", "linear"):
        s = get_schedule(name)
        grid = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
        torch.testing.assert_close(s.inverse_alpha(s.alpha(grid)), grid)


def exact_distribution(denoiser: Denoiser) -> dict[tuple[int, ...], float]:
    """The continuous-time chain of a model without time conditioning: from x, a masked position chosen uniformly is
    revealed with a token v of probability p_θ(v | x) at that position; enumerated over every order and token."""
    def visit(state: tuple[int, ...], prob: float, out: dict) -> None:
        masked = [i for i, v in enumerate(state) if v == MASK]
        if not masked:
            out[state] = out.get(state, 0.0) + prob
            return
        p = denoiser(torch.tensor([state]), torch.ones(1))[0][0].double().exp()
        for i in masked:
            for v in range(REAL):
                nxt = list(state)
                nxt[i] = v
                visit(tuple(nxt), prob / len(masked) * float(p[i, v]), out)

    out: dict = {}
    visit((MASK,) * LENGTH, 1.0, out)
    return out


def test_matches_the_exact_continuous_time_chain() -> None:
    denoiser = Denoiser(tiny_model(REAL + 1, LENGTH, head_scale=30.0), MASK)
    exact = exact_distribution(denoiser)
    assert abs(sum(exact.values()) - 1) < 1e-6 and max(exact.values()) < 0.5  # far from one outcome
    n = 30_000
    tokens, nfe = first_hitting_sample(denoiser, get_schedule("cosine"), batch_size=n, length=LENGTH,
                                       generator=torch.Generator().manual_seed(0))
    assert nfe == LENGTH and (tokens != MASK).all()
    assert chi_square_pvalue(tokens, exact) > 1e-3
    keys = sorted(exact)
    # and not the distribution of a one-step sampler that reveals everything at once from the empty canvas
    p = denoiser(torch.full((1, LENGTH), MASK), torch.ones(1))[0][0].double().exp()
    one_step = {k: math.prod(float(p[i, v]) for i, v in enumerate(k)) for k in itertools.product(range(REAL), repeat=3)}
    assert max(abs(one_step[k] - exact[k]) for k in keys) > 0.02


def test_nfe_and_self_conditioning_through_generate() -> None:
    model = tiny_model(REAL + 1, 6, head_scale=5.0, self_conditioning="mask_add")
    out = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=10, length=6, sampler="first_hitting",
                   batch_size=4, seed=1, show_progress=False)
    assert out.nfe == 6 and out.forward_passes == 3 * 6 and (out.tokens != MASK).all()
    again = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=10, length=6,
                     sampler="first_hitting", batch_size=4, seed=1, show_progress=False)
    assert torch.equal(out.tokens, again.tokens)
