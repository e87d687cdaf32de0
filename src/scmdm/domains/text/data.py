"""Text data: the King James Bible and Jane Austen's six novels (Debian packages), or any UTF-8 text file;
split by book, packed into fixed-length windows.

Sources (``data.source``)

* ``kjv`` — ``bible -f gen1:1-rev22:21`` of the Debian package ``bible-kjv`` prints one verse a line
  (``Ge1:1 In the beginning…``); the reference is stripped, the book kept. 66 books, 31,102 verses, 4.1 M characters.
* ``austen`` — the R package janeaustenr (Debian ``r-cran-janeaustenr``; R itself is not needed: ``make
  install-data-text`` runs ``apt-get download`` + ``dpkg -x`` into the cache folder). Its lazy-load database
  ``data/Rdata.{rdx,rdb}`` is read with the pure-Python ``rdata`` package: the ``.rdx`` index (gzip) gives each
  novel's (offset, length) in the ``.rdb``, where a record is a 4-byte length followed by a zlib stream holding
  an R character vector (one printed line each). Lines are re-flowed into paragraphs (consecutive non-blank lines
  joined by a space); paragraphs are separated by ``\\n``. Six novels, 4.0 M characters.
* a path to a UTF-8 text file — one document.

Both named sources are extracted once and cached in ``scmdm.cache.cache_dir()`` (``kjv_v1.json``,
``austen_v1.json``).

Splits (nothing random): for ``kjv`` and ``austen`` whole books are held out — ``text.valid_books`` and
``text.test_books`` (comma-separated, case-insensitive; ``auto`` = the defaults below), every other book is
training text, so no verse or sentence of a held-out book is ever trained on. Defaults: KJV validation
Joshua + Hebrews (3.3 %), test Job + Acts (5.4 %; books without parallel passages elsewhere); Austen validation
*Northanger Abbey*, test *Persuasion* (the held-out novel). A text file is split contiguously: its last
⌈n·test_fraction⌉ characters are the test text and the ⌈n·valid_fraction⌉ before them the validation text
(both cuts moved forward to the next line break, if one follows).

Held-out files (``data.valid_source``, ``data.test_source``): UTF-8 text files used as the validation or test text
as given (one document each); ``data.source`` then holds out nothing for that split (no books, no fraction).

``data.max_length=auto`` (a text file source): the window is the ``data.length_percentile`` percentile of the
training text's non-blank lines, in tokens (100: the longest line), at most ``AUTO_MAX_LENGTH`` (a longer one — a file
without line breaks — is an error that asks for a ``data.max_length``); windows are still packed, so lines may span
them and nothing is dropped.

Windows: a split's books are joined with a blank line (``\\n\\n``), encoded as one stream with the tokenizer and
cut into consecutive non-overlapping windows of exactly L = ``data.max_length`` ids (``pack_windows``); the
tail shorter than a window is dropped. The windows are the model's canvases (no EOS, no PAD). With a pretrained
Hugging Face tokenizer (``text.tokenizer=hf``) windows are packed the way MDLM packs OpenWebText: every book's ids
followed by EOS, all concatenated, cut into chunks of L − 2 ids, each window BOS + chunk + EOS.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scmdm.cache import cache_dir
from scmdm.data import PreparedData
from scmdm.domains.text.tokenizer import TEXT_TOKENIZERS, BpeTokenizer, CharTokenizer, HfTokenizer

__all__ = ["KJV_INSTALL", "AUSTEN_INSTALL", "NAMED_SOURCES", "DEFAULT_HELDOUT", "kjv_books", "austen_novels",
           "austen_data_dir", "load_documents", "TextSplit", "split_text", "pack_windows", "build_text_tokenizer",
           "prepare_text", "format_text_samples", "parse_text_samples", "SEPARATOR", "SAMPLE_SEPARATOR", "text_split",
           "read_text_file", "AUTO_MAX_LENGTH"]

KJV_INSTALL = "apt-get install bible-kjv (or `make install-data-text`)"
AUSTEN_INSTALL = ("`make install-data-text` (apt-get download r-cran-janeaustenr, then dpkg -x it into "
                  "$SCMDM_CACHE/janeaustenr; or apt-get install r-cran-janeaustenr)")
NAMED_SOURCES = ("kjv", "austen")
#: source → (validation books, test books)
DEFAULT_HELDOUT = {"kjv": ("Josh,Heb", "Job,Acts"), "austen": ("northangerabbey", "persuasion")}
SEPARATOR = "\n\n"  # between the books of a split
SAMPLE_SEPARATOR = "\n%\n"  # between samples in a .txt file (the fortune-file convention: a line holding only %)
#: the largest window data.max_length=auto chooses (a longer line: the file has few or no line breaks)
AUTO_MAX_LENGTH = 2048
_VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")
_AUSTEN_TITLES = {"sensesensibility": "Sense and Sensibility", "prideprejudice": "Pride and Prejudice",
                  "mansfieldpark": "Mansfield Park", "emma": "Emma", "northangerabbey": "Northanger Abbey",
                  "persuasion": "Persuasion"}
_AUSTEN_SUBDIR = Path("usr/lib/R/site-library/janeaustenr/data")


def _read_cache(name: str) -> list[tuple[str, str]] | None:
    path = cache_dir() / name
    if not path.exists():
        return None
    return [tuple(pair) for pair in json.loads(path.read_text(encoding="utf-8"))]


def _write_cache(name: str, documents: list[tuple[str, str]]) -> None:
    path = cache_dir() / name
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(documents), encoding="utf-8")
    os.replace(tmp, path)


def kjv_books() -> list[tuple[str, str]]:
    """``(book, text)`` for the 66 books in canonical order (book = the abbreviation ``bible`` prints: Ge, Exo,
    …, Job, …, Acts, …, Rev); one verse a line. Cached after the first call."""
    cached = _read_cache("kjv_v1.json")
    if cached is not None:
        return cached
    program = shutil.which("bible")
    if program is None:
        raise FileNotFoundError(f"the King James Bible is not installed (no `bible` program): {KJV_INSTALL}")
    out = subprocess.run([program, "-f", "gen1:1-rev22:21"], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, check=True).stdout
    books: dict[str, list[str]] = {}
    for number, line in enumerate(out.splitlines(), 1):
        match = _VERSE.match(line)
        if match is None:
            raise ValueError(f"unexpected line {number} from `bible`: {line[:80]!r}")
        books.setdefault(match.group(1), []).append(match.group(4))
    documents = [(book, "\n".join(verses)) for book, verses in books.items()]
    if len(documents) != 66:
        raise ValueError(f"expected 66 books from `bible`, got {len(documents)}; the bible-kjv package looks damaged")
    _write_cache("kjv_v1.json", documents)
    return documents


def austen_data_dir() -> Path:
    """The janeaustenr ``data`` folder: in the cache (``make install-data-text``) or installed system-wide."""
    candidates = [cache_dir() / "janeaustenr" / _AUSTEN_SUBDIR, Path("/") / _AUSTEN_SUBDIR]
    for folder in candidates:
        if (folder / "Rdata.rdx").exists() and (folder / "Rdata.rdb").exists():
            return folder
    raise FileNotFoundError(f"Jane Austen's novels are not installed (no Rdata.rdx/.rdb in "
                            f"{' or '.join(str(c) for c in candidates)}): {AUSTEN_INSTALL}")


def _reflow(lines: Sequence[str]) -> str:
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(paragraphs)


def austen_novels() -> list[tuple[str, str]]:
    """``(novel, text)`` for the six novels in publication order (novel = janeaustenr's name: sensesensibility,
    prideprejudice, mansfieldpark, emma, northangerabbey, persuasion); one paragraph a line. Cached."""
    cached = _read_cache("austen_v1.json")
    if cached is not None:
        return cached
    import warnings

    import rdata

    folder = austen_data_dir()

    def parse(raw: bytes) -> Any:
        with warnings.catch_warnings():  # "Unknown file type: assumed RDS" — these are bare serialisations
            warnings.simplefilter("ignore")
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = parse(gzip.decompress((folder / "Rdata.rdx").read_bytes()))
    database = (folder / "Rdata.rdb").read_bytes()
    novels = {}
    for name, (offset, length) in index["variables"].items():
        record = database[int(offset):int(offset) + int(length)]
        novels[str(name)] = _reflow([str(line) for line in parse(zlib.decompress(record[4:]))])
    missing = set(_AUSTEN_TITLES) - set(novels)
    if missing:
        raise ValueError(f"{folder / 'Rdata.rdb'} lacks {sorted(missing)}; the janeaustenr data looks damaged")
    documents = [(name, novels[name]) for name in _AUSTEN_TITLES]
    _write_cache("austen_v1.json", documents)
    return documents


def read_text_file(path: str | Path, key: str = "data.source") -> str:
    """The text of a UTF-8 file named by config key ``key``; a clear error for a missing, binary or empty one."""
    path = Path(path)
    where = "data.source is kjv, austen or a UTF-8 text file" if key == "data.source" else f"{key}"
    if not path.exists():
        raise FileNotFoundError(f"text file {path} does not exist ({where})")
    if path.is_dir():
        raise ValueError(f"{key}: {path} is a folder, not a text file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise ValueError(f"{key}: {path} is not UTF-8 text (line {line}, byte {err.start}): {err.reason}") from None
    if not text.strip():
        raise ValueError(f"{key}: {path} holds no text")
    return text



def load_documents(source: str) -> list[tuple[str, str]]:
    """``(title, text)`` of every book of ``source`` (``kjv``, ``austen`` or a text file: one document)."""
    if source == "kjv":
        return kjv_books()
    if source == "austen":
        return austen_novels()
    path = Path(source)
    return [(path.name, read_text_file(path))]


def _sha256(texts: Sequence[str]) -> str:
    return hashlib.sha256(SEPARATOR.join(texts).encode()).hexdigest()


@dataclass
class TextSplit:
    """The books (one string each) of the train/valid/test splits, their titles and the settings that chose them."""

    train: list[str]
    valid: list[str]
    test: list[str]
    titles: dict[str, list[str]]
    settings: dict = field(default_factory=dict)

    def info(self) -> dict:
        """JSON-able: settings, titles, sizes (books and characters) and the SHA-256 of each split's text."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        return {"domain": "text", **self.settings, "titles": self.titles,
                "sizes": {k: len(v) for k, v in parts.items()},
                "characters": {k: sum(map(len, v)) for k, v in parts.items()},
                "sha256": {k: _sha256(v) for k, v in parts.items()}}

    def verify(self, expected: dict) -> None:
        """Raise if this split differs from the one a checkpoint was trained with."""
        if expected.get("sha256") != self.info()["sha256"]:
            raise ValueError(f"the text split differs from the one saved with the checkpoint (saved: "
                             f"{expected.get('titles')}, {expected.get('characters')} characters; now: {self.titles}, "
                             f"{self.info()['characters']}); the source or text.valid_books/test_books changed, so "
                             "held-out text may have been trained on")


