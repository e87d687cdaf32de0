"""The self-speculative objective (arXiv 2510.03929): the draft and the causal verifier's target
(``scmdm.model.verifier``) trained in one pass per example.

Loss (``speculative_loss``). Draw σ uniformly and i ~ U{0..D−1} (stratified across the batch), reveal
σ(1..i), mask the rest; one trunk pass, one verifier pass with the real tokens (teacher forcing):

    L = D/(D − i) · [ Σ_{d>i} −log p(x_σ(d) | x_σ(≤i))  +  Σ_{d>i} −log q(x_σ(d) | x_σ(≤i), x_σ(i+1..d−1)) ]

reported per canvas token (÷ D). The first sum alone is an unbiased estimate of the MDM's NELBO in its
any-order form; the second trains the verifier. With ``speculative.freeze_trunk`` the trunk (embeddings,
blocks and a shared head) runs without gradient and in eval mode, and only the verifier learns
(post-training a model ``scmdm train`` wrote: ``scmdm posttrain --speculative``).

A self-conditioned trunk is run as at sampling time: pass 1 null (no gradient, ``HintPass``) → hint, pass 2 with
the hint. Validation adds, to the NELBO (and two-pass NELBO) of the trunk, ``val_draft_bits`` and
``val_target_bits`` (``validation_speculative``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from scmdm.diffusion import LossOutput, masked_token_nll
from scmdm.objectives.base import Objective, StepNoise, Terms
from scmdm.objectives.nelbo import NelboObjective
from scmdm.objectives.selfcond import HintPass, SelfConditionedObjective
from scmdm.tracks import gather_tracks, mask_after, sample_orders, sample_revealed

__all__ = ["SpeculativeLoss", "speculative_loss", "validation_speculative", "trainable_parameters", "set_train_mode",
           "SpeculativeObjective", "VERIFIER_LABELS"]

HintFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]
#: the validation metrics this objective adds to its trunk's NELBO
VERIFIER_LABELS = {"val_draft_bits": "validation NLL of the draft (any-order NELBO)",
                   "val_target_bits": "validation NLL of the verifier's target"}


@dataclass
class SpeculativeLoss(LossOutput):
    draft: torch.Tensor | None = None  # scalar, draft NELBO term in nats per canvas token (detached)
    target: torch.Tensor | None = None  # scalar, verifier term in nats per canvas token (detached)


def speculative_loss(model: nn.Module, x0: torch.Tensor, mask_id: int, *, antithetic: bool = True,
                     generator: torch.Generator | None = None, freeze_trunk: bool = False,
                     hint_fn: HintFn | None = None, order: torch.Tensor | None = None,
                     revealed: torch.Tensor | None = None) -> SpeculativeLoss:
    """The joint loss D/(D − i)·(draft CE + teacher-forced target CE of the masked block), per canvas token.

    ``order`` and ``revealed`` are drawn when not given; ``hint_fn(x_t, t)`` gives a self-conditioned trunk
    its hint (pass 1); with ``freeze_trunk`` the trunk runs under no-grad and only the verifier learns."""
    if getattr(model, "causal", None) is None:
        raise ValueError("speculative_loss needs a model with a causal verifier (speculative.causal_layers > 0)")
    batch, length = x0.shape
    if order is None:
        order = sample_orders(batch, length, generator=generator, device=x0.device)
    if revealed is None:
        revealed = sample_revealed(batch, length, antithetic=antithetic, generator=generator, device=x0.device)
    x_t = mask_after(x0, order, revealed, mask_id)
    t = (length - revealed).float() / length  # the masked fraction (= t of the log-linear schedule)
    hint = hint_fn(x_t, t) if hint_fn is not None else None
    with torch.set_grad_enabled(torch.is_grad_enabled() and not freeze_trunk):
        h, cond = model.encode(x_t, t, p_prev=hint)
        draft = masked_token_nll(model.output_layer(h, cond), x0, x_t, mask_id)
    target_logits = model.verify(gather_tracks(h, order), cond, order, gather_tracks(x0, order))
    target = masked_token_nll(target_logits, gather_tracks(x0, order), gather_tracks(x_t, order), mask_id)
    weight = length / (length - revealed).to(draft.dtype)
    loss = (weight * (draft + target)).mean() / length
    return SpeculativeLoss(loss=loss, t=t, num_masked=length - revealed,
                           draft=(weight * draft).mean().detach() / length,
                           target=(weight * target).mean().detach() / length)


@torch.no_grad()
def validation_speculative(model: nn.Module, data: torch.Tensor, mask_id: int, *, num_i: int = 8, seed: int = 0,
                           batch_size: int = 256, device: torch.device | str = "cpu",
                           hint_fn: HintFn | None = None) -> dict[str, float]:
    """Draft and target NLL, bits per canvas token, under a fixed protocol: revealed counts on the midpoint
    grid i_k = ⌊D·(k + ½)/K⌋, k = 0..K−1, one σ per sequence and grid point from a generator seeded by
    ``seed``, float64 accumulation. ``val_draft_bits`` estimates the MDM's NELBO (any-order form),
    ``val_target_bits`` the verifier's; the target is lower when the verifier has learned how masked tokens
    depend on each other."""
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"validation data must be a non-empty [N, L] tensor, got shape {tuple(data.shape)}")
    generator = torch.Generator(device=device).manual_seed(seed)
    length = data.shape[1]
    grid = [min(length - 1, int(length * (k + 0.5) / num_i)) for k in range(num_i)]
    totals = {"draft": torch.zeros((), dtype=torch.float64), "target": torch.zeros((), dtype=torch.float64)}
    for start in range(0, data.shape[0], batch_size):
        x0 = data[start:start + batch_size].to(device)
        for i in grid:
            revealed = torch.full((x0.shape[0],), i, device=device)
            out = speculative_loss(model, x0, mask_id, generator=generator, hint_fn=hint_fn, revealed=revealed)
            for key in totals:
                totals[key] += getattr(out, key).double().cpu() * x0.shape[0]
    scale = num_i * data.shape[0] * math.log(2.0)
    return {"val_draft_bits": float(totals["draft"] / scale), "val_target_bits": float(totals["target"] / scale)}


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Freeze the trunk (every parameter outside ``model.causal``); returns the verifier's parameters."""
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("causal."))
        if param.requires_grad:
            params.append(param)
    return params


