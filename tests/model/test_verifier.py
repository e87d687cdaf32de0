"""The causal verifier of self-speculative masked diffusion (scmdm.model.verifier): a model without one is
unchanged, the target at σ(d) ignores the draft there and later (causality, (a)), the state norm, and where the
verifier's attention keys sit."""

from __future__ import annotations

import math

import pytest
import torch

from scmdm.model import BackboneConfig
from scmdm.tracks import gather_tracks
from tests.conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")

REAL, L = 3, 4  # 3 real tokens + MASK, a canvas of 4
MASK = REAL
#: one causal layer, the output head scaled so that drafts are far from uniform; with random_verifier=True the
#: verifier's output projection is drawn, so that its target differs from the draft and depends on earlier tokens
VERIFIER = dict(head_scale=3.0, causal_layers=1)


def test_a_model_without_verifier_is_unchanged() -> None:
    """No causal block: no new parameters, and the trunk's initial weights are those a verifier model draws
    first (the verifier is built last), so the draft of a verifier model is the plain model's output."""
    plain = tiny_model(REAL + 1, L, seed=3, depth=2)
    assert plain.causal is None and not plain.speculative
    spec = tiny_model(REAL + 1, L, seed=3, depth=2, causal_layers=1)
    trunk = {k: v for k, v in spec.state_dict().items() if not k.startswith("causal.")}
    assert trunk.keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in trunk.items())
    x = torch.tensor([[MASK, 1, MASK, 0]])
    assert torch.equal(spec(x), plain(x))
    with pytest.raises(ValueError, match="no causal verifier"):
        plain.verify(torch.zeros(1, L, 16), None, torch.arange(L)[None], x)


# ---- (a) causality ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["shared", "separate"])
def test_target_at_sigma_d_ignores_the_draft_there_and_later(head: str) -> None:
    model = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True, causal_head=head)
    gen = torch.Generator().manual_seed(0)
    order = torch.stack([torch.randperm(L, generator=gen) for _ in range(6)])
    x = torch.full((6, L), MASK)
    h, cond = model.encode(x)
    h_sigma = gather_tracks(h, order)
    tokens = torch.randint(0, REAL, (6, L), generator=gen)
    with torch.no_grad():
        q = model.verify(h_sigma, cond, order, tokens)
        for d in range(L):
            changed = tokens.clone()
            changed[:, d:] = (changed[:, d:] + 1 + torch.randint(0, REAL - 1, changed[:, d:].shape,
                                                                 generator=gen)) % REAL
            assert (changed[:, d:] != tokens[:, d:]).all()
            q_changed = model.verify(h_sigma, cond, order, changed)
            torch.testing.assert_close(q_changed[:, :d + 1], q[:, :d + 1], rtol=0, atol=1e-5)
            if d + 1 < L:  # not vacuous: the target at σ(d+2) does see the token at σ(d+1)
                assert (q_changed[:, d + 1] - q[:, d + 1]).abs().max() > 1e-2


# ---- the state norm and the key positions -----------------------------------------------------------------
def test_state_norm_makes_the_verifier_blind_to_the_scale_of_trunk_states() -> None:
    """u_k reads LN(h): scaling the trunk states by 50 (a prenorm residual stream has norm ~200) leaves the
    verifier's contribution unchanged, so the track tokens are not drowned; without the norm it changes."""
    torch.manual_seed(0)
    h, order = torch.randn(2, L, 16), torch.stack([torch.randperm(L) for _ in range(2)])
    tokens = torch.randint(0, REAL, (2, L))
    for norm in (True, False):
        model = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True)
        if not norm:
            model.causal.state_norm = None
        c = model.causal(h, None, order, tokens, model.rotary)
        c_scaled = model.causal(50.0 * h, None, order, tokens, model.rotary)
        assert torch.allclose(c, c_scaled, atol=1e-4) == norm


def test_verifier_keys_sit_at_the_track_token_position() -> None:
    """key_positions=token: track k's key is rotated by σ(k), where its token sits (σ(1) for the start track),
    its query by σ(k+1); so the attention score of key j for query k depends on σ(k+1) − σ(j)."""
    from scmdm.model.layers import Block, RotaryEmbedding, apply_rotary
    from scmdm.model.verifier import CausalVerifier

    order = torch.tensor([[2, 0, 3, 1]])  # σ = (2, 0, 3, 1)
    assert CausalVerifier.key_order(order).tolist() == [[2, 2, 0, 3]]
    torch.manual_seed(0)
    config = BackboneConfig(vocab_size=5, max_length=4, depth=1, width=8, heads=1)
    block, rotary = Block(config), RotaryEmbedding(8, 4)
    x = torch.randn(1, 4, 8)
    queries, keys = rotary(order, 4), rotary(CausalVerifier.key_order(order), 4)
    q, k, v = block.attn_qkv(x).chunk(3, dim=-1)
    q, k = apply_rotary(q, *(t[:, 0] for t in queries)), apply_rotary(k, *(t[:, 0] for t in keys))
    scores = (q @ k.transpose(1, 2)) / math.sqrt(8) + torch.full((4, 4), -math.inf).triu(1)
    expected = block.attn_out(scores.softmax(-1) @ v)
    with torch.no_grad():
        assert torch.allclose(block.attention(x, queries, None, True, keys), expected, atol=1e-6)
        assert not torch.allclose(block.attention(x, queries, None, True), expected, atol=1e-3)  # σ(k+1) keys differ
    # relative: the score of (query at position a, key at position b) is the same for (a + 1, b + 1)
    vector_q, vector_k = torch.randn(8), torch.randn(8)
    cos, sin = rotary(None, 4)  # the tables of positions 0..3

    def score(a: int, b: int) -> torch.Tensor:
        qa = apply_rotary(vector_q, cos[a], sin[a])
        return qa @ apply_rotary(vector_k, cos[b], sin[b])
    assert torch.allclose(score(3, 1), score(2, 0), atol=1e-5) and not torch.allclose(score(3, 1), score(3, 0))
    # the option reaches the verifier's blocks: the two layouts give different outputs
    model = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True)
    h, tokens = torch.randn(1, L, 16), torch.randint(0, REAL, (1, L))
    order = torch.randperm(L)[None]
    with torch.no_grad():
        token_keys = model.causal(h, None, order, tokens, model.rotary)
        model.causal.key_positions = "predicted"
        assert not torch.allclose(model.causal(h, None, order, tokens, model.rotary), token_keys, atol=1e-4)