def _pick(names: str, available: list[str], key: str, source: str) -> list[str]:
    lookup = {a.lower(): a for a in available}
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name.lower() not in lookup:
            raise ValueError(f"{key}: no book {name!r} in {source}; its books are: {', '.join(available)}")
        chosen.append(lookup[name.lower()])
    if not chosen:
        raise ValueError(f"{key} names no book; give one or more of: {', '.join(available)}")
    return chosen


def _cut_after_newline(text: str, position: int) -> int:
    """``position`` if a line starts there, else the start of the next line — or ``position`` itself when no line
    break follows (a file of one long line is still cut where its fractions say)."""
    if position <= 0 or text[position - 1] == "\n":
        return max(position, 0)
    found = text.find("\n", position)
    return position if found < 0 else found + 1


def split_text(documents: list[tuple[str, str]], *, source: str, valid_books: str = "auto",
               test_books: str = "auto", valid_fraction: float = 0.05, test_fraction: float = 0.05,
               hold_valid: bool = True, hold_test: bool = True) -> TextSplit:
    """Hold out whole books (named sources) or the end of a text file; see the module docstring. ``hold_valid`` /
    ``hold_test`` False: nothing of the source for that split (a held-out file takes its place)."""
    named = source in NAMED_SOURCES
    settings: dict[str, Any] = {"source": source}
    if named:
        defaults = DEFAULT_HELDOUT[source]
        valid_books = defaults[0] if valid_books == "auto" else valid_books
        test_books = defaults[1] if test_books == "auto" else test_books
        titles = [t for t, _ in documents]
        valid = _pick(valid_books, titles, "text.valid_books", source) if hold_valid else []
        test = _pick(test_books, titles, "text.test_books", source) if hold_test else []
        if both := sorted(set(valid) & set(test)):
            raise ValueError(f"text.valid_books and text.test_books both name {both}; a book can be held out once")
        train = [t for t in titles if t not in valid and t not in test]
        if not train:
            raise ValueError(f"no training book is left in {source} after holding out {valid + test}")
        text = dict(documents)
        settings.update(valid_books=",".join(valid), test_books=",".join(test))
        return TextSplit(train=[text[t] for t in train], valid=[text[t] for t in valid], test=[text[t] for t in test],
                         titles={"train": train, "valid": valid, "test": test}, settings=settings)
    if valid_books != "auto" or test_books != "auto":
        raise ValueError(f"text.valid_books / text.test_books name books of kjv or austen; the text file {source} is "
                         "split by data.valid_fraction and data.test_fraction")
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise ValueError(f"split fractions must be in [0, 1) and sum below 1, got valid={valid_fraction}, "
                         f"test={test_fraction}")
    title, text = documents[0] if len(documents) == 1 else ("text", SEPARATOR.join(t for _, t in documents))
    n = len(text)
    test_start = _cut_after_newline(text, n - math.ceil(n * test_fraction)) if test_fraction else n
    valid_start = _cut_after_newline(text, test_start - math.ceil(n * valid_fraction)) if valid_fraction else test_start
    valid_start = min(valid_start, test_start)
    settings.update(valid_fraction=valid_fraction, test_fraction=test_fraction)
    parts = {"train": text[:valid_start], "valid": text[valid_start:test_start], "test": text[test_start:]}
    if not parts["train"].strip():
        raise ValueError(f"no training text is left in {source} ({n} characters) after holding out "
                         f"data.valid_fraction={valid_fraction} and data.test_fraction={test_fraction}")
    return TextSplit(**{k: [v] if v else [] for k, v in parts.items()},
                     titles={k: [f"{title} [{k}]"] if v else [] for k, v in parts.items()}, settings=settings)


