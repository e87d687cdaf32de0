"""The architecture of a scmdm denoiser, as one dataclass: what ``scmdm.model.Transformer`` builds.

It is derived from a run's ``model``, ``selfcond`` and ``speculative`` config sections and the tokenizer's
vocabulary (``scmdm.checkpoint.build_model``); a model's state dict is determined by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from scmdm.selfcond import INJECTIONS

__all__ = ["BackboneConfig", "BLOCK_TYPES", "KEY_POSITIONS", "VERIFIER_HEADS", "TIME_INPUTS", "MDLM_EPS"]

BLOCK_TYPES = ("prenorm", "adaln")
#: what a time-conditioned model embeds: the time t itself, or MDLM's total noise σ(t) = −log(1 − (1 − ε)t)
TIME_INPUTS = ("t", "sigma")
MDLM_EPS = 1e-3  # ε of MDLM's log-linear noise
KEY_POSITIONS = ("token", "predicted")  # where the verifier's attention keys are rotated (scmdm.model.verifier)
VERIFIER_HEADS = ("shared", "separate")


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
    time_input: str = "t"  # with time conditioning: embed t, or MDLM's total noise σ(t) (TIME_INPUTS)
    self_conditioning: str = "none"  # "none" or an injection of scmdm.selfcond (mask_add, projection, gated)
    causal_layers: int = 0  # causal verifier layers over σ-ordered tracks (scmdm.model.verifier); 0 = none
    causal_head: str = "shared"  # the verifier's output head: "shared" (the trunk's) or "separate"
    causal_state_norm: bool = True  # LayerNorm on the trunk states entering the verifier (scmdm.model.verifier)
    causal_key_positions: str = "token"  # verifier keys rotated by σ(k), the track's token ("token"), or σ(k+1)

    def __post_init__(self) -> None:
        if self.block_type not in BLOCK_TYPES:
            raise ValueError(f"unknown block_type {self.block_type!r}; valid: {', '.join(BLOCK_TYPES)}")
        if self.time_input not in TIME_INPUTS:
            raise ValueError(f"unknown time_input {self.time_input!r}; valid: {', '.join(TIME_INPUTS)}")
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
        if self.causal_head not in VERIFIER_HEADS:
            raise ValueError(f"unknown causal_head {self.causal_head!r}; valid: {', '.join(VERIFIER_HEADS)}")

