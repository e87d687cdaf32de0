"""First-hitting sampling (Zheng et al., arXiv 2409.02908): jump straight to the next time a token is revealed.

In the continuous-time reverse chain, a position masked at time t is still masked at s < t with probability
(1 − α(s)) / (1 − α(t)), independently of the others. With n positions masked at t, the first time τ at which one
of them is revealed (going backward) therefore has

    P(τ ≤ s) = ((1 − α(s)) / (1 − α(t)))ⁿ   ⇒   τ = α⁻¹(1 − (1 − α(t))·u^(1/n)),   u ~ U(0, 1),

and the revealed position is uniform among the n. So each event draws τ, evaluates the network once at (x, τ),
picks a masked position uniformly and draws its token from p_θ(x₀ | x_τ). This is the ancestral chain at T → ∞
(at most one reveal per step) with NFE = the number of reveal events = the number of masked positions (the canvas
length, without a template) — exactly, not in the limit. A self-conditioned model carries its hint from event to
event.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.sampling.steps import start_canvas
from scmdm.schedules import NoiseSchedule

__all__ = ["first_hitting_sample", "next_reveal_time"]


def next_reveal_time(schedule: NoiseSchedule, t: torch.Tensor, masked: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """τ = α⁻¹(1 − (1 − α(t))·u^(1/n)) for n = ``masked`` positions at time ``t`` (module docstring), float64."""
    one_minus = (1.0 - schedule.alpha(t.double())) * u.double() ** (1.0 / masked.double())
    return schedule.inverse_alpha(1.0 - one_minus).clamp(0.0, 1.0)


@torch.inference_mode()
def first_hitting_sample(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, length: int,
                         precision: str = "float64", generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu", progress: tqdm | None = None,
                         start: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """First-hitting sampling of ``batch_size`` canvases, from ``start`` (a template) or all MASK. Returns (tokens,
    NFE per sequence = the mean number of masked positions, one event each)."""
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = start_canvas(batch_size, length, mask_id, start, device)
    t = torch.ones(batch_size, dtype=torch.float64, device=device)
    hint: torch.Tensor | None = None
    evaluations = 0
    while True:
        masked = x == mask_id
        count = masked.sum(dim=1)
        rows = (count > 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        u = torch.rand(rows.numel(), dtype=torch.float64, generator=generator, device=device)
        t[rows] = next_reveal_time(schedule, t[rows], count[rows], u)
        log_p, new_hint = denoiser(x[rows], t[rows].float(), None if hint is None else hint[rows])
        if new_hint is not None:
            hint = new_hint if hint is None else hint.index_copy(0, rows, new_hint)
        evaluations += rows.numel()
        r = torch.rand((rows.numel(), length), dtype=torch.float64, generator=generator, device=device)
        position = torch.where(masked[rows], r, -1.0).argmax(dim=1)  # uniform among the row's masked positions
        local = torch.arange(rows.numel(), device=device)
        x[rows, position] = sample_categorical(log_p[local, position], precision=precision, generator=generator)
        if progress is not None:
            progress.update(1)
    return x, evaluations / batch_size