def pack_windows(tokenizer: Any, texts: Sequence[str], length: int) -> tuple[torch.Tensor, int]:
    """``texts`` joined by a blank line, encoded as one stream and cut into ``[N, length]`` consecutive windows
    (MDLM's packing for an ``HfTokenizer``: see the module docstring); also returns how many ids of the tail
    (shorter than a window) were dropped."""
    if not texts:
        return torch.empty(0, length, dtype=torch.long), 0
    if isinstance(tokenizer, HfTokenizer):
        if length < 3:
            raise ValueError(f"MDLM's packing needs windows of at least 3 ids (BOS, text, EOS), got {length}")
        stream = [i for text in texts for i in [*tokenizer.encode(text), tokenizer.eos_id]]
        chunk = length - 2
        n = len(stream) // chunk
        ids = torch.tensor(stream[:n * chunk], dtype=torch.long).view(n, chunk)
        bos = torch.full((n, 1), tokenizer.bos_id, dtype=torch.long)
        eos = torch.full((n, 1), tokenizer.eos_id, dtype=torch.long)
        return torch.cat([bos, ids, eos], dim=1), len(stream) - n * chunk
    ids = torch.tensor(tokenizer.encode(SEPARATOR.join(texts)), dtype=torch.long)
    n = len(ids) // length
    return ids[:n * length].view(n, length), len(ids) - n * length


