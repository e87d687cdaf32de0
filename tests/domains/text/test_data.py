"""Tests of scmdm.domains.text.data: splits by book (no leakage), files split at line breaks, packed windows, the
BPE tokenizer's cache, sample files, and what to install when the KJV is missing."""

from __future__ import annotations

import math

import pytest
import torch

from scmdm.config import load_config
from scmdm.domains import prepare_data
from scmdm.domains.text.data import (
    SEPARATOR,
    format_text_samples,
    kjv_books,
    load_documents,
    pack_windows,
    parse_text_samples,
    split_text,
)
from scmdm.domains.text.evaluator import chars_per_token
from scmdm.domains.text.tokenizer import CharTokenizer


# ---- splits and windows -------------------------------------------------------------------------------------
def test_kjv_split_by_book_has_no_leakage(kjv) -> None:
    split = split_text(kjv, source="kjv")
    titles = split.titles
    assert titles["valid"] == ["Josh", "Heb"] and titles["test"] == ["Job", "Acts"]
    assert not set(titles["train"]) & set(titles["valid"] + titles["test"])
    assert sorted(titles["train"] + titles["valid"] + titles["test"]) == sorted(b for b, _ in kjv)
    books = dict(kjv)
    assert split.test == [books["Job"], books["Acts"]] and books["Job"] not in split.train
    assert books["Job"].startswith("There was a man in the land of Uz")
    # every packed test window is text of the test books, never of a training book
    tok = CharTokenizer.build([t for _, t in kjv] + [SEPARATOR])
    windows, dropped = pack_windows(tok, split.test, 64)
    joined = SEPARATOR.join(split.test)
    assert len(windows) == len(joined) // 64 and dropped == len(joined) % 64
    assert all(w in joined for w in tok.decode_batch(windows[::50]))
    info = split.info()
    assert info["sizes"] == {"train": 62, "valid": 2, "test": 2} and info["characters"]["test"] == len(joined) - 2
    split.verify(info)
    other = split_text(kjv, source="kjv", test_books="Job")
    with pytest.raises(ValueError, match="text split differs"):
        other.verify(info)


def test_book_errors_name_the_books(kjv) -> None:
    with pytest.raises(ValueError, match=r"no book 'Genesis' in kjv; its books are: Ge, Exo"):
        split_text(kjv, source="kjv", test_books="Genesis")
    with pytest.raises(ValueError, match=r"both name \['Job'\]"):
        split_text(kjv, source="kjv", valid_books="job", test_books="Job,Acts")


def test_austen_holds_out_persuasion(austen) -> None:
    assert [t for t, _ in austen] == ["sensesensibility", "prideprejudice", "mansfieldpark", "emma",
                                      "northangerabbey", "persuasion"]
    novels = dict(austen)
    assert novels["prideprejudice"].count("It is a truth universally acknowledged, that a single man in possession "
                                          "of a good fortune, must be in want of a wife.") == 1  # re-flowed lines
    assert 400_000 < len(novels["persuasion"]) < 500_000 and "Anne Elliot" in novels["persuasion"]
    split = split_text(austen, source="austen")
    assert split.titles == {"train": ["sensesensibility", "prideprejudice", "mansfieldpark", "emma"],
                            "valid": ["northangerabbey"], "test": ["persuasion"]}
    assert all("Anne Elliot" not in text for text in split.train + split.valid)


def test_text_file_split_is_contiguous_at_line_breaks(tmp_path) -> None:
    path = tmp_path / "poem.txt"
    lines = [f"line {i:03d} of the poem" for i in range(100)]  # 20 characters with the line break
    path.write_text("\n".join(lines) + "\n")
    split = split_text(load_documents(str(path)), source=str(path), valid_fraction=0.1, test_fraction=0.2)
    assert split.train[0] + split.valid[0] + split.test[0] == path.read_text()
    assert split.test[0].startswith("line 080 ") and split.valid[0].startswith("line 070 ")
    shifted = split_text([("p", "x" + path.read_text())], source=str(path), valid_fraction=0.1, test_fraction=0.2)
    assert shifted.test[0].startswith("line 080 ")  # a cut inside a line moves to the next line
    with pytest.raises(ValueError, match="split by data.valid_fraction"):
        split_text(load_documents(str(path)), source=str(path), test_books="Job")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_documents(str(tmp_path / "missing.txt"))


