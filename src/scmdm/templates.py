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

Templates from complete items (held-out canvases whose hidden part is known, as an infilling benchmark needs):
``mask_items(items, masked, mask_id)`` with the positions to generate chosen by ``span_mask`` (one span of every
canvas: positions start ≤ j < stop; ``middle_span`` centres one of a given fraction) or ``prefix_mask`` (row i keeps
its first keep_i positions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from scmdm.errors import TokenizerError

__all__ = ["GAP", "split_gaps", "canvas_from_pieces", "text_template", "middle_span", "span_mask",
           "prefix_mask", "mask_items"]

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


def middle_span(length: int, fraction: float) -> tuple[int, int]:
    """(start, stop) of the middle ``fraction`` of a canvas of ``length``: n = round(fraction · length) positions
    (at least 1), start = ⌊(length − n) / 2⌋, stop = start + n. By hand: 128 and 0.25 → (48, 80)."""
    if not 0 < fraction < 1:
        raise ValueError(f"the fraction to generate must be in (0, 1), got {fraction}")
    n = max(1, round(fraction * length))
    if n >= length:
        raise ValueError(f"the middle {fraction:g} of a canvas of {length} is the whole canvas: nothing is given")
    start = (length - n) // 2
    return start, start + n


def span_mask(length: int, start: int, stop: int) -> torch.Tensor:
    """[length] bool, True at the positions to generate: start ≤ j < stop."""
    if not 0 <= start < stop <= length:
        raise ValueError(f"the span [{start}, {stop}) is not a non-empty span of a canvas of {length} positions")
    masked = torch.zeros(length, dtype=torch.bool)
    masked[start:stop] = True
    return masked


def prefix_mask(keep: Sequence[int] | torch.Tensor, length: int) -> torch.Tensor:
    """[N, length] bool, True at the positions to generate: row i keeps its first keep_i positions (j < keep_i is
    given) and generates the rest, keep_i < length."""
    keep = torch.as_tensor(keep, dtype=torch.long).reshape(-1)
    if keep.numel() and (keep.min() < 0 or keep.max() >= length):
        raise ValueError(f"every row must keep 0..{length - 1} positions of its canvas of {length} (at least one to "
                         f"generate), got {int(keep.min())}..{int(keep.max())}")
    return torch.arange(length)[None, :] >= keep[:, None]


def mask_items(items: torch.Tensor, masked: torch.Tensor, mask_id: int, *, where: str = "item") -> torch.Tensor:
    """Templates [N, L] from complete canvases ``items`` [N, L]: MASK where ``masked`` ([L] for every row, or [N, L])
    is True, the item's own token elsewhere. A row with nothing to generate is a ValueError naming it."""
    items = torch.as_tensor(items).long()
    masked = torch.as_tensor(masked, dtype=torch.bool)
    if items.ndim != 2:
        raise ValueError(f"items must be canvases [N, L], got shape {tuple(items.shape)}")
    if masked.shape not in (items.shape[1:], items.shape):
        raise ValueError(f"the positions to generate must be [L] or [N, L] = {tuple(items.shape)}, got "
                         f"{tuple(masked.shape)}")
    masked = masked.expand_as(items)
    if missing := (~masked.any(dim=1)).nonzero().flatten().tolist():
        raise ValueError(f"{where} #{missing[0] + 1} has no position to generate")
    return items.masked_fill(masked, mask_id)
