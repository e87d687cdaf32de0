"""Ancestral sampling (MDLM), and its cached variant.

* **Ancestral.** On the grid t_k = 1 − k/T, each still-masked position is revealed with probability
      (α(s) − α(t)) / (1 − α(t))
  and, if revealed, takes a token drawn from p_θ(x₀ | x_t); clean tokens never change. At the last step s = 0,
  α(0) = 1, so every remaining mask is filled. NFE = T.
* **Cached ancestral.** Same chain, same random numbers. When no position of a sequence changed in a step, its
  network input — and so its output — is unchanged (valid only for a model whose input is x_t alone: not for a
  time-conditioned model, nor a self-conditioned one, whose hint p_prev changes every step; both are refused), so
  its forward pass is skipped and the cached p_θ reused. Same output distribution, NFE ≤ T.

A self-conditioned model gets its own prediction of the previous step as p_prev (``scmdm.denoiser``): the null
condition at the first step, no extra forward pass.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.sampling.steps import reveal_probabilities, start_canvas, time_grid
from scmdm.schedules import NoiseSchedule

__all__ = ["ancestral_sample"]


@torch.inference_mode()
def ancestral_sample(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, length: int, steps: int,
                     cache: bool = False, precision: str = "float64", generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu", progress: tqdm | None = None,
                     start: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Ancestral (optionally cached) sampling of ``batch_size`` canvases, from ``start`` (a template: given tokens
    stay, MASK positions are generated) or all MASK. Returns (tokens, NFE per sequence)."""
    if cache and denoiser.uses_time:
        raise ValueError("the cached sampler needs a model without time conditioning: with t as an input the "
                         "network output changes every step even when x_t does not, so skipping is not exact")
    if cache and denoiser.self_conditioned:
        raise ValueError("the cached sampler cannot run a self-conditioned model: its input p_prev changes every "
                         "step even when x_t does not, so skipping a pass is not exact; use sampler=ancestral "
                         "(same NFE = T as the base model's ancestral sampler)")
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = start_canvas(batch_size, length, mask_id, start, device)
    grid = time_grid(steps, device)
    reveal_ps = reveal_probabilities(schedule, steps)  # host floats: no device → host copy inside the loop
    log_p: torch.Tensor | None = None
    hint: torch.Tensor | None = None  # self-conditioning: the previous step's prediction (None = null)
    stale = torch.ones(batch_size, dtype=torch.bool, device=device)  # rows whose cached output is out of date
    evaluations = 0
    for k in range(steps):
        t_batch = grid[k].float().expand(batch_size)
        if not cache or log_p is None:
            log_p, hint = denoiser(x, t_batch, hint)
            evaluations += batch_size
        elif stale.any():
            rows = stale.nonzero().squeeze(1)
            log_p[rows] = denoiser(x[rows], t_batch[rows])[0]
            evaluations += rows.numel()
        masked = x == mask_id
        u = torch.rand((batch_size, length), dtype=torch.float64, generator=generator, device=device)
        draw = sample_categorical(log_p, precision=precision, generator=generator)
        reveal = masked & (u < reveal_ps[k])
        x = torch.where(reveal, draw, x)
        stale = reveal.any(dim=1)
        if progress is not None:
            progress.update(1)
    return x, evaluations / batch_size