def _bpe_cache_name(split: TextSplit, vocab_size: int) -> str:
    return f"bpe_v1_{vocab_size}_{split.info()['sha256']['train'][:24]}.json"


def build_text_tokenizer(split: TextSplit, kind: str, vocab_size: int, path: str = "") -> Any:
    """``char``: every character of the source (all splits — a character is not held-out knowledge, and an
    unknown character in held-out text would otherwise be an error). ``bpe``: trained on the **training** books
    only, cached in the cache folder under the hash of that text and the size. ``hf``: read from ``path``."""
    if kind == "char":
        return CharTokenizer.build([*split.train, *split.valid, *split.test, SEPARATOR])
    if kind == "hf":
        if not path:
            raise ValueError("text.tokenizer=hf needs text.tokenizer_path (a tokenizer.json, or a folder with one or "
                             "with GPT-2's vocab.json and merges.txt), or a model that brings its tokenizer")
        return HfTokenizer.from_path(path)
    if kind != "bpe":
        raise ValueError(f"text.tokenizer must be one of {', '.join(TEXT_TOKENIZERS)}, got {kind!r}")
    path = cache_dir() / _bpe_cache_name(split, vocab_size)
    if path.exists():
        return BpeTokenizer.load(path)
    tokenizer = BpeTokenizer.train(split.train, vocab_size)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tokenizer.save(tmp)
    os.replace(tmp, path)
    return tokenizer


