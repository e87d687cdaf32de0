r"""Evaluation of generated DNA windows.

Let ``S`` be the samples (strings), ``R`` the reference windows (the held-out **test** split) and ``T`` the
training windows. A sample is *valid* iff it has the training window length ``L`` and only ``A C G T``
(a decoded PAD/EOS/MASK shows as ``N``).

* ``js_k`` for k = 3..6 — k-mer spectrum Jensen–Shannon divergence, **natural log** (nats, range [0, ln 2]):
  ``P`` and ``Q`` are the frequencies of all overlapping k-mers (4^k bins) in ``S`` and in ``R``; k-mers holding
  a non-ACGT character or crossing from one window to the next are not counted. With ``M = (P + Q) / 2``,

      JS(P, Q) = ½ Σ_x P(x) ln(P(x) / M(x)) + ½ Σ_x Q(x) ln(Q(x) / M(x))       (terms with P(x) = 0 are 0)

* ``gc`` — mean GC fraction of the samples (count of G and C over count of A, C, G, T, per window, averaged);
  ``gc_abs_diff`` = |mean GC of ``S`` − mean GC of ``R``|; ``gc_w1`` = the Wasserstein-1 (earth mover's)
  distance between the per-window GC fractions of ``S`` and of ``R`` (``scipy.stats.wasserstein_distance``):
  it also sees a wrong *spread* of GC across windows, which the difference of means misses.
* ``nearest_identity`` — memorisation: for each valid sample, the fraction of identical positions (ungapped,
  aligned: position i against position i) to its closest training window, averaged over samples;
  ``near_copies`` = the fraction of valid samples whose closest training window has identity ≥ 0.95.
  *Approximation*: the closest window is searched among (a) at most ``max_train`` training windows (a random
  subset drawn with ``numpy.random.default_rng(seed)``; all of them when there are fewer — e.g. every window of
  one genome with the default 50,000) and (b) every training window that shares with the sample one exact
  aligned 16-base block (positions 16b .. 16b+15). By the pigeonhole principle a training window with fewer
  than ⌊L/16⌋ mismatches (identity > 1 − ⌊L/16⌋/L, ≈ 0.94 at L = 256) shares at least one block, so
  near-copies are always found exactly; below that the value is a lower bound when the training set is
  larger than ``max_train``. Identity is not computed against shifted windows: a model trained on
  windows at fixed offsets reproduces memorised windows at those offsets.

Reference row: ``n`` real held-out windows through the same evaluator — drawn from ``holdout_windows``
(the validation split, disjoint from the test split whose spectra are the reference) when given, otherwise
from the reference windows themselves (then ``js_k`` is optimistic: the windows are part of the reference).
Baselines: ``shuffled`` (each held-out window with its bases randomly permuted: same GC, k-mer structure
destroyed), ``uniform`` (i.i.d. uniform bases) and ``markov3`` (a third-order Markov chain fit to the
training windows, add-one smoothing: it matches short k-mer spectra by construction, so a model should be
judged on all of the columns, not ``js_3`` alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from scmdm.domains.dna.data import DnaSplit
from scmdm.evaluation import format_table

__all__ = ["DnaMetrics", "DnaEvaluator", "COLUMNS", "kmer_counts", "js_divergence", "gc_fractions",
           "nearest_identity", "format_dna_table"]

#: columns for :func:`scmdm.domains.molecule.evaluator.format_table`, in order
COLUMNS: tuple[str, ...] = ("n_samples", "valid", "js_3", "js_4", "js_5", "js_6", "gc", "gc_abs_diff", "gc_w1",
                            "nearest_identity", "near_copies")
_KS = (3, 4, 5, 6)
_BLOCK = 16
_LUT = np.full(256, 4, dtype=np.uint8)  # byte -> 0..3 for A C G T, 4 for anything else
for _i, _b in enumerate(b"ACGT"):
    _LUT[_b] = _i
    _LUT[_b + 32] = _i  # lower case


@dataclass
class DnaMetrics:
    """Metrics of one set of DNA samples; see the module docstring for the definitions."""

    n_samples: int
    valid: float
    js_3: float
    js_4: float
    js_5: float
    js_6: float
    gc: float
    gc_abs_diff: float
    gc_w1: float
    nearest_identity: float
    near_copies: float

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------

def codes(sequence: str) -> np.ndarray:
    """Bases as uint8 0..3 (A C G T), 4 for anything else."""
    return _LUT[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]


def _code_matrix(windows: Sequence[str], length: int) -> np.ndarray:
    """[N, length] codes of windows that all have ``length`` characters."""
    if not windows:
        return np.zeros((0, length), dtype=np.uint8)
    return codes("".join(windows)).reshape(len(windows), length)


def kmer_counts(sequences: Iterable[str], k: int) -> np.ndarray:
    """Counts of the 4^k k-mers (index = base-4 number, A=0 C=1 G=2 T=3, first base most significant) over
    every overlapping k-mer of every sequence; k-mers holding a non-ACGT character are skipped, and k-mers
    never span two sequences."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    flat = codes("!".join(sequences))  # '!' (code 4) separates sequences, so no k-mer crosses one
    n = len(flat) - k + 1
    if n <= 0:
        return np.zeros(4 ** k, dtype=np.int64)
    index = np.zeros(n, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    for j in range(k):
        segment = flat[j:j + n]
        index = index * 4 + np.minimum(segment, 3)
        ok &= segment < 4
    return np.bincount(index[ok], minlength=4 ** k)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (natural log) of two count or probability vectors; see the module docstring."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"spectra of different sizes: {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def gc_fractions(sequences: Iterable[str]) -> np.ndarray:
    """Per sequence: (G + C) / (A + C + G + T); sequences without any base are left out."""
    out = []
    for s in sequences:
        c = np.bincount(codes(s), minlength=5)
        acgt = c[:4].sum()
        if acgt:
            out.append((c[1] + c[2]) / acgt)
    return np.asarray(out, dtype=np.float64)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)  # numpy < 2.0
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1)


