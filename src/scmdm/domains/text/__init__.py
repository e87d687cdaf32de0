"""The text domain: characters or byte-level BPE (``tokenizer``), the KJV Bible, Jane Austen or a text file split
by book and packed into windows (``data``), generative perplexity under SmolLM2-135M with entropy and bits per
character (``evaluator``, ``scorer``), ``text.*`` options (``settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from scmdm import templates
from scmdm.domains.base import Domain
from scmdm.domains.text.data import (
    NAMED_SOURCES,
    format_text_samples,
    pack_windows,
    parse_text_samples,
    prepare_text,
    read_text_file,
)
from scmdm.domains.text.evaluator import TextEvaluator, chars_per_token, table_note
from scmdm.domains.text.settings import TextSettings
from scmdm.domains.text.tokenizer import TEXT_TOKENIZERS
from scmdm.evaluation import format_table

__all__ = ["DOMAIN", "text_evaluator"]


def text_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *, device: str = "cpu",
                   batch_size: int = 8, show_progress: bool = False, reference: str | None = None,
                   **_: Any) -> TextEvaluator:
    """Reference windows from the test books (or from the text file ``reference``), n-gram baselines from the
    training books, bits/char from the validation books — all in the model's tokens (its tokenizer is rebuilt from the
    config when not given); scored by ``eval.scorer``."""
    data = prepare_text(config, tokenizer, quiet=True)
    if split_info:  # an imported model ({}) has no split to check
        data.split.verify(split_info)
    length = config.data.max_length
    valid, _ = pack_windows(data.tokenizer, data.split.valid, length)
    test, name = data.split.test, "the run's test text (" + ", ".join(data.split.titles["test"]) + ")"
    if reference is not None:
        test, name = [read_text_file(reference, "--reference")], str(reference)
    return TextEvaluator(data.split.train, test, tokenizer=data.tokenizer, length=length,
                         chars_per_token=chars_per_token(data.tokenizer, valid), device=device,
                         batch_size=batch_size, show_progress=show_progress, scorer=config.eval.scorer,
                         reference_name=name)


def _rows(rows: Sequence[tuple[str, dict]], columns: Sequence[str], evaluator: Any = None) -> str:
    return f"{format_table(rows, columns=columns)}\n\n{evaluator.note() if evaluator is not None else table_note()}"


def text_template(text: str, tokenizer: Any, length: int) -> torch.Tensor:
    """Text with gaps ([MASK], [MASK:n]) on the canvas, the literal parts in the model's tokens."""
    return templates.text_template(text, tokenizer.encode, length, tokenizer.mask_id, where=f"template {text[:40]!r}")


def read_text_templates(path: Path, tokenizer: Any, length: int) -> torch.Tensor:
    """One template per non-empty line of a UTF-8 file."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no template (it is empty)")
    return torch.stack([templates.text_template(line, tokenizer.encode, length, tokenizer.mask_id,
                                                where=f"{path}:{i + 1}") for i, line in enumerate(lines)])


DOMAIN = Domain(
    name="text", default_source="kjv", tokenizers=dict(TEXT_TOKENIZERS), prepare=prepare_text,
    evaluator=text_evaluator, settings=TextSettings, format_samples=format_text_samples,
    parse_samples=parse_text_samples, sample_suffix=".txt", item_name="text windows",
    reference_label="real held-out text",
    table_columns=("gen_ppl", "scorer_bpc", "entropy_bits", "nelbo_bpc", "chars", "nfe", "seconds"),
    format_rows=_rows, template=text_template, read_templates=read_text_templates,
    sizes_from_data=lambda config: config.data.resolved_source not in NAMED_SOURCES)
