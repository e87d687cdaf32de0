"""The denoiser: a bidirectional transformer trunk with an output head, optional time conditioning, an optional
self-conditioning input and an optional causal verifier — one model for the base MDM, the self-conditioned MDM
and the self-speculative MDM, which differ only in those small additions.

    h⁰ = E[x_t] (+ Δ(p_prev) at masked positions for a self-conditioned model, ``scmdm.selfcond``)
    c  = SiLU(MLP(sinusoidal(τ)))                         (τ = t, or MDLM's σ(t) = −log(1 − (1 − ε)t) with
                                                           ``time_input=sigma``; τ ≡ 0 without time conditioning)
    hˡ = Block(hˡ⁻¹, c)                                   l = 1..depth   (``scmdm.model.layers``)
    logits = W_out · FinalNorm(h^depth, c) + b

With time conditioning a prenorm model adds a linear map of c to h⁰; an adaLN model modulates every block by c.
The optional causal verifier (``causal_layers`` > 0, ``scmdm.model.verifier``) re-reads the trunk states in a
generation order σ; ``verify`` gives the non-factorized target logits, and the trunk and ``forward`` (the draft)
are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scmdm.model.config import MDLM_EPS, BackboneConfig
from scmdm.model.layers import Block, Embedding, OutputLayer, RotaryEmbedding, TimestepEmbedder
from scmdm.model.verifier import CausalVerifier
from scmdm.selfcond import SelfConditioningInput

__all__ = ["Transformer"]


class Transformer(nn.Module):
    """The shared denoiser trunk + output head. ``forward(x_t, t, p_prev=None) -> logits [B, L, vocab_size]``.

    MASK is the last token id (``vocab_size − 1``), as every scmdm tokenizer lays it out."""

    #: parameter-name prefixes of what post-training adds to a trained trunk
    ADDITIONS = ("self_cond.", "causal.")

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_embed = Embedding(config.vocab_size, config.width)
        self.sigma_map = TimestepEmbedder(config.cond_dim) if self._uses_cond else None
        self.rotary = RotaryEmbedding(config.width // config.heads, config.max_length)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.output_layer = OutputLayer(config)
        self.time_to_width = (nn.Linear(config.cond_dim, config.width)
                              if config.time_conditioning and config.block_type == "prenorm" else None)
        self.self_cond = (SelfConditioningInput(config.self_conditioning, config.width, config.vocab_size - 1)
                          if config.self_conditioning != "none" else None)
        # built last: a model without it draws the same initial weights as before
        self.causal = CausalVerifier(config) if config.causal_layers > 0 else None

    @property
    def self_conditioned(self) -> bool:
        return self.self_cond is not None

    @property
    def speculative(self) -> bool:
        """Whether the model has a causal verifier (``verify``)."""
        return self.causal is not None

    @property
    def _uses_cond(self) -> bool:
        return self.config.time_conditioning or self.config.block_type == "adaln"

    def condition(self, t: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
        """The conditioning vector c (None for a prenorm model without time conditioning)."""
        if self.sigma_map is None:
            return None
        if t is None or not self.config.time_conditioning:
            t = torch.zeros(batch, device=device)
        elif self.config.time_input == "sigma":
            t = -torch.log1p(-(1.0 - MDLM_EPS) * t)
        return F.silu(self.sigma_map(t))

    def encode(self, x_t: torch.Tensor, t: torch.Tensor | None = None, input_embedding: torch.Tensor | None = None,
               p_prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Trunk hidden states [B, L, width] and the conditioning vector. ``p_prev`` [B, L, V] is the
        self-conditioning hint (None = the null condition)."""
        if x_t.shape[1] > self.config.max_length:
            raise ValueError(f"sequence length {x_t.shape[1]} exceeds the model's canvas {self.config.max_length}")
        h = self.vocab_embed(x_t)
        if input_embedding is not None:
            h = h + input_embedding.to(h.dtype)
        if p_prev is not None:
            if self.self_cond is None:
                raise ValueError("p_prev was given to a model without self-conditioning (model.self_conditioning "
                                 "is 'none')")
            h = h + self.self_cond(x_t, p_prev, self.vocab_embed.embedding).to(h.dtype)
        cond = self.condition(t, x_t.shape[0], x_t.device)
        if self.time_to_width is not None:
            h = h + self.time_to_width(cond)[:, None]
        rotary = self.rotary(None, x_t.shape[1])
        for block in self.blocks:
            h = block(h, cond, rotary)
        return h, cond

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | None = None, input_embedding: torch.Tensor | None = None,
                p_prev: torch.Tensor | None = None) -> torch.Tensor:
        h, cond = self.encode(x_t, t, input_embedding, p_prev)
        return self.output_layer(h, cond)

    def verify(self, h_sigma: torch.Tensor, cond: torch.Tensor | None, order: torch.Tensor,
               tokens: torch.Tensor) -> torch.Tensor:
        """Target logits [B, D, vocab_size] in σ order: entry k is q at position ``order[:, k]`` from the trunk
        states in σ order ``h_sigma`` and the tokens in σ order before k (``scmdm.model.verifier``)."""
        if self.causal is None:
            raise ValueError("this model has no causal verifier (speculative.causal_layers is 0)")
        head = self.output_layer if self.causal.output_layer is None else self.causal.output_layer
        return head(h_sigma + self.causal(h_sigma, cond, order, tokens, self.rotary), cond)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_pretrained(self, weights: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Start from the weights of a model without (some of) this model's additions — the self-conditioning
        input and the causal verifier (``ADDITIONS``), which keep their fresh initialisation; a new separate
        verifier head starts as a copy of the trunk's, so a fresh verifier's target equals the draft. Returns the
        (missing, unexpected) names that are not additions: both empty when the weights fit."""
        missing, unexpected = self.load_state_dict(weights, strict=False)
        if self.causal is not None and self.causal.output_layer is not None and any(
                k.startswith("causal.output_layer.") for k in missing):
            self.causal.output_layer.load_state_dict(self.output_layer.state_dict())
        return [k for k in missing if not k.startswith(self.ADDITIONS)], list(unexpected)
