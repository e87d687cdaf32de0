"""The denoiser network: its architecture (``config``), layers, causal verifier and the ``Transformer`` that
combines them."""

from scmdm.model.config import BLOCK_TYPES, KEY_POSITIONS, TIME_INPUTS, VERIFIER_HEADS, BackboneConfig
from scmdm.model.transformer import Transformer

__all__ = ["BackboneConfig", "Transformer", "BLOCK_TYPES", "KEY_POSITIONS", "VERIFIER_HEADS", "TIME_INPUTS"]
