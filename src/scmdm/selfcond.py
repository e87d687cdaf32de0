"""Self-conditioning (SCMDM, arXiv 2604.26985): every denoising step sees the model's own previous
clean-state prediction p_prev [B, L, V] (a distribution over the vocabulary at each position).

Injection. With e = p_prevᵀE the expected input embedding (E the token embedding matrix; p_prev puts
no mass on MASK), the input of the network at a *masked* position i becomes E[MASK] + Δᵢ with

    mask_add     Δᵢ = eᵢ                                      (parameter-free)
    projection   Δᵢ = W eᵢ + b,   W = 0, b = 0 at initialisation
    gated        Δᵢ = gᵢ (eᵢ − E[MASK]),  gᵢ = 1 − H(p_prevᵢ) / log(V − 1)
                 so the input is (1 − gᵢ)·E[MASK] + gᵢ·eᵢ, interpolated by the prediction's confidence.

Unmasked positions get nothing: under SUBS p_prev is the one-hot of the observed token there, which the
input already holds. The *null* condition (p_prev = None, the first sampling step and pass 1 of
training) adds nothing, so a self-conditioned model with the null condition is the base model exactly.

What is carried (``carry``): the full distribution p (default), a sharpened one p^(1/τ)/Σ p^(1/τ), or
the one-hot of a token drawn from p.

Post-training (two passes at the same x_t; the loss is the usual NELBO on pass 2):

    p̂      = stopgrad(carry(p_θ(x₀ | x_t, null)))       pass 1, no gradient
    logits = f_θ(x_t, p̂)                                  pass 2

Hint lag (training only, ``hint_lag`` = δ > 0). At sampling time the hint at step t is the prediction made
one step earlier, from a more-masked input; pass 1 above sees x_t itself, a better-informed input than sampling
ever hands over. With a lag, pass 1 sees instead the input of a step δ earlier in sampling, s = min(1, t + δ):

    x_s = x_t with each clean token masked with probability 1 − α(s)/α(t)

so the masks are nested (M_t ⊆ M_s) and x_s given x₀ is the forward process at s; δ = 1/T mimics a T-step
sampler. Pass 2 still reads x_t, and the hint acts at x_t's masked positions only. δ = 0 is the paper's rule.

Hint corruption (training only): each position's hint is dropped (null) with probability
``hint_dropout``, and/or its log-probabilities get Gaussian noise σ·ε before renormalising
(``hint_noise`` = σ). The rate λ: an update is two-pass with probability λ, decided by a coin that
is a function of (seed, step) alone, so λ = 0 draws nothing from the training RNGs and reproduces
plain training exactly.

Pre-drawn randomness (``HintDraws``, ``draw_hint_noise``). The random numbers a hint needs — the uniforms
of the token draw, the Gaussian noise, the dropout uniforms — can be drawn for a whole batch up front, in
the order the functions below would draw them, and sliced by rows; distributed and gradient-accumulated
training (``scmdm.objectives``) use this so that every process sees the rows of one single-process draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scmdm.diffusion import subs_log_probs
from scmdm.schedules import NoiseSchedule

__all__ = ["INJECTIONS", "CARRIES", "SelfConditioningInput", "HintDraws", "draw_hint_noise", "carried_hint",
           "corrupt_hint", "lagged_input", "self_condition_coin", "first_pass_hint", "two_pass_logits"]

INJECTIONS = ("mask_add", "projection", "gated")
CARRIES = ("distribution", "sharpened", "token")


class SelfConditioningInput(nn.Module):
    """Δ, the input-embedding change at masked positions for a hint p_prev (see the module docstring)."""

    def __init__(self, injection: str, width: int, mask_id: int) -> None:
        super().__init__()
        if injection not in INJECTIONS:
            raise ValueError(f"unknown self-conditioning injection {injection!r}; valid: {', '.join(INJECTIONS)}")
        self.injection, self.mask_id = injection, mask_id
        self.proj = None
        if injection == "projection":
            # skip_init: no draw from the global RNG, so adding the module leaves dropout streams unchanged
            self.proj = nn.utils.skip_init(nn.Linear, width, width)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x_t: torch.Tensor, p_prev: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """x_t [B, L], p_prev [B, L, V] (rows sum to 1, or to 0 where the hint was dropped),
        embedding [V, D] → Δ [B, L, D] (zero at unmasked positions)."""
        p = p_prev.to(embedding.dtype)
        expected = p @ embedding  # [B, L, D]
        if self.injection == "mask_add":
            delta = expected
        elif self.injection == "projection":
            delta = self.proj(expected)
        else:
            probs = p_prev.float()
            entropy = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)
            present = probs.sum(-1) > 0.5  # a dropped hint (all zeros) has confidence 0
            confidence = torch.where(present, 1.0 - entropy / math.log(max(p_prev.shape[-1] - 1, 2)), 0.0)
            gate = confidence.clamp(0.0, 1.0).to(embedding.dtype)[..., None]
            delta = gate * (expected - embedding[self.mask_id])
        return delta * (x_t == self.mask_id)[..., None].to(delta.dtype)


@dataclass
class HintDraws:
    """Random numbers for the hints of a batch, drawn up front: ``token`` [B, L, V] float64 uniforms of the
    token carry, ``normals`` [B, L, V] of the hint noise, ``keep`` [B, L] uniforms of the hint dropout,
    ``remask`` [B, L] uniforms of the hint lag (None when not needed)."""

    token: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    remask: torch.Tensor | None = None

    def rows(self, index: slice) -> HintDraws:
        """The draws of the rows ``index`` of the batch."""
        return HintDraws(*(None if v is None else v[index]
                           for v in (self.token, self.normals, self.keep, self.remask)))


def draw_hint_noise(shape: tuple[int, int, int], *, carry: str = "distribution", hint_dropout: float = 0.0,
                    hint_noise: float = 0.0, hint_lag: float = 0.0, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> HintDraws | None:
    """The draws ``first_pass_hint`` would make for hints of ``shape`` [B, L, V], in the same order from the
    same generator (so passing them instead of the generator gives the same hint); None if none are needed."""
    if carry not in CARRIES:
        raise ValueError(f"unknown self-conditioning carry {carry!r}; valid: {', '.join(CARRIES)}")
    remask = torch.rand(shape[:-1], generator=generator, device=device) if hint_lag > 0 else None
    draws = HintDraws(
        remask=remask,
        token=torch.rand(shape, dtype=torch.float64, generator=generator, device=device) if carry == "token" else None,
        normals=torch.randn(shape, generator=generator, device=device) if hint_noise > 0 else None,
        keep=torch.rand(shape[:-1], generator=generator, device=device) if hint_dropout > 0 else None)
    return None if all(v is None for v in (draws.token, draws.normals, draws.keep, draws.remask)) else draws


def carried_hint(log_probs: torch.Tensor, carry: str = "distribution", *, sharpen_temperature: float = 0.5,
                 generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """The hint handed to the next pass, from SUBS log-probabilities [B, L, V] (float32 probabilities).
    The token carry draws its float64 uniforms from ``generator``, or takes them pre-drawn (``uniforms``)."""
    log_probs = log_probs.float()
    if carry == "distribution":
        return log_probs.exp()
    if carry == "sharpened":
        return torch.softmax(log_probs / sharpen_temperature, dim=-1)
    if carry == "token":
        u = uniforms if uniforms is not None else torch.rand(log_probs.shape, dtype=torch.float64, generator=generator,
                                                             device=log_probs.device)
        draw = (log_probs.double() - torch.log(-torch.log(u))).argmax(-1)
        return F.one_hot(draw, log_probs.shape[-1]).float()
    raise ValueError(f"unknown self-conditioning carry {carry!r}; valid: {', '.join(CARRIES)}")


def corrupt_hint(hint: torch.Tensor, *, dropout: float = 0.0, noise: float = 0.0,
                 generator: torch.Generator | None = None, normals: torch.Tensor | None = None,
                 keep_uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Training-time corruption: Gaussian noise σ on log p (renormalised), then per-position dropout to null.
    The draws come from ``generator`` unless given (``normals`` [B, L, V], ``keep_uniforms`` [B, L])."""
    if noise > 0:
        eps = normals if normals is not None else torch.randn(hint.shape, generator=generator, device=hint.device)
        noisy = torch.softmax(hint.log() + noise * eps, dim=-1)  # log 0 = −∞: tokens without mass keep none
        hint = torch.where(hint.sum(-1, keepdim=True) > 0, noisy, hint)  # an all-zero (dropped) hint stays null
    if dropout > 0:
        u = keep_uniforms if keep_uniforms is not None else torch.rand(hint.shape[:-1], generator=generator,
                                                                       device=hint.device)
        keep = u >= dropout
        hint = hint * keep[..., None]
    return hint


