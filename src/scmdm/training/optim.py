"""The optimisation schedule of a run: learning rate, EMA of the weights, the batch at each step.

Learning rate at step s (W warm-up steps, S total, r = min_lr_ratio):
    lr(s) = lr · (s + 1)/W                                      for s < W
    lr(s) = lr · (r + (1 − r) · ½(1 + cos(π (s − W)/(S − W))))  afterwards
EMA:   θ̄ ← d_n · θ̄ + (1 − d_n) · θ,   d_n = min(decay, (1 + n)/(10 + n)),   after every optimizer step n.
Batch order: the batch at step s is a function of (seed, s) alone: epoch e = ⌊s / b⌋ (b batches per epoch, last
partial batch dropped) uses the permutation ``randperm(N, Generator(seed·1 000 003 + e))``.
"""

from __future__ import annotations

import math

import torch

from scmdm import distributed

__all__ = ["EMA", "learning_rate", "batch_indices"]


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers, with warm-up:

        shadow ← d_n · shadow + (1 − d_n) · θ,     d_n = min(decay, (1 + n) / (10 + n))

    where n is the number of updates before this one (the training step). Without the warm-up the
    average would keep decay^n of the random initialisation (0.999^2400 ≈ 9 % after 2,400 steps)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        current = model.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.shadow[k] for k in floats], [current[k].detach() for k in floats],
                             1.0 - self.decay_at(step))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load full tensors (as a checkpoint holds them); under FSDP each process keeps its shard."""
        for k, v in state.items():
            self.shadow[k].copy_(distributed.like(v, self.shadow[k]))


def learning_rate(step: int, *, lr: float, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(step: int, *, num_examples: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the training batch at ``step`` (a pure function of its arguments)."""
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {num_examples} training examples")
    epoch, position = divmod(step, per_epoch)
    perm = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[position * batch_size:(position + 1) * batch_size]
