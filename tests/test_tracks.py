"""Tests of scmdm.tracks: the σ-ordered tracks of self-speculative masked diffusion, by hand."""

from __future__ import annotations

import torch

from scmdm.tracks import gather_tracks, mask_after, sample_revealed, scatter_tracks


def test_sigma_order_helpers_by_hand() -> None:
    order = torch.tensor([[2, 0, 3, 1]])
    x = torch.tensor([[10, 11, 12, 13]])
    assert gather_tracks(x, order).tolist() == [[12, 10, 13, 11]]  # track k holds the token at σ(k+1)
    assert torch.equal(scatter_tracks(gather_tracks(x, order), order), x)
    h = torch.arange(8.0).view(1, 4, 2)
    assert torch.equal(gather_tracks(h, order)[0, 0], h[0, 2])
    # two revealed: σ(1) = 2 and σ(2) = 0 keep their tokens, σ(3..4) = 3, 1 are masked
    assert mask_after(x, order, torch.tensor([2]), 99).tolist() == [[10, 99, 12, 99]]
    assert mask_after(x, order, torch.tensor([0]), 99).tolist() == [[99] * 4]
    i = sample_revealed(8, 4, generator=torch.Generator().manual_seed(0))  # stratified: two per value
    assert sorted(i.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
