"""Confidence top-k unmasking (MaskGIT / LLaDA style).

The number of masks left after step k is m_{k+1} = round(L·(1 − α(t_{k+1}))) (``steps.masked_counts``); each step
draws a token for every masked position and reveals the m_k − m_{k+1} positions whose drawn token has the highest
probability. Steps that reveal nothing are skipped (no NFE). A self-conditioned model carries its hint.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.sampling.steps import masked_counts, time_grid
from scmdm.schedules import NoiseSchedule

__all__ = ["topk_sample"]


@torch.inference_mode()
def topk_sample(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, length: int, steps: int,
                precision: str = "float64", generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", progress: tqdm | None = None) -> tuple[torch.Tensor, float]:
    """Confidence-based top-k unmasking. Returns (tokens, NFE per sequence)."""
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    grid = time_grid(steps, device)
    counts = masked_counts(schedule, length, steps)
    nfe = 0
    hint: torch.Tensor | None = None
    for k in range(steps):
        n_reveal = counts[k] - counts[k + 1]
        if n_reveal > 0:
            log_p, hint = denoiser(x, grid[k].float().expand(batch_size), hint)
            nfe += 1
            draw = sample_categorical(log_p, precision=precision, generator=generator)
            confidence = log_p.gather(-1, draw[..., None]).squeeze(-1).masked_fill(x != mask_id, -math.inf)
            top = confidence.topk(n_reveal, dim=-1).indices
            x = x.scatter(1, top, draw.gather(1, top))
        if progress is not None:
            progress.update(1)
    return x, float(nfe)
