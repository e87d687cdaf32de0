"""HfTokenizer (a pretrained model's own Hugging Face tokenizer, MASK appended) and MDLM's window packing."""

from __future__ import annotations

import pytest
import torch

from scmdm.domains.text.data import pack_windows
from scmdm.domains.text.tokenizer import HfTokenizer
from scmdm.errors import TokenizerError
from tests.conftest import CHARS, char_tokenizer_json


def test_gpt2_style_vocab_and_merges(tmp_path) -> None:
    """vocab.json + merges.txt (GPT-2's files): the ids are kept, MASK is the next id, EOS is <|endoftext|>."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["the cat sat on the mat. " * 50], vocab_size=280, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    bpe.save_model(str(tmp_path))  # writes vocab.json and merges.txt
    tok = HfTokenizer.from_path(tmp_path)
    base = bpe.get_vocab_size()
    assert tok.vocab_size == base + 1 and tok.mask_id == base
    assert tok.eos_id == tok.pad_id == tok.bos_id == bpe.token_to_id("<|endoftext|>")
    text = "the cat sat.<|endoftext|>on the mat"
    ids = tok.encode(text)
    assert tok.eos_id in ids  # the special token is one id, never split
    assert tok.decode(ids) == text and tok.decode([*ids[:2], tok.mask_id]) == tok.decode(ids[:2]) + "?"
    again = HfTokenizer.from_dict(tok.to_dict())
    assert again == tok and again.encode(text) == ids


def test_mdlm_packing_by_hand(tmp_path) -> None:
    """Each document's ids + EOS, concatenated, chunks of L − 2, each window BOS + chunk + EOS; the tail dropped."""
    char_tokenizer_json(tmp_path / "tokenizer.json")
    tok = HfTokenizer.from_path(tmp_path / "tokenizer.json")
    e, a, b, c, d = tok.eos_id, CHARS.index("a"), CHARS.index("b"), CHARS.index("c"), CHARS.index("d")
    # stream a b E c d E a E; L = 5 → chunks of 3: [a b E] [c d E], the tail [a E] dropped
    windows, dropped = pack_windows(tok, ["ab", "cd", "a"], 5)
    assert windows.tolist() == [[e, a, b, e, e], [e, c, d, e, e]] and dropped == 2
    windows, dropped = pack_windows(tok, ["ab", "cd", "a"], 4)  # chunks of 2: [a b] [E c] [d E] [a E]
    assert windows.tolist() == [[e, a, b, e], [e, e, c, e], [e, d, e, e], [e, a, e, e]] and dropped == 0
    with pytest.raises(ValueError, match="at least 3"):
        pack_windows(tok, ["ab"], 2)
    assert pack_windows(tok, [], 4)[0].shape == (0, 4)


def test_text_it_cannot_encode_is_one_clear_error(tmp_path) -> None:
    char_tokenizer_json(tmp_path / "tokenizer.json")
    tok = HfTokenizer.from_path(tmp_path / "tokenizer.json")
    with pytest.raises(TokenizerError, match="cannot encode this text"):
        tok.encode("tab\there")
    with pytest.raises(FileNotFoundError, match="expected a tokenizer.json, or GPT-2's vocab.json and merges.txt"):
        HfTokenizer.from_path(tmp_path / "nothing")
    assert torch.equal(torch.tensor(tok.encode("abc")), torch.tensor([CHARS.index(x) for x in "abc"]))
