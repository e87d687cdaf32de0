r"""Evaluation of generated molecules (SMILES strings).

Let ``S = (s_1, ..., s_N)`` be the ``N`` generated samples, ``T`` the set of canonical training SMILES
and ``R`` the reference molecules, which are the **held-out test split** (never the training split).
A sample is *valid* iff it is a non-empty string of at most ``MAX_SMILES_CHARS`` (1,000) characters (longer ones
are never given to RDKit, which crashes on ~20,000), ``Chem.MolFromSmiles(s)`` is not ``None`` and the
molecule has at least one atom. ``V`` is the list (with repetitions) of valid samples, each replaced
by its RDKit canonical SMILES ``can(s) = Chem.MolToSmiles(Chem.MolFromSmiles(s))``, and ``U = set(V)``.

* validity            = |V| / N
* uniqueness          = |U| / |V|                      (MOSES convention; ``nan`` if ``|V| = 0``)
* novelty             = |U \ T| / |U|                  (``nan`` if ``|V| = 0``)
* valid_unique_novel  = |U \ T| / N                    (fraction of *all* samples that are valid,
  unique -- each distinct molecule counted once -- and novel)
* fcd                 = ||mu_V - mu_R||^2 + Tr(C_V + C_R - 2 (C_V C_R)^{1/2})
  the Frechet ChemNet Distance: ``mu``/``C`` are the mean/covariance of the 512-d penultimate ChemNet
  activations (``fcd_torch`` weights) of the valid samples ``V`` (duplicates kept) and of the
  reference (test split) molecules ``R`` (at most ``max_reference`` of them) — or precomputed statistics of a
  reference set, such as MOSES's test statistics (``scmdm.domains.molecule.reference``); ``nan`` if ``|V| < 2``.
* qed                 = mean_{m in V} QED(m)           (``rdkit.Chem.QED.qed``; ``nan`` if ``|V| = 0``)
* sa                  = mean_{m in V} SA(m)            (Ertl & Schuffenhauer synthetic accessibility,
  ``RDContribDir/SA_Score/sascorer.py``; 1 = easy ... 10 = hard; ``nan`` if ``|V| = 0``)

Implementation notes

* FCD reference statistics are computed once, in :class:`MoleculeEvaluator`'s constructor.
* ``fcd_torch`` is used only for the ChemNet weights, its SMILES one-hot encoding and its network
  definition. Its ``FCD.get_predictions`` calls ``np.row_stack`` (deprecated in NumPy 2, removed later)
  and its Frechet distance calls ``scipy.linalg.sqrtm(..., disp=False)`` (deprecated in SciPy 1.16), so
  the activations and the distance are computed here. The trace term uses the symmetric form
  ``Tr((C_V C_R)^{1/2}) = sum_i sqrt(lambda_i(C_V^{1/2} C_R C_V^{1/2}))`` (eigenvalues of a symmetric
  PSD matrix, clipped at 0), which equals the ``sqrtm`` form mathematically but is real-valued and stable
  when the covariances are rank-deficient (fewer than 513 molecules).
* Determinism: the ChemNet inputs are the canonical SMILES in sorted order with a fixed batch size,
  activations are accumulated in float64, the network runs in eval mode under ``torch.inference_mode``
  with cuDNN set deterministic, and no worker processes are used. So FCD does not depend on the order
  of the samples. (Results can still differ in the last bits between devices or thread counts.)
* RDKit, torch and ``fcd_torch`` are imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import numpy as np

from scmdm.domains.molecule.data import MAX_SMILES_CHARS
from scmdm.evaluation import frechet_distance

__all__ = ["MoleculeMetrics", "MoleculeEvaluator", "DEFAULT_COLUMNS"]

#: The metric columns of a molecule table (in this order).
DEFAULT_COLUMNS: tuple[str, ...] = (
    "validity", "uniqueness", "novelty", "valid_unique_novel", "fcd", "qed", "sa",
)

_FCD_BATCH_SIZE = 512  # fixed, so activations do not depend on how a caller batches anything
_CHEMNET_PAD_LEN = 350  # fcd_torch.utils.SmilesDataset.__PAD_LEN


@dataclass
class MoleculeMetrics:
    """Metrics of one set of samples; see the module docstring for the definitions."""

    n_samples: int
    validity: float
    uniqueness: float
    novelty: float
    valid_unique_novel: float
    fcd: float
    qed: float
    sa: float

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------
# Lazy heavy imports
# ----------------------------------------------------------------------------------------------------

@functools.cache
def _chem() -> ModuleType:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return Chem


@functools.cache
def _sascorer() -> ModuleType:
    """``sascorer`` from RDKit's Contrib directory, loaded once."""
    from rdkit.Chem import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("scmdm_rdkit_contrib_sascorer", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load SA_Score from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _chemnet(device: str) -> Any:
    """The ``fcd_torch.FCD`` object (ChemNet weights shipped in the wheel), loaded once per device."""
    from fcd_torch import FCD

    fcd = FCD(device=device, n_jobs=1)  # n_jobs=1 -> no DataLoader worker processes
    fcd.model.to(device)
    fcd.model.eval()
    return fcd


def _mol(smiles: Any) -> Any:
    """RDKit molecule, or ``None`` if ``smiles`` is not a valid (non-empty, >= 1 atom) SMILES."""
    if not isinstance(smiles, str) or not smiles or len(smiles) > MAX_SMILES_CHARS:
        return None
    mol = _chem().MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() < 1:
        return None
    return mol


# ----------------------------------------------------------------------------------------------------
# Frechet ChemNet Distance
# ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    import torch

    old = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


def _chemnet_activations(canonical_smiles: Sequence[str], device: str) -> np.ndarray:
    """(n, 512) float64 ChemNet activations, inputs encoded exactly as ``fcd_torch.SmilesDataset`` does."""
    import torch
    from fcd_torch.utils import get_one_hot

    model = _chemnet(device).model
    out = []
    with _deterministic_cudnn(), torch.inference_mode():
        for start in range(0, len(canonical_smiles), _FCD_BATCH_SIZE):
            chunk = canonical_smiles[start:start + _FCD_BATCH_SIZE]
            onehot = np.stack([get_one_hot(s, _CHEMNET_PAD_LEN) for s in chunk])
            x = torch.from_numpy(onehot / onehot.shape[2]).float().transpose(1, 2).to(device)
            out.append(model(x).to("cpu").double().numpy())
    if not out:
        return np.zeros((0, 512))
    return np.vstack(out)


def _fcd_stats(canonical_smiles: Sequence[str], device: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the ChemNet activations; the input is sorted for order invariance."""
    acts = _chemnet_activations(sorted(canonical_smiles), device)
    return acts.mean(axis=0), np.cov(acts, rowvar=False)


# ----------------------------------------------------------------------------------------------------
# Evaluator
# ----------------------------------------------------------------------------------------------------

class MoleculeEvaluator:
    """Computes :class:`MoleculeMetrics` for generated SMILES.

    Args:
        train_smiles: canonical SMILES of the training split (novelty is measured against them).
        reference_smiles: canonical SMILES of the held-out **test** split (or of a reference file): the FCD
            reference. Or, instead, ``reference_stats``: precomputed ChemNet statistics (an object with ``mu`` and
            ``sigma``, e.g. ``scmdm.domains.molecule.reference.FcdStatistics``: MOSES's test statistics).
        holdout_smiles: other real held-out molecules (the validation split) that :meth:`reference_row` draws from;
            those that are also reference molecules are left out, so the row never scores molecules against
            statistics that include them.
        reference_name: what the reference is, for the table's note.
        max_reference: FCD reference statistics use at most this many reference molecules; if there
            are more, a subset drawn with ``numpy.random.default_rng(seed)`` (without replacement).
        device: torch device for ChemNet.
        seed: seed of the reference subset.
    """

    def __init__(self, train_smiles: Iterable[str], reference_smiles: Sequence[str] | None = None, *,
                 reference_stats: Any = None, holdout_smiles: Sequence[str] | None = None,
                 reference_name: str | None = None, max_reference: int = 10000, device: str = "cpu",
                 seed: int = 0) -> None:
        if (reference_smiles is None) == (reference_stats is None):
            raise ValueError("give the reference molecules or precomputed reference statistics (one of them)")
        self.train_smiles: frozenset[str] = frozenset(train_smiles)
        self.reference_smiles: list[str] = list(reference_smiles or [])
        self.holdout_smiles: list[str] = list(holdout_smiles or [])
        self.device = device
        self.seed = seed
        self.max_reference = max_reference
        if max_reference < 2:
            raise ValueError(f"max_reference must be >= 2, got {max_reference}")
        #: number of (valid) reference molecules behind the FCD statistics (None: precomputed statistics)
        self.n_reference: int | None = None
        if reference_stats is not None:
            self.ref_mu = np.asarray(reference_stats.mu, dtype=np.float64)
            self.ref_sigma = np.asarray(reference_stats.sigma, dtype=np.float64)
        else:
            canonical = self._canonical_subset(self.reference_smiles)
            self.n_reference = len(canonical)
            self.ref_mu, self.ref_sigma = _cached_reference_stats(canonical, device)
        self.reference_name = reference_name or (f"{self.n_reference} reference molecules" if reference_stats is None
                                                 else "precomputed ChemNet statistics")

    def _canonical_subset(self, smiles: Sequence[str]) -> list[str]:
        """Canonical SMILES of at most ``max_reference`` of ``smiles`` (a seeded subset), the valid ones."""
        if len(smiles) > self.max_reference:
            rng = np.random.default_rng(self.seed)
            idx = np.sort(rng.choice(len(smiles), size=self.max_reference, replace=False))
            smiles = [smiles[i] for i in idx]
        canonical = []
        for s in smiles:
            mol = _mol(s)
            if mol is not None:
                canonical.append(_chem().MolToSmiles(mol))
        if len(canonical) < 2:
            raise ValueError(f"need >= 2 valid reference molecules for FCD, got {len(canonical)}")
        return canonical

    def evaluate(self, samples: Sequence[str]) -> MoleculeMetrics:
        """Metrics of ``samples`` (SMILES strings; invalid ones count towards ``n_samples``)."""
        return self._evaluate(samples, self.ref_mu, self.ref_sigma)

    def _evaluate(self, samples: Sequence[str], ref_mu: np.ndarray, ref_sigma: np.ndarray) -> MoleculeMetrics:
        n = len(samples)
        mols = [m for m in (_mol(s) for s in samples) if m is not None]
        chem = _chem()
        valid = [chem.MolToSmiles(m) for m in mols]
        unique = set(valid)
        novel = unique - self.train_smiles
        nan = math.nan
        fcd = nan
        if len(valid) >= 2:
            mu, sigma = _fcd_stats(valid, self.device)
            fcd = frechet_distance(mu, sigma, ref_mu, ref_sigma)
        return MoleculeMetrics(
            n_samples=n,
            validity=len(valid) / n if n else nan,
            uniqueness=len(unique) / len(valid) if valid else nan,
            novelty=len(novel) / len(unique) if unique else nan,
            valid_unique_novel=len(novel) / n if n else nan,
            fcd=fcd,
            qed=_mean_score(mols, _qed),
            sa=_mean_score(mols, _sa),
        )

    def reference_row(self, n: int = 1000, seed: int = 1) -> MoleculeMetrics:
        """The same metrics for ``n`` real held-out molecules: the row printed next to model rows, what a perfect
        model would score with ``n`` samples (FCD's finite-sample floor). Never molecules scored against statistics
        that include them: drawn (without replacement, ``numpy.random.default_rng(seed)``; all of them if there are
        at most ``n``) from ``holdout_smiles`` less the reference molecules; without held-out molecules, from the
        reference molecules — at most half of them — and scored against the statistics of the rest.
        ``n_samples`` is the true size of the row."""
        rng = np.random.default_rng(seed)
        known = set(self.reference_smiles)
        pool = [s for s in self.holdout_smiles if s not in known]
        if pool:
            if len(pool) > n:
                pool = [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))]
            return self.evaluate(pool)
        refs = self.reference_smiles
        if len(refs) < 4:
            raise ValueError("the reference row needs real held-out molecules: give holdout_smiles (the validation "
                             "split) or at least 4 reference molecules")
        chosen = set(rng.choice(len(refs), size=min(n, len(refs) // 2), replace=False).tolist())
        row = [refs[i] for i in sorted(chosen)]
        rest = self._canonical_subset([s for i, s in enumerate(refs) if i not in chosen])
        return self._evaluate(row, *_cached_reference_stats(rest, self.device))

    def reference_note(self) -> str:
        """Which reference the FCD and the reference row are against (printed under the table)."""
        return (f"FCD against {self.reference_name}; the real held-out row is scored against the same reference "
                "and never includes its molecules; novelty is against the run's training molecules.")


def _cached_reference_stats(canonical: list[str], device: str) -> tuple[np.ndarray, np.ndarray]:
    """ChemNet (μ, Σ) of the reference molecules, cached on disk (``scmdm.cache.cache_dir``) under
    the SHA-256 of the canonical list: the statistics are a pure function of it, and ChemNet on ~10k
    molecules costs tens of seconds on a CPU. Stored as .npz, read with ``allow_pickle=False``."""
    import hashlib
    import os

    from scmdm.cache import cache_dir

    digest = hashlib.sha256("\n".join(canonical).encode()).hexdigest()[:32]
    path = cache_dir() / f"fcd_reference_{digest}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:  # noqa: TID251 -- allow_pickle=False: plain arrays only
            return stored["mu"], stored["sigma"]
    mu, sigma = _fcd_stats(canonical, device)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, mu=mu, sigma=sigma)
    os.replace(tmp, path)
    return mu, sigma


def _qed(mol: Any) -> float:
    from rdkit.Chem import QED

    return float(QED.qed(mol))


def _sa(mol: Any) -> float:
    return float(_sascorer().calculateScore(mol))


def _mean_score(mols: Sequence[Any], fn: Any) -> float:
    """Mean of ``fn`` over ``mols``; molecules on which RDKit raises are skipped (nan if none left)."""
    values = []
    for m in mols:
        try:
            values.append(fn(m))
        except Exception:  # rare RDKit failures on odd but parseable molecules
            continue
    return float(np.mean(values)) if values else math.nan
