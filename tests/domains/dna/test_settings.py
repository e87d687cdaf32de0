"""Tests of scmdm.domains.dna.settings: genome names are checked against the installed genomes."""

from __future__ import annotations

import pytest

from scmdm.config import ConfigError, load_config
from tests.conftest import requires_genomes


@requires_genomes
def test_dna_genome_names_are_checked_when_installed() -> None:
    with pytest.raises(ConfigError, match="data.source: unknown genome 'E.Colli'; available: E.Coli/DH1"):
        load_config(None, ["data.domain=dna", "data.source=E.Colli"])
    with pytest.raises(ConfigError, match="dna.test_genomes: unknown genome 'DH2'"):
        load_config(None, ["data.domain=dna", "dna.holdout=strain", "dna.test_genomes=DH2"])
    assert load_config(None, ["data.domain=dna", "data.source=E.Coli,S.Aureus"]).data.source == "E.Coli,S.Aureus"
