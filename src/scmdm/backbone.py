"""Bidirectional transformer denoiser: rotary attention, optional time conditioning, two block kinds.

    h⁰ = E[x_t] (+ Δ(p_prev) at masked positions for a self-conditioned model, see ``selfcond``)
    c  = SiLU(MLP(sinusoidal(t)))                         (time conditioning; t ≡ 0 when disabled)
    hˡ = Block(hˡ⁻¹, c)                                   l = 1..depth
    logits = W_out · FinalNorm(h^depth, c) + b

Optional causal verifier (``causal_layers`` > 0, self-speculative MDM): ``causal`` re-reads the trunk states
in a generation order σ with causal attention and ``verify`` gives the non-factorized target logits; the
trunk and ``forward`` (the draft) are unchanged. The equations are in ``scmdm.speculative``.

Blocks (``block_type``):
  * ``prenorm``: h += Attn(LN(h)); h += MLP(LN(h)). With time conditioning, c is added to h⁰.
  * ``adaln``: the DiT block of MDLM: (shift, scale, gate) for attention and MLP come from a
    zero-initialised linear map of c; h += gate ⊙ Attn(LN(h)·(1 + scale) + shift), and likewise for
    the MLP; the final layer is modulated the same way (shift, scale).

Attention is ``scaled_dot_product_attention`` with rotary position embeddings (half-split RoPE) and
bias-free QKV / output projections. Parameter names follow MDLM's DiT (``vocab_embed.embedding``,
``sigma_map``, ``blocks.{i}.attn_qkv``, ``adaLN_modulation``, ``output_layer``) so that loading MDLM
weights stays a renaming (not built yet; it belongs in one module when it is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scmdm.selfcond import INJECTIONS, SelfConditioningInput

__all__ = ["BackboneConfig", "Transformer", "RotaryEmbedding", "apply_rotary", "BLOCK_TYPES", "KEY_POSITIONS"]

BLOCK_TYPES = ("prenorm", "adaln")
KEY_POSITIONS = ("token", "predicted")  # where the verifier's attention keys are rotated (scmdm.speculative)


@dataclass
class BackboneConfig:
    vocab_size: int  # including the MASK token
    max_length: int  # canvas length
    depth: int = 4
    width: int = 192
    heads: int = 6
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    block_type: str = "prenorm"
    time_conditioning: bool = False
    cond_dim: int = 128
    self_conditioning: str = "none"  # "none" or an injection of scmdm.selfcond (mask_add, projection, gated)
    causal_layers: int = 0  # causal verifier layers over σ-ordered tracks (scmdm.speculative); 0 = none
    causal_head: str = "shared"  # the verifier's output head: "shared" (the trunk's) or "separate"
    causal_state_norm: bool = True  # LayerNorm on the trunk states entering the verifier (scmdm.speculative)
    causal_key_positions: str = "token"  # verifier keys rotated by σ(k), the track's token ("token"), or σ(k+1)

    def __post_init__(self) -> None:
        if self.block_type not in BLOCK_TYPES:
            raise ValueError(f"unknown block_type {self.block_type!r}; valid: {', '.join(BLOCK_TYPES)}")
        if self.causal_key_positions not in KEY_POSITIONS:
            raise ValueError(f"unknown causal_key_positions {self.causal_key_positions!r}; valid: "
                             f"{', '.join(KEY_POSITIONS)}")
        if self.self_conditioning not in ("none", *INJECTIONS):
            raise ValueError(f"unknown self-conditioning injection {self.self_conditioning!r}; valid: none, "
                             f"{', '.join(INJECTIONS)}")
        for name in ("vocab_size", "max_length", "depth", "width", "heads", "cond_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.width % self.heads != 0 or (self.width // self.heads) % 2 != 0:
            raise ValueError(f"model.width ({self.width}) must be a multiple of model.heads ({self.heads}) "
                             "with an even head dimension (rotary embeddings rotate pairs)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.causal_layers < 0:
            raise ValueError(f"speculative.causal_layers must be >= 0, got {self.causal_layers}")
        if self.causal_head not in ("shared", "separate"):
            raise ValueError(f"unknown causal_head {self.causal_head!r}; valid: shared, separate")


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE: position p, frequency θ_j = 10000^(−2j/d)."""

    def __init__(self, head_dim: int, max_length: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_length, dtype=torch.float32), inv_freq)  # [L, d/2]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor | None, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for ``positions`` ([B, L] long) or for 0..length-1 when positions is None."""
        if positions is None:
            return self.cos[:length], self.sin[:length]
        return self.cos[positions][:, None], self.sin[positions][:, None]  # [B, 1, L, d/2]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x₁, x₂) = (x[..., :d/2], x[..., d/2:]) by the position angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias (as in MDLM's DiT); computed in float32."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), (x.shape[-1],), self.weight.float()).to(x.dtype)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of t followed by a 2-layer MLP (DiT's TimestepEmbedder)."""

    def __init__(self, cond_dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class Block(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        width, hidden = config.width, int(config.mlp_ratio * config.width)
        self.heads = config.heads
        self.dropout = config.dropout
        self.norm1 = LayerNorm(width)
        self.attn_qkv = nn.Linear(width, 3 * width, bias=False)
        self.attn_out = nn.Linear(width, width, bias=False)
        self.norm2 = LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.adaLN_modulation: nn.Linear | None = None
        if config.block_type == "adaln":
            self.adaLN_modulation = nn.Linear(config.cond_dim, 6 * width)
            nn.init.zeros_(self.adaLN_modulation.weight)
            nn.init.zeros_(self.adaLN_modulation.bias)

    def attention(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                  attn_mask: torch.Tensor | None, is_causal: bool,
                  key_rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.attn_qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        cos, sin = rotary
        key_cos, key_sin = key_rotary if key_rotary is not None else rotary
        q = apply_rotary(q, cos.to(q.dtype), sin.to(q.dtype))
        k = apply_rotary(k, key_cos.to(k.dtype), key_sin.to(k.dtype))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.attn_out(out.transpose(1, 2).reshape(batch, length, width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None, rotary: tuple[torch.Tensor, torch.Tensor],
                attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                key_rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """One block; ``key_rotary`` rotates the keys by other positions than the queries (default: the same)."""
        drop = self.dropout if self.training else 0.0
        if self.adaLN_modulation is None:
            x = x + F.dropout(self.attention(self.norm1(x), rotary, attn_mask, is_causal, key_rotary), drop,
                              self.training)
            return x + F.dropout(self.mlp(self.norm2(x)), drop, self.training)
        assert cond is not None
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(cond)[:, None].chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * F.dropout(self.attention(h, rotary, attn_mask, is_causal, key_rotary), drop, self.training)
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * F.dropout(self.mlp(h), drop, self.training)


class OutputLayer(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.norm_final = LayerNorm(config.width)
        self.linear = nn.Linear(config.width, config.vocab_size)
        self.adaLN_modulation: nn.Linear | None = None
        if config.block_type == "adaln":
            self.adaLN_modulation = nn.Linear(config.cond_dim, 2 * config.width)
            nn.init.zeros_(self.adaLN_modulation.weight)
            nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.norm_final(x)
        if self.adaLN_modulation is not None:
            shift, scale = self.adaLN_modulation(cond)[:, None].chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        return self.linear(h)


class Embedding(nn.Module):
    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(vocab_size, width) * 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.embedding)


class Transformer(nn.Module):
    """The shared denoiser trunk + output head. ``forward(x_t, t, p_prev=None) -> logits [B, L, vocab_size]``.

    MASK is the last token id (``vocab_size − 1``), as every scmdm tokenizer lays it out."""

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
        self.causal = None
        if config.causal_layers > 0:  # built last: a model without it draws the same initial weights as before
            from scmdm.speculative import CausalVerifier  # imported here: scmdm.speculative builds on this module

            self.causal = CausalVerifier(config)

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
        states in σ order ``h_sigma`` and the tokens in σ order before k (``scmdm.speculative``)."""
        if self.causal is None:
            raise ValueError("this model has no causal verifier (speculative.causal_layers is 0)")
        head = self.output_layer if self.causal.output_layer is None else self.causal.output_layer
        return head(h_sigma + self.causal(h_sigma, cond, order, tokens, self.rotary), cond)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
