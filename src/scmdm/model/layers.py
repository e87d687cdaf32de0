"""The layers of the denoiser trunk and of the causal verifier: rotary position embeddings, LayerNorm, the
timestep embedder, the transformer block (pre-norm or adaLN-modulated), the output layer, the token embedding.

Blocks (``block_type``):
  * ``prenorm``: h += Attn(LN(h)); h += MLP(LN(h)).
  * ``adaln``: the DiT block of MDLM: (shift, scale, gate) for attention and MLP come from a
    zero-initialised linear map of the conditioning vector c; h += gate ⊙ Attn(LN(h)·(1 + scale) + shift), and
    likewise for the MLP; the output layer is modulated the same way (shift, scale).

Attention is ``scaled_dot_product_attention`` with rotary position embeddings (half-split RoPE: dimension i is
rotated with i + d/2 by the angle p·θ_i, θ_i = 10000^(−2i/d)) and bias-free QKV / output projections.
Parameter names follow MDLM's DiT (``vocab_embed.embedding``, ``blocks.{i}.attn_qkv``, ``adaLN_modulation``,
``output_layer``), so that loading MDLM weights is a renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scmdm.model.config import BackboneConfig

__all__ = ["RotaryEmbedding", "apply_rotary", "LayerNorm", "TimestepEmbedder", "Block", "OutputLayer", "Embedding"]


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE: position p, frequency θ_j = 10000^(−2j/d), angle p·θ_j.

    The frequencies are a float32 buffer (as MDLM stores them); the angles and their cos/sin are computed in that
    buffer's dtype on every call, so a model moved to float64 (``model.double()``) rotates in float64 with the
    same frequencies, and a float32 model gets exactly the float32 tables. Not saved in the state dict."""

    def __init__(self, head_dim: int, max_length: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor | None, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for ``positions`` ([B, L] long; [B, 1, L, d/2]) or for 0..length-1 when positions is None
        ([L, d/2])."""
        inv_freq = self.inv_freq
        if positions is None:
            angles = torch.outer(torch.arange(length, dtype=inv_freq.dtype, device=inv_freq.device), inv_freq)
        else:
            angles = (positions.to(inv_freq.dtype)[..., None] * inv_freq)[:, None]
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x₁, x₂) = (x[..., :d/2], x[..., d/2:]) by the position angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias (as in MDLM's DiT); computed in float32 (float64 for a float64 input)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        return F.layer_norm(x.to(dtype), (x.shape[-1],), self.weight.to(dtype)).to(x.dtype)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of t followed by a 2-layer MLP (DiT's TimestepEmbedder):

        f_i = exp(−ln(10000)·i/128),  features = [cos(t·f_i), sin(t·f_i)] (i = 0..127),  MLP = Linear, SiLU, Linear

    computed in float32 (float64 when the MLP is float64)."""

    def __init__(self, cond_dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        dtype = torch.promote_types(self.mlp[0].weight.dtype, torch.float32)
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=dtype) / half)
        args = t.to(dtype)[:, None] * freqs[None]
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
