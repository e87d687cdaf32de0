"""The causal verifier of a self-speculative masked diffusion model (arXiv 2510.03929): one or more causal
layers over the trunk's states re-ordered by a generation order σ (``scmdm.tracks``), giving a non-factorized
target q beside the trunk's factorized draft p. Its loss is ``scmdm.objectives.speculative``; the exact sampler
that uses it is ``scmdm.sampling.speculative``.

Notation: a canvas of D positions, ``order[:, k]`` = σ(k+1); h = the trunk's hidden states of the canvas
(revealed tokens, MASK elsewhere), ``head`` = an output layer. Everything the verifier reads or writes is in σ
order ("tracks").

Architecture (``CausalVerifier``, the optional submodule ``causal`` of the one ``scmdm.model.Transformer``,
built when ``speculative.causal_layers`` > 0). Track k = 0..D−1 predicts the token at σ(k+1):

    u₀ = s + P_cur[start] + P_next[σ(1)] + B·LN(h_σ(1))                              (the learned start track)
    u_k = E_c[x_σ(k)] + A·LN(h_σ(k)) + P_cur[σ(k)] + P_next[σ(k+1)] + B·LN(h_σ(k+1))  k ≥ 1
    y = CausalBlocks(u)        the trunk's block kind, attention causal over tracks; rotary angles: σ(k+1)
                               for queries, σ(k) for keys (σ(1) for the start track), so the score of track j
                               for query k is a function of σ(k+1) − σ(j): where j's token sits relative to
                               the position predicted (``speculative.key_positions=token``; ``predicted``
                               rotates keys by σ(j+1) as well, the layout of verifiers saved before it)
    c_k = W_o·LN(y_k)          W_o, b_o zero-initialised: a fresh verifier adds nothing
    target q at σ(k+1):  head(h_σ(k+1) + c_k)         (the "output residual" of the trunk state)
    draft  p at σ(k+1):  head(h_σ(k+1))               (the MDM's own factorized prediction)

Scale matters (``speculative.state_norm``, on by default): the trunk's residual stream has norm ~200–400 in a
prenorm trunk, against ~0.3 for a token embedding drawn with std 0.02, so raw states A·h drown the tokens of
the tracks. A verifier trained that way (QM9, 1,000 steps) never read its tracks: shuffling their tokens did
not change q, and it beat the draft only on an all-masked canvas (benchmarks/verifier_diagnostics.py,
docs/SPECULATIVE.md). With state_norm the states enter as LN(h), A and B start with std 0.02 and E with
std 1, so a fresh verifier's input is led by the tokens (‖E·x‖ ≈ √width against ‖A·LN(h)‖ ≈ 0.02·width).

x_σ(k) is the real token while training, the revealed token or the draft while sampling. Track k sees the
tokens at σ(1..k) only, so **q at σ(d) depends neither on the token at σ(d) nor on any later one** — the
property that makes verification exact. ``head`` is the trunk's output layer (``speculative.head=shared``)
or the verifier's own (``separate``; copied from the trunk's when post-training starts).
"""

from __future__ import annotations

import torch
from torch import nn

from scmdm.model.config import BackboneConfig
from scmdm.model.layers import Block, Embedding, LayerNorm, OutputLayer, RotaryEmbedding

__all__ = ["CausalVerifier"]


class CausalVerifier(nn.Module):
    """The causal block over σ-ordered tracks; ``forward`` returns the contributions c (module docstring)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        width, length = config.width, config.max_length
        self.token_embedding = Embedding(config.vocab_size, width)
        self.start = nn.Parameter(torch.randn(width) * 0.02)
        self.position_current = nn.Parameter(torch.randn(length + 1, width) * 0.02)  # last row: the start track
        self.position_next = nn.Parameter(torch.randn(length, width) * 0.02)
        self.state_current = nn.Linear(width, width, bias=False)
        self.state_next = nn.Linear(width, width, bias=False)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.causal_layers))
        self.norm = LayerNorm(width)
        self.out_proj = nn.Linear(width, width)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        self.output_layer = OutputLayer(config) if config.causal_head == "separate" else None
        self.key_positions = config.causal_key_positions
        self.state_norm = LayerNorm(width) if config.causal_state_norm else None
        if self.state_norm is not None:  # the tokens of the tracks must not start drowned by the trunk states
            with torch.no_grad():
                self.token_embedding.embedding.normal_(0.0, 1.0)  # ‖E·x‖ ≈ √width
                self.state_current.weight.normal_(0.0, 0.02)  # ‖A·LN(h)‖ ≈ 0.02·width
                self.state_next.weight.normal_(0.0, 0.02)

    @staticmethod
    def key_order(order: torch.Tensor) -> torch.Tensor:
        """The key position of each track (``key_positions=token``): σ(k), where track k's token sits; the start
        track, which holds no token, takes σ(1)."""
        return torch.cat([order[:, :1], order[:, :-1]], dim=1)

    def forward(self, h_sigma: torch.Tensor, cond: torch.Tensor | None, order: torch.Tensor, tokens: torch.Tensor,
                rotary: RotaryEmbedding) -> torch.Tensor:
        """c [B, D, width] in σ order, from the trunk states in σ order ``h_sigma`` [B, D, width], the order
        [B, D] and the tokens in σ order [B, D] (``tokens[:, k]`` is the token at σ(k+1); the last is unused)."""
        batch, length = order.shape
        states = self.state_norm(h_sigma) if self.state_norm is not None else h_sigma
        current = (self.token_embedding(tokens[:, :-1]) + self.state_current(states[:, :-1])
                   + self.position_current[order[:, :-1]])
        start = (self.start + self.position_current[-1]).expand(batch, 1, -1)
        u = torch.cat([start.to(current.dtype), current], dim=1) + self.position_next[order] + self.state_next(states)
        angles = rotary(order, length)  # queries: the position each track predicts, σ(k+1)
        key_angles = None if self.key_positions == "predicted" else rotary(self.key_order(order), length)
        for block in self.blocks:
            u = block(u, cond, angles, is_causal=True, key_rotary=key_angles)
        return self.out_proj(self.norm(u))
