"""Forward masking process, SUBS parameterization and the continuous-time NELBO (MDLM).

Forward process. Given clean tokens x₀ and a time t, every position is independently replaced by
``MASK`` with probability 1 − α(t):      q(x_tⁱ = MASK | x₀ⁱ) = 1 − α(t).

SUBS parameterization. The network's logits are turned into p_θ(x₀ | x_t) by
  1. setting the ``MASK`` logit to −∞ (the clean state is never a mask), and
  2. at positions where x_t is not masked, replacing the distribution by the one-hot of the observed
     token (clean tokens are carried over unchanged).

Loss. The negative ELBO in continuous time, per token of the canvas (length L):

    L(x₀) = E_{t ~ U[ε, 1]} E_{x_t ~ q(·|x₀)} [ w(t) · (1/L) Σ_{i: x_tⁱ = MASK} −log p_θ(x₀ⁱ | x_t) ],
    w(t) = −α′(t) / (1 − α(t))     (= 1/t for the log-linear schedule).

Times are drawn antithetically (stratified) across the batch: t_b = ε + (1 − ε)·((u + b/B) mod 1)
with one u ~ U[0, 1), which lowers the variance of the batch mean.

Validation protocol (``validation_nelbo``): the time integral is evaluated with the K-point midpoint
rule t_k = (k + ½)/K on [0, 1] (the integrand w(t)·E[Σ masked NLL] stays finite as t → 0), with the
masks drawn from a generator seeded by ``seed``, accumulated in float64 and reported in bits per
canvas token. With the same K, seed and data the number is deterministic, so runs are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scmdm.schedules import NoiseSchedule

__all__ = [
    "LogitsFn",
    "sample_times",
    "mask_tokens",
    "subs_log_probs",
    "masked_token_nll",
    "LossOutput",
    "nelbo_loss",
    "validation_nelbo",
]

#: A denoiser: (x_t [B, L] long, t [B] float) -> logits [B, L, V] over the vocabulary incl. MASK.
LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_times(batch_size: int, *, eps: float = 1e-3, antithetic: bool = True,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Times in [ε, 1] for one batch; antithetic (stratified) by default."""
    if antithetic:
        u = torch.rand(1, generator=generator, device=device)
        frac = (u + torch.arange(batch_size, device=device) / batch_size) % 1.0
    else:
        frac = torch.rand(batch_size, generator=generator, device=device)
    return eps + (1.0 - eps) * frac


def mask_tokens(x0: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule, mask_id: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x₀): each position becomes ``mask_id`` with probability 1 − α(t)."""
    p_mask = (1.0 - schedule.alpha(t)).to(torch.float32)[:, None]
    u = torch.rand(x0.shape, generator=generator, device=x0.device)
    return torch.where(u < p_mask, torch.full_like(x0, mask_id), x0)


def subs_log_probs(logits: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """log p_θ(x₀ | x_t) under SUBS: no mass on MASK; observed tokens carried over as one-hot. Computed in float32
    (float64 for float64 logits)."""
    vocab = torch.arange(logits.shape[-1], device=logits.device)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)).masked_fill(vocab == mask_id, -math.inf)
    log_probs = torch.log_softmax(logits, dim=-1)
    carried = torch.where(vocab == x_t[..., None], 0.0, -math.inf)
    return torch.where((x_t != mask_id)[..., None], carried, log_probs)


def masked_token_nll(logits: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Σ over masked positions of −log p_θ(x₀ⁱ | x_t), per sequence [B].

    Equivalent to gathering ``subs_log_probs`` at x₀ on masked positions, but computed with one fused
    cross-entropy (unmasked positions contribute exactly 0 under SUBS)."""
    vocab_size = logits.shape[-1]
    logits = logits.float().masked_fill(torch.arange(vocab_size, device=logits.device) == mask_id, -math.inf)
    nll = F.cross_entropy(logits.reshape(-1, vocab_size), x0.reshape(-1), reduction="none").view_as(x0)
    return (nll * (x_t == mask_id)).sum(dim=-1)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, NELBO estimate in nats per canvas token (what is optimized)
    t: torch.Tensor  # [B] times used
    num_masked: torch.Tensor  # [B] masked positions per sequence


def nelbo_loss(logits_fn: LogitsFn, x0: torch.Tensor, schedule: NoiseSchedule, mask_id: int, *,
               eps: float = 1e-3, antithetic: bool = True, generator: torch.Generator | None = None,
               t: torch.Tensor | None = None, x_t: torch.Tensor | None = None) -> LossOutput:
    """Monte-Carlo estimate of the continuous-time NELBO (nats per canvas token) for a batch x₀.

    The times ``t`` [B] and the noised batch ``x_t`` [B, L] are drawn (in that order) unless both are given —
    e.g. rows of one draw for a larger batch, as distributed training passes them."""
    if (t is None) != (x_t is None):
        raise ValueError("give both t and x_t (pre-drawn noise), or neither")
    if t is None:
        t = sample_times(x0.shape[0], eps=eps, antithetic=antithetic, generator=generator, device=x0.device)
        x_t = mask_tokens(x0, t, schedule, mask_id, generator)
    elif t.shape != x0.shape[:1] or x_t.shape != x0.shape:
        raise ValueError(f"pre-drawn noise does not fit the batch {tuple(x0.shape)}: t {tuple(t.shape)}, "
                         f"x_t {tuple(x_t.shape)}")
    nll = masked_token_nll(logits_fn(x_t, t), x0, x_t, mask_id)
    weighted = schedule.loss_weight(t) * nll
    return LossOutput(loss=weighted.mean() / x0.shape[1], t=t, num_masked=(x_t == mask_id).sum(-1))


def _batches(data: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, data.shape[0], batch_size):
        yield data[start:start + batch_size]


@torch.no_grad()
def validation_nelbo(logits_fn: LogitsFn, data: torch.Tensor, schedule: NoiseSchedule, mask_id: int, *,
                     num_t: int = 8, seed: int = 0, batch_size: int = 256,
                     device: torch.device | str = "cpu") -> float:
    """NELBO in bits per canvas token, K-point midpoint rule in t, fixed masks, float64 accumulation.

    ``data`` is a [N, L] tensor of clean token ids (on any device; moved batch by batch)."""
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"validation data must be a non-empty [N, L] tensor, got shape {tuple(data.shape)}")
    generator = torch.Generator(device=device).manual_seed(seed)
    t_grid = (torch.arange(num_t, dtype=torch.float64) + 0.5) / num_t
    total = torch.zeros((), dtype=torch.float64)
    for x0 in _batches(data, batch_size):
        x0 = x0.to(device)
        for t_value in t_grid.tolist():
            t = torch.full((x0.shape[0],), t_value, device=device)
            x_t = mask_tokens(x0, t, schedule, mask_id, generator)
            nll = masked_token_nll(logits_fn(x_t, t), x0, x_t, mask_id).double()
            weight = float(schedule.loss_weight(torch.tensor(t_value, dtype=torch.float64)))
            total += (weight * nll).sum().cpu()
    nats_per_token = total / (num_t * data.shape[0] * data.shape[1])
    return float(nats_per_token / math.log(2.0))
