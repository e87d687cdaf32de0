"""DNA data: fixed-length windows of 20 complete bacterial genomes shipped by two Debian packages.

Sources (``apt-get install --no-install-recommends ragout-examples kleborate-examples``, or ``make install-data``):

* ``/usr/share/doc/ragout/examples/<species>/references/<strain>.fasta.gz`` — E. coli (2 strains),
  H. pylori (5), S. aureus (5), V. cholerae (4);
* ``/usr/share/doc/kleborate/examples/data/<strain>.fna.xz`` — K. pneumoniae (4).

A genome is named ``<species>/<strain>``, e.g. ``E.Coli/MG1655-K12`` or ``K.Pneumoniae/NTUH-K2044``; a
species name (``E.Coli``) means all of its strains and ``all`` means all 20 genomes. Every record of a file
(chromosomes, plasmids) is used; letters are upper-cased.

Windows. Each record is cut into windows of ``window`` bases every ``stride`` bases (default: ``stride =
window``, non-overlapping), starting at the first base of the region the window belongs to; windows never
cross a record or region boundary, and a region's tail shorter than a window is dropped. **Windows holding
any character other than A, C, G, T are dropped** (IUPAC ambiguity codes such as ``N``, ``Y``, ``R`` occur
a few thousand times in the 70 Mbp); ``info()["dropped_non_acgt"]`` counts them per split.

Held-out data (nothing is random about *what* is held out, only the order of the windows):

* ``holdout="region"`` — in every record of length n, the last ⌈n·test_fraction⌉ bases are the test region,
  the ⌈n·valid_fraction⌉ bases before them the validation region, the rest training.
* ``holdout="strain"`` — the genomes in ``test_genomes`` are the test split (all of their windows); the
  validation split is the region held out as above from each training genome; the rest is training.

Note that strains of one species share most of their sequence: with several strains of a species in the
training set, a held-out *region* of one is largely present in the training region of another, and a
held-out *strain* of the same species (E. coli DH1 against MG1655, both K-12 derivatives) is nearly
identical to training data. For a clean generalisation test hold out a region of a single genome (the
default) or a strain of a species absent from training.

Held-out files (``data.valid_source``, ``data.test_source``, :func:`dna_split`): FASTA files (plain, ``.gz`` or
``.xz``) whose records are cut into windows like the genomes (same window and stride, non-ACGT windows dropped) and
used as the validation or test split; nothing of the genomes is held out for that split then (with
``holdout="strain"`` the test genomes are the test split: ``data.test_source`` is refused).

``reverse_complement=True`` appends the reverse complement of every training window to the training split
(validation and test are never augmented). Each split is finally put in a seeded random order
(``numpy.random.default_rng([seed, i])`` for split i = 0, 1, 2 = train, valid, test), so that the first N
training windows are a random sample.
``info()`` gives the settings, sizes and a SHA-256 of each split, saved with a checkpoint and compared by
``verify``.

As an scmdm data domain (``data.domain=dna``, :func:`prepare_dna`): ``data.source`` names the genomes,
``data.max_length`` is the window, and ``dna.stride``, ``dna.holdout``, ``dna.test_genomes``,
``dna.reverse_complement``, ``data.valid_fraction``, ``data.test_fraction`` and ``data.split_seed`` are the
arguments of :func:`load_dna`. Samples are written as FASTA (:func:`format_fasta`).
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scmdm.data import PreparedData
from scmdm.domains.dna.tokenizer import DnaTokenizer

__all__ = ["RAGOUT_DIR", "KLEBORATE_DIR", "INSTALL_HINT", "DEFAULT_GENOME", "genome_files", "resolve_genomes",
           "parse_fasta", "read_fasta", "format_fasta", "write_fasta", "read_genome", "windows_of",
           "reverse_complement", "DnaSplit", "load_dna", "dna_split", "prepare_dna", "fasta_windows"]

RAGOUT_DIR = Path("/usr/share/doc/ragout/examples")
KLEBORATE_DIR = Path("/usr/share/doc/kleborate/examples/data")
INSTALL_HINT = ("apt-get install -y --no-install-recommends ragout-examples kleborate-examples "
                "(or `make install-data-dna-images`)")
DEFAULT_GENOME = "E.Coli/MG1655-K12"
_NOT_ACGT = re.compile(r"[^ACGT]")
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def genome_files() -> dict[str, Path]:
    """Every installed genome, ``<species>/<strain>`` → file, in a fixed order; an error naming the packages
    to install when none is found."""
    found: dict[str, Path] = {}
    for path in sorted(RAGOUT_DIR.glob("*/references/*.fasta.gz")):
        found[f"{path.parent.parent.name}/{path.name.removesuffix('.fasta.gz')}"] = path
    for path in sorted(KLEBORATE_DIR.glob("*.fna.xz")):
        found[f"K.Pneumoniae/{path.name.removesuffix('.fna.xz')}"] = path
    if not found:
        raise FileNotFoundError(f"no bacterial genomes found under {RAGOUT_DIR} or {KLEBORATE_DIR}: {INSTALL_HINT}")
    return found


def resolve_genomes(names: str | Sequence[str]) -> list[str]:
    """Genome names from ``names``: full names (``E.Coli/MG1655-K12``), species (``E.Coli``), strains
    (``MG1655-K12``) or ``all``; a comma-separated string is a list."""
    available = genome_files()
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError("no genome named: give a genome, a species or 'all'")
    out: list[str] = []
    for name in names:
        if name == "all":
            matches = list(available)
        elif name in available:
            matches = [name]
        else:
            matches = [g for g in available if g.split("/")[0] == name or g.split("/")[1] == name]
        if not matches:
            raise ValueError(f"unknown genome {name!r}; available: {', '.join(available)} (species names and 'all' "
                             "also work)")
        out += [m for m in matches if m not in out]
    return out


def parse_fasta(text: str, *, where: str = "FASTA text") -> list[tuple[str, str]]:
    """``(header, sequence)`` of every record of a FASTA text, sequences upper-cased with line breaks removed."""
    records = []
    for chunk in text.split(">")[1:]:
        header, _, body = chunk.partition("\n")
        records.append((header.strip(), "".join(body.split()).upper()))
    if not records:
        raise ValueError(f"{where} holds no FASTA records (no line starting with '>')")
    return records


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """``(header, sequence)`` of every record of a FASTA file (plain, ``.gz`` or ``.xz``), sequences upper-cased
    with line breaks removed."""
    path = Path(path)
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    with opener(path, "rt", encoding="ascii") as handle:
        return parse_fasta(handle.read(), where=str(path))


def format_fasta(sequences: Sequence[str], *, prefix: str = "sample") -> str:
    """One record per sequence, headers ``>{prefix}_1``, ``>{prefix}_2``, …, the sequence on one line."""
    return "".join(f">{prefix}_{i}\n{s}\n" for i, s in enumerate(sequences, 1))


def write_fasta(sequences: Sequence[str], path: str | Path, *, prefix: str = "sample") -> Path:
    """:func:`format_fasta` written to ``path``."""
    path = Path(path)
    path.write_text(format_fasta(sequences, prefix=prefix), encoding="ascii")
    return path


def read_genome(name: str) -> list[tuple[str, str]]:
    """``(header, sequence)`` of every record of genome ``name``, upper-cased."""
    path = genome_files().get(name)
    if path is None:
        raise ValueError(f"unknown genome {name!r}; available: {', '.join(genome_files())}")
    return read_fasta(path)


def reverse_complement(sequence: str) -> str:
    return sequence.translate(_COMPLEMENT)[::-1]


def windows_of(sequence: str, window: int, stride: int) -> tuple[list[str], int]:
    """Windows ``sequence[i : i + window]`` for ``i = 0, stride, 2·stride, …`` that fit, and how many of them
    were dropped for holding a character other than A, C, G, T."""
    kept, dropped = [], 0
    for start in range(0, len(sequence) - window + 1, stride):
        piece = sequence[start:start + window]
        if _NOT_ACGT.search(piece):
            dropped += 1
        else:
            kept.append(piece)
    return kept, dropped


def _sha256(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


@dataclass
class DnaSplit:
    """Train/valid/test DNA windows (str) and the settings that produced them."""

    train: list[str]
    valid: list[str]
    test: list[str]
    settings: dict
    dropped_non_acgt: dict[str, int] = field(default_factory=dict)

    def info(self) -> dict:
        """JSON-able description: settings, sizes, dropped windows and the SHA-256 of each split."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        return {"domain": "dna", **self.settings, "sizes": {k: len(v) for k, v in parts.items()},
                "dropped_non_acgt": dict(self.dropped_non_acgt), "sha256": {k: _sha256(v) for k, v in parts.items()}}

    def verify(self, expected: dict) -> None:
        """Raise if this split differs from ``expected`` (the ``info()`` saved with a checkpoint)."""
        now = self.info()
        if expected.get("sha256") != now["sha256"]:
            raise ValueError(f"the DNA split differs from the one saved with the checkpoint (saved: "
                             f"{expected.get('sizes')}, now: {now['sizes']}); the genomes or split settings changed, "
                             "so held-out windows may have been trained on")


