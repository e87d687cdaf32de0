"""ReMDM remasking: σ_t by hand, the loop schedule by hand, η = 0 is the ancestral chain exactly (same seed, same
samples), and remasking does remask."""

from __future__ import annotations

import pytest
import torch

from scmdm.denoiser import Denoiser
from scmdm.sampling import generate, remdm_sample
from scmdm.sampling.remdm import loop_alphas, remask_sigma
from scmdm.schedules import get_schedule
from tests.conftest import tiny_model

VOCAB, LENGTH = 6, 10
MASK = VOCAB - 1


def test_sigma_by_hand() -> None:
    # α_t = 0.5, α_s = 0.75: σ_max = min(1, (1 − 0.75)/0.5) = 0.5
    assert remask_sigma("cap", 0.3, 0.5, 0.75) == pytest.approx(0.3)
    assert remask_sigma("cap", 0.9, 0.5, 0.75) == pytest.approx(0.5)
    assert remask_sigma("rescale", 0.5, 0.5, 0.75) == pytest.approx(0.25)
    assert remask_sigma("cap", 0.3, 0.5, 1.0) == 0.0  # the last step (α_s = 1) remasks nothing


def test_loop_schedule_by_hand() -> None:
    kw = dict(t_on=0.55, t_off=0.05, alpha_on=0.9)
    assert loop_alphas(1.0, **kw) == 0.0
    assert loop_alphas(0.775, **kw) == pytest.approx(0.9 * 0.225 / 0.45)
    assert loop_alphas(0.3, **kw) == 0.9 and loop_alphas(0.55, **kw) == 0.9
    assert loop_alphas(0.025, **kw) == pytest.approx(0.95) and loop_alphas(0.0, **kw) == 1.0


@pytest.mark.parametrize("strategy", ["cap", "rescale", "conf"])
def test_eta_zero_is_the_ancestral_chain_exactly(strategy: str) -> None:
    model = tiny_model(VOCAB, LENGTH, head_scale=5.0)
    kw = dict(mask_id=MASK, num_samples=40, length=LENGTH, steps=12, batch_size=20, seed=3, temperature=0.9,
              show_progress=False)
    ancestral = generate(model, get_schedule("cosine"), sampler="ancestral", **kw)
    remdm = generate(model, get_schedule("cosine"), sampler="remdm", remask=strategy, eta=0.0, **kw)
    assert torch.equal(ancestral.tokens, remdm.tokens) and remdm.nfe == 12
    remasking = generate(model, get_schedule("cosine"), sampler="remdm", remask=strategy, eta=1.0, **kw)
    assert not torch.equal(ancestral.tokens, remasking.tokens) and (remasking.tokens != MASK).all()


class Recorder(Denoiser):
    """A denoiser that keeps every canvas it was called on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[torch.Tensor] = []

    def __call__(self, x_t, t, hint=None):
        self.seen.append(x_t.clone())
        return super().__call__(x_t, t, hint)


@pytest.mark.parametrize("strategy", ["cap", "loop"])
def test_revealed_tokens_are_masked_again(strategy: str) -> None:
    """With η > 0 a position revealed at one step can be MASK at a later one (never in the ancestral chain), and the
    last step leaves no mask."""
    denoiser = Recorder(tiny_model(VOCAB, LENGTH, head_scale=5.0), MASK)
    tokens, nfe = remdm_sample(denoiser, get_schedule("loglinear"), batch_size=64, length=LENGTH, steps=40,
                               strategy=strategy, eta=0.2, generator=torch.Generator().manual_seed(0))
    states = torch.stack([*denoiser.seen, tokens])  # [T + 1, B, L]
    revealed_then_masked = ((states[:-1] != MASK) & (states[1:] == MASK)).sum()
    assert revealed_then_masked > 0 and nfe == 40 and (tokens != MASK).all()
    if strategy == "loop":  # the loop phase holds the masked fraction near 1 − α_on = 0.1 in expectation
        middle = states[20:30].eq(MASK).double().mean()
        assert 0.03 < float(middle) < 0.2


def test_bad_settings_are_refused() -> None:
    denoiser = Denoiser(tiny_model(VOCAB, LENGTH), MASK)
    with pytest.raises(ValueError, match="unknown remasking strategy"):
        remdm_sample(denoiser, get_schedule("loglinear"), batch_size=1, length=LENGTH, steps=4, strategy="nope")
    with pytest.raises(ValueError, match="0 < t_off < t_on < 1"):
        remdm_sample(denoiser, get_schedule("loglinear"), batch_size=1, length=LENGTH, steps=4, strategy="loop",
                     t_on=0.1, t_off=0.2)
