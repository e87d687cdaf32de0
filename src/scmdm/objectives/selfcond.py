"""Self-conditioned post-training (SCMDM, arXiv 2604.26985): the NELBO on pass 2 of two passes at the same x_t.

    p̂      = stopgrad(carry(p_θ(x₀ | x_t, null)))       pass 1, no gradient  (``scmdm.selfcond.first_pass_hint``)
    logits = f_θ(x_t, p̂)                                  pass 2: the NELBO is computed on it

An update is two-pass with probability λ = ``selfcond.rate`` (a coin that is a function of (seed, step) alone, so
λ = 0 draws nothing and reproduces plain training exactly); otherwise it is an ordinary null-conditioned update.
Hint dropout, noise and lag act while training only. Validation reports the NELBO with the null condition
(``val_nelbo_bits``: its drift shows that λ = 1 never trains the first sampling step) and with the two-pass
condition (``val_nelbo_sc_bits``, fresh hints, no corruption), under the same fixed masks.

``HintPass`` is pass 1 as a reusable piece: the speculative objective runs it for a self-conditioned trunk.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from scmdm.diffusion import validation_nelbo
from scmdm.objectives.base import StepNoise
from scmdm.objectives.nelbo import NelboObjective
from scmdm.selfcond import HintDraws, draw_hint_noise, first_pass_hint, self_condition_coin, two_pass_logits

__all__ = ["HintPass", "SelfConditionedObjective"]


class HintPass:
    """Pass 1 of self-conditioned training with a run's ``selfcond`` settings: the coin, the hint's random numbers,
    and the hint itself (corrupted and lagged while the model trains, fresh in eval mode)."""

    def __init__(self, config, schedule, *, mask_id: int, vocab_size: int, device: torch.device) -> None:
        self.sc, self.seed = config.selfcond, config.train.seed
        self.schedule, self.mask_id, self.vocab_size, self.device = schedule, mask_id, vocab_size, device

    def coin(self, step: int) -> bool:
        """Whether update ``step`` is two-pass."""
        return self_condition_coin(self.sc.rate, seed=self.seed, step=step)

    def draw(self, batch: int, length: int, generator: torch.Generator) -> HintDraws | None:
        sc = self.sc
        return draw_hint_noise((batch, length, self.vocab_size), carry=sc.carry, hint_dropout=sc.hint_dropout,
                               hint_noise=sc.hint_noise, hint_lag=sc.hint_lag, generator=generator,
                               device=self.device)

    def _options(self, training: bool) -> dict:
        sc = self.sc
        return dict(carry=sc.carry, sharpen_temperature=sc.sharpen_temperature,
                    hint_dropout=sc.hint_dropout if training else 0.0, hint_noise=sc.hint_noise if training else 0.0)

    def hint(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, draws: HintDraws | None) -> torch.Tensor:
        """Pass 1 (null condition, no gradient), as the speculative objective runs it (no lag)."""
        training = model.training
        return first_pass_hint(model, x_t, t, self.mask_id, **self._options(training),
                               draws=draws if training else None)

    def two_pass_logits(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                        draws: HintDraws | None) -> torch.Tensor:
        """Pass 1 then pass 2; in eval mode without corruption, lag or pre-drawn numbers (the fresh-hint protocol)."""
        training = model.training
        return two_pass_logits(model, x_t, t, self.mask_id, **self._options(training),
                               hint_lag=self.sc.hint_lag if training else 0.0, schedule=self.schedule,
                               draws=draws if training else None)

    def may_leave_parameters_unused(self, model: nn.Module) -> bool:
        """The injection's own parameters get no gradient on a one-pass update (λ < 1)."""
        sc = model.self_cond
        return sc is not None and any(p.requires_grad for p in sc.parameters()) and self.sc.rate < 1.0


class SelfConditionedObjective(NelboObjective):
    metric_labels = {**NelboObjective.metric_labels,
                     "val_nelbo_sc_bits": "validation NELBO, two-pass (self-conditioned)"}

    def __init__(self, config, schedule, *, mask_id: int, vocab_size: int, device: torch.device) -> None:
        super().__init__(config, schedule, mask_id=mask_id, vocab_size=vocab_size, device=device)
        self.hints = HintPass(config, schedule, mask_id=mask_id, vocab_size=vocab_size, device=device)

    def draw(self, x0: torch.Tensor, step: int, generator: torch.Generator) -> StepNoise:
        two_pass = self.hints.coin(step)
        noise = super().draw(x0, step, generator)
        noise.two_pass = two_pass
        if two_pass:
            noise.hint = self.hints.draw(*x0.shape, generator)
        return noise

    def logits_fn(self, model: nn.Module, noise: StepNoise | None = None) -> Callable:
        if noise is None or not noise.two_pass:
            return super().logits_fn(model, noise)

        def logits(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with self.autocast():
                return self.hints.two_pass_logits(model, x_t, t, noise.hint)

        return logits

    def validate(self, model: nn.Module, data: torch.Tensor, *, num_t: int) -> dict[str, float]:
        result = super().validate(model, data, num_t=num_t)
        result["val_nelbo_sc_bits"] = validation_nelbo(self.logits_fn(model, StepNoise(two_pass=True)), data,
                                                       self.schedule, self.mask_id, num_t=num_t, seed=0,
                                                       device=self.device)
        return result

    def may_leave_parameters_unused(self, model: nn.Module) -> bool:
        return self.hints.may_leave_parameters_unused(model)
