"""Tests of scmdm.denoiser: top-p and temperature act on the network's distribution, and a self-conditioned
model's draw and carried hint come from one SUBS pass, bit-identical to computing them apart."""

from __future__ import annotations

import pytest
import torch

from scmdm.categorical import apply_top_p
from scmdm.denoiser import Denoiser
from scmdm.diffusion import subs_log_probs
from scmdm.selfcond import carried_hint
from tests.conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")


def test_top_p_and_temperature() -> None:
    log_p = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = apply_top_p(log_p, 0.75).exp()  # 0.5 + 0.3 ≥ 0.75 → keep the first two, renormalized
    assert torch.allclose(kept, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    assert torch.equal(apply_top_p(log_p, 1.0), log_p)
    real, length = 3, 3  # 3 real tokens + MASK; the head scaled so that predictions are far from uniform
    model = tiny_model(real + 1, length, head_scale=30.0)
    x = torch.full((1, length), real)
    base = Denoiser(model, real)(x, torch.ones(1))[0].exp()
    cold = Denoiser(model, real, temperature=0.5)(x, torch.ones(1))[0].exp()
    expected = base ** 2 / (base ** 2).sum(-1, keepdim=True)  # p^(1/τ) renormalized, τ = 0.5
    assert torch.allclose(cold, expected, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("carry", ["distribution", "token"])
def test_self_conditioned_draw_and_hint_equal_separate_computations(temperature: float, carry: str) -> None:
    vocab, length = 9, 12
    mask = vocab - 1
    model = tiny_model(vocab, length, head_scale=5.0, self_conditioning="mask_add")
    x = torch.full((4, length), mask)
    x[:, :3] = torch.tensor([1, 2, 3])
    denoiser = Denoiser(model, mask, temperature=temperature, top_p=0.9, carry=carry,
                        generator=torch.Generator().manual_seed(1))
    log_p, hint = denoiser(x, torch.ones(4))
    with torch.no_grad():
        logits = model(x, torch.ones(4))
    expected_hint = carried_hint(subs_log_probs(logits, x, mask), carry, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hint, expected_hint)
    assert torch.equal(log_p, denoiser._log_probs(logits, x))
