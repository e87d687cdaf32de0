"""Shared by the benchmark scripts: where results go, and how a section of docs/RESULTS.md is replaced."""

from __future__ import annotations

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