def load_dna(genomes: str | Sequence[str] = DEFAULT_GENOME, *, window: int = 256, stride: int | None = None,
             holdout: str = "region", test_genomes: str | Sequence[str] | None = None, valid_fraction: float = 0.05,
             test_fraction: float = 0.05, reverse_complement_train: bool = False, seed: int = 0) -> DnaSplit:
    """Windows of ``genomes`` split into train/valid/test (see the module docstring for every rule)."""
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got window={window}, stride={stride}")
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(f"valid_fraction and test_fraction must be in [0, 1) and sum below 1, got "
                         f"{valid_fraction} and {test_fraction}")
    if holdout not in ("region", "strain"):
        raise ValueError(f"holdout must be 'region' or 'strain', got {holdout!r}")
    train_names = resolve_genomes(genomes)
    test_names: list[str] = []
    if holdout == "strain":
        if not test_genomes:
            raise ValueError("holdout='strain' needs test_genomes (e.g. 'E.Coli/DH1')")
        test_names = resolve_genomes(test_genomes)
        if overlap := set(train_names) & set(test_names):
            raise ValueError(f"genomes {sorted(overlap)} are both in training and held out as test strains")
        test_fraction = 0.0
    elif test_genomes:
        raise ValueError(f"test_genomes={test_genomes!r} is only used with holdout='strain'")

    parts: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    dropped = {"train": 0, "valid": 0, "test": 0}

    def add(part: str, sequence: str) -> None:
        kept, n_bad = windows_of(sequence, window, stride)
        parts[part] += kept
        dropped[part] += n_bad

    for name in train_names:
        for _, sequence in read_genome(name):
            n = len(sequence)
            n_test, n_valid = math.ceil(n * test_fraction), math.ceil(n * valid_fraction)
            add("train", sequence[:n - n_test - n_valid])
            add("valid", sequence[n - n_test - n_valid:n - n_test])
            add("test", sequence[n - n_test:])
    for name in test_names:
        for _, sequence in read_genome(name):
            add("test", sequence)
    if not parts["train"]:
        raise ValueError(f"no training windows of {window} bases in {train_names} (valid_fraction={valid_fraction}, "
                         f"test_fraction={test_fraction})")
    if reverse_complement_train:
        parts["train"] += [reverse_complement(w) for w in parts["train"]]
    for number, (key, items) in enumerate(parts.items()):
        order = np.random.default_rng([seed, number]).permutation(len(items))
        parts[key] = [items[i] for i in order]
    settings = {"genomes": train_names, "test_genomes": test_names, "window": window, "stride": stride,
                "holdout": holdout, "valid_fraction": valid_fraction, "test_fraction": test_fraction,
                "reverse_complement_train": reverse_complement_train, "seed": seed}
    return DnaSplit(train=parts["train"], valid=parts["valid"], test=parts["test"], settings=settings,
                    dropped_non_acgt=dropped)


