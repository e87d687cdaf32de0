"""Evaluation of samples. Importing this package is cheap: RDKit, torch and ``fcd_torch`` load lazily."""

from scmdm.evaluation.molecules import (
    DEFAULT_COLUMNS,
    MoleculeEvaluator,
    MoleculeMetrics,
    format_table,
    frechet_distance,
)

__all__ = ["DEFAULT_COLUMNS", "MoleculeEvaluator", "MoleculeMetrics", "format_table", "frechet_distance"]
