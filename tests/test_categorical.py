"""Tests of scmdm.categorical: draws match their probabilities in both precisions, float32 Gumbel noise is
truncated (float64 is not), and the in-place noise equals the plain formula."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare

from scmdm.categorical import gumbel_noise, sample_categorical

VOCAB = 9


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


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_gumbel_and_categorical_equal_the_plain_formulas(precision: str) -> None:
    dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
    u = torch.rand((64, 5, VOCAB), dtype=dtype, generator=torch.Generator().manual_seed(3))
    plain = -torch.log(-torch.log(u))
    fast = gumbel_noise((64, 5, VOCAB), precision=precision, generator=torch.Generator().manual_seed(3))
    assert torch.equal(fast, plain)
    log_p = torch.log_softmax(torch.randn(64, 5, VOCAB), dim=-1)
    draws = sample_categorical(log_p, precision=precision, generator=torch.Generator().manual_seed(3))
    assert torch.equal(draws, (log_p.to(dtype) + plain).argmax(dim=-1))
