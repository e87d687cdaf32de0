"""The time grid of the T-step samplers and what each step does on it.

Time grid: t_k = 1 − k/T, k = 0..T; step k goes from t = t_k to s = t_{k+1}.

* reveal probability of step k (ancestral): (α(s) − α(t)) / (1 − α(t)), the probability that a position masked
  at t is clean at s (1 at the last step, where α(0) = 1);
* masked count after step k (top-k): m_k = round(L·(1 − α(t_k))), non-increasing, m_0 = L, m_T = 0.

Both are computed on the host in float64 before a sampling loop starts, so no step reads them from the device.
"""

from __future__ import annotations

import torch

from scmdm.schedules import NoiseSchedule

__all__ = ["time_grid", "reveal_probabilities", "masked_counts"]


def time_grid(steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """t_k = 1 − k/T for k = 0..T, float64."""
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)


def reveal_probabilities(schedule: NoiseSchedule, steps: int) -> list[float]:
    """(α(s) − α(t)) / (1 − α(t)) for every step k (t = t_k, s = t_{k+1}), computed on the host in float64."""
    grid = time_grid(steps)
    return [float(schedule.unmask_probability(grid[k], grid[k + 1])) for k in range(steps)]


def masked_counts(schedule: NoiseSchedule, length: int, steps: int) -> list[int]:
    """m_k = round(L·(1 − α(t_k))) for k = 0..T, forced non-increasing with m_0 = L and m_T = 0."""
    grid = time_grid(steps)
    counts = [round(length * float(1 - schedule.alpha(t))) for t in grid]
    counts[0], counts[-1] = length, 0
    for k in range(1, len(counts)):
        counts[k] = min(counts[k], counts[k - 1])
    return counts