def text_split(config: Any) -> TextSplit:
    """The split of a run's config: ``data.source`` split by book or fraction, the held-out files in place of the
    parts they replace."""
    d, s = config.data, config.text
    source = d.resolved_source
    held = {key: read_text_file(getattr(d, f"{key}_source"), f"data.{key}_source") for key in ("valid", "test")
            if getattr(d, f"{key}_source")}
    for key in held:
        if getattr(s, f"{key}_books") != "auto":
            raise ValueError(f"text.{key}_books and data.{key}_source both choose the {key} text: give one")
    split = split_text(load_documents(source), source=source, valid_books=s.valid_books, test_books=s.test_books,
                       valid_fraction=0.0 if "valid" in held else d.valid_fraction,
                       test_fraction=0.0 if "test" in held else d.test_fraction,
                       hold_valid="valid" not in held, hold_test="test" not in held)
    for key, text in held.items():
        path = getattr(d, f"{key}_source")
        setattr(split, key, [text])
        split.titles[key] = [f"{Path(path).name} [{key}]"]
        split.settings[f"{key}_source"] = path
    return split


def _auto_window(split: TextSplit, tokenizer: Any, percentile: float, source: str) -> tuple[int, str]:
    """The window of ``data.max_length=auto`` and the note that says how it was chosen (module docstring)."""
    from scmdm.data import auto_length

    lines = [line for text in split.train for line in text.split("\n") if line.strip()]
    lengths = [len(line) if isinstance(tokenizer, CharTokenizer) else len(tokenizer.encode(line)) for line in lines]
    length = auto_length(lengths, percentile)
    if isinstance(tokenizer, HfTokenizer):
        length = max(length, 3)  # BOS, text, EOS
    which = "the longest training line" if percentile == 100 else f"the {percentile:g}th percentile of the lines"
    if length > AUTO_MAX_LENGTH:
        raise ValueError(f"data.max_length=auto: {which} of {source} has {length:,} {tokenizer.kind} tokens, more than "
                         f"the {AUTO_MAX_LENGTH} auto chooses (a file with few line breaks?); give data.max_length "
                         "(windows are packed, so a line may span windows) or a lower data.length_percentile")
    return length, (f"data.max_length=auto: windows of {length} {tokenizer.kind} tokens, {which} ({len(lines):,} "
                    "non-blank training lines; windows are packed)")


def prepare_text(config: Any, tokenizer: Any = None, *, quiet: bool = False) -> PreparedData:
    """Prepared data of ``data.domain=text``: load, split by book, build (or check) the tokenizer, pack windows of
    ``data.max_length`` ids (``auto``: sized from the training lines). ``data.subset`` keeps the first N training
    windows."""
    d, s = config.data, config.text
    source = d.resolved_source
    split = text_split(config)
    if tokenizer is None:
        tokenizer = build_text_tokenizer(split, s.tokenizer, s.vocab_size, s.tokenizer_path)
    elif tokenizer.kind != s.tokenizer:
        raise ValueError(f"the model's tokenizer is {tokenizer.kind!r} but text.tokenizer={s.tokenizer!r}")
    tensors, notes = {}, []
    if d.max_length == "auto":
        d.max_length, note = _auto_window(split, tokenizer, d.length_percentile, source)
        notes.append(note)
    for name in ("train", "valid", "test"):
        tensors[name], dropped = pack_windows(tokenizer, getattr(split, name), d.max_length)
        if not len(tensors[name]):  # every split is used: training, validation, the evaluation reference
            chars = sum(map(len, getattr(split, name)))
            held = getattr(d, f"{name}_source", "")
            raise ValueError(f"the {name} text of {held or source} ({chars} characters) is shorter than one window of "
                             f"data.max_length={d.max_length} tokens; use a longer text, a smaller data.max_length or "
                             f"a larger data.{'test' if name == 'test' else 'valid'}_fraction")
    if d.subset:
        tensors["train"] = tensors["train"][:d.subset]
    notes.append(f"{source}: {', '.join(f'{k} {len(v)}' for k, v in tensors.items())} windows of "
                 f"{d.max_length} {tokenizer.kind} tokens (vocabulary {tokenizer.vocab_size})")
    if not quiet:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    return PreparedData(tokenizer=tokenizer, split=split, notes=notes, **tensors)


def format_text_samples(samples: Sequence[str]) -> str:
    """Samples, each followed by a line holding only ``%`` (``SAMPLE_SEPARATOR``, the fortune-file convention);
    ``parse_text_samples`` reverses it exactly (unless a sample itself holds such a line)."""
    return "".join(s + SAMPLE_SEPARATOR for s in samples)


def parse_text_samples(text: str) -> list[str]:
    """The samples of a text written by ``format_text_samples``."""
    parts = text.split(SAMPLE_SEPARATOR)
    if parts and not parts[-1].strip():
        parts = parts[:-1]
    return parts
