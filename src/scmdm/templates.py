"""Templates for conditional generation: which positions of a canvas are given and which a sampler generates.

A template is a canvas of token ids, MASK at the positions to generate (``scmdm.sampling.generate(template=...)``;
every sampler keeps the given tokens). Each domain builds templates from what its users write:

* text and molecules: literal text with gaps — ``[MASK]`` (one token) or ``[MASK:n]`` (n tokens); a prompt is a
  template without a gap. The literal parts are tokenized with the model's tokenizer;
* DNA: a sequence whose ``N`` runs (or ``[MASK:n]`` gaps) are the gaps;
* images: an image and a rectangle (or a mask image) to inpaint.

The canvas positions after the template's last position are generated too (a prompt is continued to the end of the
canvas). A template longer than the canvas, a token outside the vocabulary, or a template with nothing to generate
is one clear error (``TokenizerError`` / ``ValueError``) naming the template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from scmdm.errors import TokenizerError

__all__ = ["GAP", "split_gaps", "canvas_from_pieces", "text_template"]

#: a gap: [MASK] (one position) or [MASK:n] (n positions)
GAP = re.compile(r"\[MASK(?::(\d+))?\]")


def split_gaps(text: str) -> list[str | int]:
    """``text`` as literal strings and gap lengths, in order: ``"ab[MASK:2]c"`` → ``["ab", 2, "c"]``."""
    pieces: list[str | int] = []
    position = 0
    for match in GAP.finditer(text):
        if match.start() > position:
            pieces.append(text[position:match.start()])
        n = int(match.group(1)) if match.group(1) is not None else 1
        if n < 1:
            raise ValueError(f"a gap needs at least one position: {match.group(0)!r} in {text!r}")
        pieces.append(n)
        position = match.end()
    if position < len(text):
        pieces.append(text[position:])
    return pieces


def canvas_from_pieces(pieces: Sequence[Sequence[int] | int], length: int, mask_id: int, *,
                       where: str = "the template") -> torch.Tensor:
    """A canvas [length] from token-id runs and gap lengths (the rest of the canvas masked: generated)."""
    ids: list[int] = []
    for piece in pieces:
        ids += [mask_id] * piece if isinstance(piece, int) else list(piece)
    if len(ids) > length:
        raise ValueError(f"{where} needs {len(ids)} positions but the model's canvas has {length}")
    ids += [mask_id] * (length - len(ids))
    if mask_id not in ids:
        raise ValueError(f"{where} fills the whole canvas: there is nothing to generate (add a gap, [MASK:n])")
    return torch.tensor(ids, dtype=torch.long)


def text_template(text: str, encode: Callable[[str], list[int]], length: int, mask_id: int, *,
                  where: str = "the template") -> torch.Tensor:
    """The canvas of ``text`` with gaps, its literal parts encoded with ``encode`` (a tokenizer's)."""
    pieces: list[Sequence[int] | int] = []
    for piece in split_gaps(text):
        if isinstance(piece, int):
            pieces.append(piece)
            continue
        try:
            pieces.append(encode(piece))
        except (TokenizerError, KeyError, ValueError) as err:
            raise TokenizerError(f"{where}: {err}") from None
    return canvas_from_pieces(pieces, length, mask_id, where=where)