def set_train_mode(model: nn.Module, freeze_trunk: bool) -> None:
    """``model.train()``; with a frozen trunk everything but the verifier stays in eval mode (no dropout), so
    the verifier learns on the trunk states it will see when sampling."""
    model.train()
    if freeze_trunk:
        for name, child in model.named_children():
            if name != "causal":
                child.eval()


class SpeculativeObjective(Objective):
    """``speculative_loss`` on the model's generation orders; with ``speculative.freeze_trunk`` only the verifier
    learns, the trunk in eval mode."""

    part_names = ("draft", "target")

    def __init__(self, config, schedule, *, mask_id: int, vocab_size: int, device: torch.device) -> None:
        super().__init__(config, schedule, mask_id=mask_id, vocab_size=vocab_size, device=device)
        self_conditioned = config.selfcond.injection != "none"
        trunk = SelfConditionedObjective if self_conditioned else NelboObjective
        self.trunk = trunk(config, schedule, mask_id=mask_id, vocab_size=vocab_size, device=device)
        self.hints = (HintPass(config, schedule, mask_id=mask_id, vocab_size=vocab_size, device=device)
                      if self_conditioned else None)
        self.freeze_trunk = config.speculative.freeze_trunk
        self.metric_labels = {**self.trunk.metric_labels, **VERIFIER_LABELS}

    def draw(self, x0: torch.Tensor, step: int, generator: torch.Generator) -> StepNoise:
        two_pass = self.hints is not None and self.hints.coin(step)
        batch, length = x0.shape
        order = sample_orders(batch, length, generator=generator, device=self.device)
        noise = StepNoise(order=order, revealed=sample_revealed(batch, length,
                                                                antithetic=self.config.diffusion.antithetic,
                                                                generator=generator, device=self.device),
                          two_pass=two_pass)
        if two_pass:
            noise.hint = self.hints.draw(batch, length, generator)
        return noise

    def _hint_fn(self, model: nn.Module, noise: StepNoise) -> HintFn | None:
        if not noise.two_pass:
            return None
        return lambda x_t, t: self.hints.hint(model, x_t, t, noise.hint)

    def loss(self, model: nn.Module, x0: torch.Tensor, noise: StepNoise) -> Terms:
        with self.autocast():
            out = speculative_loss(model, x0, self.mask_id, order=noise.order, revealed=noise.revealed,
                                   freeze_trunk=self.freeze_trunk, hint_fn=self._hint_fn(model, noise))
        return Terms(out.loss, {"draft": out.draft, "target": out.target})

    def validate(self, model: nn.Module, data: torch.Tensor, *, num_t: int) -> dict[str, float]:
        result = self.trunk.validate(model, data, num_t=num_t)
        with self.autocast():
            result.update(validation_speculative(
                model, data, self.mask_id, num_i=num_t, seed=0, device=self.device,
                hint_fn=self._hint_fn(model, StepNoise(two_pass=self.hints is not None))))
        return result

    def select_trainable(self, model: nn.Module) -> None:
        if self.freeze_trunk:
            trainable_parameters(model)

    def train_mode(self, model: nn.Module) -> None:
        set_train_mode(model, self.freeze_trunk)

    def may_leave_parameters_unused(self, model: nn.Module) -> bool:
        return self.hints is not None and self.hints.may_leave_parameters_unused(model)
