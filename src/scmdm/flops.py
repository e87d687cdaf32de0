"""Analytic matmul FLOP count of the Transformer denoiser (``scmdm.model``), forward and forward+backward.

Only matrix products are counted (the convention of ``torch.utils.flop_counter`` and of every "model FLOPs
utilisation" figure): a product of an m×k and a k×n matrix costs 2·m·n·k FLOPs. Elementwise work (LayerNorm,
GELU, softmax, rotary, residual adds) and the embedding lookup are not counted.

Per token of a length-L canvas, with width d, MLP width h = mlp_ratio·d, vocabulary V (MASK included):

    block      qkv 2·d·3d + output projection 2·d·d + MLP 2·d·h + 2·h·d + attention 4·L·d
               (scores QKᵀ: 2·L·d_head per head and key, summed over heads 2·L·d; weights·V likewise)
               = 8d² + 4dh + 4Ld                                    (= 24d² + 4Ld for h = 4d)
    head       2·d·V
    forward    F_token = depth·(8d² + 4dh + 4Ld) + 2dV

plus terms paid once per sequence, not per token (c = cond_dim, f = 256 sinusoidal features):
time MLP 2·(f·c + c²), adaLN modulation 2·c·6d per block and 2·c·2d for the final layer (``adaln`` blocks),
time projection 2·c·d (``prenorm`` with time conditioning). A self-conditioned pass with a hint adds the
expected embedding p_prevᵀE, 2·V·d per token, and for the ``projection`` injection 2·d² more.

Forward + backward. Every product C = A·B is followed in the backward pass by dA = dC·Bᵀ and dB = Aᵀ·dC, two
products of the same size, so training costs 3× the forward — except where an input needs no gradient: the
sinusoidal features entering the time MLP (its first layer costs 2×, not 3×):

    F_train = 3·F_forward − 2·f·c·B          (B sequences; the last term only for models with a time MLP)

``tests/test_flops.py`` checks both counts against ``torch.utils.flop_counter.FlopCounterMode`` (attention
through the math backend, whose matmuls the counter sees; the fused CPU kernel is not registered with it).
The attention terms count the full L×L score matrix, causal or not, which is what the kernels compute.
"""

from __future__ import annotations

from scmdm.model import BackboneConfig

__all__ = ["FREQUENCY_DIM", "forward_flops", "training_flops", "forward_flops_per_token",
           "training_flops_per_token"]

FREQUENCY_DIM = 256  # sinusoidal features of the time embedder (backbone.TimestepEmbedder)


def _check(batch: int, length: int, config: BackboneConfig) -> None:
    if batch <= 0 or length <= 0:
        raise ValueError(f"batch and length must be positive, got batch={batch}, length={length}")
    if length > config.max_length:
        raise ValueError(f"length {length} exceeds the model's canvas {config.max_length}")


def _uses_time_mlp(config: BackboneConfig) -> bool:
    return config.time_conditioning or config.block_type == "adaln"


def forward_flops(config: BackboneConfig, batch: int, length: int, *, with_hint: bool = False) -> int:
    """Matmul FLOPs of one forward pass (trunk and output head) on ``batch`` canvases of ``length`` tokens;
    ``with_hint``: a self-conditioned pass given p_prev (the formula is in the module docstring)."""
    _check(batch, length, config)
    d, v, c = config.width, config.vocab_size, config.cond_dim
    h = int(config.mlp_ratio * d)
    tokens = batch * length
    per_token = config.depth * (8 * d * d + 4 * d * h + 4 * length * d) + 2 * d * v
    if with_hint and config.self_conditioning != "none":
        per_token += 2 * v * d + (2 * d * d if config.self_conditioning == "projection" else 0)
    per_sequence = 0
    if _uses_time_mlp(config):
        per_sequence += 2 * (FREQUENCY_DIM * c + c * c)
    if config.block_type == "adaln":
        per_sequence += config.depth * 2 * c * 6 * d + 2 * c * 2 * d
    elif config.time_conditioning:
        per_sequence += 2 * c * d
    return tokens * per_token + batch * per_sequence


def training_flops(config: BackboneConfig, batch: int, length: int) -> int:
    """Matmul FLOPs of one forward + backward pass of the NELBO loss (null condition): 3× the forward, less
    the input gradient of the time MLP's first layer, which nothing needs."""
    skipped = 2 * FREQUENCY_DIM * config.cond_dim * batch if _uses_time_mlp(config) else 0
    return 3 * forward_flops(config, batch, length) - skipped


def forward_flops_per_token(config: BackboneConfig, length: int, batch: int = 1) -> float:
    """``forward_flops`` per canvas token (per-sequence terms spread over the sequence)."""
    return forward_flops(config, batch, length) / (batch * length)


def training_flops_per_token(config: BackboneConfig, length: int, batch: int = 1) -> float:
    """``training_flops`` per canvas token."""
    return training_flops(config, batch, length) / (batch * length)