def fasta_windows(path: str | Path, window: int, stride: int, *, key: str, seed: int = 0,
                  number: int = 2) -> tuple[list[str], int]:
    """The windows of every record of a FASTA file (seeded order ``default_rng([seed, number])``) and how many were
    dropped for a non-ACGT letter; errors name ``key`` and the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{key}: FASTA file {path} does not exist")
    try:
        records = read_fasta(path)
    except (ValueError, OSError, EOFError, lzma.LZMAError) as err:
        raise ValueError(f"{key}: {path} is not a readable FASTA file: {err}") from None
    windows, dropped = [], 0
    for _, sequence in records:
        kept, bad = windows_of(sequence, window, stride)
        windows += kept
        dropped += bad
    if not windows:
        raise ValueError(f"{key}: {path} has no window of {window} bases holding only A, C, G, T ({dropped} dropped)")
    order = np.random.default_rng([seed, number]).permutation(len(windows))
    return [windows[i] for i in order], dropped


def dna_split(config: Any) -> DnaSplit:
    """:func:`load_dna` with the settings of a run's config (``data.source`` = the genomes, ``data.max_length`` =
    the window, ``dna.stride`` (0 = the window), ``dna.holdout``, ``dna.test_genomes``, ``dna.reverse_complement``,
    ``data.valid_fraction``, ``data.test_fraction``, ``data.split_seed``); errors name the config key."""
    d, s = config.data, config.dna
    if d.test_source and s.holdout == "strain":
        raise ValueError("dna.holdout=strain makes dna.test_genomes the test split; data.test_source is another: give "
                         "one")
    try:
        split = load_dna(d.resolved_source, window=d.max_length, stride=s.stride or None, holdout=s.holdout,
                         test_genomes=s.test_genomes or None,
                         valid_fraction=0.0 if d.valid_source else d.valid_fraction,
                         test_fraction=0.0 if d.test_source else d.test_fraction,
                         reverse_complement_train=s.reverse_complement, seed=d.split_seed)
    except ValueError as err:
        where = f"data.source={d.resolved_source!r}"
        if s.holdout == "strain":
            where += f", dna.test_genomes={s.test_genomes!r}"
        raise ValueError(f"{where}: {err}") from None
    for number, key in ((1, "valid"), (2, "test")):
        path = getattr(d, f"{key}_source")
        if path:
            windows, dropped = fasta_windows(path, d.max_length, s.stride or d.max_length, key=f"data.{key}_source",
                                             seed=d.split_seed, number=number)
            setattr(split, key, windows)
            split.dropped_non_acgt[key] = dropped
            split.settings[f"{key}_source"] = str(path)
    return split


def prepare_dna(config: Any, tokenizer: DnaTokenizer | None = None, *, quiet: bool = False) -> PreparedData:
    """Prepared data of ``data.domain=dna``: the windows of :func:`dna_split` on canvases of exactly
    ``data.max_length`` bases (:class:`DnaTokenizer`); ``data.subset`` keeps the first N training windows (a random
    sample: the windows are shuffled)."""
    d, s = config.data, config.dna
    if tokenizer is None:
        tokenizer = DnaTokenizer()
    elif not isinstance(tokenizer, DnaTokenizer):
        raise ValueError(f"a DNA model needs a DNA tokenizer, got {tokenizer!r}")
    split = dna_split(config)
    tensors = {}
    for name in ("train", "valid", "test"):
        windows = getattr(split, name)
        if name == "train" and d.subset:
            windows = windows[:d.subset]
        if not windows:
            raise ValueError(f"the {name} split of data.source={d.resolved_source!r} has no windows of "
                             f"{d.max_length} bases (data.valid_fraction={d.valid_fraction}, "
                             f"data.test_fraction={d.test_fraction}, dna.holdout={s.holdout})")
        tensors[name], _ = tokenizer.encode_many(windows, d.max_length, where=f"data.source={d.source}")
    dropped = sum(split.dropped_non_acgt.values())
    notes = [f"{', '.join(split.settings['genomes'])}: {', '.join(f'{k} {len(v)}' for k, v in tensors.items())} "
             f"windows of {d.max_length} bases (stride {split.settings['stride']}, held-out {s.holdout}"
             f"{', reverse complements added' if s.reverse_complement else ''}; {dropped} windows with non-ACGT "
             "letters dropped)"]
    if not quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return PreparedData(tokenizer=tokenizer, split=split, notes=notes, **tensors)