def lagged_input(x_t: torch.Tensor, t: torch.Tensor, lag: float, schedule: NoiseSchedule, mask_id: int, *,
                 uniforms: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_s, s) for s = min(1, t + lag): each clean token of x_t [B, L] is masked with probability
    1 − α(s)/α(t) (1 where α(t) = 0): kept where u < α(s)/α(t), with ``uniforms`` u [B, L] or u drawn from
    ``generator``."""
    s = (t + lag).clamp(max=1.0)
    a_t = schedule.alpha(t)
    keep = torch.where(a_t > 0, schedule.alpha(s) / a_t.clamp_min(1e-30), 0.0).to(torch.float32)
    u = uniforms if uniforms is not None else torch.rand(x_t.shape, generator=generator, device=x_t.device)
    return torch.where(u < keep[:, None], x_t, torch.full_like(x_t, mask_id)), s


def self_condition_coin(rate: float, *, seed: int, step: int) -> bool:
    """Whether update ``step`` is two-pass: U < λ with U drawn from a generator seeded by (seed, step)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    u = torch.rand((), generator=torch.Generator().manual_seed(seed * 1_000_003 + step + 7), dtype=torch.float64)
    return bool(u < rate)


@torch.no_grad()
def first_pass_hint(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, mask_id: int, *,
                    carry: str = "distribution", sharpen_temperature: float = 0.5, hint_dropout: float = 0.0,
                    hint_noise: float = 0.0, hint_lag: float = 0.0, schedule: NoiseSchedule | None = None,
                    generator: torch.Generator | None = None, draws: HintDraws | None = None) -> torch.Tensor:
    """Pass 1: the null-conditioned prediction at x_t (at x_s, s = t + hint_lag, with a lag, which needs the
    ``schedule``), under no-grad, in carry form (and corrupted if asked). Random numbers come from
    ``generator``, or pre-drawn from ``draws`` (``draw_hint_noise``)."""
    draws = draws or HintDraws()
    x_in, t_in = x_t, t
    if hint_lag > 0:
        if schedule is None:
            raise ValueError("a hint lag needs the noise schedule (schedule=...)")
        x_in, t_in = lagged_input(x_t, t, hint_lag, schedule, mask_id, uniforms=draws.remask, generator=generator)
    hint = carried_hint(subs_log_probs(model(x_in, t_in), x_in, mask_id), carry,
                        sharpen_temperature=sharpen_temperature, generator=generator, uniforms=draws.token)
    if hint_dropout > 0 or hint_noise > 0:
        hint = corrupt_hint(hint, dropout=hint_dropout, noise=hint_noise, generator=generator,
                            normals=draws.normals, keep_uniforms=draws.keep)
    return hint


def two_pass_logits(model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, mask_id: int, *,
                    carry: str = "distribution", sharpen_temperature: float = 0.5, hint_dropout: float = 0.0,
                    hint_noise: float = 0.0, hint_lag: float = 0.0, schedule: NoiseSchedule | None = None,
                    generator: torch.Generator | None = None, draws: HintDraws | None = None) -> torch.Tensor:
    """Pass 1 with the null condition under no-grad → hint p̂; pass 2 conditioned on p̂. Returns pass-2 logits."""
    hint = first_pass_hint(model, x_t, t, mask_id, carry=carry, sharpen_temperature=sharpen_temperature,
                           hint_dropout=hint_dropout, hint_noise=hint_noise, hint_lag=hint_lag, schedule=schedule,
                           generator=generator, draws=draws)
    return model(x_t, t, p_prev=hint)
