"""The ``molecule`` config section: what the molecule domain reads besides ``data``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scmdm.errors import ConfigError
from scmdm.options import option
from scmdm.tokenizer import TOO_LONG_ACTIONS

__all__ = ["MoleculeSettings"]


@dataclass
class MoleculeSettings:
    too_long: str = option("error", "molecules longer than the canvas: error | skip (drop them) | truncate (cut to "
                                    "the canvas; truncated SMILES are usually invalid); counts are reported")

    def validate(self, data: Any) -> None:
        if self.too_long not in TOO_LONG_ACTIONS:
            raise ConfigError(f"molecule.too_long must be one of {', '.join(TOO_LONG_ACTIONS)}, got {self.too_long!r}")
