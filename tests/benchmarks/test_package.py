"""benchmarks/ is a package of scripts run as ``python -m benchmarks.NAME``: none patches sys.path, each imports as a
module, benchmarks/README.md indexes every one; each writes its section into its own docs/results page, whose links
resolve and whose generated sections quote a command that runs."""

from __future__ import annotations

import importlib
import re
import unicodedata
from pathlib import Path

import pytest

from benchmarks import common
from tests.conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.rglob("*.py") if p.name != "__init__.py")
PAGES = sorted((ROOT / "docs" / "results").glob("*.md"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_no_script_patches_sys_path() -> None:
    patched = [str(p.relative_to(ROOT)) for p in SCRIPTS if "sys.path" in p.read_text()]
    assert not patched, f"import from the package instead (from benchmarks.common import ...): {patched}"
    assert "sys.path" not in (BENCHMARKS / "perf" / "run_all.sh").read_text()


@pytest.mark.parametrize("path", SCRIPTS, ids=module_name)
def test_every_script_imports_as_a_module(path: Path) -> None:
    module = importlib.import_module(module_name(path))
    if path.stem not in ("common", "harness"):
        assert callable(module.main) and "__main__" in path.read_text()


def test_the_readme_indexes_every_script() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    missing = [module_name(p) for p in SCRIPTS
               if p.stem not in ("common", "harness") and f"`{module_name(p)}`" not in readme]
    assert not missing, f"benchmarks/README.md has no row for {missing}"
    assert "`benchmarks/perf/run_all.sh`" in readme


def test_command_names_the_module_and_its_arguments() -> None:
    script = BENCHMARKS / "perf" / "samplers.py"
    assert common.command(script, ["--T", "4", "train.lr=3e-4", "a b"]) == (
        "python -m benchmarks.perf.samplers --T 4 train.lr=3e-4 'a b'")
    assert common.command(BENCHMARKS / "qm9_base.py", []) == "python -m benchmarks.qm9_base"


def test_write_results_section_creates_the_page_and_replaces_only_its_section(tmp_path) -> None:
    page = tmp_path / "results" / "selfcond_qm9.md"
    common.write_results_section("a", "## A\n\nfirst", page=page)
    text = page.read_text()
    assert text.startswith("# Self-conditioned post-training on QM9\n")  # a new page gets its title
    assert "<!-- a:begin -->\n## A\n\nfirst\n<!-- a:end -->" in text
    page.write_text(page.read_text() + "\nread by hand\n")
    common.write_results_section("b", "## B", page=page)
    common.write_results_section("a", "## A\n\nsecond", page=page)
    text = page.read_text()
    assert "second" in text and "first" not in text and "read by hand" in text
    assert text.index("<!-- a:begin -->") < text.index("read by hand") < text.index("<!-- b:begin -->")
    other = tmp_path / "results" / "new_page.md"
    common.write_results_section("c", "## C", page=other)
    assert other.read_text().startswith("# New page\n")


def test_every_page_has_a_title_for_a_missing_page() -> None:
    named = {p.name for p in PAGES} - {"README.md", "demo.md"}
    assert named <= set(common.PAGE_TITLES), named - set(common.PAGE_TITLES)


def sections(text: str) -> list[tuple[str, str]]:
    return re.findall(r"<!-- (\S+):begin -->\n(.*?)\n<!-- \1:end -->", text, flags=re.S)


def test_each_generated_section_lives_on_one_page_and_quotes_a_command_that_runs() -> None:
    seen: dict[str, str] = {}
    for page in [*PAGES, ROOT / "docs" / "PERFORMANCE.md"]:
        text = page.read_text()
        assert text.count(":begin -->") == text.count(":end -->"), page
        for name, body in sections(text):
            if name == "name":  # the README's description of the markers
                continue
            assert name not in seen, f"section {name} is on {seen.get(name)} and {page.name}"
            seen[name] = page.name
            commands = re.findall(r"^Command: `([^`]*)`", body, flags=re.M)
            assert commands, f"section {name} of {page.name} does not say the command that made it"
            for line in commands:
                assert line.startswith("python -m benchmarks."), f"{page.name}, {name}: {line}"
                assert (ROOT / (line.split()[2].replace(".", "/") + ".py")).exists(), line
    assert {"qm9_base", "selfcond_ablation", "selfcond_text", "speculative", "speculative_text"} <= set(seen)


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = unicodedata.normalize("NFC", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        base = slug(heading)
        name, n = base, 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


LINKED = [*PAGES, BENCHMARKS / "README.md", ROOT / "CHANGELOG.md"]


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path) -> None:
    """Every relative link and image of the results pages, benchmarks/README.md and CHANGELOG.md names a file that
    exists, and an anchor that its page has."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_nothing_points_to_the_old_results_file() -> None:
    """docs/RESULTS.md became docs/results/ (one page per experiment): no doc, script or help text names it."""
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *SCRIPTS, *(ROOT / "src").rglob("*.py")]
    stale = [str(f.relative_to(ROOT)) for f in files if "RESULTS.md" in f.read_text()]
    assert not stale, stale
    assert not (ROOT / "docs" / "RESULTS.md").exists()
