"""The DNA domain: A/C/G/T windows that fill their canvas (``tokenizer``), windows of bacterial genomes from Debian
packages with a held-out region or strain (``data``), k-mer spectra, GC content and memorisation (``evaluator``),
``dna.*`` options (``settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scmdm.domains.base import Domain
from scmdm.domains.dna.data import dna_split, format_fasta, parse_fasta, prepare_dna
from scmdm.domains.dna.evaluator import DnaEvaluator, format_dna_table
from scmdm.domains.dna.settings import DnaSettings
from scmdm.domains.dna.tokenizer import DnaTokenizer

__all__ = ["DOMAIN", "dna_evaluator"]


def dna_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, **_: Any) -> DnaEvaluator:
    """k-mer spectra and GC of the run's test windows, memorisation against its training windows, the reference
    row from its validation windows (split re-derived from the config, verified against ``split_info``)."""
    split = dna_split(config)
    if split_info:  # an imported model ({}) has no split to check
        split.verify(split_info)
    return DnaEvaluator.from_split(split)


def _parse_fasta_samples(text: str) -> list[str]:
    return [sequence for _, sequence in parse_fasta(text, where="the samples file")]


def _rows(rows: Sequence[tuple[str, dict]], columns: Sequence[str], evaluator: Any = None) -> str:
    return format_dna_table(rows, columns=columns)


DOMAIN = Domain(
    name="dna", default_source="E.Coli/MG1655-K12", tokenizers={DnaTokenizer.kind: DnaTokenizer},
    prepare=prepare_dna, evaluator=dna_evaluator, settings=DnaSettings, format_samples=format_fasta,
    parse_samples=_parse_fasta_samples, sample_suffix=".fa", item_name="DNA windows",
    reference_label="real held-out windows",
    table_columns=("n_samples", "valid", "js_3", "js_4", "js_5", "js_6", "gc", "gc_abs_diff", "gc_w1",
                   "nearest_identity", "near_copies", "nfe", "seconds"),
    default_length=lambda config: 256, format_rows=_rows)
