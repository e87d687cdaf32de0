r"""Evaluation of generated text: generative perplexity under an independent LM, unigram entropy, and the
model's likelihood in bits per character.

Let ``S = (s_1 … s_N)`` be the samples (strings). The scorer (``scmdm.domains.text.scorer``: SmolLM2-135M, or
``eval.scorer``) tokenizes each sample into ``w_1 … w_n``.

* ``gen_ppl``       = exp( Σ_s NLL(s) / Σ_s n(s) ) — corpus-level perplexity of the samples under the scorer,
  every scorer token of every sample counted once (see ``scorer`` for NLL). Lower = more like text the
  scorer knows — but sharpening (low temperature, repetition) lowers it too, hence the entropy below.
* ``scorer_bpc``    = Σ_s NLL(s) / (ln 2 · Σ_s |s|) — the same NLL in bits per *character*. Per-token perplexity
  depends on how the scorer splits the text: gibberish splits into many short, rare tokens, so character-level
  bigram samples can have a *higher* ``gen_ppl`` than unigram samples while being better text per character.
  Bits per character do not have that problem; read both.
* ``entropy_bits``  = mean over samples of the unigram entropy of that sample's scorer tokens,
  H(s) = −Σ_v (c_v / n) log₂(c_v / n), with c_v the count of token v in s (Zheng et al., arXiv 2409.02908,
  use the same per-sequence definition). Repetitive samples have low entropy.
* ``scorer_tokens`` and ``chars`` = mean scorer tokens and characters per sample (perplexities are only
  comparable at similar lengths: the rows of one table share the window length).
* ``nelbo_bpc`` (model rows only, ``checkpoint_metrics``) = the validation NELBO in bits per token divided by
  the tokenizer's characters per token on the validation split:
  bits/char = (bits/token) · (tokens / characters) — exactly 1 token per character for the char tokenizer.

Reference and baselines, all the same length as the model's canvases (L tokens of the model's tokenizer):

* ``reference_row``: N real held-out windows (test books), decoded — what a perfect model would score.
* ``baseline_rows``: unigram and bigram samples of the model's tokens, fitted by maximum likelihood on the
  training text: unigram p(v) = c(v)/Σc; bigram p(v | u) = c(u v)/c(u·) (a token never seen followed by
  another falls back to the unigram), first token from the unigram. Sampling the bigram picks a uniformly
  random training occurrence of u and emits the token after it, which is exactly that distribution.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from scmdm.domains.text.data import SEPARATOR, pack_windows
from scmdm.domains.text.scorer import DEFAULT_SCORER, load_scorer, scorer_name

__all__ = ["TextMetrics", "TextEvaluator", "table_note", "unigram_entropy", "chars_per_token", "NgramSampler"]


@dataclass
class TextMetrics:
    """Metrics of one set of text samples; see the module docstring."""

    n_samples: int
    gen_ppl: float
    scorer_bpc: float
    entropy_bits: float
    scorer_tokens: float
    chars: float

    def as_dict(self) -> dict:
        return asdict(self)


def unigram_entropy(tokens: Sequence[Any]) -> float:
    """H = −Σ_v (c_v/n) log₂(c_v/n) over the distinct items of ``tokens`` (bits); nan for an empty sequence."""
    n = len(tokens)
    if not n:
        return math.nan
    return -sum(c / n * math.log2(c / n) for c in Counter(tokens).values())


def chars_per_token(tokenizer: Any, windows: Any) -> float:
    """Characters per token of ``windows`` ([N, L] ids): Σ len(decode(window)) / (N·L)."""
    if not len(windows):
        return math.nan
    return sum(len(t) for t in tokenizer.decode_batch(windows)) / windows.numel()


class NgramSampler:
    """Unigram (``order=1``) or bigram (``order=2``) sampler of token ids fitted on one id stream; see the module
    docstring."""

    def __init__(self, ids: Iterable[int], *, order: int, vocab_size: int) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order}")
        self.ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        if len(self.ids) < 2:
            raise ValueError("an n-gram sampler needs at least two training tokens")
        self.order = order
        previous = self.ids[:-1]
        self.following = np.argsort(previous, kind="stable") + 1  # positions after each occurrence, grouped by u
        counts = np.bincount(previous, minlength=vocab_size)
        self.start = np.concatenate([[0], np.cumsum(counts)])
        self.counts = counts

    def sample(self, n: int, length: int, *, seed: int = 0) -> np.ndarray:
        """``[n, length]`` ids."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, length), dtype=np.int64)
        out[:, 0] = self.ids[rng.integers(len(self.ids), size=n)]
        for j in range(1, length):
            if self.order == 1:
                out[:, j] = self.ids[rng.integers(len(self.ids), size=n)]
                continue
            prev = out[:, j - 1]
            counts = self.counts[prev]
            pick = self.start[prev] + (rng.random(n) * np.maximum(counts, 1)).astype(np.int64)
            nxt = self.ids[self.following[np.minimum(pick, len(self.following) - 1)]]
            unseen = counts == 0
            nxt[unseen] = self.ids[rng.integers(len(self.ids), size=int(unseen.sum()))]
            out[:, j] = nxt
        return out


