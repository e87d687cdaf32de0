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
  .txt, .fa) or a ``writer``/``reader`` of files (images: a raw PGM file and a PNG grid beside it);
* its default canvas length (``data.max_length=0``) and how its metrics table is printed (``format_rows``: DNA
  and images keep significant digits of small values, and images say that their Fréchet distance is not
  Inception FID).

Wiring a new domain is adding one ``Domain`` entry to ``DOMAINS`` (and its ``data.*`` fields to
``scmdm.config.DataConfig``).
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
    writer: Callable[[Sequence[Any], Path, Any], None] | None = None  # (samples, path, tokenizer): not text
    reader: Callable[[Path, Any], list[Any]] | None = None  # (path, tokenizer or None)
    default_length: Callable[[Any], int] = lambda data: 24  # the canvas of data.max_length=0, given DataConfig
    format_rows: Callable[[Sequence[tuple[str, dict]], Sequence[str], Any], str] | None = None  # (rows, columns,
    #   evaluator or None) → the printed table with its notes; default: format_table + table_note

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
        if self.reader is not None:
            return self.reader(path, tokenizer)
        return self.parse_samples(path.read_text(encoding="utf-8"))

    def table(self, rows: Sequence[tuple[str, dict]], evaluator: Any = None) -> str:
        """The metrics table of ``rows`` = ``[(name, metrics dict), ...]`` in this domain's columns, with the notes
        that say what the columns mean."""
        if self.format_rows is not None:
            return self.format_rows(rows, self.table_columns, evaluator)
        from scmdm.evaluation import format_table

        text = format_table(rows, columns=self.table_columns)
        return f"{text}\n\n{self.table_note}" if self.table_note else text


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


# ---- dna -------------------------------------------------------------------------------------------------------
def _dna_tokenizers() -> dict[str, type]:
    from scmdm.tokenizers_dna import DnaTokenizer

    return {DnaTokenizer.kind: DnaTokenizer}


def _dna_prepare(config: Any, tokenizer: Any = None, *, quiet: bool = False) -> Any:
    from scmdm.data.dna import prepare_dna

    return prepare_dna(config, tokenizer, quiet=quiet)


def _dna_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, **_: Any) -> Any:
    """k-mer spectra and GC of the run's test windows, memorisation against its training windows, the reference
    row from its validation windows (split re-derived from the config, verified against ``split_info``)."""
    from scmdm.data.dna import dna_split
    from scmdm.evaluation.dna import DnaEvaluator

    split = dna_split(config.data)
    if split_info is not None:
        split.verify(split_info)
    return DnaEvaluator.from_split(split)


def _dna_format(items: Sequence[str]) -> str:
    from scmdm.data.dna import format_fasta

    return format_fasta(items)


def _dna_parse(text: str) -> list[str]:
    from scmdm.data.dna import parse_fasta

    return [sequence for _, sequence in parse_fasta(text, where="the samples file")]


def _dna_validate(data: Any) -> None:
    from scmdm.config import ConfigError
    from scmdm.data.dna import resolve_genomes

    if data.holdout not in ("region", "strain"):
        raise ConfigError(f"data.holdout must be one of region, strain for DNA, got {data.holdout!r}")
    if data.stride < 0:
        raise ConfigError(f"data.stride must be >= 0 (0 = the window length), got {data.stride}")
    if data.holdout == "strain" and not data.test_genomes.strip():
        raise ConfigError("data.holdout=strain needs data.test_genomes: the genomes held out for testing (e.g. "
                          "E.Coli/DH1)")
    if data.holdout == "region" and data.test_genomes.strip():
        raise ConfigError(f"data.test_genomes={data.test_genomes!r} is only used with data.holdout=strain (with "
                          "data.holdout=region the end of every record is held out)")
    for key in ("source", "test_genomes"):
        names = data.resolved_source if key == "source" else data.test_genomes
        if not names.strip():
            continue
        try:
            resolve_genomes(names)
        except FileNotFoundError:  # the genomes are not installed: prepare_data says how to install them
            return
        except ValueError as err:
            raise ConfigError(f"data.{key}: {err}") from None


def _dna_rows(rows: Sequence[tuple[str, dict]], columns: Sequence[str], evaluator: Any = None) -> str:
    from scmdm.evaluation.dna import format_dna_table

    return format_dna_table(rows, columns=columns)


# ---- image -----------------------------------------------------------------------------------------------------
def _image_tokenizers() -> dict[str, type]:
    from scmdm.tokenizers_images import ImageTokenizer

    return {ImageTokenizer.kind: ImageTokenizer}


def _image_prepare(config: Any, tokenizer: Any = None, *, quiet: bool = False) -> Any:
    from scmdm.data.images import prepare_images

    return prepare_images(config, tokenizer, quiet=quiet)


