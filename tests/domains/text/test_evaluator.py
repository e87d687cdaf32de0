"""Tests of scmdm.domains.text.evaluator: entropy and the n-gram baselines by hand, and real text scored by SmolLM2
far ahead of n-gram samples."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from scmdm.config import load_config
from scmdm.domains.text.evaluator import NgramSampler, unigram_entropy
from scmdm.workflows import evaluator_for


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


@pytest.mark.slow
def test_real_text_scores_far_better_than_ngram_samples(kjv, text_scorer) -> None:
    evaluator = evaluator_for(load_config(None, ["data.domain=text", "data.max_length=80"]))
    real = evaluator.reference_row(n=8)
    (_, unigram), (_, bigram) = evaluator.baseline_rows(n=8)
    assert real.n_samples == 8 and real.chars == 80
    assert real.gen_ppl * 5 < unigram.gen_ppl  # measured: ~60 vs ~1000
    assert real.scorer_bpc < bigram.scorer_bpc < unigram.scorer_bpc  # per character the bigram is better text
    assert 0 < real.entropy_bits < math.log2(real.scorer_tokens)
