"""Tests of scmdm.evaluation: the Fréchet distance in closed form and the metrics table."""

from __future__ import annotations

import numpy as np
import pytest

from scmdm.domains.molecule.evaluator import DEFAULT_COLUMNS, MoleculeMetrics
from scmdm.evaluation import format_table, frechet_distance


def test_frechet_distance_closed_form() -> None:
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2 with s the standard deviations
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == (
        pytest.approx(4.0 + 1.0))
    cov = np.diag([1.0, 2.0, 0.0])  # rank-deficient is fine
    assert frechet_distance(np.zeros(3), cov, np.zeros(3), cov) == pytest.approx(0.0, abs=1e-9)


def test_format_table() -> None:
    rows = [
        ("reference (test)", MoleculeMetrics(100, 1.0, 1.0, 1.0, 1.0, 0.12345, 0.5, 3.0).as_dict()),
        ("mdm|sc", {**MoleculeMetrics(50, 0.5, 1.0, 0.9, 0.45, float("nan"), 0.4, float("nan")).as_dict(),
                    "nfe": 64, "seconds": 1.25}),
    ]
    table = format_table(rows, columns=[*DEFAULT_COLUMNS, "n_samples", "nfe", "seconds"])
    lines = table.splitlines()
    assert len(lines) == 4
    assert len({len(x) for x in lines}) == 1  # aligned
    assert "reference (test)" in table and "mdm\\|sc" in table
    assert "n/a" in lines[3] and "nan" not in table
    assert "0.12" in lines[2] and "0.123" not in lines[2]  # fcd: 2 decimals
    assert "0.450" in lines[3] and "1.250" in lines[3] and "64" in lines[3]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:8] == [
        "model", "validity", "uniqueness", "novelty", "valid_unique_novel", "fcd", "qed", "sa"]
    assert {"nfe", "seconds"} <= set(header)
    assert lines[2].count("|") == lines[0].count("|")  # missing nfe/seconds rendered as a cell
    only = format_table(rows, columns=["fcd"]).splitlines()[0]
    assert "validity" not in only and "fcd" in only
