"""Noise schedules for absorbing-state (masked) diffusion.

A schedule gives α(t), the probability that a token is still clean at time t ∈ [0, 1], and its
derivative α′(t). Every schedule here satisfies α(0) = 1 and is strictly decreasing; α(1) = 0 for the
log-linear and cosine schedules and α(1) = exp(−σ_max) ≈ 2·10⁻⁹ for the linear-σ schedule.

The continuous-time NELBO weights the masked-token cross-entropy at time t by

    w(t) = −α′(t) / (1 − α(t))            (log-linear: α = 1 − t  ⇒  w = 1/t)

which diverges at t → 0. The loss therefore samples t in [ε, 1] (``time_epsilon`` in the loss); the
schedules themselves are exact.

Schedules (names as in MDLM):
  * ``loglinear``: total noise σ(t) = −log(1 − t), i.e. α(t) = 1 − t.   α′ = −1.
  * ``cosine``:    α(t) = cos(πt/2).                                   α′ = −(π/2) sin(πt/2).
  * ``linear``:    σ(t) = σ_max · t (linear total noise), α(t) = exp(−σ_max t).  α′ = −σ_max α.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

__all__ = ["NoiseSchedule", "LogLinearSchedule", "CosineSchedule", "LinearSchedule", "get_schedule",
           "SCHEDULES"]


class NoiseSchedule(ABC):
    """α(t) and α′(t) for t ∈ [0, 1]; works elementwise on tensors."""

    name: str

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is still clean at time t."""

    @abstractmethod
    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        """dα/dt at time t (negative)."""

    @abstractmethod
    def inverse_alpha(self, a: torch.Tensor) -> torch.Tensor:
        """The time t at which α(t) = a (α is strictly decreasing), for a in [α(1), 1]."""

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """NELBO weight −α′(t) / (1 − α(t)) applied to the masked-token cross-entropy."""
        return -self.alpha_prime(t) / (1.0 - self.alpha(t))

    def unmask_probability(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Probability that a token masked at time t is clean at the earlier time s < t:
        (α(s) − α(t)) / (1 − α(t))."""
        a_t, a_s = self.alpha(t), self.alpha(s)
        # at t = 0 nothing is masked; define the probability as 1 there instead of 0/0
        return torch.nan_to_num((a_s - a_t) / (1.0 - a_t), nan=1.0).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LogLinearSchedule(NoiseSchedule):
    name = "loglinear"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - t

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.ones_like(t)

    def inverse_alpha(self, a: torch.Tensor) -> torch.Tensor:
        return 1.0 - a


class CosineSchedule(NoiseSchedule):
    name = "cosine"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(0.5 * math.pi * t)

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def inverse_alpha(self, a: torch.Tensor) -> torch.Tensor:
        return torch.arccos(a.clamp(0.0, 1.0)) * (2.0 / math.pi)


class LinearSchedule(NoiseSchedule):
    name = "linear"

    def __init__(self, sigma_max: float = 20.0) -> None:
        if sigma_max <= 0:
            raise ValueError(f"sigma_max must be positive, got {sigma_max}")
        self.sigma_max = sigma_max

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.sigma_max * t)

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        return -self.sigma_max * torch.exp(-self.sigma_max * t)

    def inverse_alpha(self, a: torch.Tensor) -> torch.Tensor:
        return (-torch.log(a) / self.sigma_max).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"LinearSchedule(sigma_max={self.sigma_max})"


SCHEDULES: dict[str, type[NoiseSchedule]] = {
    "loglinear": LogLinearSchedule,
    "cosine": CosineSchedule,
    "linear": LinearSchedule,
}


def get_schedule(name: str) -> NoiseSchedule:
    """The schedule called ``name`` (one of ``SCHEDULES``)."""
    try:
        return SCHEDULES[name]()
    except KeyError:
        raise ValueError(f"unknown noise schedule {name!r}; valid: {', '.join(SCHEDULES)}") from None
