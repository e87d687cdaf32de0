"""Tests of scmdm.domains.dna.evaluator: its formulas by hand, and the evaluator on real E. coli (held-out windows
far ahead of shuffled ones, nearest-window identity, the Markov baseline)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scmdm.domains.dna.evaluator import (
    DnaEvaluator,
    format_dna_table,
    gc_fractions,
    js_divergence,
    kmer_counts,
    nearest_identity,
)
from scmdm.domains.dna.evaluator import codes as base_codes
from tests.conftest import requires_genomes


@pytest.fixture(scope="module")
def evaluator(ecoli):
    return DnaEvaluator.from_split(ecoli)


# ---- formulas by hand ---------------------------------------------------------------------------------------
def test_kmer_counts_by_hand():
    counts = kmer_counts(["ACGTA"], 2)  # AC CG GT TA; index = 4·first + second with A0 C1 G2 T3
    assert counts.sum() == 4
    assert {int(i): int(c) for i, c in enumerate(counts) if c} == {1: 1, 6: 1, 11: 1, 12: 1}
    # k-mers holding a non-base are skipped; k-mers never span two sequences
    assert np.flatnonzero(kmer_counts(["ACNGT"], 2)).tolist() == [1, 11]
    assert np.flatnonzero(kmer_counts(["AC", "GT"], 2)).tolist() == [1, 11]
    assert kmer_counts(["ACG"], 3)[0 * 16 + 1 * 4 + 2] == 1


def test_js_divergence_by_hand():
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(math.log(2))
    # P = (1, 0), Q = (½, ½): M = (¾, ¼); ½·ln(4/3) + ½·(½ ln(2/3) + ½ ln 2) = ¾ ln(4/3)
    assert js_divergence(np.array([2, 0]), np.array([5, 5])) == pytest.approx(0.75 * math.log(4 / 3))
    assert js_divergence(np.array([3, 1]), np.array([6, 2])) == pytest.approx(0.0, abs=1e-15)


def test_gc_and_identity_by_hand():
    assert gc_fractions(["GGCA", "NNGC", "ATAT"]).tolist() == [0.75, 1.0, 0.0]
    samples = np.stack([base_codes("ACGT"), base_codes("ACGN")])
    train = np.stack([base_codes("ACGA"), base_codes("TTTT")])
    assert nearest_identity(samples, train).tolist() == [0.75, 0.75]  # N never matches
    # 70 positions span two 64-bit words
    rng = np.random.default_rng(0)
    train = rng.integers(0, 4, size=(50, 70)).astype(np.uint8)
    query = train[[7]].copy()
    query[0, [0, 63, 64, 69]] = (query[0, [0, 63, 64, 69]] + 1) % 4
    expected = max((query[0] == row).mean() for row in train)
    assert nearest_identity(query, train)[0] == pytest.approx(expected) == pytest.approx(66 / 70)


# ---- the evaluator on real E. coli --------------------------------------------------------------------------
@requires_genomes
def test_held_out_dna_scores_far_better_than_shuffled(evaluator, ecoli):
    real = evaluator.reference_row(n=1000)
    rows = dict(evaluator.baseline_rows(n=1000))
    shuffled, uniform = rows["shuffled held-out windows"], rows["uniform random bases"]
    assert real.n_samples == len(ecoli.valid) == 906 == shuffled.n_samples
    # DATA.md: k = 6 held-out ~0.002-0.005 (depends on the sample size), shuffled 0.041, uniform 0.042
    assert real.js_6 < 0.008 and shuffled.js_6 > 0.035 and uniform.js_6 > 0.035
    assert all(getattr(real, f"js_{k}") * 5 < getattr(shuffled, f"js_{k}") for k in (3, 4, 5, 6))
    # shuffling keeps each window's GC, so the GC columns cannot tell it apart: a k-mer column must
    assert shuffled.gc == pytest.approx(real.gc) and shuffled.gc_w1 == pytest.approx(real.gc_w1)
    assert real.valid == 1.0 and 0.3 < real.nearest_identity < 0.45 and real.near_copies < 0.05
    table = format_dna_table([("real", real), *rows.items()])
    assert "| real" in table and "js_6" in table and "nats" in table


@requires_genomes
def test_nearest_window_identity(evaluator, ecoli):
    copied = evaluator.evaluate(ecoli.train[:100])
    assert copied.nearest_identity == 1.0 and copied.near_copies == 1.0
    rng = np.random.default_rng(3)
    random_windows = ["".join(rng.choice(list("ACGT"), 256)) for _ in range(100)]
    uniform = evaluator.evaluate(random_windows)
    # the best of ~16k aligned comparisons: 0.25 expected per window, about +4 standard deviations for the best
    assert 0.3 < uniform.nearest_identity < 0.42 and uniform.near_copies == 0.0
    # a sample with N or of the wrong length is not valid
    broken = evaluator.evaluate(["N" + ecoli.train[0][1:], ecoli.train[1][:100], ecoli.train[2]])
    assert broken.valid == pytest.approx(1 / 3) and broken.nearest_identity == 1.0


@requires_genomes
def test_identity_approximation_finds_near_copies_exactly(ecoli):
    # 300 training windows searched exhaustively; the block index must still find any near-copy of the others
    small = DnaEvaluator(ecoli.train, ecoli.test, max_train=300, seed=0)
    full = DnaEvaluator(ecoli.train, ecoli.test)
    rng = np.random.default_rng(0)
    mutated = []
    for w in ecoli.train[1000:1050]:
        w = list(w)
        for i in rng.choice(256, size=10, replace=False):  # 10 mismatches < 16 blocks
            w[i] = "ACGT"[("ACGT".index(w[i]) + 1) % 4]
        mutated.append("".join(w))
    approx, exact = small.nearest_training_identity(mutated), full.nearest_training_identity(mutated)
    assert np.allclose(approx, 246 / 256) and np.allclose(exact, 246 / 256)
    held_out = ecoli.test[:50]  # below the near-copy range the subset gives a lower bound
    assert (small.nearest_training_identity(held_out) <= full.nearest_training_identity(held_out) + 1e-12).all()


@requires_genomes
def test_markov_baseline_matches_short_kmers(evaluator):
    samples = evaluator.markov_samples(300, order=3, seed=0)
    assert len(samples) == 300 and all(len(s) == 256 and not s.strip("ACGT") for s in samples)
    metrics = evaluator.evaluate(samples)
    assert metrics.js_3 < 0.003 and metrics.js_6 > metrics.js_3