def test_missing_kjv_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SCMDM_CACHE", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"apt-get install bible-kjv \(or `make install-data-text`\)"):
        kjv_books()


def test_prepare_packs_windows_and_a_bpe_tokenizer_is_cached(kjv, tmp_path, monkeypatch) -> None:
    data = prepare_data(load_config(None, ["data.domain=text", "data.max_length=40"]), quiet=True)
    assert data.train.shape[1] == 40 and data.tokenizer.kind == "char" and data.split_info["domain"] == "text"
    assert (data.train < data.tokenizer.mask_id).all() and (data.train > data.tokenizer.eos_id).all()  # no specials
    assert chars_per_token(data.tokenizer, data.valid) == 1.0
    monkeypatch.setenv("SCMDM_CACHE", str(tmp_path))
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(dict(kjv)["Ruth"].splitlines() * 3))
    overrides = ["data.domain=text", f"data.source={path}", "text.tokenizer=bpe", "text.vocab_size=300",
                 "data.max_length=16"]
    bpe = prepare_data(load_config(None, overrides), quiet=True)
    assert bpe.tokenizer.vocab_size == 300 and len(list(tmp_path.glob("bpe_v1_300_*.json"))) == 1
    assert chars_per_token(bpe.tokenizer, bpe.valid) > 1.3
    again = prepare_data(load_config(None, overrides), quiet=True)  # from the cache: the same tokenizer
    assert again.tokenizer == bpe.tokenizer and torch.equal(again.train, bpe.train)
    with pytest.raises(ValueError, match="the model's tokenizer is 'char' but text.tokenizer='bpe'"):
        prepare_data(load_config(None, overrides), data.tokenizer)


# ---- sample files ------------------------------------------------------------------------------------------
def test_sample_files_round_trip() -> None:
    samples = ["first\nsample", "", "third ends with a newline\n", "% not a separator"]
    assert parse_text_samples(format_text_samples(samples)) == samples


def test_held_out_text_files_and_a_window_sized_from_the_lines(tmp_path, kjv, capsys) -> None:
    """data.valid_source / data.test_source are the validation and test text as given; data.max_length=auto is the
    longest training line (KJV verses, one a line) in characters; a file without line breaks is refused with the
    fix, before anything is packed; --reference gives the reference windows."""
    from scmdm.domains import get_domain

    books = dict(kjv)
    train, valid, test = (tmp_path / f"{n}.txt" for n in ("train", "valid", "test"))
    train.write_text(books["Ge"])
    valid.write_text(books["Exo"])
    test.write_text(books["Lev"])
    config = load_config(None, ["data.domain=text", f"data.source={train}", f"data.valid_source={valid}",
                                f"data.test_source={test}"])
    assert config.data.max_length == "auto"
    data = prepare_data(config)
    longest = max(len(line) for line in books["Ge"].split("\n"))
    assert config.data.max_length == longest == data.train.shape[1]
    assert data.split.valid == [books["Exo"]] and data.split.test == [books["Lev"]]
    assert data.split_info["test_source"] == str(test) and data.split_info["titles"]["test"] == ["test.txt [test]"]
    lines = len(books["Ge"].splitlines())
    assert (f"note: data.max_length=auto: windows of {longest} char tokens, the longest training line ({lines:,} "
            "non-blank training lines; windows are packed)") in capsys.readouterr().err
    median = load_config(None, ["data.domain=text", f"data.source={train}", f"data.valid_source={valid}",
                                f"data.test_source={test}", "data.length_percentile=50"])
    prepare_data(median, quiet=True)
    lengths = sorted(len(line) for line in books["Ge"].split("\n") if line.strip())
    assert median.data.max_length == lengths[math.ceil(len(lengths) / 2) - 1]
    one_line = tmp_path / "one.txt"
    one_line.write_text(books["Ge"].replace("\n", " "))
    with pytest.raises(ValueError, match=r"data.max_length=auto: the longest training line of .*one.txt has [\d,]+ "
                                         r"char tokens, more than the 2048 auto chooses .* give data.max_length"):
        prepare_data(load_config(None, ["data.domain=text", f"data.source={one_line}"]), quiet=True)
    evaluator = get_domain("text").evaluator(config, data.split_info, data.tokenizer, reference=str(valid))
    assert evaluator.reference_windows[0] == books["Exo"][:longest] and str(valid) in evaluator.reference_note()