def _bitplanes(code_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Low bit, high bit and "not a base" bit of every position, packed into uint64 words: [N, ⌈L/64⌉] each."""
    def pack(bits: np.ndarray) -> np.ndarray:
        n, length = bits.shape
        padded = np.zeros((n, -(-length // 64) * 64), dtype=bool)
        padded[:, :length] = bits
        return np.packbits(padded, axis=1, bitorder="little").view(np.uint64)

    return pack((code_matrix & 1).astype(bool)), pack((code_matrix & 2).astype(bool)), pack(code_matrix > 3)


def nearest_identity(samples: np.ndarray, train: np.ndarray, *, chunk: int = 32) -> np.ndarray:
    """For each row of ``samples`` ([n, L] codes) the largest fraction of identical positions with a row of
    ``train`` ([m, L] codes 0..3), exactly (popcount of the packed mismatch bits); a non-base in a sample is a
    mismatch."""
    n, length = samples.shape
    if train.shape[1] != length:
        raise ValueError(f"samples have {length} positions but training windows {train.shape[1]}")
    best = np.zeros(n, dtype=np.float64)
    if n == 0 or len(train) == 0:
        return best
    t_lo, t_hi, _ = _bitplanes(train)
    s_lo, s_hi, s_bad = _bitplanes(samples)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        diff = s_lo[sl, None, :] ^ t_lo[None]
        np.bitwise_or(diff, s_hi[sl, None, :] ^ t_hi[None], out=diff)
        np.bitwise_or(diff, s_bad[sl, None, :], out=diff)
        mismatches = _popcount(diff).sum(axis=-1, dtype=np.int64).min(axis=1)
        best[sl] = 1.0 - mismatches / length
    return best


def _block_keys(code_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Key ``block_index · 4^16 + block_code`` of every aligned 16-base block without a non-base, and the row
    it comes from."""
    n, length = code_matrix.shape
    n_blocks = length // _BLOCK
    if n_blocks == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    blocks = code_matrix[:, :n_blocks * _BLOCK].reshape(n, n_blocks, _BLOCK).astype(np.int64)
    value = np.zeros((n, n_blocks), dtype=np.int64)
    for j in range(_BLOCK):
        value = value * 4 + np.minimum(blocks[:, :, j], 3)
    ok = (blocks < 4).all(axis=2)
    keys = np.arange(n_blocks, dtype=np.int64)[None, :] * 4 ** _BLOCK + value
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], keys.shape)
    return keys[ok], rows[ok]


# ----------------------------------------------------------------------------------------------------
# Evaluator
# ----------------------------------------------------------------------------------------------------

