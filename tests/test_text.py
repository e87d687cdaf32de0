"""Text domain without the scorer: tokenizers (by hand and round trips on real text), splits by book, packed
windows, n-gram baselines and entropy by hand, sample files, config checks."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from scmdm.config import ConfigError, load_config
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
from scmdm.domains.text.evaluator import NgramSampler, chars_per_token, unigram_entropy
from scmdm.domains.text.tokenizer import BpeTokenizer, CharTokenizer
from scmdm.errors import TokenizerError


# ---- tokenizers ------------------------------------------------------------------------------------------
def test_char_tokenizer_by_hand(tmp_path) -> None:
    tok = CharTokenizer.build(["ba", "c"])
    assert tok.itos == ["<pad>", "<eos>", "a", "b", "c", "<mask>"]
    assert (tok.pad_id, tok.eos_id, tok.mask_id, tok.vocab_size) == (0, 1, 5, 6)
    assert tok.encode("cab") == [4, 2, 3]
    canvases, report = tok.encode_many(["ab", "c"], 4)
    assert canvases.tolist() == [[2, 3, 1, 0], [4, 1, 0, 0]] and report.too_long == 0
    assert tok.decode([4, 5, 2, 1, 3]) == "c?a"  # MASK renders as ?, decoding stops at EOS
    assert tok.decode_batch(canvases) == ["ab", "c"]
    with pytest.raises(TokenizerError, match=r"\['x'\].*position 1"):
        tok.encode("axb")
    with pytest.raises(TokenizerError, match="need more than the 2 canvas positions"):
        tok.encode_many(["abc"], 2)
    assert tok.encode_many(["abc", "a"], 3, too_long="skip")[0].tolist() == [[2, 1, 0]]
    tok.save(tmp_path / "t.json")
    assert CharTokenizer.load(tmp_path / "t.json") == tok and tok != CharTokenizer.build(["ab"])
    with pytest.raises(ValueError, match="kind 'bpe' is not 'char'"):
        CharTokenizer.from_dict({"kind": "bpe", "itos": tok.itos})


@pytest.fixture(scope="module")
def small_bpe(kjv) -> BpeTokenizer:
    return BpeTokenizer.train([text for book, text in kjv if book in ("Ruth", "Jonah", "Phmn")], 300)


def test_bpe_round_trips_real_and_unicode_text(small_bpe, kjv, tmp_path) -> None:
    tok = small_bpe
    assert tok.vocab_size == 300 and (tok.pad_id, tok.eos_id, tok.mask_id) == (0, 1, 299)
    held_out = dict(kjv)["Job"][:20000]  # not trained on
    for text in (held_out, "naïve café — “quoted” ∑ 東京\n\nend"):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
    assert len(tok.encode(held_out)) < len(held_out.encode()) / 1.3  # even 41 merges compress
    tok.save(tmp_path / "bpe.json")
    again = BpeTokenizer.load(tmp_path / "bpe.json")
    assert again == tok and again.encode(held_out) == tok.encode(held_out)
    ids = tok.encode("And he said")
    assert tok.decode([*ids, tok.mask_id, *ids, tok.eos_id, *ids]) == "And he said?And he said"


def test_bpe_without_merges_is_bytes(kjv) -> None:
    """259 ids = 256 bytes + 3 specials: no merge fits, so there is exactly one id per UTF-8 byte."""
    tok = BpeTokenizer.train([dict(kjv)["Ruth"]], 259)
    text = "Whither thou goest, I will go — é"
    assert len(tok.encode(text)) == len(text.encode("utf-8")) and tok.decode(tok.encode(text)) == text
    with pytest.raises(ValueError, match="at least 259"):
        BpeTokenizer.train(["abc"], 258)


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


# ---- metrics and baselines by hand -------------------------------------------------------------------------
def test_unigram_entropy_by_hand() -> None:
    # p = (1/2, 1/4, 1/4): H = 1/2·1 + 2·1/4·2 = 1.5 bits
    assert unigram_entropy(["a", "a", "b", "c"]) == pytest.approx(1.5)
    assert unigram_entropy([7, 7, 7]) == 0.0 and unigram_entropy(list(range(8))) == pytest.approx(3.0)
    assert math.isnan(unigram_entropy([]))


def test_ngram_samplers_follow_the_counts() -> None:
    ids = [2, 3, 2, 4, 2, 3]  # after 2: 3, 4, 3 (p(3|2) = 2/3); after 3: always 2; after 4: always 2
    bigram = NgramSampler(ids, order=2, vocab_size=6).sample(3000, 6, seed=0)
    pairs = Counter(zip(bigram[:, :-1].ravel().tolist(), bigram[:, 1:].ravel().tolist(), strict=True))
    assert set(pairs) == {(2, 3), (2, 4), (3, 2), (4, 2)}
    assert pairs[(2, 3)] / (pairs[(2, 3)] + pairs[(2, 4)]) == pytest.approx(2 / 3, abs=0.02)
    unigram = NgramSampler(ids, order=1, vocab_size=6).sample(2000, 6, seed=0)
    freq = np.bincount(unigram.ravel(), minlength=6) / unigram.size
    assert freq[2] == pytest.approx(0.5, abs=0.02) and freq[4] == pytest.approx(1 / 6, abs=0.02)
    # the last token (3) has a successor elsewhere; a token only ever last falls back to the unigram
    tail = NgramSampler([2, 3, 2, 5], order=2, vocab_size=6).sample(200, 4, seed=1)
    assert set(tail[:, 0].tolist()) <= {2, 3, 5}


def test_sample_files_round_trip() -> None:
    samples = ["first\nsample", "", "third ends with a newline\n", "% not a separator"]
    assert parse_text_samples(format_text_samples(samples)) == samples


def test_config_for_text() -> None:
    config = load_config(None, ["data.domain=text"])
    assert config.data.resolved_source == "kjv" and load_config(None).data.resolved_source == "qm9"
    with pytest.raises(ConfigError, match="text.tokenizer must be one of char, bpe"):
        load_config(None, ["data.domain=text", "text.tokenizer=word"])
