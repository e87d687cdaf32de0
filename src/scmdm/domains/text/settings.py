"""The ``text`` config section: the tokenizer and the held-out books of the text domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scmdm.domains.text.tokenizer import MIN_BPE_VOCAB, TEXT_TOKENIZERS
from scmdm.errors import ConfigError
from scmdm.options import option

__all__ = ["TextSettings"]


@dataclass
class TextSettings:
    tokenizer: str = option("char", "char (one id per character) | bpe (byte-level BPE trained on the training books "
                                    "with Hugging Face tokenizers) | hf (a pretrained tokenizer, text.tokenizer_path; "
                                    "MASK appended as MDLM does)")
    tokenizer_path: str = option("", "hf tokenizer: a tokenizer.json, or a folder with one or with GPT-2's vocab.json "
                                     "and merges.txt (a model imported with its tokenizer needs none)")
    vocab_size: int = option(1024, "bpe tokenizer: vocabulary size, <pad> <eos> <mask> included (>= 259)")
    valid_books: str = option("auto", "kjv, austen: comma-separated books held out for validation; auto = Josh,Heb "
                                      "(kjv), northangerabbey (austen)")
    test_books: str = option("auto", "kjv, austen: comma-separated books held out for testing (the evaluation "
                                     "reference); auto = Job,Acts (kjv), persuasion (austen)")

    def validate(self, data: Any) -> None:
        if self.tokenizer not in TEXT_TOKENIZERS:
            raise ConfigError(f"text.tokenizer must be one of {', '.join(TEXT_TOKENIZERS)}, got {self.tokenizer!r}")
        if self.tokenizer == "bpe" and self.vocab_size < MIN_BPE_VOCAB:
            raise ConfigError(f"text.vocab_size must be at least {MIN_BPE_VOCAB} for the byte-level BPE tokenizer "
                              f"(256 bytes + <pad>, <eos>, <mask>), got {self.vocab_size}")
