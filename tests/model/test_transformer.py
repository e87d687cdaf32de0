"""Tests of scmdm.model.Transformer: the bidirectional rotary transformer denoiser (tiny sizes, real modules)."""

from __future__ import annotations

import pytest
import torch

from scmdm.model import BLOCK_TYPES, Transformer
from tests.conftest import tiny_model

VOCAB = 7  # 6 real tokens + MASK
LENGTH = 8
#: the sizes of every model here (with tiny_model's width 16 and 2 heads)
SIZES = dict(depth=2, mlp_ratio=2.0, cond_dim=16)


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread beats two competing


def tokens(batch: int = 2, length: int = LENGTH, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def perturb(param: torch.nn.Parameter, seed: int = 1) -> None:
    with torch.no_grad():
        param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(seed)))


def open_gates(model: Transformer) -> None:
    """adaLN-Zero blocks start as the identity; a non-zero modulation bias makes them do something."""
    for i, block in enumerate(model.blocks):
        if block.adaLN_modulation is not None:
            perturb(block.adaLN_modulation.bias, seed=10 + i)


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
@pytest.mark.parametrize("time_conditioning", [False, True])
def test_output_shape(block_type: str, time_conditioning: bool) -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES, block_type=block_type, time_conditioning=time_conditioning)
    for length in (LENGTH, 3):  # shorter canvases are allowed
        logits = model(tokens(3, length), torch.rand(3))
        assert logits.shape == (3, length, VOCAB)
        assert logits.dtype == torch.float32
        assert torch.all(torch.isfinite(logits))


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_attention_is_bidirectional(block_type: str) -> None:
    # a causal model could not see the last token from position 0
    model = tiny_model(VOCAB, LENGTH, **SIZES, block_type=block_type)
    open_gates(model)
    x = tokens(1)
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % VOCAB
    with torch.no_grad():
        out_x, out_y = model(x), model(y)
    assert not torch.allclose(out_x[0, 0], out_y[0, 0])
    # and nothing else changed in the input, so any change is the attention reaching back
    assert torch.equal(x[0, :-1], y[0, :-1])


def test_rotary_makes_position_matter() -> None:
    # Sequence [a, b, b, …, b]. Without positional information attention is a function of the *set*
    # of keys, so every 'b' position would get the same hidden state. (A sequence of one repeated token
    # would not show anything: all values are equal, so any attention weights give the same output.)
    # With rotary embeddings the score between a 'b' and the 'a' depends on their distance.
    model = tiny_model(VOCAB, LENGTH, **SIZES)
    x = torch.tensor([[1] + [2] * (LENGTH - 1)])
    with torch.no_grad():
        h, _ = model.encode(x)
        b_states = h[0, 1:]
        assert not torch.allclose(b_states[0], b_states[-1], atol=1e-5)
        # control: with the rotation switched off (frequencies 0: cos = 1, sin = 0) the 'b' positions coincide
        model.rotary.inv_freq.zero_()
        h_plain, _ = model.encode(x)
    torch.testing.assert_close(h_plain[0, 1:], h_plain[0, 1:2].expand(LENGTH - 1, -1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_without_time_conditioning_output_ignores_t(block_type: str) -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES, block_type=block_type, time_conditioning=False)
    if block_type == "adaln":  # make the conditioning path live, so only the t ≡ 0 rule keeps it constant
        perturb(model.blocks[0].adaLN_modulation.weight)
    x = tokens()
    with torch.no_grad():
        out = model(x, torch.tensor([0.1, 0.2]))
        assert torch.equal(out, model(x, torch.tensor([0.9, 0.7])))
        assert torch.equal(out, model(x, None))


def test_prenorm_time_conditioning_uses_t() -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES, block_type="prenorm", time_conditioning=True)
    x = tokens()
    with torch.no_grad():
        a, b = model(x, torch.tensor([0.1, 0.1])), model(x, torch.tensor([0.9, 0.9]))
    assert not torch.allclose(a, b)


