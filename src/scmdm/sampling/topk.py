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
from scmdm.sampling.steps import masked_counts, reveal_most_confident, start_canvas, time_grid
from scmdm.schedules import NoiseSchedule

__all__ = ["topk_sample"]


@torch.inference_mode()
def topk_sample(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, length: int, steps: int,
                precision: str = "float64", generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", progress: tqdm | None = None,
                start: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Confidence-based top-k unmasking, from ``start`` (a template) or all MASK. Returns (tokens, NFE per
    sequence)."""
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = start_canvas(batch_size, length, mask_id, start, device)
    grid = time_grid(steps, device)
    masks = (x == mask_id).sum(dim=1).tolist()  # m₀ of every row
    by_count = {m: masked_counts(schedule, m, steps) if m else [0] * (steps + 1) for m in set(masks)}
    counts = torch.tensor([by_count[m] for m in masks], device=device)  # [B, T + 1]
    nfe = 0
    hint: torch.Tensor | None = None
    for k in range(steps):
        n_reveal = counts[:, k] - counts[:, k + 1]
        if int(n_reveal.max()) > 0:
            log_p, hint = denoiser(x, grid[k].float().expand(batch_size), hint)
            nfe += 1
            draw = sample_categorical(log_p, precision=precision, generator=generator)
            confidence = log_p.gather(-1, draw[..., None]).squeeze(-1).masked_fill(x != mask_id, -math.inf)
            x = reveal_most_confident(x, draw, confidence, n_reveal)
        if progress is not None:
            progress.update(1)
    return x, float(nfe)
