"""Precomputed FCD reference statistics: the mean μ (512,) and covariance Σ (512, 512) of ChemNet's penultimate
activations over a set of real molecules, read from a file instead of computed from molecules.

``scmdm eval RUN --reference FILE`` takes such a file when its suffix is ``.npz`` or ``.safetensors``:

* ``.npz`` or ``.safetensors`` of plain arrays named ``mu`` and ``sigma`` (what ``numpy.savez`` or
  ``safetensors.numpy.save_file`` write);
* MOSES's ``test_stats.npz`` (and ``test_scaffolds_stats.npz``), shipped in the ``molsets`` wheel: one member,
  ``stats``, a pickled dict whose ``stats["FCD"]`` holds ``mu`` and ``sigma``, computed with the same fcd-torch
  ChemNet that scmdm uses. The pickle is read by :mod:`scmdm.plaindata`, which builds only plain values and numpy
  arrays and refuses anything else, without unpickling.

The arrays must have those shapes, be finite, and Σ must be symmetric (to 1e-6 of its scale); anything else is a
``ValueError`` naming the file. Any other suffix is a file of SMILES (``scmdm.domains.molecule.data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scmdm.plaindata import read_npz

__all__ = ["STATS_SUFFIXES", "CHEMNET_DIM", "FcdStatistics", "read_fcd_statistics", "is_statistics_file"]

STATS_SUFFIXES = (".npz", ".safetensors")
CHEMNET_DIM = 512


@dataclass
class FcdStatistics:
    mu: np.ndarray  # (512,) float64
    sigma: np.ndarray  # (512, 512) float64
    description: str  # where they came from, for the table


def is_statistics_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in STATS_SUFFIXES


def _arrays(path: Path) -> tuple[dict, str]:
    if path.suffix.lower() == ".safetensors":
        import safetensors.numpy

        try:
            return safetensors.numpy.load(path.read_bytes()), "ChemNet statistics"
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"--reference {path} is not a readable safetensors file: {err}") from None
    members = read_npz(path)
    if "mu" in members and "sigma" in members:
        return members, "ChemNet statistics"
    stats = members.get("stats")
    if isinstance(stats, np.ndarray) and stats.dtype == object and stats.shape == ():
        stats = stats.item()
    fcd = stats.get("FCD") if isinstance(stats, dict) else None
    if isinstance(fcd, dict) and "mu" in fcd and "sigma" in fcd:
        return fcd, "MOSES-format ChemNet statistics (stats['FCD'])"
    raise ValueError(f"--reference {path} holds neither arrays mu and sigma nor MOSES's stats['FCD'] (members: "
                     f"{', '.join(sorted(members)) or 'none'})")


def read_fcd_statistics(path: str | Path) -> FcdStatistics:
    """μ and Σ of a statistics file (module docstring), checked; ``ValueError`` naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--reference {path} does not exist")
    arrays, kind = _arrays(path)
    mu, sigma = (np.asarray(arrays[k], dtype=np.float64) for k in ("mu", "sigma"))
    if mu.shape != (CHEMNET_DIM,) or sigma.shape != (CHEMNET_DIM, CHEMNET_DIM):
        raise ValueError(f"--reference {path}: mu must be ({CHEMNET_DIM},) and sigma ({CHEMNET_DIM}, {CHEMNET_DIM}) "
                         f"(ChemNet's penultimate layer), got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"--reference {path}: mu or sigma holds NaN or inf")
    if np.abs(sigma - sigma.T).max() > 1e-6 * max(np.abs(sigma).max(), 1.0):
        raise ValueError(f"--reference {path}: sigma is not symmetric, so it is no covariance matrix")
    return FcdStatistics(mu=mu, sigma=sigma, description=f"{kind} in {path}")
