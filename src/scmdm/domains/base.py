"""What a data domain is: how items of one kind (molecules, text, DNA, images) become canvases and how samples of
them are judged. Everything else — the model, the losses, every sampler, the trainer, checkpoints — works on token
tensors and is shared by all domains.

A domain lives in one package, ``scmdm.domains.<name>``, holding

* ``tokenizer``: its tokenizers (``scmdm.tokenizer.Tokenizer`` subclasses; MASK last);
* ``data``: loading, splitting and ``prepare(config, tokenizer=None, quiet=False) -> scmdm.data.PreparedData``
  (its ``split`` has ``verify(info_dict)`` and either ``info()`` or ``info.to_dict()``);
* ``evaluator``: an evaluator factory ``(config, split_info, tokenizer, **options) -> evaluator`` whose evaluator
  has ``evaluate(samples) -> metrics`` (``.as_dict()``), ``reference_row(n, seed)`` and optionally
  ``baseline_rows(n, seed)`` and ``checkpoint_metrics(state) -> dict`` (model-only columns, e.g. bits/char);
* ``settings``: its own config section (``text.tokenizer``, ``dna.stride``, …) with its checks;
* its ``Domain`` entry (``DOMAIN`` in its ``__init__``), which the registry ``scmdm.domains`` collects: how samples
  are written to a file and read back (a text format, or a ``writer``/``reader`` of files), its default canvas
  length (``data.max_length=0``) and how its metrics table is printed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scmdm.evaluation import format_table

__all__ = ["Domain", "format_lines", "parse_lines"]


@dataclass(frozen=True)
class Domain:
    name: str
    default_source: str
    tokenizers: dict[str, type]  # kind → the tokenizer classes its checkpoints may hold
    prepare: Callable[..., Any]  # (config, tokenizer or None, *, quiet) -> scmdm.data.PreparedData
    evaluator: Callable[..., Any]
    sample_suffix: str  # of the samples file (.smi, .txt, ...)
    item_name: str  # "molecules", "text windows", ...
    reference_label: str  # the row of real held-out data
    table_columns: tuple[str, ...]
    settings: type | None = None  # the dataclass of its own config section (named after the domain), if any
    table_note: str = ""  # printed under every metrics table of this domain
    format_samples: Callable[[Sequence[Any]], str] | None = None  # samples → the text of a samples file
    parse_samples: Callable[[str], list[Any]] | None = None  # and back
    writer: Callable[[Sequence[Any], Path, Any], None] | None = None  # (samples, path, tokenizer): not text
    reader: Callable[[Path, Any], list[Any]] | None = None  # (path, tokenizer or None)
    default_length: Callable[[Any], int] = lambda config: 24  # the canvas of data.max_length=0, given the Config
    format_rows: Callable[[Sequence[tuple[str, dict]], Sequence[str], Any], str] | None = None  # (rows, columns,
    #   evaluator or None) → the printed table with its notes; default: format_table + table_note
    template: Callable[[str, Any, int], Any] | None = None  # (text with gaps, tokenizer, canvas length) → a canvas
    #   [L] for conditional generation (scmdm.templates); None: the domain has no text syntax (images)
    read_templates: Callable[[Path, Any, int], Any] | None = None  # a file of templates → [K, L]
    validity_metric: str | None = None  # the metric that is 0 when no sample is a valid item (``eval`` warns)
    sizes_from_data: Callable[[Any], bool] = lambda config: False  # data.max_length=auto sizes the canvas from the
    #   training items (a file of molecules or text), given the Config; otherwise auto is the domain's default

    def write_samples(self, samples: Sequence[Any], path: str | Path, tokenizer: Any = None) -> None:
        """Write ``samples`` to ``path`` (``tokenizer``: the model's, needed by file writers such as images')."""
        if self.writer is not None:
            self.writer(samples, Path(path), tokenizer)
        else:
            Path(path).write_text(self.format_samples(samples), encoding="utf-8")

    def read_samples(self, path: str | Path, tokenizer: Any = None) -> list[Any]:
        """The samples of a file :meth:`write_samples` wrote (checked against ``tokenizer`` where that matters)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"samples file {path} does not exist")
        if path.is_dir():
            raise ValueError(f"samples file {path} is a folder")
        if path.stat().st_size == 0:
            raise ValueError(f"samples file {path} is empty")
        try:
            if self.reader is not None:
                samples = self.reader(path, tokenizer)
            else:
                raw = path.read_bytes()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    line = raw[:err.start].count(b"\n") + 1
                    raise ValueError(f"not UTF-8 text (line {line}, byte {err.start}): {err.reason}; scmdm writes "
                                     f"{self.name} samples as UTF-8 {self.sample_suffix} files") from None
                samples = self.parse_samples(text)
        except ValueError as err:
            raise ValueError(str(err) if str(path) in str(err) else f"samples file {path}: {err}") from None
        if not samples:
            raise ValueError(f"samples file {path} holds no {self.item_name}")
        return samples

    def table(self, rows: Sequence[tuple[str, dict]], evaluator: Any = None) -> str:
        """The metrics table of ``rows`` = ``[(name, metrics dict), ...]`` in this domain's columns, with the notes
        that say what the columns mean."""
        if self.format_rows is not None:
            return self.format_rows(rows, self.table_columns, evaluator)
        text = format_table(rows, columns=self.table_columns)
        return f"{text}\n\n{self.table_note}" if self.table_note else text


def format_lines(items: Sequence[str]) -> str:
    """One item a line (the samples file of molecules)."""
    return "\n".join(items) + "\n"


def parse_lines(text: str) -> list[str]:
    return text.splitlines()