def table_note(scorer: str = DEFAULT_SCORER) -> str:
    """What a text table's columns mean, naming the scorer."""
    return (f"gen_ppl and scorer_bpc: the samples' perplexity per scorer token and bits per character under "
            f"{scorer_name(scorer)} (compare only with the real held-out text row); entropy_bits: mean per-sample "
            "unigram entropy of the scorer tokens; nelbo_bpc: the model's validation NELBO in bits per character.")


class TextEvaluator:
    """Computes :class:`TextMetrics` for text samples (see the module docstring).

    Args:
        train_texts: the training books (the n-gram baselines are fitted on them).
        reference_texts: the held-out **test** books (the reference row is drawn from their windows).
        tokenizer: the model's tokenizer; windows and baselines are ``length`` of its tokens.
        length: the canvas length L.
        chars_per_token: of the validation split, for ``nelbo_bpc`` (``chars_per_token``); nan if unknown.
        device, batch_size: of the scorer, loaded lazily on first use and shared by every evaluator.
        scorer: ``smollm2`` (the shipped default) or a local Hugging Face causal-LM folder (``eval.scorer``).
    """

    def __init__(self, train_texts: Sequence[str], reference_texts: Sequence[str], *, tokenizer: Any, length: int,
                 chars_per_token: float = math.nan, device: str = "cpu", batch_size: int = 8,
                 show_progress: bool = False, scorer: str = DEFAULT_SCORER,
                 reference_name: str = "the run's test text") -> None:
        self.train_texts, self.tokenizer, self.length = list(train_texts), tokenizer, length
        self.chars_per_token, self.device, self.batch_size = chars_per_token, device, batch_size
        self.scorer_path = scorer
        self.show_progress = show_progress
        self.reference_name = reference_name
        windows, _ = pack_windows(tokenizer, list(reference_texts), length)
        if not len(windows):
            raise ValueError(f"the reference text is shorter than one window of {length} tokens")
        self.reference_windows: list[str] = tokenizer.decode_batch(windows)

    @property
    def scorer(self) -> Any:
        return load_scorer(self.device, self.scorer_path)

    def note(self) -> str:
        """What the table's columns mean, naming this evaluator's scorer."""
        return table_note(self.scorer_path)

    def reference_note(self) -> str:
        """Where the real held-out row comes from (printed under the table)."""
        return f"the real held-out row: windows of {self.reference_name}, scored like the samples."

    def evaluate(self, samples: Sequence[str]) -> TextMetrics:
        """Metrics of ``samples`` (strings)."""
        scorer = self.scorer
        ids = scorer.token_ids(samples)
        scored = scorer.score(samples, batch_size=self.batch_size, token_ids=ids, show_progress=self.show_progress)
        entropies = [unigram_entropy(x) for x in ids if x]
        n, chars = len(samples), sum(len(s) for s in samples)
        return TextMetrics(n_samples=n, gen_ppl=scored.perplexity,
                           scorer_bpc=sum(scored.nll) / (math.log(2) * chars) if chars else math.nan,
                           entropy_bits=float(np.mean(entropies)) if entropies else math.nan,
                           scorer_tokens=float(np.mean(scored.tokens)) if n else math.nan,
                           chars=float(np.mean([len(s) for s in samples])) if n else math.nan)

    def reference_row(self, n: int = 1000, seed: int = 1) -> TextMetrics:
        """The metrics of ``n`` real held-out windows drawn without replacement with
        ``numpy.random.default_rng(seed)`` (all of them if there are at most ``n``)."""
        windows = self.reference_windows
        if len(windows) > n:
            windows = [windows[i] for i in sorted(np.random.default_rng(seed).choice(len(windows), n, replace=False))]
        return self.evaluate(windows)

    def baseline_samples(self, order: int, n: int = 1000, seed: int = 1) -> list[str]:
        """``n`` windows of unigram (``order=1``) or bigram (``order=2``) samples fitted on the training text."""
        ids = self.tokenizer.encode(SEPARATOR.join(self.train_texts))
        sampler = NgramSampler(ids, order=order, vocab_size=self.tokenizer.vocab_size)
        return self.tokenizer.decode_batch(torch.from_numpy(sampler.sample(n, self.length, seed=seed)))

    def baseline_rows(self, n: int = 1000, seed: int = 1) -> list[tuple[str, TextMetrics]]:
        """The trivial baselines: unigram and bigram samples of the model's tokens, fitted on the training text."""
        rows = []
        for order, name in ((1, "unigram"), (2, "bigram")):
            samples = self.baseline_samples(order, n, seed)
            rows.append((f"{name} samples ({self.tokenizer.kind} tokens, fitted on train)", self.evaluate(samples)))
        return rows

    def checkpoint_metrics(self, state: dict) -> dict:
        """Model-row metrics from a checkpoint's ``state.json``: ``nelbo_bpc`` (see the module docstring)."""
        bits = state.get("val_nelbo_bits")
        if not isinstance(bits, int | float) or not self.chars_per_token > 0:
            return {}
        return {"nelbo_bpc": bits / self.chars_per_token}
