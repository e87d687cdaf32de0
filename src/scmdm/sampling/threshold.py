"""Confidence-threshold parallel decoding (Fast-dLLM, Wu et al. 2025): reveal as many positions per step as the
model is sure of.

Each step draws a token for every masked position from p_θ(x₀ | x) and reveals every masked position whose drawn
token has probability ≥ τ (``sample.threshold``) — at least one: when none reaches τ, the most probable one. A
sequence is done when no mask is left, so NFE adapts per sequence (between ⌈L / positions revealed per step⌉ and L);
finished sequences are not evaluated again, and each sequence's NFE is counted on its own. With ``block_size`` > 0 the
canvas is decoded in blocks left to right (Fast-dLLM's combination with semi-autoregressive blocks): only positions
of the current block may be revealed. A self-conditioned model carries its hint.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.sampling.steps import start_canvas

__all__ = ["threshold_sample"]


@torch.inference_mode()
def threshold_sample(denoiser: Denoiser, *, batch_size: int, length: int, threshold: float = 0.9, block_size: int = 0,
                     precision: str = "float64", generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu", progress: tqdm | None = None,
                     start: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Threshold decoding of ``batch_size`` canvases, from ``start`` (a template) or all MASK. Returns (tokens, mean
    NFE per sequence)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if block_size < 0:
        raise ValueError(f"block_size must be >= 0 (0 = the whole canvas), got {block_size}")
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = start_canvas(batch_size, length, mask_id, start, device)
    hint: torch.Tensor | None = None
    block = block_size or length
    positions = torch.arange(length, device=device)
    evaluations = 0
    done = 0
    while True:
        rows = (x == mask_id).any(dim=1).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        xs = x[rows]
        masked = xs == mask_id
        t = masked.double().mean(dim=1).float()  # the masked fraction, for time-conditioned models
        log_p, new_hint = denoiser(xs, t, None if hint is None else hint[rows])
        if new_hint is not None:
            if hint is None:  # the first round runs every row
                hint = new_hint
            else:
                hint[rows] = new_hint
        evaluations += rows.numel()
        draw = sample_categorical(log_p, precision=precision, generator=generator)
        prob = log_p.gather(-1, draw[..., None]).squeeze(-1).double().exp()
        first_masked = masked.float().argmax(dim=1)  # the current block starts at the first masked position's block
        block_start = (first_masked // block) * block
        allowed = masked & (positions >= block_start[:, None]) & (positions < (block_start + block)[:, None])
        prob = prob.masked_fill(~allowed, -math.inf)
        best = prob.argmax(dim=1)
        reveal = (prob >= threshold) | (positions == best[:, None])
        x[rows] = torch.where(reveal & allowed, draw, xs)
        if progress is not None:
            now = length - int((x == mask_id).sum(dim=1).max())
            progress.update(now - done)
            done = now
    return x, evaluations / batch_size
