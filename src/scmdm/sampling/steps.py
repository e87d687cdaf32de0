"""The time grid of the T-step samplers and what each step does on it.

Time grid: t_k = 1 − k/T, k = 0..T; step k goes from t = t_k to s = t_{k+1}.

* reveal probability of step k (ancestral): (α(s) − α(t)) / (1 − α(t)), the probability that a position masked
  at t is clean at s (1 at the last step, where α(0) = 1);
* masked count after step k (top-k): m_k = round(L·(1 − α(t_k))), non-increasing, m_0 = L, m_T = 0.

Both are computed on the host in float64 before a sampling loop starts, so no step reads them from the device.

Every sampler starts from a canvas (``start_canvas``): all MASK, or a template — given tokens at some positions, MASK
where the sampler generates (conditional generation: prompts, infilling, inpainting). Given positions are never
changed, and a step-count schedule applies to the masked positions of each row (top-k: m_k = round(m₀·(1 − α(t_k)))
for the row's m₀ masks).
"""

from __future__ import annotations

import torch

from scmdm.schedules import NoiseSchedule

__all__ = ["time_grid", "reveal_probabilities", "masked_counts", "start_canvas", "reveal_most_confident"]


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


def start_canvas(batch_size: int, length: int, mask_id: int, start: torch.Tensor | None,
                 device: torch.device | str) -> torch.Tensor:
    """The canvas a sampler starts from: ``start`` ([B, L]; MASK where to generate), or all MASK."""
    if start is None:
        return torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    if tuple(start.shape) != (batch_size, length):
        raise ValueError(f"the start canvas has shape {tuple(start.shape)}, expected ({batch_size}, {length})")
    return start.to(device=device, dtype=torch.long).clone()


def reveal_most_confident(x: torch.Tensor, draw: torch.Tensor, confidence: torch.Tensor,
                          n: torch.Tensor | int) -> torch.Tensor:
    """``x`` with, in each row, the ``n`` (per row, or one number) positions of highest ``confidence`` set to their
    ``draw`` (positions that must not be revealed carry confidence −∞)."""
    if isinstance(n, int) or bool((n == n.max()).all()):
        k = int(n if isinstance(n, int) else n.max())
        if k == 0:
            return x
        top = confidence.topk(k, dim=-1).indices
        return x.scatter(1, top, draw.gather(1, top))
    rank = confidence.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)  # 0 = most confident
    reveal = rank < n[:, None]
    return torch.where(reveal, draw, x)
