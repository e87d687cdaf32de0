"""The MDLM objective: the continuous-time NELBO of ``scmdm.diffusion``, one network pass per update.

    L(x₀) = E_t E_{x_t} [ w(t) · (1/L) Σ_{i: x_tⁱ = MASK} −log p_θ(x₀ⁱ | x_t) ],   w(t) = −α′(t)/(1 − α(t))

Times are drawn antithetically in [ε, 1]; validation is ``diffusion.validation_nelbo`` (K-point midpoint rule in t,
fixed masks, float64, bits per canvas token) as ``val_nelbo_bits``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from scmdm.diffusion import mask_tokens, nelbo_loss, sample_times, validation_nelbo
from scmdm.objectives.base import Objective, StepNoise, Terms

__all__ = ["NelboObjective"]


class NelboObjective(Objective):
    metric_labels = {"val_nelbo_bits": "validation NELBO (EMA weights)"}

    def draw(self, x0: torch.Tensor, step: int, generator: torch.Generator) -> StepNoise:
        d = self.config.diffusion
        t = sample_times(x0.shape[0], eps=d.time_epsilon, antithetic=d.antithetic, generator=generator,
                         device=self.device)
        return StepNoise(t=t, x_t=mask_tokens(x0, t, self.schedule, self.mask_id, generator))

    def logits_fn(self, model: nn.Module, noise: StepNoise | None = None) -> Callable:
        """The denoiser the loss sees: one pass of ``model`` (under autocast when asked)."""

        def logits(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with self.autocast():
                return model(x_t, t)

        return logits

    def loss(self, model: nn.Module, x0: torch.Tensor, noise: StepNoise) -> Terms:
        out = nelbo_loss(self.logits_fn(model, noise), x0, self.schedule, self.mask_id,
                         eps=self.config.diffusion.time_epsilon, t=noise.t, x_t=noise.x_t)
        return Terms(out.loss)

    def validate(self, model: nn.Module, data: torch.Tensor, *, num_t: int) -> dict[str, float]:
        return {"val_nelbo_bits": validation_nelbo(self.logits_fn(model), data, self.schedule, self.mask_id,
                                                   num_t=num_t, seed=0, device=self.device)}