class DnaEvaluator:
    """Computes :class:`DnaMetrics` for generated DNA windows.

    Args:
        train_windows: the training windows (memorisation is measured against them; ``markov3`` is fit on them).
        reference_windows: held-out **test** windows: the reference k-mer spectra and GC distribution.
        holdout_windows: other real held-out windows (the validation split) for :meth:`reference_row`.
        max_train: nearest-window search covers at most this many training windows plus the block matches
            (see the module docstring).
        max_candidates: per sample block, at most this many block-sharing training windows are checked
            (repeats can share a block with very many windows).
        seed: seed of the training-window subset.
    """

    def __init__(self, train_windows: Sequence[str], reference_windows: Sequence[str], *,
                 holdout_windows: Sequence[str] | None = None, max_train: int = 50000, max_candidates: int = 64,
                 seed: int = 0) -> None:
        if not train_windows:
            raise ValueError("the DNA evaluator needs training windows")
        if not reference_windows:
            raise ValueError("the DNA evaluator needs reference (held-out) windows")
        self.length = len(train_windows[0])
        if bad := [i for i, w in enumerate(train_windows) if len(w) != self.length][:3]:
            raise ValueError(f"training windows differ in length: #{bad[0] + 1} has {len(train_windows[bad[0]])} "
                             f"bases, the first has {self.length}")
        self.train_windows = list(train_windows)
        self.reference_windows = list(reference_windows)
        self.holdout_windows = list(holdout_windows) if holdout_windows else None
        self.seed = seed
        self.max_candidates = max_candidates
        self.ref_spectra = {k: kmer_counts(self.reference_windows, k) for k in _KS}
        self.ref_gc = gc_fractions(self.reference_windows)
        train = _code_matrix(self.train_windows, self.length)
        if (train > 3).any():
            raise ValueError("training windows must hold only A, C, G, T")
        self._train = train
        if len(train) > max_train:
            index = np.sort(np.random.default_rng(seed).choice(len(train), size=max_train, replace=False))
            self._train_subset = train[index]
        else:
            self._train_subset = train
        keys, rows = _block_keys(train)
        order = np.argsort(keys, kind="stable")
        self._block_keys, self._block_rows = keys[order], rows[order]
        self._markov: np.ndarray | None = None

    @classmethod
    def from_split(cls, split: DnaSplit, **kwargs: object) -> DnaEvaluator:
        """Training windows, the test split as reference, the validation split for the reference row."""
        return cls(split.train, split.test, holdout_windows=split.valid or None, **kwargs)

    # ---- memorisation ---------------------------------------------------------------------------
    def nearest_training_identity(self, samples: Sequence[str]) -> np.ndarray:
        """Identity of each sample (of length L) to its closest training window (see the module docstring)."""
        query = _code_matrix(list(samples), self.length)
        best = nearest_identity(query, self._train_subset)
        if len(self._train_subset) < len(self._train):
            keys, rows = _block_keys(query)
            lo = np.searchsorted(self._block_keys, keys, side="left")
            hi = np.minimum(np.searchsorted(self._block_keys, keys, side="right"), lo + self.max_candidates)
            counts = hi - lo
            if counts.sum():
                sample_of_pair = np.repeat(rows, counts)
                starts = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
                train_of_pair = self._block_rows[starts]
                pairs = np.unique(np.stack([sample_of_pair, train_of_pair], axis=1), axis=0)
                for start in range(0, len(pairs), 100_000):
                    chunk = pairs[start:start + 100_000]
                    same = (query[chunk[:, 0]] == self._train[chunk[:, 1]]).mean(axis=1)
                    np.maximum.at(best, chunk[:, 0], same)
        return best

    # ---- metrics --------------------------------------------------------------------------------
    def evaluate(self, samples: Sequence[str]) -> DnaMetrics:
        """Metrics of ``samples`` (strings; invalid ones count towards ``n_samples``)."""
        samples = list(samples)
        n = len(samples)
        nan = math.nan
        valid = [s for s in samples if len(s) == self.length and not s.strip("ACGT")]
        spectra = {k: js_divergence(kmer_counts(samples, k), self.ref_spectra[k]) for k in _KS}
        gc = gc_fractions(samples)
        if len(gc):
            from scipy.stats import wasserstein_distance

            gc_mean = float(gc.mean())
            gc_abs_diff = abs(gc_mean - float(self.ref_gc.mean()))
            gc_w1 = float(wasserstein_distance(gc, self.ref_gc))
        else:
            gc_mean = gc_abs_diff = gc_w1 = nan
        identity = self.nearest_training_identity(valid) if valid else np.zeros(0)
        return DnaMetrics(
            n_samples=n,
            valid=len(valid) / n if n else nan,
            js_3=spectra[3], js_4=spectra[4], js_5=spectra[5], js_6=spectra[6],
            gc=gc_mean, gc_abs_diff=gc_abs_diff, gc_w1=gc_w1,
            nearest_identity=float(identity.mean()) if len(identity) else nan,
            near_copies=float((identity >= 0.95).mean()) if len(identity) else nan,
        )

    def _real(self, n: int, seed: int) -> list[str]:
        pool = self.holdout_windows or self.reference_windows
        if len(pool) <= n:
            return list(pool)
        index = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
        return [pool[i] for i in index]

    def reference_row(self, n: int = 1000, seed: int = 1) -> DnaMetrics:
        """The metrics of ``n`` real held-out windows (all of them if there are fewer): what a model that
        generates fresh real sequence would score. See the module docstring for which windows."""
        return self.evaluate(self._real(n, seed))

    def baseline_rows(self, n: int = 1000, seed: int = 1) -> list[tuple[str, DnaMetrics]]:
        """``shuffled``, ``uniform`` and ``markov3`` samples (see the module docstring), as many as
        :meth:`reference_row` has (``n``, or fewer when there are fewer held-out windows)."""
        rng = np.random.default_rng(seed)
        real = self._real(n, seed)
        n = len(real)  # as many as the reference row has, so that the rows are comparable
        shuffled = ["".join(rng.permutation(list(w))) for w in real]
        uniform = _from_codes(rng.integers(0, 4, size=(n, self.length)))
        return [("shuffled held-out windows", self.evaluate(shuffled)),
                ("uniform random bases", self.evaluate(uniform)),
                ("markov3 chain fit on train", self.evaluate(self.markov_samples(n, order=3, seed=seed)))]

    def markov_samples(self, n: int, *, order: int = 3, seed: int = 1) -> list[str]:
        """``n`` windows from an order-``order`` Markov chain fit to the training windows (add-one smoothing):
        the first ``order`` bases from the training ``order``-mer frequencies, then each base given the
        ``order`` before it."""
        rng = np.random.default_rng(seed)
        counts = kmer_counts(self.train_windows, order + 1).reshape(4 ** order, 4) + 1.0
        transition = np.cumsum(counts / counts.sum(axis=1, keepdims=True), axis=1)
        start = kmer_counts(self.train_windows, order).astype(np.float64)
        context = rng.choice(4 ** order, size=n, p=start / start.sum())
        out = np.zeros((n, self.length), dtype=np.int64)
        for j in range(min(order, self.length)):
            out[:, j] = context // 4 ** (order - 1 - j) % 4
        for j in range(order, self.length):
            u = rng.random(n)
            base = np.minimum((u[:, None] > transition[context]).sum(axis=1), 3)
            out[:, j] = base
            context = (context * 4 + base) % 4 ** order
        return _from_codes(out)


