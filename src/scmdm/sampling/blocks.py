"""Semi-autoregressive block decoding with low-confidence remasking (LLaDA, Nie et al. 2025).

The canvas is cut into blocks of ``block_size`` positions (the last may be shorter), decoded left to right; the T
steps are shared out over the blocks (⌊T / blocks⌋ each, the first T mod blocks get one more). Inside a block with m
masked positions and S steps, step j reveals n_j of them, n_j = ⌊m/S⌋ plus one for the first m mod S steps (LLaDA's
even split): every masked position of the whole canvas gets a token drawn from p_θ(x₀ | x), and the n_j positions of
the current block whose drawn token is most probable are kept — the others stay masked ("low-confidence remasking").
Positions after the block are predicted but never committed. NFE = T (a block with no mask left costs nothing).
A self-conditioned model carries its hint.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.sampling.steps import reveal_most_confident, start_canvas

__all__ = ["block_sample", "block_plan"]


def block_plan(length: int, block_size: int, steps: int) -> list[tuple[int, int, list[int]]]:
    """[(start, end, reveals per step)] of every block: the even split of the module docstring."""
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    blocks = [(start, min(start + block_size, length)) for start in range(0, length, block_size)]
    if steps < len(blocks):
        raise ValueError(f"{len(blocks)} blocks of {block_size} need at least {len(blocks)} steps, got T = {steps}")
    base, extra = divmod(steps, len(blocks))
    plan = []
    for i, (start, end) in enumerate(blocks):
        s, m = base + (1 if i < extra else 0), end - start
        per, rest = divmod(m, s)
        plan.append((start, end, [per + (1 if j < rest else 0) for j in range(s)]))
    return plan


@torch.inference_mode()
def block_sample(denoiser: Denoiser, *, batch_size: int, length: int, steps: int, block_size: int,
                 precision: str = "float64", generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", progress: tqdm | None = None,
                 start: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Semi-autoregressive block sampling of ``batch_size`` canvases, from ``start`` (a template: each row splits the
    masked positions of a block evenly over the block's steps) or all MASK. Returns (tokens, NFE per sequence)."""
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = start_canvas(batch_size, length, mask_id, start, device)
    plan = block_plan(length, block_size, steps)
    nfe = 0
    hint: torch.Tensor | None = None
    for first, end, reveals in plan:
        in_block = torch.zeros(length, dtype=torch.bool, device=device)
        in_block[first:end] = True
        masks = ((x == mask_id) & in_block).sum(dim=1)  # per row: the block's masked positions
        per, rest = masks // len(reveals), masks % len(reveals)
        for j in range(len(reveals)):
            n = per + (j < rest).long()
            if int(n.max()) > 0:
                t = (x == mask_id).float().mean(dim=1)  # the masked fraction, for time-conditioned models
                log_p, hint = denoiser(x, t, hint)
                nfe += 1
                draw = sample_categorical(log_p, precision=precision, generator=generator)
                confidence = log_p.gather(-1, draw[..., None]).squeeze(-1)
                confidence = confidence.masked_fill((x != mask_id) | ~in_block, -math.inf)
                x = reveal_most_confident(x, draw, confidence, n)
            if progress is not None:
                progress.update(1)
    return x, float(nfe)
