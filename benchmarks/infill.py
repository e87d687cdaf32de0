"""Conditional generation, measured (issue 33): infilling and inpainting on held-out data, beside baselines.

One base model per run (``--base``; its domain must be ``--domain``). The held-out items are the test split of the
base's own data (``scmdm.domains.prepare_data``; ``--num-samples`` of them, drawn once with seed 0, the same items
for every row and seed); each row completes every item once per sampling seed. Per domain:

    molecule  the first ⌊n/2⌋ of each test SMILES's n tokens given, the rest of the canvas (second half, EOS, PAD)
              generated: validity, uniqueness, novelty, FCD (the molecule evaluator: FCD against the test split) of
              the completions, and recovery = the fraction whose canonical SMILES is the held-out molecule's
    text      the middle 25 % (--span-fraction) of the characters of each held-out window generated: scorer
              bits/char of the completed window (the text evaluator) against the real window, and character
              accuracy of the span (a character tokenizer is required: a span of characters)
    dna       a 32-base gap (--gap) in the middle of each held-out window: per-base accuracy of the gap
    image     the lower half of each held-out image inpainted: Fréchet distance in the project's CNN features (the
              image evaluator) and pixel accuracy against the real halves (exact level match, mean |level error|)

Baselines (fitted on the training split) and reference rows:

    molecule  real held-out molecules (the evaluator's reference row: the validation split, not the completed
              molecules); training lookup: a training molecule with the same first half, drawn at random
    text      real windows (the held-out windows themselves); bigram infiller: a character bigram chain fitted on
              the training windows, sampled exactly conditioned on BOTH sides (the character before the span and the
              one after it: backward messages, then forward sampling); the most frequent training character everywhere
    dna       Markov-3 infiller: an order-3 chain fitted on the training windows, conditioned on BOTH sides (the 3
              bases before the gap and the 3 after it), sampled, and its per-base posterior mode; the most frequent
              training base everywhere
    image     real held-out images (the evaluator's reference row: validation images); pixel-independent lower
              halves (each pixel from its training marginal); nearest neighbour: the lower half of the training
              image closest to the given upper half (squared level distance)

Model rows: the base with the ancestral sampler at each T in --T. And the two method questions, each run only
when its models are given (a note says what is skipped):

    --control A B C --selfcond X Y Z   self-conditioning: compute-matched control vs λ = 1 post-trainings of the
              base, one per seed, paired by seed (pair i is sampled with --seeds[i]), ancestral at each T of --sc-T
              (equal NFE); paired differences self-conditioned − control, mean ± std over the pairs
    --verifier PATH                    speculative: the base with a causal verifier, speculative sampler at each W
              of --windows, beside the base's ancestral and cached samplers at --T; NFE ratios at matched quality.
              NFE counts trunk passes per item: the speculative sampler spends them only on the positions to fill
              (the given ones are revealed before its first pass); the ancestral sampler spends T whatever is given;
              the cached one skips the passes in which nothing of an item was revealed

Rows are cached in OUT/rows.jsonl (default OUT = runs/infill_<domain>), so an interrupted run resumes, and keyed by
the SHA-256 of each model's weights (not its path); the rows of the committed benchmarks/results/infill_<domain>.json
are reused, so a fresh clone measures only what they lack; --cached-only tabulates what is cached. Every input is
checked before anything is sampled. Writes benchmarks/results/infill_<domain>.json and the section
``infill_<domain>`` of docs/results/infill.md (--no-docs: OUT/infill_<domain>.json only, a trial).

    python -m benchmarks.infill --domain molecule --base models/qm9_base --verifier models/qm9_base_spec
    python -m benchmarks.infill --domain text --base models/text_kjv
    python -m benchmarks.infill --domain molecule --base models/qm9_base --num-samples 50 --seeds 0 --no-docs
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    RESULTS,
    ROOT,
    append_row,
    cached_rows,
    command,
    fmt,
    mean_std,
    parse_args,
    repo_relative,
    weights_id,
    write_results_section,
)
from benchmarks.speculative import matched
from scmdm.checkpoint import LoadedCheckpoint, load_checkpoint
from scmdm.config import SampleConfig
from scmdm.domains import prepare_data
from scmdm.errors import CheckpointError, ConfigError
from scmdm.templates import mask_items, middle_span, prefix_mask, span_mask
from scmdm.workflows import evaluator_for, sample_checkpoint

PAGE = RESULTS / "infill.md"
DOMAINS = ("molecule", "text", "dna", "image")
TITLES = {"molecule": "Molecules (QM9)", "text": "Text", "dna": "DNA", "image": "Images"}
MARKOV_ORDER = 3  # of the DNA infiller
#: per-domain defaults: held-out items, steps of the ancestral/cached rows, steps of the self-conditioning pairs,
#: speculative windows, samples per sampler batch
DEFAULTS = {
    "molecule": dict(num_samples=1000, T=[4, 8, 16, 32], sc_T=[16], windows=[2, 4, 8], batch_size=500),
    "text": dict(num_samples=200, T=[8, 16, 32], sc_T=[32], windows=[2, 4, 8], batch_size=100),
    "dna": dict(num_samples=500, T=[8, 16, 32], sc_T=[32], windows=[2, 4, 8], batch_size=250),
    "image": dict(num_samples=500, T=[8, 16, 32], sc_T=[32], windows=[8, 16, 32], batch_size=100),
}
#: the columns of each domain's tables: (metric, header, which values are better: "higher", "lower" or "closer to
#: real", i.e. to the real items' value, for a metric where both too low and too high are defects)
COLUMNS = {
    "molecule": [("validity", "validity", "higher"), ("uniqueness", "uniqueness", "higher"),
                 ("novelty", "novelty", "higher"), ("fcd", "FCD", "lower"), ("recovery", "recovery", "higher")],
    "text": [("scorer_bpc", "scorer bits/char", "lower"), ("bpc_vs_real", "− real window", "lower"),
             ("span_accuracy", "span char. accuracy", "higher"), ("entropy_bits", "entropy (bits)", "closer to real")],
    "dna": [("span_accuracy", "per-base accuracy", "higher")],
    "image": [("fd_cnn", "fd_cnn", "lower"), ("span_accuracy", "pixel accuracy", "higher"),
              ("level_mae", "mean abs. level error", "lower")],
}
#: the metrics the speculative sampler's NFE ratios are read at (matched quality)
MATCHED_ON = {"molecule": ("validity", "recovery"), "text": ("scorer_bpc", "span_accuracy"),
              "dna": ("span_accuracy",), "image": ("fd_cnn", "span_accuracy")}


# ---- baselines ----------------------------------------------------------------------------------------------------
class MarkovInfiller:
    """An order-k Markov chain over token ids, fitted on training canvases, that fills one span [start, stop) of
    every canvas given the tokens around it.

    Fit: over the alphabet A (|A| = V; the ids the chain may emit), with the state s = the k previous tokens,
        P(v | s) = (c(s v) + α) / (c(s ·) + α V),
    c counted over every (k+1)-gram inside a training canvas whose tokens are all in A (add-α smoothing).
    Fill, given the k tokens before the span (s_start) and the m = min(k, L − stop) tokens after it (r_1..r_m): the
    exact conditional of the chain, which must also emit the tokens after the span,
        p(x_start..x_stop−1 | left, right) ∝ Π_{i=start}^{stop−1} P(x_i | s_i) · Π_{j=1}^{m} P(r_j | s_{stop+j−1}).
    Backward messages β_stop(s) = Π_j P(r_j | s_{stop+j−1}) (the r shifted in from s), β_i(s) = Σ_v P(v | s)
    β_{i+1}(next(s, v)); ``sample`` draws x_i ∝ P(x_i | s_i) β_{i+1}(next(s_i, x_i)) left to right (exact);
    ``marginals`` are p(x_i = v | left, right) ∝ Σ_s α_i(s) P(v | s) β_{i+1}(next(s, v)) with the forward messages
    α from the left context, and ``mode`` their per-position argmax. ``both_sides=False``: β ≡ 1, the chain run
    left to right from the left context (the right one ignored).
    """

    def __init__(self, order: int, alphabet: Sequence[int], *, alpha: float = 1.0, both_sides: bool = True) -> None:
        if order < 1:
            raise ValueError(f"the order of the chain must be >= 1, got {order}")
        if not alpha > 0:
            raise ValueError(f"the smoothing α must be positive, got {alpha}")
        self.order, self.alpha, self.both_sides = order, float(alpha), both_sides
        self.alphabet = np.asarray(sorted(set(int(a) for a in alphabet)), dtype=np.int64)
        self.V = len(self.alphabet)
        if self.V < 2:
            raise ValueError("the chain needs an alphabet of at least two tokens")
        self.S = self.V ** order
        s, v = np.meshgrid(np.arange(self.S), np.arange(self.V), indexing="ij")
        self.next = (s % (self.S // self.V)) * self.V + v  # [S, V]: the state after emitting v in state s
        self.P: np.ndarray | None = None
        self.unigram: np.ndarray | None = None

    def _index(self, ids: np.ndarray) -> np.ndarray:
        """Alphabet positions of ``ids`` (−1 outside the alphabet)."""
        ids = np.asarray(ids, dtype=np.int64)
        lookup = np.full(max(int(ids.max(initial=0)), int(self.alphabet.max())) + 1, -1, dtype=np.int64)
        lookup[self.alphabet] = np.arange(self.V)
        return np.where(ids >= 0, lookup[np.clip(ids, 0, None)], -1)

    def fit(self, canvases: torch.Tensor | np.ndarray) -> MarkovInfiller:
        idx = self._index(np.asarray(canvases))
        k, (n, length) = self.order, idx.shape
        if length <= k:
            raise ValueError(f"training canvases of {length} tokens hold no {k + 1}-gram")
        codes = np.zeros((n, length - k), dtype=np.int64)
        valid = np.ones((n, length - k), dtype=bool)
        for t in range(k + 1):
            column = idx[:, t:length - k + t]
            codes = codes * self.V + np.clip(column, 0, None)
            valid &= column >= 0
        counts = np.bincount(codes[valid], minlength=self.S * self.V).reshape(self.S, self.V).astype(np.float64)
        self.P = (counts + self.alpha) / (counts.sum(axis=1, keepdims=True) + self.alpha * self.V)
        self.unigram = np.bincount(idx[idx >= 0], minlength=self.V)
        return self

    def most_frequent(self) -> int:
        """The training split's most frequent token of the alphabet (its id)."""
        if self.unigram is None:
            raise ValueError("fit the chain first")
        return int(self.alphabet[int(np.argmax(self.unigram))])

    def _messages(self, canvases: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """(the state before the span [N], backward messages β_start..β_stop, each [N, S], scaled to max 1)."""
        if self.P is None:
            raise ValueError("fit the chain first")
        idx = self._index(canvases)
        n, length = idx.shape
        k = self.order
        if not k <= start < stop <= length:
            raise ValueError(f"the span [{start}, {stop}) needs {k} given tokens before it in a canvas of {length}")
        after = idx[:, stop:stop + (min(k, length - stop) if self.both_sides else 0)]
        context = idx[:, start - k:start]
        if (context < 0).any() or (after < 0).any():
            raise ValueError("a token around the span is outside the chain's alphabet")
        state = np.zeros(n, dtype=np.int64)
        for t in range(k):
            state = state * self.V + context[:, t]
        beta = np.ones((n, self.S))
        shifted = np.broadcast_to(np.arange(self.S), (n, self.S)).copy()
        for j in range(after.shape[1]):
            beta = beta * self.P[shifted, after[:, j:j + 1]]
            shifted = self.next[shifted, after[:, j:j + 1]]
        betas = [beta / beta.max(axis=1, keepdims=True)]
        for _ in range(stop - start):
            beta = (self.P[None] * betas[0][:, self.next]).sum(axis=2)
            betas.insert(0, beta / beta.max(axis=1, keepdims=True))
        return state, betas

    def sample(self, canvases: torch.Tensor | np.ndarray, start: int, stop: int, *, seed: int) -> torch.Tensor:
        """``canvases`` [N, L] with the span drawn from the chain's conditional (numpy Generator ``seed``)."""
        out = np.asarray(canvases).astype(np.int64)
        state, betas = self._messages(out, start, stop)
        rng, rows = np.random.default_rng(seed), np.arange(len(out))
        for i in range(stop - start):
            weights = self.P[state] * betas[i + 1][rows[:, None], self.next[state]]
            cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
            v = np.minimum((rng.random(len(out))[:, None] > cdf).sum(axis=1), self.V - 1)
            out[:, start + i] = self.alphabet[v]
            state = self.next[state, v]
        return torch.from_numpy(out)

    def marginals(self, canvases: torch.Tensor | np.ndarray, start: int, stop: int) -> np.ndarray:
        """p(x_i = a | left, right) for every span position i and alphabet token a: [N, stop − start, V]."""
        state, betas = self._messages(np.asarray(canvases), start, stop)
        n = len(state)
        forward = np.zeros((n, self.S))
        forward[np.arange(n), state] = 1.0
        out = np.empty((n, stop - start, self.V))
        for i in range(stop - start):
            joint = forward[:, :, None] * self.P[None]  # [N, S, V]: α_i(s) P(v | s)
            marginal = (joint * betas[i + 1][:, self.next]).sum(axis=1)
            out[:, i] = marginal / marginal.sum(axis=1, keepdims=True)
            # next(s, v) = (s mod V^(k−1))·V + v: sum over the oldest token of s
            forward = joint.reshape(n, self.V, self.S // self.V, self.V).sum(axis=1).reshape(n, self.S)
            forward /= forward.max(axis=1, keepdims=True)
        return out

    def mode(self, canvases: torch.Tensor | np.ndarray, start: int, stop: int) -> torch.Tensor:
        """``canvases`` with each span position set to its most probable token under ``marginals``."""
        out = np.asarray(canvases).astype(np.int64)
        out[:, start:stop] = self.alphabet[self.marginals(out, start, stop).argmax(axis=2)]
        return torch.from_numpy(out)


def lookup_fill(truth: torch.Tensor, keep: torch.Tensor, train: torch.Tensor, *, eos_id: int, pad_id: int,
                seed: int) -> tuple[torch.Tensor, int]:
    """Molecules: each held-out canvas completed by a training canvas whose first keep_i tokens are the held-out
    one's, drawn uniformly (numpy Generator ``seed``); with none, the given prefix alone then EOS. Returns the
    canvases and how many had a match."""
    rng = np.random.default_rng(seed)
    train_np, truth_np = train.numpy(), truth.numpy()
    out = np.full_like(truth_np, pad_id)
    found = 0
    for k in sorted(set(keep.tolist())):
        table: dict[bytes, list[int]] = {}
        for j, row in enumerate(np.ascontiguousarray(train_np[:, :k])):
            table.setdefault(row.tobytes(), []).append(j)
        for i in np.flatnonzero(keep.numpy() == k):
            matches = table.get(np.ascontiguousarray(truth_np[i, :k]).tobytes())
            if matches:
                out[i] = train_np[matches[rng.integers(len(matches))]]
                found += 1
            else:
                out[i, :k], out[i, k] = truth_np[i, :k], eos_id
    return torch.from_numpy(out), found


def nearest_fill(templates: torch.Tensor, masked: torch.Tensor, train: torch.Tensor, *,
                 chunk: int = 8192) -> torch.Tensor:
    """Each template's masked positions ([L] bool, shared) copied from the training canvas closest to it on the given
    positions (squared difference of ids: of grey levels for images); the first such canvas on ties."""
    given = ~masked
    queries = templates[:, given].double()
    best = torch.full((len(templates),), float("inf"), dtype=torch.float64)
    index = torch.zeros(len(templates), dtype=torch.long)
    for first in range(0, len(train), chunk):
        block = train[first:first + chunk][:, given].double()
        d = (queries.pow(2).sum(1, keepdim=True) - 2 * queries @ block.T + block.pow(2).sum(1)[None])
        value, where = d.min(dim=1)
        better = value < best
        best, index = torch.where(better, value, best), torch.where(better, where + first, index)
    return torch.where(masked[None], train[index], templates)


# ---- metrics ------------------------------------------------------------------------------------------------------
def span_accuracy(tokens: torch.Tensor, truth: torch.Tensor, masked: torch.Tensor) -> float:
    """Σ [tokens = truth] over the generated positions / their number (every position weighs the same)."""
    masked = masked.expand_as(truth)
    return float(((tokens == truth) & masked).sum() / masked.sum())


def recovery(samples: Sequence[str], truths: Sequence[str]) -> float:
    """The fraction of samples whose RDKit canonical SMILES equals their held-out molecule's (an invalid sample is
    not a recovery)."""
    from scmdm.domains.molecule.data import canonicalize

    def canonical(smiles: str) -> str | None:
        out, _ = canonicalize([smiles]) if smiles else ([], 1)
        return out[0] if out else None

    if len(samples) != len(truths) or not samples:
        raise ValueError(f"recovery needs one sample per held-out molecule, got {len(samples)} and {len(truths)}")
    return sum(s is not None and s == canonical(t) for s, t in zip(map(canonical, samples), truths,
                                                                   strict=True)) / len(samples)


def level_mae(samples: Sequence[np.ndarray], truths: Sequence[np.ndarray], masked: torch.Tensor) -> float:
    """Mean |sample level − real level| over the inpainted pixels ([L] bool, raster order)."""
    pick = masked.numpy().reshape(np.asarray(truths[0]).shape)
    a, b = np.asarray(samples, dtype=np.int64), np.asarray(truths, dtype=np.int64)
    return float(np.abs(a - b)[:, pick].mean())


# ---- the task: held-out items, their templates and how completions are scored --------------------------------------
@dataclass
class Task:
    domain: str
    description: str
    truth: torch.Tensor  # [N, L] the held-out canvases
    templates: torch.Tensor  # [N, L], MASK where generated
    tokenizer: Any
    train: torch.Tensor  # the training canvases (baselines)
    evaluator: Any = None
    span: tuple[int, int] | None = None  # text, DNA, images: the generated span, shared by every item
    keep: torch.Tensor | None = None  # molecules: the given tokens of each item
    truth_items: list = field(default_factory=list)  # decoded held-out items

    @property
    def masked(self) -> torch.Tensor:
        return self.templates == self.tokenizer.mask_id

    def score(self, tokens: torch.Tensor) -> dict:
        """The domain's metrics of completions ``tokens`` [N, L] (module docstring)."""
        tokens = tokens.cpu()
        masked = self.masked
        if not torch.equal(tokens[~masked], self.truth[~masked]):
            raise RuntimeError("a given position of a template changed in a completion")
        decoded = self.tokenizer.decode_batch(tokens)
        metrics = {"span_accuracy": span_accuracy(tokens, self.truth, masked), "n_items": len(tokens)}
        if self.evaluator is not None:
            metrics.update(self.evaluator.evaluate(decoded).as_dict())
        if self.domain == "molecule":
            metrics["recovery"] = recovery(decoded, self.truth_items)
        if self.domain == "image":
            metrics["level_mae"] = level_mae(decoded, self.truth_items, masked[0])
        return metrics


def held_out_rows(n_test: int, n: int) -> np.ndarray:
    """Which test items a run completes: all when there are at most ``n``, else ``n`` drawn with seed 0, in order."""
    if n_test <= n:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(0).choice(n_test, size=n, replace=False))


def task_spec(domain: str, length: int, tokenizer: Any, args: argparse.Namespace) -> str:
    """What is given and what is generated, checked against the canvas (a ValueError when it does not fit)."""
    if domain == "molecule":
        if length < 2:
            raise ValueError(f"a canvas of {length} cannot hold half a molecule")
        return "the first ⌊n/2⌋ of each held-out molecule's n SMILES tokens given; the rest of the canvas generated"
    if domain == "text":
        if getattr(tokenizer, "kind", None) != "char":
            raise ValueError(f"the text benchmark masks a span of characters: it needs a character-level model "
                             f"(text.tokenizer=char), this one's tokenizer is {getattr(tokenizer, 'kind', '?')!r}")
        start, stop = middle_span(length, args.span_fraction)
        if start < 1 or stop >= length:
            raise ValueError(f"the middle {args.span_fraction:g} of a {length}-character window leaves no character "
                             "on one side for the bigram infiller")
        return f"characters {start}..{stop - 1} (the middle {args.span_fraction:.0%}) of each {length}-character " \
               "held-out window generated"
    if domain == "dna":
        if args.gap < 1 or length < args.gap + 2 * MARKOV_ORDER:
            raise ValueError(f"a gap of {args.gap} bases needs at least {MARKOV_ORDER} given bases on each side (the "
                             f"Markov-{MARKOV_ORDER} infiller's context): the canvas has {length}")
        start = (length - args.gap) // 2
        return f"bases {start}..{start + args.gap - 1} (a {args.gap}-base gap in the middle) of each {length}-base " \
               "held-out window generated"
    height, width = tokenizer.height, tokenizer.width
    if height < 2:
        raise ValueError(f"images of height {height} have no lower half to inpaint")
    return f"rows {height // 2}..{height - 1} (the lower half) of each {width}×{height} held-out image inpainted"


def build_task(loaded: LoadedCheckpoint, args: argparse.Namespace) -> Task:
    """The held-out items of the base's test split, their templates, the training canvases and the evaluator."""
    config, tokenizer = loaded.config, loaded.tokenizer
    domain, mask_id = config.data.domain, tokenizer.mask_id
    data = prepare_data(config, tokenizer, quiet=True)
    if loaded.split_info:
        data.split.verify(loaded.split_info)
    truth = data.test[torch.from_numpy(held_out_rows(len(data.test), args.num_samples))]
    length = truth.shape[1]
    description = task_spec(domain, length, tokenizer, args)
    task = Task(domain, description, truth, truth, tokenizer, data.train)
    if domain == "molecule":
        ends = truth == tokenizer.eos_id
        n_tokens = torch.where(ends.any(dim=1), ends.int().argmax(dim=1), torch.full((len(truth),), length))
        task.keep = torch.div(n_tokens, 2, rounding_mode="floor")
        task.templates = mask_items(truth, prefix_mask(task.keep, length), mask_id, where="held-out molecule")
    elif domain == "image":
        from scmdm.domains.image import inpainting_templates

        images = tokenizer.decode_batch(truth)
        h, w = tokenizer.height, tokenizer.width
        task.templates = inpainting_templates(images, tokenizer, region=(0, h // 2, w, h))
        task.span = ((h // 2) * w, h * w)
    else:
        if domain == "text":
            task.span = middle_span(length, args.span_fraction)
        else:
            start = (length - args.gap) // 2
            task.span = (start, start + args.gap)
        task.templates = mask_items(truth, span_mask(length, *task.span), mask_id, where=f"held-out {domain} window")
    task.truth_items = tokenizer.decode_batch(truth)
    if domain in ("molecule", "text", "image"):
        task.evaluator = evaluator_for(config, loaded.split_info, tokenizer=tokenizer)
    return task


def baselines(domain: str, get_task: Callable[[], Task]) -> list[tuple[str, bool, Callable[[int], tuple[torch.Tensor,
                                                                                                        str]]]]:
    """(label, seeded, fill(seed) → (completions [N, L], a note)) of the domain's baselines; the task (data, fitted
    chains) is built only when a baseline is filled, so cached rows need none."""
    fitted: dict[str, MarkovInfiller] = {}

    def chain() -> MarkovInfiller:
        if "chain" not in fitted:
            t = get_task()
            tok = t.tokenizer
            if domain == "text":
                specials = {tok.mask_id, tok.eos_id, tok.pad_id}
                fitted["chain"] = MarkovInfiller(1, [i for i in range(tok.vocab_size) if i not in specials])
            else:
                fitted["chain"] = MarkovInfiller(MARKOV_ORDER, [tok.stoi[b] for b in "ACGT"])
            fitted["chain"].fit(t.train)
        return fitted["chain"]

    def span_fill(how: str) -> Callable[[int], tuple[torch.Tensor, str]]:
        def fill(seed: int) -> tuple[torch.Tensor, str]:
            t = get_task()
            start, stop = t.span
            if how == "sample":
                return chain().sample(t.truth, start, stop, seed=seed), ""
            if how == "mode":
                return chain().mode(t.truth, start, stop), ""
            return torch.where(t.masked, torch.tensor(chain().most_frequent()), t.truth), ""
        return fill

    if domain == "molecule":
        def lookup(seed: int) -> tuple[torch.Tensor, str]:
            t = get_task()
            filled, found = lookup_fill(t.truth, t.keep, t.train, eos_id=t.tokenizer.eos_id,
                                        pad_id=t.tokenizer.pad_id, seed=seed)
            return filled, f"{found} of {len(t.truth)} first halves occur in the training split"
        return [("training lookup (a training molecule with the same first half)", True, lookup)]
    if domain == "image":
        from scmdm.domains.image.evaluator import pixel_independent_samples

        def independent(seed: int) -> tuple[torch.Tensor, str]:
            t = get_task()
            tok = t.tokenizer
            train_images = np.asarray(tok.decode_batch(t.train))
            drawn = pixel_independent_samples(train_images, tok.levels, len(t.truth), seed=seed)
            canvases, _ = tok.encode_many(list(drawn), t.truth.shape[1])
            return torch.where(t.masked, canvases, t.truth), ""

        def nearest(seed: int) -> tuple[torch.Tensor, str]:
            t = get_task()
            return nearest_fill(t.templates, t.masked[0], t.train), ""

        return [("pixel-independent lower half (each pixel from its training marginal)", True, independent),
                ("nearest neighbour (lower half of the training image closest on the upper half)", False, nearest)]
    if domain == "text":
        return [("bigram infiller (both sides: the characters before and after the span)", True, span_fill("sample")),
                ("most frequent training character everywhere", False, span_fill("frequent"))]
    both = f"both sides: the {MARKOV_ORDER} bases before and the {MARKOV_ORDER} after the gap"
    return [(f"Markov-{MARKOV_ORDER} infiller, sampled ({both})", True, span_fill("sample")),
            (f"Markov-{MARKOV_ORDER} infiller, posterior mode per base", False, span_fill("mode")),
            ("most frequent training base everywhere", False, span_fill("frequent"))]


def reference(task: Task) -> tuple[str, dict] | None:
    """The real-data row: text — the held-out windows themselves; molecules and images — the evaluator's real
    held-out row (the validation split: the completed items' own statistics would be scored against themselves);
    DNA — none (the real gap has accuracy 1 by definition)."""
    n = len(task.truth)
    if task.domain == "text":
        return "real windows (the held-out windows themselves)", task.score(task.truth)
    if task.domain in ("molecule", "image"):
        what = "molecules" if task.domain == "molecule" else "images"
        metrics = task.evaluator.reference_row(n=n, seed=1).as_dict()
        return f"real held-out {what} (validation split, n={metrics['n_samples']}; not the completed items)", metrics
    return None


# ---- the command line -----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", required=True, choices=DOMAINS, help="the base model's domain")
    parser.add_argument("--base", required=True, help="the base model (run or model folder)")
    parser.add_argument("--verifier", help="the base with a causal verifier: the speculative rows")
    parser.add_argument("--control", nargs="+", default=[], metavar="PATH",
                        help="compute-matched control post-trainings of the base, one per seed")
    parser.add_argument("--selfcond", nargs="+", default=[], metavar="PATH",
                        help="self-conditioned (λ = 1) post-trainings of the base, one per seed (paired with "
                             "--control)")
    parser.add_argument("--out", help="the row cache and trial results (default runs/infill_<domain>)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    parser.add_argument("--num-samples", type=int, help="held-out items completed per row (default: molecule 1000, "
                                                        "text 200, dna 500, image 500)")
    parser.add_argument("--T", type=int, nargs="+", help="steps of the ancestral (and cached) rows (default: "
                                                          "molecule 4 8 16 32, the others 8 16 32)")
    parser.add_argument("--sc-T", type=int, nargs="+", help="steps of the self-conditioning pairs (default: molecule "
                                                             "16, others 32)")
    parser.add_argument("--windows", type=int, nargs="+", help="speculative windows W, the largest for linear / "
                                                               "cosine (default: 2 4 8; image 8 16 32)")
    parser.add_argument("--window-schedule", default="cosine", choices=["constant", "linear", "cosine"])
    parser.add_argument("--min-window", type=int, default=2, help="W at nothing revealed (linear / cosine)")
    parser.add_argument("--span-fraction", type=float, default=0.25, help="text: the middle fraction generated")
    parser.add_argument("--gap", type=int, default=32, help="dna: bases generated in the middle of each window")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, help="items per sampler batch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (seconds depend on it)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-docs", action="store_true", help="write only OUT/infill_<domain>.json (a trial)")
    parser.add_argument("--cached-only", action="store_true", help="tabulate the rows already in OUT/rows.jsonl")
    return parser


def load_models(parser: argparse.ArgumentParser,
                args: argparse.Namespace) -> tuple[dict[str, LoadedCheckpoint], dict[str, str]]:
    """Every model named on the command line and the path it was named by (repository-relative), checked before
    anything is sampled: it loads, it is of --domain, it shares the base's canvas, tokenizer and data split (so the
    held-out items are held out for all), and it is what its option says (a verifier has one; a control is not
    self-conditioned, a self-conditioned model is)."""
    given: dict[str, str] = {}

    def load(path: str, what: str) -> LoadedCheckpoint:
        if not Path(path).exists():
            parser.error(f"{what} {path} does not exist")
        try:
            return load_checkpoint(path, device=args.device)
        except (CheckpointError, ConfigError, ValueError, OSError) as err:
            parser.error(f"{what} {path}: {err}")

    base = load(args.base, "--base")
    given["base"] = repo_relative(args.base)
    if base.config.data.domain != args.domain:
        parser.error(f"--base {args.base} is a {base.config.data.domain} model, not --domain {args.domain}")
    models = {"base": base}
    if args.verifier:
        models["verifier"] = load(args.verifier, "--verifier")
        given["verifier"] = repo_relative(args.verifier)
    if bool(args.control) != bool(args.selfcond):
        parser.error("self-conditioning is a paired comparison: give --control and --selfcond together")
    for key in ("control", "selfcond"):
        paths = getattr(args, key)
        if paths and len(paths) != len(args.seeds):
            parser.error(f"--{key} names {len(paths)} model(s) for {len(args.seeds)} seed(s) (--seeds {args.seeds}): "
                         "one model per seed, paired by seed")
        for i, path in enumerate(paths):
            models[f"{key}{i}"] = load(path, f"--{key}")
            given[f"{key}{i}"] = repo_relative(path)
    for name, loaded in models.items():
        if name == "base":
            continue
        path, c = loaded.path, loaded.config
        if c.data.domain != args.domain:
            parser.error(f"{path} is a {c.data.domain} model; the base is {args.domain}")
        if c.data.max_length != base.config.data.max_length or loaded.tokenizer != base.tokenizer:
            parser.error(f"{path} has another canvas or tokenizer than the base ({c.data.max_length} positions vs "
                         f"{base.config.data.max_length}): its templates would differ")
        if loaded.split_info != base.split_info:
            parser.error(f"{path} was trained on another data split than the base: the base's held-out items may be "
                         "its training items")
        if name == "verifier" and not loaded.model.speculative:
            parser.error(f"--verifier {path} has no causal verifier (speculative.causal_layers = 0)")
        if name.startswith("control") and loaded.model.self_conditioned:
            parser.error(f"--control {path} is self-conditioned ({c.selfcond.injection}); the control is the "
                         "compute-matched vanilla post-training (selfcond.injection=none)")
        if name.startswith("selfcond") and not loaded.model.self_conditioned:
            parser.error(f"--selfcond {path} is not self-conditioned (selfcond.injection=none)")
    return models, given


def settings(args: argparse.Namespace, base: LoadedCheckpoint) -> dict[str, list[dict]]:
    """arm → the sampler settings of its rows."""
    arms = {"ancestral": [{"sampler": "ancestral", "steps": t} for t in args.T]}
    if args.verifier:
        if base.model.config.time_conditioning or base.model.self_conditioned:
            print("note: the cached sampler needs a model without time conditioning or self-conditioning: no cached "
                  "rows")
        else:
            arms["cached"] = [{"sampler": "cached", "steps": t} for t in args.T]
        arms["speculative"] = [{"sampler": "speculative", "window": w, "window_schedule": args.window_schedule,
                                "min_window": min(args.min_window, w)} for w in args.windows]
    if args.control:
        arms["control"] = arms["selfcond"] = [{"sampler": "ancestral", "steps": t} for t in args.sc_T]
    return arms


def setting_label(setting: dict) -> str:
    if setting["sampler"] == "speculative":
        schedule = setting["window_schedule"]
        return f"W={setting['window']}" + ("" if schedule == "constant" else f" {schedule} from "
                                                                             f"{setting['min_window']}")
    return f"T={setting['steps']}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    made_by = command(__file__, argv)
    if args.overrides:
        parser.error(f"this benchmark takes no config overrides, got {args.overrides}")
    for key, value in DEFAULTS[args.domain].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("num_samples", "batch_size", "threads"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be positive")
    torch.set_num_threads(args.threads)
    models, paths = load_models(parser, args)
    base = models["base"]
    try:
        description = task_spec(args.domain, base.config.data.max_length, base.tokenizer, args)
    except ValueError as err:
        parser.error(str(err))
    arms = settings(args, base)
    for rows in arms.values():
        for setting in rows:
            try:
                SampleConfig(**setting, temperature=args.temperature, batch_size=args.batch_size).validate()
            except ConfigError as err:
                parser.error(str(err))
    if not args.verifier:
        print("note: no --verifier: the speculative question is skipped")
    if not args.control:
        print("note: no --control/--selfcond: the self-conditioning question is skipped")

    out = Path(args.out) if args.out else ROOT / "runs" / f"infill_{args.domain}"
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a folder (the row cache goes there)")
    out.mkdir(parents=True, exist_ok=True)
    cache_file = out / "rows.jsonl"
    cache = cached_rows(cache_file, ROOT / "benchmarks" / "results" / f"infill_{args.domain}.json")
    by_weights = {paths[name]: weights_id(loaded) for name, loaded in models.items()}  # rows keyed by weights
    task_key = [args.domain, description, args.num_samples, args.temperature]
    holder: dict[str, Task] = {}

    def task() -> Task:
        if "task" not in holder:
            print(f"preparing {args.num_samples} held-out items: {description}", flush=True)
            holder["task"] = build_task(base, args)
        return holder["task"]

    def measure(kind: str, arm: str, label: str, seed: int | None, model: str,
                compute: Callable[[], dict]) -> dict | None:
        key = json.dumps([*task_key, kind, arm, label, seed, by_weights.get(model, model)])
        if key not in cache:
            if args.cached_only:
                return None
            row = {"key": key, "kind": kind, "arm": arm, "label": label, "seed": seed, "model": model, **compute()}
            append_row(cache_file, row)
            cache[key] = row
            shown = " ".join(f"{m} {row[m]:.4g}" for m, _, _ in COLUMNS[args.domain] if isinstance(row.get(m), float))
            print(f"{kind:<9} {arm:<11} {label:<22} seed={seed} {shown}"
                  + (f" NFE {row['nfe']:.2f} {row['seconds']:.1f}s" if "nfe" in row else ""), flush=True)
        return cache[key]

    def sampled(loaded: LoadedCheckpoint, setting: dict, seed: int) -> Callable[[], dict]:
        def compute() -> dict:
            t = task()
            sample = SampleConfig(num_samples=len(t.templates), batch_size=args.batch_size, seed=seed,
                                  temperature=args.temperature, **setting)
            _, result = sample_checkpoint(loaded, sample, device=args.device, show_progress=False,
                                          template=t.templates)
            c = loaded.config
            return {**t.score(result.tokens), "nfe": result.nfe, "nfe_causal": result.nfe_causal,
                    "nfe_equivalent": result.nfe + result.nfe_causal * c.speculative.causal_layers / c.model.depth,
                    "seconds": result.seconds, "masked_per_item": float(t.masked.sum(dim=1).double().mean())}
        return compute

    def baseline(fill: Callable[[int], tuple[torch.Tensor, str]], seed: int | None) -> Callable[[], dict]:
        def compute() -> dict:
            t = task()  # built before the clock starts: a row's seconds are its filling (a chain's fit included)
            started = time.perf_counter()
            tokens, note = fill(0 if seed is None else seed)
            seconds = time.perf_counter() - started
            return {**t.score(tokens), "note": note, "seconds": seconds}
        return compute

    rows: list[dict] = []
    keep = rows.append
    # the task (data, evaluator) is built only when a row is not cached
    ref_label = {"molecule": "real held-out molecules", "text": "real windows", "image": "real held-out images"}
    if args.domain in ref_label:
        def ref() -> dict:
            label, metrics = reference(task())
            return {**metrics, "shown": label}
        row = measure("reference", "reference", ref_label[args.domain], None, "", ref)
        if row is not None:
            keep(row)
    specs = baselines(args.domain, task)
    for i, seed in enumerate(args.seeds):
        for label, seeded, fill in specs:
            if not seeded and i > 0:
                continue
            used = seed if seeded else None
            row = measure("baseline", "baseline", label, used, "", baseline(fill, used))
            if row is not None:
                keep(row)
        for arm, arm_settings in arms.items():
            if arm in ("control", "selfcond"):
                loaded = models[f"{arm}{i}"]
            else:
                loaded = models["verifier" if arm == "speculative" else "base"]
            path = paths[f"{arm}{i}" if arm in ("control", "selfcond") else
                         "verifier" if arm == "speculative" else "base"]
            for setting in arm_settings:
                row = measure("model", arm, setting_label(setting), seed, path, sampled(loaded, setting, seed))
                if row is not None:
                    keep(row)

    states = {name: loaded.state for name, loaded in models.items()}
    section = markdown(rows, args, made_by, description, paths, states)
    name = f"infill_{args.domain}"
    tabulated = {row["key"] for row in rows}  # rows measured before but not asked for this time are kept too
    payload = {"command": made_by, "domain": args.domain, "task": description, "rows": rows,
               "other_rows": [row for key, row in cache.items() if key not in tabulated], "seeds": args.seeds,
               "num_samples": args.num_samples, "models": paths,
               "model_states": states, "machine": {"cpu_threads": torch.get_num_threads(),
                                                   "python": platform.python_version(), "torch": torch.__version__,
                                                   "device": args.device}, "written": time.strftime("%Y-%m-%d")}
    if args.no_docs:
        (out / f"{name}.json").write_text(json.dumps(payload, indent=1))
    else:
        (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
        (ROOT / "benchmarks" / "results" / f"{name}.json").write_text(json.dumps(payload, indent=1))
        write_results_section(name, section, page=PAGE)
    print(section)
    return 0


# ---- tables ---------------------------------------------------------------------------------------------------------
def summarize(rows: list[dict], keys: Sequence[str]) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """{(kind, arm, label): {key: values over seeds}}, in the order the rows came; nan where a row lacks a key."""
    out: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for row in rows:
        entry = out.setdefault((row["kind"], row["arm"], row["label"]), {k: [] for k in keys})
        for k in keys:
            value = row.get(k)
            entry[k].append(float(value) if isinstance(value, int | float) else float("nan"))
    return out


def paired_differences(rows: list[dict], metric: str, label: str) -> list[float]:
    """selfcond − control of ``metric`` at setting ``label``, one difference per seed that has both rows (and both
    values: FCD is nan for fewer than two valid molecules)."""
    by = {(r["arm"], r["seed"]): r for r in rows if r["kind"] == "model" and r["label"] == label}
    diffs = [float(by[("selfcond", seed)].get(metric, "nan")) - float(by[("control", seed)].get(metric, "nan"))
             for arm, seed in by if arm == "control" and ("selfcond", seed) in by]
    return [d for d in diffs if d == d]


def unmatched(curve: list[tuple[float, float, float]], quality: float, higher: bool) -> str:
    """Why a baseline curve [(NFE, value, seconds)] sorted by NFE gives no NFE at ``quality``: it is already as good at
    its smallest NFE, or never that good (its best value said)."""
    values = [q for _, q, _ in curve]
    if (values[0] >= quality) if higher else (values[0] <= quality):
        return f"≤ {curve[0][0]:.1f} (already at its smallest)"
    return f"never (best {max(values) if higher else min(values):.3f})"


def cell(values: list[float], metric: str) -> str:
    if not values or all(v != v for v in values):
        return "–"
    digits = 2 if metric in ("fcd", "fd_cnn", "nfe", "nfe_equivalent", "nfe_causal") else 3
    return fmt(values, digits, sign=metric == "bpc_vs_real")


def markdown(rows: list[dict], args: argparse.Namespace, made_by: str, description: str, models: dict[str, str],
             states: dict[str, dict]) -> str:
    domain = args.domain
    columns = COLUMNS[domain]
    real = next((r for r in rows if r["kind"] == "reference"), None)
    if domain == "text" and real is not None:
        rows = [{**r, "bpc_vs_real": r["scorer_bpc"] - real["scorer_bpc"]} if "scorer_bpc" in r else r for r in rows]
    keys = [m for m, _, _ in columns] + ["nfe", "nfe_causal", "nfe_equivalent", "seconds", "masked_per_item"]
    summary = summarize(rows, keys)
    base_state = states.get("base", {})
    masked = [v for (kind, _, _), s in summary.items() if kind == "model" for v in s["masked_per_item"]]
    lines = [f"## {TITLES[domain]}: {description}", "", f"Command: `{made_by}`", "",
             f"Base: `{models['base']}` (validation NELBO {base_state.get('val_nelbo_bits', float('nan')):.4f} "
             f"bits/token, step {base_state.get('step')}). {args.num_samples} held-out items of the base's test split "
             f"(drawn once with seed 0; the same items in every row){'' if not masked else ', on average '}"
             f"{'' if not masked else f'{mean_std(masked)[0]:.1f} positions to fill per item'}. Sampling seeds "
             f"{args.seeds} (mean ± std over the `seeds` a row has), temperature {args.temperature}, float64 draws, "
             f"{args.threads} thread(s). NFE = network (trunk) passes per item; `seconds` = wall clock of a row "
             "(sampling, or filling for a baseline; scoring excluded); a baseline that draws nothing has one row.", "",
             "### Infilling quality", "",
             "| row | setting | seeds | NFE | " + " | ".join(h for _, h, _ in columns) + " | seconds |",
             "|---|---|---:|---:|" + "---:|" * (len(columns) + 1)]
    shown = {r["label"]: r.get("shown", r["label"]) for r in rows}
    for (kind, arm, label), s in summary.items():
        if kind == "model" and arm not in ("ancestral",):
            continue
        name = shown[label] if kind != "model" else f"base, {arm}"
        setting = label if kind == "model" else "–"
        lines.append(f"| {name} | {setting} | {len(s['seconds'])} | {cell(s['nfe'], 'nfe')} | "
                     + " | ".join(cell(s[m], m) for m, _, _ in columns) + f" | {cell(s['seconds'], 'seconds')} |")
    notes = sorted({r["note"] for r in rows if r.get("note")})
    lines += [""] + [f"Training lookup: {n}." if domain == "molecule" else n for n in notes] + ([""] if notes else [])
    lines += [NOTES[domain], ""]

    if any(arm == "control" for _, arm, _ in summary):
        lines += ["### Does self-conditioning help infilling?", "",
                  f"Control (`{'`, `'.join(v for k, v in models.items() if k.startswith('control'))}`) against "
                  f"self-conditioned (`{'`, `'.join(v for k, v in models.items() if k.startswith('selfcond'))}`) "
                  "post-trainings of the base, pair i sampled with seed i of the seeds above, ancestral sampler, equal "
                  "NFE. Δ = self-conditioned − control per pair, mean ± std over the pairs.", "",
                  "| setting | metric | control | self-conditioned | Δ (paired) |", "|---|---|---:|---:|---:|"]
        for (_, arm, label), s in summary.items():
            if arm != "control":
                continue
            sc = summary.get(("model", "selfcond", label))
            for metric, header, better in columns:
                if metric == "bpc_vs_real" or sc is None:
                    continue
                diffs = paired_differences(rows, metric, label)
                lines.append(f"| {label} | {header} ({better} is better) | "
                             f"{cell(s[metric], metric)} | {cell(sc[metric], metric)} | "
                             f"{fmt(diffs, 3, sign=True, count=True) if diffs else '–'} |")
        lines.append("")

    if any(arm == "speculative" for _, arm, _ in summary):
        spec_keys = [(k, s) for k, s in summary.items() if k[1] in ("ancestral", "cached", "speculative")]
        matched_on = [(m, h, better == "higher") for m, h, better in columns if m in MATCHED_ON[domain]]
        lines += ["### Does speculative sampling keep its NFE advantage with a template?", "",
                  f"The verifier `{models.get('verifier')}` (speculative, {args.window_schedule} windows) beside the "
                  "base's ancestral and cached samplers. NFE counts trunk passes per item: the speculative sampler "
                  "spends them only on the positions to fill (the given ones come first in its order, revealed before "
                  "its first pass); the ancestral sampler spends T whatever is given; the cached sampler draws the "
                  "same samples as the ancestral one and skips the passes in which nothing of an item was revealed. "
                  "`verifier` = verifier-only passes per item, `equiv.` = NFE + verifier · causal_layers / depth.", "",
                  "| sampler | setting | seeds | NFE | verifier | equiv. | " + " | ".join(h for _, h, _ in matched_on)
                  + " | seconds |", "|---|---|---:|---:|---:|---:|" + "---:|" * (len(matched_on) + 1)]
        for (_, arm, label), s in sorted(spec_keys, key=lambda item: (item[0][1], mean_std(item[1]["nfe"])[0])):
            lines.append(f"| {arm} | {label} | {len(s['nfe'])} | {cell(s['nfe'], 'nfe')} | "
                         f"{cell(s['nfe_causal'], 'nfe')} | {cell(s['nfe_equivalent'], 'nfe')} | "
                         + " | ".join(cell(s[m], m) for m, _, _ in matched_on)
                         + f" | {cell(s['seconds'], 'seconds')} |")
        lines += ["", "NFE ratio at matched quality: the baseline's NFE where its curve (means over seeds, piecewise "
                      "linear in log NFE) first reaches the speculative row's value, over the speculative row's NFE "
                      "(`equiv.`: over its equivalent NFE); above 1 = the speculative sampler needs fewer passes. "
                      "Where no ratio is given, the baseline never reaches the value in the T measured (its best is "
                      "said: the speculative sampler is better at every NFE measured) or already does at its smallest "
                      "T.",
                  "",
                  "| speculative | matched on | value | baseline | baseline NFE | ratio | ratio equiv. |",
                  "|---|---|---:|---|---:|---:|---:|"]
        for (_, arm, label), s in summary.items():
            if arm != "speculative":
                continue
            for metric, header, higher in matched_on:
                quality = mean_std(s[metric])[0]
                for baseline in ("ancestral", "cached"):
                    curve = sorted((mean_std(b["nfe"])[0], mean_std(b[metric])[0], mean_std(b["seconds"])[0])
                                   for (_, a, _), b in summary.items() if a == baseline)
                    if not curve:
                        continue
                    hit = matched(curve, quality, higher)
                    nfe, equiv = mean_std(s["nfe"])[0], mean_std(s["nfe_equivalent"])[0]
                    lines.append(f"| {label} | {header} | {quality:.3f} | {baseline} | "
                                 + (f"{unmatched(curve, quality, higher)} | – | – |" if hit is None else
                                    f"{hit[0]:.1f} | {hit[0] / nfe:.2f} | {hit[0] / equiv:.2f} |"))
        lines.append("")
    return "\n".join(lines).rstrip()


NOTES = {
    "molecule": "Validity, uniqueness (among valid), novelty (among unique valid, against the training split) and FCD "
                "(against the test split: the completions' own held-out molecules are among its reference molecules) "
                "of the completions; recovery = the fraction of completions whose canonical SMILES is the held-out "
                "molecule's (the training lookup can recover one only where a held-out molecule is also a training "
                "molecule, which scmdm's splits rule out).",
    "text": "scorer bits/char of the whole completed window under the text evaluator's scorer (the given characters "
            "are the same in every row, so differences come from the span); `− real window` = the row minus the real "
            "windows' value; span char. accuracy = generated characters equal to the real ones; entropy = the "
            "evaluator's per-window unigram entropy of scorer tokens, best close to the real windows' value "
            "(repetition shows as low entropy, noise as high). The bigram infiller is fitted on the training windows "
            "(add-one smoothing) and sampled exactly from its conditional given the characters on both sides of the "
            "span.",
    "dna": "Per-base accuracy = generated bases equal to the real ones in the gap (1/4 for random bases). The "
           f"Markov-{MARKOV_ORDER} infiller is fitted on the training windows (add-one smoothing) and conditions on "
           f"both sides: the {MARKOV_ORDER} bases before the gap and the {MARKOV_ORDER} after it (exact conditional; "
           "`posterior mode` takes each base's most probable value under it).",
    "image": "fd_cnn = Fréchet distance in the features of scmdm's own CNN (not Inception FID; comparable only within "
             "this table) of the inpainted images against the test split (the inpainted images' own upper halves come "
             "from it); pixel accuracy = inpainted pixels at exactly the real level; mean abs. level error over the "
             "inpainted pixels.",
}


if __name__ == "__main__":
    raise SystemExit(main())