def _from_codes(code_matrix: np.ndarray) -> list[str]:
    text = np.frombuffer(b"ACGT", dtype=np.uint8)[code_matrix].tobytes().decode("ascii")
    width = code_matrix.shape[1]
    return [text[i * width:(i + 1) * width] for i in range(code_matrix.shape[0])]


def format_dna_table(rows: Sequence[tuple[str, DnaMetrics | dict]], columns: Sequence[str] = COLUMNS) -> str:
    """Markdown table of ``[(name, metrics), ...]`` with 3 significant digits (JS divergences of good models
    are ~1e-3, which the fixed 3 decimals of ``format_table`` would round to zero), in ``columns`` (e.g. with
    the sampler's ``nfe`` and ``seconds`` added)."""
    def cell(value: object) -> object:
        if isinstance(value, float) and not math.isnan(value):
            return f"{value:.3g}"
        return value

    shown = [(name, {k: cell(v) for k, v in (m.as_dict() if isinstance(m, DnaMetrics) else m).items()})
             for name, m in rows]
    return (format_table(shown, columns=columns)
            + "\n\njs_k: k-mer spectrum Jensen-Shannon divergence to the held-out test windows (nats); "
              "gc_abs_diff / gc_w1: |mean GC difference| / Wasserstein-1 distance of per-window GC; "
              "nearest_identity: identity to the closest training window (near_copies: >= 0.95).")