def test_adaln_zero_init_ignores_t_until_modulation_is_perturbed() -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES, block_type="adaln", time_conditioning=True)
    for name, param in model.named_parameters():
        if "adaLN_modulation" in name:
            assert torch.all(param == 0), name
    x = tokens()
    t1, t2 = torch.tensor([0.1, 0.1]), torch.tensor([0.9, 0.9])
    with torch.no_grad():
        out1 = model(x, t1)
        assert torch.equal(out1, model(x, t2))
        # zero shift/scale/gate: every block is the identity and the head is unmodulated
        direct = model.output_layer.linear(model.output_layer.norm_final(model.vocab_embed(x)))
        torch.testing.assert_close(out1, direct, rtol=0, atol=1e-6)
        perturb(model.blocks[0].adaLN_modulation.weight)
        assert not torch.allclose(model(x, t1), model(x, t2))


def test_parameter_names_follow_mdlm_dit() -> None:
    prenorm = dict(tiny_model(VOCAB, LENGTH, **SIZES, block_type="prenorm").named_parameters())
    adaln = dict(tiny_model(VOCAB, LENGTH, **SIZES, block_type="adaln").named_parameters())
    common = ["vocab_embed.embedding", "blocks.0.attn_qkv.weight", "blocks.0.attn_out.weight",
              "blocks.0.norm1.weight", "blocks.0.norm2.weight", "blocks.1.attn_qkv.weight",
              "output_layer.norm_final.weight", "output_layer.linear.weight", "output_layer.linear.bias"]
    for name in common:
        assert name in prenorm, name
        assert name in adaln, name
    for name in ("blocks.0.adaLN_modulation.weight", "blocks.0.adaLN_modulation.bias",
                 "output_layer.adaLN_modulation.weight", "sigma_map.mlp.0.weight", "sigma_map.mlp.2.weight"):
        assert name in adaln, name
        assert name not in prenorm, name
    assert prenorm["vocab_embed.embedding"].shape == (VOCAB, 16)
    assert adaln["blocks.0.attn_qkv.weight"].shape == (3 * 16, 16)
    # bias-free attention projections, as in MDLM
    for names in (prenorm, adaln):
        assert not any(n.endswith(("attn_qkv.bias", "attn_out.bias")) for n in names)
        assert not any(n.endswith("norm1.bias") for n in names)  # LayerNorm without bias


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_input_embedding_is_added(block_type: str) -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES, block_type=block_type, time_conditioning=True)
    x, t = tokens(), torch.tensor([0.3, 0.6])
    with torch.no_grad():
        base = model(x, t)
        assert torch.equal(model(x, t, input_embedding=torch.zeros(2, LENGTH, 16)), base)
        extra = torch.randn(2, LENGTH, 16, generator=torch.Generator().manual_seed(3))
        changed = model(x, t, input_embedding=extra)
        assert not torch.allclose(changed, base)
        # it enters as h⁰ = E[x] + extra, so moving it into the embedding table gives the same logits
        # (position-independent extra: the same vector at every position of token x)
        shift = extra[0, 0]
        same_everywhere = shift.expand(2, LENGTH, 16)
        via_input = model(x, t, input_embedding=same_everywhere)
        model.vocab_embed.embedding.add_(shift)
        torch.testing.assert_close(model(x, t), via_input, rtol=1e-5, atol=1e-5)


def test_sequence_longer_than_canvas_raises() -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES)
    with pytest.raises(ValueError, match="exceeds the model's canvas 8"):
        model(tokens(1, LENGTH + 1))


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_dropout_active_in_train_mode_only(block_type: str) -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES, block_type=block_type, dropout=0.5)
    open_gates(model)  # adaln: so that the (dropped-out) block outputs reach the logits
    x, t = tokens(), torch.tensor([0.3, 0.6])
    with torch.no_grad():
        model.train()
        assert not torch.allclose(model(x, t), model(x, t))
        model.eval()
        assert torch.equal(model(x, t), model(x, t))


def test_num_parameters_counts_every_parameter() -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES)
    # embedding 7·16, per block: qkv 16·48 + out 16·16 + 2 norms 2·16 + mlp (16·32 + 32) + (32·16 + 16),
    # head: norm 16 + linear 16·7 + 7
    per_block = 16 * 48 + 16 * 16 + 2 * 16 + (16 * 32 + 32) + (32 * 16 + 16)
    assert model.num_parameters() == 7 * 16 + 2 * per_block + 16 + 16 * 7 + 7
