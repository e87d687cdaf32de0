"""What a sampler calls: one network evaluation of the denoiser, with sampling's processing of its output.

``Denoiser(x_t, t, hint) -> (log p, next hint)``: log p = p_θ(x₀ | x_t, hint) with SUBS, temperature τ
(p ∝ exp(logit/τ)) and top-p applied — what a sampler draws from; next hint = for a self-conditioned model the
untempered SUBS distribution in the model's carry form (what pass 1 of post-training produces, ``scmdm.selfcond``),
None otherwise. Carrying it into the next call is how every sampler self-conditions at no extra NFE.

For the self-speculative sampler, ``trunk`` runs the trunk once and keeps its states in σ order (``TrunkPass``) and
``verify`` runs the causal verifier on them (``scmdm.model.verifier``): the two kinds of network evaluation it
counts apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scmdm.categorical import apply_top_p
from scmdm.diffusion import subs_log_probs
from scmdm.model import Transformer
from scmdm.selfcond import carried_hint
from scmdm.tracks import gather_tracks, scatter_tracks

__all__ = ["Denoiser", "TrunkPass"]


@dataclass
class TrunkPass:
    """One trunk evaluation for the speculative sampler, everything in σ order (``order``): the trunk states
    ``h``, the conditioning vector, the canvas ``x`` the trunk saw, the draft ``log_p`` (as the Denoiser
    returns it) and, for a self-conditioned model, the next hint (canvas order)."""

    h: torch.Tensor
    cond: torch.Tensor | None
    order: torch.Tensor
    x: torch.Tensor
    log_p: torch.Tensor
    next_hint: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> TrunkPass:
        """The pass restricted to ``rows`` (the cached states of sequences still being verified)."""
        return TrunkPass(self.h[rows], None if self.cond is None else self.cond[rows], self.order[rows],
                         self.x[rows], self.log_p[rows], None if self.next_hint is None else self.next_hint[rows])


class Denoiser:
    """One network evaluation: ``(x_t, t, hint) -> (log p, next hint)``.

    ``log p`` is p_θ(x₀ | x_t, hint) as float32 log-probabilities [B, L, V] with SUBS, temperature and
    top-p applied (what the sampler draws from). ``next hint`` is, for a self-conditioned model, the
    untempered SUBS distribution in the model's carry form (what pass 1 of post-training produces), and
    None otherwise."""

    def __init__(self, model: Transformer, mask_id: int, *, temperature: float = 1.0, top_p: float = 1.0,
                 carry: str = "distribution", sharpen_temperature: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.model, self.mask_id, self.temperature, self.top_p = model, mask_id, temperature, top_p
        self.carry, self.sharpen_temperature, self.generator = carry, sharpen_temperature, generator
        self.calls = 0  # batched forward passes (of the trunk)
        self.rows = 0  # sequences evaluated
        self.causal_calls = 0  # batched verifier-only passes (speculative sampler)
        self.causal_rows = 0

    @property
    def uses_time(self) -> bool:
        return bool(self.model.config.time_conditioning)

    @property
    def self_conditioned(self) -> bool:
        return bool(getattr(self.model, "self_conditioned", False))

    @property
    def speculative(self) -> bool:
        return bool(getattr(self.model, "speculative", False))

    @torch.inference_mode()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor,
                 hint: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.calls += 1
        self.rows += x_t.shape[0]
        logits = self.model(x_t, t, p_prev=hint).float()
        return self._outputs(logits, x_t)

    def _outputs(self, logits: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what the sampler draws from, the next hint) from one pass's logits. At temperature 1 the untempered
        SUBS distribution the hint is made of is the one drawn from, so it is computed once."""
        if not self.self_conditioned:
            return self._log_probs(logits, x_t), None
        untempered = subs_log_probs(logits, x_t, self.mask_id)
        next_hint = carried_hint(untempered, self.carry, sharpen_temperature=self.sharpen_temperature,
                                 generator=self.generator)
        if self.temperature == 1.0:
            return apply_top_p(untempered, self.top_p), next_hint
        return self._log_probs(logits, x_t), next_hint

    def _log_probs(self, logits: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """Temperature, SUBS, top-p: what the samplers draw from."""
        if self.temperature != 1.0:
            logits = logits / self.temperature
        log_probs = subs_log_probs(logits, x_t, self.mask_id)
        return apply_top_p(log_probs, self.top_p)

    @torch.inference_mode()
    def trunk(self, x_t: torch.Tensor, t: torch.Tensor, hint: torch.Tensor | None,
              order: torch.Tensor) -> TrunkPass:
        """One trunk pass (counted in ``calls``), kept in σ order for the verifier. The draft is the output head
        on the trunk states in σ order — the very computation ``verify`` adds the verifier's contribution to."""
        self.calls += 1
        self.rows += x_t.shape[0]
        h, cond = self.model.encode(x_t, t, p_prev=hint)
        h, x = gather_tracks(h, order), gather_tracks(x_t, order)
        logits = self.model.output_layer(h, cond).float()
        log_p, next_hint = self._outputs(logits, x)
        next_hint = None if next_hint is None else scatter_tracks(next_hint, order)
        return TrunkPass(h=h, cond=cond, order=order, x=x, log_p=log_p, next_hint=next_hint)

    @torch.inference_mode()
    def verify(self, trunk: TrunkPass, tokens: torch.Tensor) -> torch.Tensor:
        """One verifier pass (counted in ``causal_calls``) on cached trunk states: the target log q in σ order,
        processed like the draft (temperature, SUBS, top-p); ``tokens`` [B, D] in σ order."""
        self.causal_calls += 1
        self.causal_rows += tokens.shape[0]
        logits = self.model.verify(trunk.h, trunk.cond, trunk.order, tokens).float()
        return self._log_probs(logits, trunk.x)
