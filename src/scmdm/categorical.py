"""Categorical draws, at the bottom of the package: every sampler and the self-speculative accept/reject draw
tokens here.

Draws are Gumbel-max, argmax_v (log p_v + g_v), g = −log(−log u), u ~ U[0, 1), in float64 by default: float32
noise is bounded (g ≤ −log(−log(1 − 2⁻²⁴)) ≈ 16.6), which truncates the tail and lowers the effective temperature
(Zheng et al., arXiv 2409.02908). ``precision="float32"`` reproduces older papers.

Nucleus (top-p) filtering keeps the smallest set of most likely tokens whose mass reaches p and renormalises.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PRECISIONS", "gumbel_noise", "sample_categorical", "apply_top_p"]

#: precision name → dtype of the uniforms of a draw
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


def gumbel_noise(shape: tuple[int, ...], *, precision: str = "float64", generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard Gumbel noise −log(−log u) with u drawn in the given precision."""
    u = torch.rand(shape, dtype=PRECISIONS[precision], generator=generator, device=device)
    return u.log_().neg_().log_().neg_()  # −log(−log u), in place: the same operations, no temporaries


def sample_categorical(log_probs: torch.Tensor, *, precision: str = "float64",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``log_probs`` [..., V] by Gumbel-max in ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    noise = gumbel_noise(tuple(log_probs.shape), precision=precision, generator=generator, device=log_probs.device)
    return noise.add_(log_probs.to(PRECISIONS[precision])).argmax(dim=-1)  # log p + g (addition commutes exactly)


def apply_top_p(log_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose mass reaches ``top_p``,
    renormalize; the others get −∞."""
    if top_p >= 1.0:
        return log_probs
    sorted_lp, order = log_probs.sort(dim=-1, descending=True)
    mass_before = sorted_lp.exp().cumsum(dim=-1) - sorted_lp.exp()
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return torch.log_softmax(log_probs.masked_fill(drop, -math.inf), dim=-1)
