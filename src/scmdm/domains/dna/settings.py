"""The ``dna`` config section: how genomes are cut into windows and what is held out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scmdm.domains.dna.data import resolve_genomes
from scmdm.errors import ConfigError
from scmdm.options import option

__all__ = ["DnaSettings"]


@dataclass
class DnaSettings:
    stride: int = option(0, "a window starts every N bases (0 = the window length: non-overlapping windows)")
    holdout: str = option("region", "what is held out: region (the end of every record: data.valid_fraction, "
                                    "data.test_fraction) | strain (the genomes in dna.test_genomes are the test split)")
    test_genomes: str = option("", "holdout=strain: comma-separated genomes held out for testing (e.g. E.Coli/DH1)")
    reverse_complement: bool = option(False, "add the reverse complement of every training window (augmentation)")

    def validate(self, data: Any) -> None:
        if self.holdout not in ("region", "strain"):
            raise ConfigError(f"dna.holdout must be one of region, strain, got {self.holdout!r}")
        if self.stride < 0:
            raise ConfigError(f"dna.stride must be >= 0 (0 = the window length), got {self.stride}")
        if self.holdout == "strain" and not self.test_genomes.strip():
            raise ConfigError("dna.holdout=strain needs dna.test_genomes: the genomes held out for testing (e.g. "
                              "E.Coli/DH1)")
        if self.holdout == "region" and self.test_genomes.strip():
            raise ConfigError(f"dna.test_genomes={self.test_genomes!r} is only used with dna.holdout=strain (with "
                              "dna.holdout=region the end of every record is held out)")
        for key, names in (("data.source", data.resolved_source), ("dna.test_genomes", self.test_genomes)):
            if not names.strip():
                continue
            try:
                resolve_genomes(names)
            except FileNotFoundError:  # the genomes are not installed: preparing the data says how to install them
                return
            except ValueError as err:
                raise ConfigError(f"{key}: {err}") from None
