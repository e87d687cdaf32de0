"""The DNA domain: A/C/G/T windows that fill their canvas (``tokenizer``), windows of bacterial genomes from Debian
packages with a held-out region or strain (``data``), k-mer spectra, GC content and memorisation (``evaluator``),
``dna.*`` options (``settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from scmdm import templates
from scmdm.domains.base import Domain
from scmdm.domains.dna.data import dna_split, fasta_windows, format_fasta, parse_fasta, prepare_dna
from scmdm.domains.dna.evaluator import DnaEvaluator, format_dna_table
from scmdm.domains.dna.settings import DnaSettings
from scmdm.domains.dna.tokenizer import DnaTokenizer
from scmdm.errors import TokenizerError

__all__ = ["DOMAIN", "dna_evaluator"]


def dna_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *,
                  reference: str | None = None, **_: Any) -> DnaEvaluator:
    """k-mer spectra and GC of the run's test windows (or of the windows of the FASTA file ``reference``),
    memorisation against its training windows, the reference row from its validation windows (split re-derived from
    the config, verified against ``split_info``)."""
    split = dna_split(config)
    if split_info:  # an imported model ({}) has no split to check
        split.verify(split_info)
    if reference is None:
        evaluator = DnaEvaluator.from_split(split)
        evaluator.reference_name = f"the run's test windows ({len(split.test):,})"
        return evaluator
    d = config.data
    windows, _ = fasta_windows(reference, d.max_length, config.dna.stride or d.max_length, key="--reference",
                               seed=d.split_seed)
    evaluator = DnaEvaluator(split.train, windows, holdout_windows=split.valid or None)
    evaluator.reference_name = f"the {len(windows):,} windows of {reference}"
    return evaluator


def _parse_fasta_samples(text: str) -> list[str]:
    return [sequence for _, sequence in parse_fasta(text, where="the samples file")]


def _rows(rows: Sequence[tuple[str, dict]], columns: Sequence[str], evaluator: Any = None) -> str:
    return format_dna_table(rows, columns=columns)


def dna_template(text: str, tokenizer: Any, length: int) -> torch.Tensor:
    """A sequence whose N runs (or [MASK:n] gaps) are filled; the bases A, C, G, T are kept."""
    where = f"template {text[:30]!r}{'...' if len(text) > 30 else ''}"
    sequence = templates.GAP.sub(lambda m: "N" * int(m.group(1) or 1), "".join(text.split()).upper())
    if bad := sorted(set(sequence) - set("ACGTN")):
        raise TokenizerError(f"{where}: characters other than A, C, G, T and N (the gaps): {bad}")
    pieces = [1 if base == "N" else [tokenizer.stoi[base]] for base in sequence]
    return templates.canvas_from_pieces(pieces, length, tokenizer.mask_id, where=where)


def read_dna_templates(path: Path, tokenizer: Any, length: int) -> torch.Tensor:
    """One template per FASTA record (or per non-empty line of a plain file)."""
    text = Path(path).read_text(encoding="utf-8")
    records = [seq for _, seq in parse_fasta(text, where=str(path))] if text.lstrip().startswith(">") else [
        line for line in text.splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{path} holds no template (it is empty)")
    return torch.stack([dna_template(record, tokenizer, length) for record in records])


DOMAIN = Domain(
    name="dna", default_source="E.Coli/MG1655-K12", tokenizers={DnaTokenizer.kind: DnaTokenizer},
    prepare=prepare_dna, evaluator=dna_evaluator, settings=DnaSettings, format_samples=format_fasta,
    parse_samples=_parse_fasta_samples, sample_suffix=".fa", item_name="DNA windows",
    reference_label="real held-out windows",
    table_columns=("n_samples", "valid", "js_3", "js_4", "js_5", "js_6", "gc", "gc_abs_diff", "gc_w1",
                   "nearest_identity", "near_copies", "nfe", "seconds"),
    default_length=lambda config: 256, format_rows=_rows, template=dna_template, read_templates=read_dna_templates,
    validity_metric="valid")
