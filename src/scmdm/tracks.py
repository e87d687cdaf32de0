"""Generation orders σ and "tracks": the canvas re-ordered by σ, as the self-speculative verifier reads it.

A canvas of D positions; a generation order σ is a permutation of the positions, held as ``order`` [B, D] with
``order[:, k]`` = σ(k+1) (0-based k). Revealed positions are always a prefix σ(1..n) of it.

    gather_tracks:   out[:, k] = values[:, σ(k+1)]        (canvas order → σ order)
    scatter_tracks:  the inverse                           (σ order → canvas order)

Training draws σ uniformly and a revealed count i ~ U{0..D−1}, stratified across the batch like
``diffusion.sample_times``: i_b = ⌊D·((u + b/B) mod 1)⌋ with one u ~ U[0, 1).
"""

from __future__ import annotations

import torch

__all__ = ["gather_tracks", "scatter_tracks", "sample_orders", "sample_revealed", "mask_after"]


def gather_tracks(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Canvas order → σ order: ``out[:, k] = values[:, order[:, k]]`` for values [B, D, ...]."""
    index = order.view(*order.shape, *([1] * (values.dim() - 2))).expand(*order.shape, *values.shape[2:])
    return values.gather(1, index)


def scatter_tracks(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """σ order → canvas order (the inverse of ``gather_tracks``)."""
    index = order.view(*order.shape, *([1] * (values.dim() - 2))).expand(*order.shape, *values.shape[2:])
    return torch.empty_like(values).scatter_(1, index, values)


def sample_orders(batch: int, length: int, *, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """One uniformly random permutation of 0..length−1 per row, [B, D] long."""
    return torch.rand((batch, length), generator=generator, device=device).argsort(dim=1)


def sample_revealed(batch: int, length: int, *, antithetic: bool = True, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Revealed counts i ∈ {0..D−1}, uniform; stratified across the batch (module docstring)."""
    if antithetic:
        u = torch.rand(1, generator=generator, device=device)
        frac = (u + torch.arange(batch, device=device) / batch) % 1.0
    else:
        frac = torch.rand(batch, generator=generator, device=device)
    return (frac * length).long().clamp_(0, length - 1)


def mask_after(x0: torch.Tensor, order: torch.Tensor, revealed: torch.Tensor, mask_id: int) -> torch.Tensor:
    """x0 with σ(i+1..D) masked (the first ``revealed[b]`` positions of ``order[b]`` kept)."""
    rank = scatter_tracks(torch.arange(x0.shape[1], device=x0.device).expand_as(order), order)
    return torch.where(rank >= revealed[:, None], torch.full_like(x0, mask_id), x0)
