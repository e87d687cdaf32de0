"""The errors scmdm raises for bad input, in one module at the bottom of the package (config, domains, tokenizers
and checkpoints all use them). Each message names what is wrong and where: the config key, the file, the token."""

from __future__ import annotations

__all__ = ["ConfigError", "CheckpointError", "TokenizerError"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or incompatible; the message names the file."""


class TokenizerError(ValueError):
    """A sequence cannot be tokenized (unknown token, too long for the canvas, …)."""
