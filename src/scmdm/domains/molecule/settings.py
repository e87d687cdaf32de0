"""The ``molecule`` config section: what the molecule domain reads besides ``data``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scmdm.errors import ConfigError
from scmdm.options import option
from scmdm.tokenizer import TOO_LONG_ACTIONS

__all__ = ["MoleculeSettings", "RDKIT_SAFE_CHARS"]

#: the largest molecule.max_chars (RDKit takes ~1 s to parse 10,000 characters and crashes at ~20,000)
RDKIT_SAFE_CHARS = 10000


@dataclass
class MoleculeSettings:
    too_long: str = option("error", "molecules longer than the canvas: error | skip (drop them) | truncate (cut to "
                                    "the canvas; truncated SMILES are usually invalid); counts are reported")
    max_chars: int = option(0, "SMILES lines longer than this many characters are never parsed (RDKit crashes on "
                               "~20,000): they are too long (molecule.too_long; truncate drops them too); 0 = 8 per "
                               "canvas position, at most 1,000")

    def validate(self, data: Any) -> None:
        if self.too_long not in TOO_LONG_ACTIONS:
            raise ConfigError(f"molecule.too_long must be one of {', '.join(TOO_LONG_ACTIONS)}, got {self.too_long!r}")
        if not 0 <= self.max_chars <= RDKIT_SAFE_CHARS:
            raise ConfigError(f"molecule.max_chars must be in [0, {RDKIT_SAFE_CHARS}] (RDKit crashes on longer "
                              f"SMILES), got {self.max_chars}")