def _image_evaluator(config: Any, split_info: dict | None = None, tokenizer: Any = None, *,
                     show_progress: bool = False, **_: Any) -> Any:
    """Fréchet distance in the features of scmdm's own CNN (trained on the run's training images on first use and
    cached) against its test images; the reference row from its validation images."""
    from scmdm.data.images import image_split
    from scmdm.evaluation.images import ImageEvaluator

    split = image_split(config.data)
    if split_info is not None:
        split.verify(split_info)
    return ImageEvaluator.from_split(split, progress=show_progress)


def _image_shape(data: Any) -> tuple[int, int]:
    from scmdm.config import ConfigError
    from scmdm.data.images import SHAPES

    source = data.resolved_source
    if source not in SHAPES:
        raise ConfigError(f"data.source must be one of {', '.join(SHAPES)} for images, got {source!r}")
    return SHAPES[source]


def _image_length(data: Any) -> int:
    height, width = _image_shape(data)
    return height * width


def _image_validate(data: Any) -> None:
    from scmdm.config import ConfigError
    from scmdm.data.images import LEVELS, SOURCES

    height, width = _image_shape(data)
    source = data.resolved_source
    allowed = [k for k in LEVELS if k <= SOURCES[source]]
    if data.levels not in allowed:
        raise ConfigError(f"data.levels must be one of {', '.join(map(str, allowed))} for data.source={source}, got "
                          f"{data.levels}")
    if data.max_length != height * width:
        raise ConfigError(f"data.max_length must be H·W = {height}·{width} = {height * width} for data.source="
                          f"{source} (an image fills its canvas in raster order), got {data.max_length}; leave it at "
                          "0 to derive it")


def _image_writer(samples: Sequence[Any], path: Path, tokenizer: Any) -> None:
    """A raw PGM file of every sample at ``path`` and a PNG grid of the first 100 beside it (``.png``)."""
    from scmdm.data.images import write_pgm
    from scmdm.evaluation.images import save_image_grid

    if tokenizer is None:
        raise ValueError("writing image samples needs the model's tokenizer (its number of grey levels)")
    if path.suffix.lower() == ".png":
        raise ValueError(f"image samples are written as raw PGM (every sample, exact levels) with a PNG grid beside "
                         f"it: give --out {path.with_suffix('.pgm')}, not {path}")
    write_pgm(samples, path, tokenizer.levels)
    save_image_grid(list(samples)[:100], path.with_suffix(".png"), tokenizer.levels, columns=10)


def _image_reader(path: Path, tokenizer: Any) -> list[Any]:
    from scmdm.data.images import read_pgm

    images, maxval = read_pgm(path)
    if tokenizer is not None:
        if maxval != tokenizer.levels - 1:
            raise ValueError(f"{path} holds images of {maxval + 1} grey levels (PGM maxval {maxval}) but the model has "
                             f"{tokenizer.levels}")
        if bad := [i for i, im in enumerate(images) if im.shape != (tokenizer.height, tokenizer.width)][:1]:
            raise ValueError(f"{path}: image #{bad[0] + 1} is {images[bad[0]].shape[1]}x{images[bad[0]].shape[0]} "
                             f"(W x H), the model's are {tokenizer.width}x{tokenizer.height}")
    return images


def _image_rows(rows: Sequence[tuple[str, dict]], columns: Sequence[str], evaluator: Any = None) -> str:
    from scmdm.evaluation.images import FD_NOTE, format_image_table

    return format_image_table(rows, evaluator.note() if evaluator is not None else FD_NOTE, columns=columns)


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
    "dna": Domain(
        name="dna", default_source="E.Coli/MG1655-K12", tokenizers=_dna_tokenizers, prepare=_dna_prepare,
        evaluator=_dna_evaluator, format_samples=_dna_format, parse_samples=_dna_parse, sample_suffix=".fa",
        item_name="DNA windows", reference_label="real held-out windows",
        table_columns=("n_samples", "valid", "js_3", "js_4", "js_5", "js_6", "gc", "gc_abs_diff", "gc_w1",
                       "nearest_identity", "near_copies", "nfe", "seconds"),
        validate=_dna_validate, default_length=lambda data: 256, format_rows=_dna_rows),
    "image": Domain(
        name="image", default_source="fashion_mnist", tokenizers=_image_tokenizers, prepare=_image_prepare,
        evaluator=_image_evaluator, writer=_image_writer, reader=_image_reader, sample_suffix=".pgm",
        item_name="images", reference_label="real held-out images",
        table_columns=("n_samples", "fd_cnn", "classifier_score", "nfe", "seconds"),
        validate=_image_validate, default_length=_image_length, format_rows=_image_rows),
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
