"""Shared by the benchmark scripts: where results go, how a section of docs/RESULTS.md is replaced, the row
cache (one JSON object per line, appended as each row is measured) and mean ± std over seeds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "docs" / "RESULTS.md"


def write_results_section(name: str, markdown: str, path: Path = RESULTS_MD) -> None:
    """Put ``markdown`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in docs/RESULTS.md,
    replacing what was there (other sections are left alone); appended if the markers are absent."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Results\n\nEvery number here says the command that produced it.\n"
    block = f"{begin}\n{markdown}\n{end}"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def read_rows(cache_file: Path) -> list[dict]:
    """The rows cached so far in ``cache_file`` (JSON lines); none if it does not exist yet."""
    if not cache_file.exists():
        return []
    return [json.loads(line) for line in cache_file.read_text().splitlines()]


def append_row(cache_file: Path, row: dict) -> None:
    """Append one measured row to the cache, so that an interrupted run resumes after it."""
    with cache_file.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value), NaNs dropped (e.g. FCD of an empty set)."""
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: list[float], digits: int = 3) -> str:
    """'mean ± std' over seeds, or the one value."""
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"
