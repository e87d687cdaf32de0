"""The data domains: ``data.domain`` → how its data are prepared, which tokenizers its checkpoints may hold,
how its samples are evaluated and written to disk.

Everything else — the model, the loss, self-conditioning, the causal verifier, every sampler, the trainer,
checkpoints — works on token tensors and is shared by all domains; a domain only says how items become
canvases and how samples are judged. Each domain provides, in its own modules:

* tokenizers with the interface of ``scmdm.tokenizers.SmilesTokenizer`` (``kind``, ``pad_id``/``eos_id``/
  ``mask_id`` (MASK last), ``vocab_size``, ``encode_many``, ``decode_batch``, ``to_dict``/``from_dict``,
  ``save``/``load``, ``__eq__``);
* a ``prepare(data_config, tokenizer=None, quiet=False) -> scmdm.data.PreparedData`` (its ``split`` has
  ``verify(info_dict)`` and either ``info()`` or ``info.to_dict()``);
* an evaluator factory ``(config, split_info, tokenizer, **options) -> evaluator`` whose evaluator has
  ``evaluate(samples) -> metrics`` (``.as_dict()``), ``reference_row(n, seed)`` and optionally
  ``baseline_rows(n, seed)`` and ``checkpoint_metrics(state) -> dict`` (model-only columns, e.g. bits/char);
* how samples are written to a file and read back: a text format (``format_samples``/``parse_samples``: .smi,
  .txt, .fa) or a ``writer``/``reader`` of files (e.g. a .png grid).

Wiring a new domain is adding one ``Domain`` entry to ``DOMAINS`` (and its ``data.*`` fields to
``scmdm.config.DataConfig``). ``dna`` and ``image`` are named but not wired in this build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Domain", "DOMAINS", "DOMAIN_NAMES", "get_domain", "tokenizer_classes", "DomainNotWired"]

DOMAIN_NAMES = ("molecule", "text", "dna", "image")


class DomainNotWired(ValueError):
    """A domain that is named but not available in this build."""


@dataclass(frozen=True)
class Domain:
    name: str
    default_source: str
    tokenizers: Callable[[], dict[str, type]]  # kind → class (imported lazily)
    prepare: Callable[..., Any]
    evaluator: Callable[..., Any]
    sample_suffix: str  # of the samples file (.smi, .txt, ...)
    item_name: str  # "molecules", "text windows", ...
    reference_label: str  # the row of real held-out data
    table_columns: tuple[str, ...]
    validate: Callable[[Any], None] = lambda data: None  # domain-specific checks of DataConfig (raise ConfigError)
    table_note: str = ""  # printed under every metrics table of this domain
    format_samples: Callable[[Sequence[Any]], str] | None = None  # samples → the text of a samples file
    parse_samples: Callable[[str], list[Any]] | None = None  # and back
    writer: Callable[[Sequence[Any], Path], None] | None = None  # for samples that are not text (a .png grid)
    reader: Callable[[Path], list[Any]] | None = None

    def write_samples(self, samples: Sequence[Any], path: str | Path) -> None:
        if self.writer is not None:
            self.writer(samples, Path(path))
        else:
            Path(path).write_text(self.format_samples(samples), encoding="utf-8")

    def read_samples(self, path: str | Path) -> list[Any]:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"samples file {path} does not exist")
        if self.reader is not None:
            return self.reader(path)
        return self.parse_samples(path.read_text(encoding="utf-8"))


# ---- molecule ------------------------------------------------------------------------------------------------
def _molecule_tokenizers() -> dict[str, type]:
    from scmdm.tokenizers import SmilesTokenizer

    return {SmilesTokenizer.kind: SmilesTokenizer}


def _molecule_prepare(config: Any, tokenizer: Any = None, *, quiet: bool = False) -> Any:
    from scmdm.data import prepare_molecules

    return prepare_molecules(config, tokenizer, quiet=quiet)


def _molecule_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *,
                        max_reference: int = 10000, **_: Any) -> Any:
    """Novelty against the run's training split, FCD against its test split (split verified against
    ``split_info`` when given)."""
    from scmdm.data.molecules import load_molecules, split_molecules
    from scmdm.evaluation import MoleculeEvaluator

    d = config.data
    source = d.resolved_source
    split = split_molecules(load_molecules(source), source=source, seed=d.split_seed,
                            valid_fraction=d.valid_fraction, test_fraction=d.test_fraction)
    if split_info is not None:
        split.verify(split_info)
    return MoleculeEvaluator(split.train, split.test, max_reference=max_reference)


def _format_lines(items: Sequence[str]) -> str:
    return "\n".join(items) + "\n"


def _parse_lines(text: str) -> list[str]:
    return text.splitlines()


# ---- text ------------------------------------------------------------------------------------------------------
def _text_tokenizers() -> dict[str, type]:
    from scmdm.tokenizers_text import TEXT_TOKENIZERS

    return dict(TEXT_TOKENIZERS)


def _text_prepare(config: Any, tokenizer: Any = None, *, quiet: bool = False) -> Any:
    from scmdm.data.text import prepare_text

    return prepare_text(config, tokenizer, quiet=quiet)


def _text_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *, device: str = "cpu",
                    batch_size: int = 8, show_progress: bool = False, **_: Any) -> Any:
    """Reference windows from the test books, n-gram baselines from the training books, bits/char from the
    validation books — all in the model's tokens (its tokenizer is rebuilt from the config when not given)."""
    from scmdm.data.text import pack_windows, prepare_text
    from scmdm.evaluation.text import TextEvaluator, chars_per_token

    data = prepare_text(config.data, tokenizer, quiet=True)
    if split_info is not None:
        data.split.verify(split_info)
    valid, _ = pack_windows(data.tokenizer, data.split.valid, config.data.max_length)
    return TextEvaluator(data.split.train, data.split.test, tokenizer=data.tokenizer, length=config.data.max_length,
                         chars_per_token=chars_per_token(data.tokenizer, valid), device=device,
                         batch_size=batch_size, show_progress=show_progress)


