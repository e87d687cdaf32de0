"""The analytic FLOP count (scmdm.flops) against a hand computation and against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scmdm.diffusion import nelbo_loss
from scmdm.flops import forward_flops, forward_flops_per_token, training_flops, training_flops_per_token
from scmdm.model import BackboneConfig
from scmdm.schedules import get_schedule
from tests.conftest import tiny_model

VOCAB = 7


def config(**kwargs) -> BackboneConfig:
    return BackboneConfig(**{"vocab_size": VOCAB, "max_length": 10, "depth": 2, "width": 16, "heads": 2,
                             "cond_dim": 8, **kwargs})


def test_forward_flops_by_hand() -> None:
    # depth 1, d = 4, h = 16, L = 2, V = 3: qkv 2·4·12 = 96, out 2·4·4 = 32, MLP 2·4·16 + 2·16·4 = 256,
    # attention 4·L·d = 32, head 2·4·3 = 24  →  440 per token, 880 for one canvas of 2 tokens
    cfg = BackboneConfig(vocab_size=3, max_length=2, depth=1, width=4, heads=2)
    assert forward_flops(cfg, 1, 2) == 880
    assert forward_flops(cfg, 5, 2) == 5 * 880
    assert forward_flops_per_token(cfg, 2) == 440
    assert training_flops(cfg, 1, 2) == 3 * 880  # no time MLP: exactly 3× the forward
    assert training_flops_per_token(cfg, 2) == 3 * 440


CASES = {
    "prenorm": {},
    "prenorm+time": {"time_conditioning": True},
    "adaln": {"block_type": "adaln"},
    "adaln+time": {"block_type": "adaln", "time_conditioning": True},
    "mlp_ratio 2.5": {"mlp_ratio": 2.5},
    "selfcond projection": {"self_conditioning": "projection"},
    "selfcond mask_add": {"self_conditioning": "mask_add"},
}


@pytest.mark.parametrize("name", list(CASES))
def test_formula_matches_flop_counter(name: str) -> None:
    """Forward (with and without a hint) and forward+backward of the NELBO loss, counted by torch itself. The
    math attention backend runs attention as batched matmuls, which the counter sees."""
    model = tiny_model(VOCAB, 10, depth=2, cond_dim=8, **CASES[name]).train()
    cfg = model.config
    batch, length = 3, 9
    x = torch.randint(0, VOCAB - 1, (batch, length))
    t = torch.rand(batch)
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, t)
        assert counter.get_total_flops() == forward_flops(cfg, batch, length)
        if cfg.self_conditioning != "none":
            hint = torch.softmax(torch.randn(batch, length, VOCAB), dim=-1)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(x, t, p_prev=hint)
            assert counter.get_total_flops() == forward_flops(cfg, batch, length, with_hint=True)
            assert forward_flops(cfg, batch, length, with_hint=True) > forward_flops(cfg, batch, length)
        with FlopCounterMode(display=False) as counter:
            nelbo_loss(model, x, get_schedule("loglinear"), VOCAB - 1).loss.backward()
        assert counter.get_total_flops() == training_flops(cfg, batch, length)


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="length 11 exceeds"):
        forward_flops(config(), 1, 11)
    with pytest.raises(ValueError, match="batch=0"):
        training_flops(config(), 0, 4)
