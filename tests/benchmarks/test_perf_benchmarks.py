"""The performance benchmarks run end to end with tiny settings (a trial: --no-docs) and write sane rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scmdm.sampling import SAMPLER_NAMES
from tests.conftest import ROOT


def run_script(name: str, out: Path, *args: str) -> dict:
    """``python -m benchmarks.perf.NAME --no-docs --out OUT ARGS`` from the repository root, as the docs run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", f"benchmarks.perf.{name}", "--no-docs", "--out", str(out), *args],
                   check=True, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    return json.loads(next(out.glob("perf_*.json")).read_text())


@pytest.mark.slow
def test_samplers_benchmark_measures_every_sampler(tmp_path) -> None:
    result = run_script("samplers", tmp_path, "--T", "3", "--windows", "4", "--repeats", "1", "--batch", "4",
                        "--depth", "1", "--width", "32")
    rows = {row["sampler"]: row for row in result["rows"]}
    assert set(rows) == set(SAMPLER_NAMES)
    assert rows["ancestral"]["nfe"] == 3 and rows["speculative"]["nfe_causal"] > 0
    for row in rows.values():
        assert 0 < row["outside_timer"] < 1 and 0 < row["outside_profiler"] < 1 and row["seq_per_s"] > 0


@pytest.mark.slow
def test_training_benchmark_reports_a_fraction_of_the_measured_peak(tmp_path) -> None:
    result = run_script("matmul_training", tmp_path, "--widths", "32", "--depth", "1", "--batch", "4", "--steps", "1",
                        "--gemm-sizes", "64", "--gemm-seconds", "0.05")
    (row,) = result["rows"]
    peak = result["peaks"]["float32"]
    assert peak["peak"] >= max(peak["before"]["64"], peak["after"]["64"]) > 0
    assert row["fraction_of_peak"] == pytest.approx(row["flop_per_s"] / peak["peak"]) and row["tokens_per_s"] > 0