def _text_format(items: Sequence[str]) -> str:
    from scmdm.data.text import format_text_samples

    return format_text_samples(items)


def _text_parse(text: str) -> list[str]:
    from scmdm.data.text import parse_text_samples

    return parse_text_samples(text)


def _text_validate(data: Any) -> None:
    from scmdm.config import ConfigError
    from scmdm.tokenizers_text import MIN_BPE_VOCAB, TEXT_TOKENIZERS

    if data.tokenizer not in TEXT_TOKENIZERS:
        raise ConfigError(f"data.tokenizer must be one of {', '.join(TEXT_TOKENIZERS)} for text, got "
                          f"{data.tokenizer!r}")
    if data.tokenizer == "bpe" and data.vocab_size < MIN_BPE_VOCAB:
        raise ConfigError(f"data.vocab_size must be at least {MIN_BPE_VOCAB} for the byte-level BPE tokenizer "
                          f"(256 bytes + <pad>, <eos>, <mask>), got {data.vocab_size}")


DOMAINS: dict[str, Domain] = {
    "molecule": Domain(
        name="molecule", default_source="qm9", tokenizers=_molecule_tokenizers, prepare=_molecule_prepare,
        evaluator=_molecule_evaluator, format_samples=_format_lines, parse_samples=_parse_lines, sample_suffix=".smi",
        item_name="molecules", reference_label="real held-out molecules",
        table_columns=("validity", "uniqueness", "novelty", "valid_unique_novel", "fcd", "qed", "sa", "nfe",
                       "seconds")),
    "text": Domain(
        name="text", default_source="kjv", tokenizers=_text_tokenizers, prepare=_text_prepare,
        evaluator=_text_evaluator, format_samples=_text_format, parse_samples=_text_parse, sample_suffix=".txt",
        item_name="text windows", reference_label="real held-out text",
        table_columns=("gen_ppl", "scorer_bpc", "entropy_bits", "nelbo_bpc", "chars", "nfe", "seconds"),
        validate=_text_validate,
        table_note="gen_ppl and scorer_bpc: the samples' perplexity per scorer token and bits per character under "
                   "SmolLM2-135M (not GPT-2: compare only with the real held-out text row); entropy_bits: mean "
                   "per-sample unigram entropy of the scorer tokens; nelbo_bpc: the model's validation NELBO in bits "
                   "per character."),
}


def get_domain(name: str) -> Domain:
    """The registry entry of ``name``; a clear error for a domain that is unknown or not wired in this build."""
    if name in DOMAINS:
        return DOMAINS[name]
    if name in DOMAIN_NAMES:
        raise DomainNotWired(f"data.domain={name!r} is not wired in this build yet (its data, tokenizer and evaluator "
                             f"modules come from a separate branch); available: {', '.join(DOMAINS)}")
    raise ValueError(f"data.domain must be one of {', '.join(DOMAIN_NAMES)}, got {name!r}")


def tokenizer_classes(name: str) -> dict[str, type]:
    """kind → tokenizer class for the checkpoints of domain ``name``."""
    return get_domain(name).tokenizers()
