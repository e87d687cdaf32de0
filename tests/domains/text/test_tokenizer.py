"""Tests of scmdm.domains.text.tokenizer: the character tokenizer by hand, BPE round trips on real and Unicode text."""

from __future__ import annotations

import pytest

from scmdm.domains.text.tokenizer import BpeTokenizer, CharTokenizer
from scmdm.errors import TokenizerError


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
