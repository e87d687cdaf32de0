"""Shared by the benchmark scripts: where results go (one page per experiment in docs/results/, its figures beside
it), how a generated section of a page is replaced, the command line a section quotes, the row cache (one JSON
object per line, appended as each row is measured), mean ± std over seeds, and argument parsing that takes config
overrides anywhere on the command line. Run every script from the repository root as ``python -m benchmarks.NAME``."""

from __future__ import annotations

import json
import operator
import re
import shlex
import statistics
import sys
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scmdm.checkpoint import LoadedCheckpoint

ROOT = Path(__file__).resolve().parents[1]
#: The results pages (docs/results/<page>.md) and their figures; docs/results/README.md is the summary.
RESULTS = ROOT / "docs" / "results"
#: The title a page gets when a script writes the first section of a page that does not exist yet.
PAGE_TITLES = {
    "bases.md": "Base models: QM9, DNA, images and text",
    "selfcond_qm9.md": "Self-conditioned post-training on QM9",
    "selfcond_text.md": "Self-conditioned post-training on text",
    "selfcond_dna.md": "Self-conditioned post-training on DNA",
    "selfcond_image.md": "Self-conditioned post-training on images",
    "speculative_qm9.md": "Self-speculative sampling on QM9",
    "speculative_text.md": "Self-speculative sampling on text",
    "shipped_models.md": "The shipped models",
    "samplers.md": "Samplers: quality against NFE and wall clock",
    "infill.md": "Conditional generation: infilling and inpainting",
}


#: The base run folders the benchmarks default to, which a fresh clone lacks: the command that writes each, and the
#: shipped model in models/ that stands in for it (trained longer: a page that measured the run has other numbers).
BASE_RUNS = {
    "runs/qm9_base": ("python -m benchmarks.qm9_base", "models/qm9_base"),
    "runs/text_kjv": ("python -m benchmarks.text_base", "models/text_kjv"),
}


def missing_base(base: str | Path) -> str | None:
    """None when the base model folder ``base`` exists; otherwise the error to show before anything is loaded. For
    a folder that ends like one of BASE_RUNS (``…/runs/text_kjv``) it says the command that writes it and the shipped
    model that can stand in for it."""
    if Path(base).exists():
        return None
    known = next((hint for run, hint in BASE_RUNS.items() if Path(base).parts[-2:] == Path(run).parts), None)
    return f"no base model at {base}" + (
        f": it is written by `{known[0]}`; or pass --base {known[1]} (the shipped base, trained longer: other "
        "numbers than a page that measured the run)" if known else "")


def repo_relative(path: str | Path) -> str:
    """A run's path relative to the repository when it lies inside it (docs do not name one machine's paths)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def command(script: str | Path, argv: list[str] | None = None) -> str:
    """The command line a generated section quotes: ``python -m benchmarks.<module> ARGS`` for the script at
    ``script`` (a path inside benchmarks/; run from the repository root), ARGS = ``argv`` (default: this
    process's arguments)."""
    module = Path(script).resolve().relative_to(ROOT).with_suffix("")
    return shlex.join(["python", "-m", ".".join(module.parts), *(sys.argv[1:] if argv is None else argv)])


def write_results_section(name: str, markdown: str, page: Path) -> None:
    """Put ``markdown`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``page`` (a docs/results/
    page, or docs/PERFORMANCE.md), replacing what was there (the rest of the page is left alone); appended if the
    markers are absent. A page that does not exist yet is created with a title (PAGE_TITLES, else its name)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if page.exists():
        text = page.read_text()
    else:
        title = PAGE_TITLES.get(page.name, page.stem.replace("_", " ").capitalize())
        text = f"# {title}\n\nEvery number here says the command that produced it.\n"
    block = f"{begin}\n{markdown}\n{end}"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)


def read_rows(cache_file: Path) -> list[dict]:
    """The rows cached so far in ``cache_file`` (JSON lines); none if it does not exist yet."""
    if not cache_file.exists():
        return []
    return [json.loads(line) for line in cache_file.read_text().splitlines()]


def cached_rows(cache_file: Path, results: Path | None = None,
                key: Callable[[dict], Hashable] = operator.itemgetter("key")) -> dict[Hashable, dict]:
    """Rows measured before, by ``key`` (default: the row's "key" field): those of a committed results file
    (``results``, a JSON object with "rows" and optionally "references", a dict of rows, and "other_rows"), then the
    run's row cache ``cache_file`` (JSON lines, newer). A fresh clone thus resumes where the committed results stop,
    and only the rows they lack are measured."""
    saved = json.loads(results.read_text()) if results is not None and results.exists() else {}
    rows = [*saved.get("rows", []), *saved.get("references", {}).values(), *saved.get("other_rows", [])]
    return {key(row): row for row in rows + read_rows(cache_file)}


def weights_id(loaded: LoadedCheckpoint) -> str:
    """A model named by its weights rather than its path: ``sha256:`` and the first 16 hex digits of the SHA-256 of
    the safetensors file it was loaded from. Two paths to the same weights share cached rows; a model retrained at
    the same path does not inherit the old one's. (The repository-relative path when no weights file is known.)"""
    from scmdm.files import file_digest

    if loaded.weights_file is None:
        return repo_relative(loaded.path)
    return "sha256:" + file_digest(Path(loaded.weights_file))[1][:16]


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


def fmt(values: list[float], digits: int = 3, *, sign: bool = False, unit: str = "", count: bool = False) -> str:
    """'mean ± std' over seeds, or the one value; ``sign`` prints +/−, ``unit`` follows the mean (e.g. ×),
    ``count`` appends the number of values, '(n)'."""
    m, s = mean_std(values)
    m = round(m, digits) + 0.0  # a mean that rounds to zero prints as +0.000, not -0.000
    text = f"{m:{'+' if sign else ''}.{digits}f}{unit}" + (f" ± {s:.{digits}f}" if len(values) > 1 else "")
    return text + (f" ({len(values)})" if count else "")


OVERRIDE = re.compile(r"[A-Za-z_]\w*\.[A-Za-z_]\w*=")


def parse_args(parser, argv: list[str] | None = None):
    """``parser.parse_args`` that takes ``section.key=value`` overrides anywhere on the command line: pulled out
    first and appended to ``args.overrides``, so that ``--temperatures 1.0 0.9 train.lr=3e-4`` does not read the
    override as a temperature."""
    argv = sys.argv[1:] if argv is None else argv
    overrides = [item for item in argv if OVERRIDE.match(item)]
    args = parser.parse_args([item for item in argv if not OVERRIDE.match(item)])
    args.overrides = [*getattr(args, "overrides", []), *overrides]
    return args


# ---- the base-model benchmarks of every domain (text_base, dna_base, image_base; page docs/results/bases.md) ---
def base_parser(doc: str, default_config: str, default_samplers: tuple[str, ...] = ("ancestral",)):
    """The arguments every base-model benchmark takes."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=default_config, help="a config name in src/scmdm/configs/ or a YAML path")
    parser.add_argument("--out", help="run folder (default runs/<config>)")
    parser.add_argument("--skip-train", action="store_true", help="re-evaluate the run folder's newest checkpoint")
    parser.add_argument("--num-samples", type=int, help="samples per row (default: the config's sample.num_samples)")
    parser.add_argument("--steps", type=int, nargs="+", help="sampling steps T (default: the config's, and its half)")
    parser.add_argument("--samplers", nargs="+", default=list(default_samplers))
    parser.add_argument("--root", default=str(ROOT), help="where docs/results/ and benchmarks/results/ are written "
                                                           "(another folder for a trial run)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=3000")
    return parser


def benchmark_config(parser, args, domain: str):
    """(name, config, run folder, root) of a base-model benchmark; an error if the config is of another domain."""
    from scmdm.config import load_config
    from scmdm.workflows import resolve_config_path

    config_path = resolve_config_path(args.config)
    name = Path(config_path).stem
    config = load_config(config_path, args.overrides)
    if config.data.domain != domain:
        parser.error(f"{config_path} is a {config.data.domain} config; this benchmark is for {domain}")
    out = Path(args.out) if args.out else ROOT / "runs" / name
    return name, config, out, Path(args.root)


def train_and_load(config, out: Path, skip_train: bool):
    """Train (resuming if ``out`` holds a checkpoint) unless ``skip_train``; the newest checkpoint, EMA weights."""
    from scmdm.checkpoint import load_checkpoint
    from scmdm.training import Trainer

    if not skip_train:
        result = Trainer(config, out).fit()
        print(f"trained {result.step} steps in {result.seconds / 60:.1f} min, val NELBO {result.val_nelbo_bits:.4f}")
    return load_checkpoint(out)


def validation_bits(loaded, num_t: int = 16, limit: int = 0):
    """Validation NELBO of a loaded checkpoint over every validation canvas (the first ``limit`` when > 0; K =
    ``num_t`` midpoint times, seed 0), in bits per token, and the canvases it was measured on."""
    from scmdm.diffusion import validation_nelbo
    from scmdm.domains import prepare_data
    from scmdm.schedules import get_schedule

    data = prepare_data(loaded.config, tokenizer=loaded.tokenizer, quiet=True)
    valid = data.valid[:limit] if limit else data.valid
    bits = validation_nelbo(lambda x, t: loaded.model(x, t), valid, get_schedule(loaded.config.diffusion.schedule),
                            loaded.tokenizer.mask_id, num_t=num_t, seed=0)
    return bits, valid


def model_rows(loaded, evaluator, samplers, steps, n: int, batch_size: int, show=print):
    """Sample ``n`` items per (sampler, T) with seed 0 and float64 draws, evaluate them; ``show(name, metrics)``
    after each row. Returns the ``SampledEvaluation`` of every row."""
    from scmdm.config import SampleConfig
    from scmdm.workflows import sample_and_evaluate

    evaluations = []
    for sampler in samplers:
        for t in steps:
            sample = SampleConfig(sampler=sampler, steps=t, num_samples=n, batch_size=batch_size, seed=0)
            evaluation = sample_and_evaluate(loaded, evaluator, sample, show_progress=True)
            show(evaluation.name, evaluation.metrics)
            evaluations.append(evaluation)
    return evaluations


def machine() -> dict:
    import platform

    import torch

    return {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}


def save_run_files(root: Path, name: str, payload: dict, run_dir: Path) -> str:
    """Write benchmarks/results/<name>.json and copy the run's loss curve to docs/results/<name>_loss_curve.png (its
    file name is returned, as the page beside it links it)."""
    import shutil

    (root / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "results").mkdir(parents=True, exist_ok=True)
    (root / "benchmarks" / "results" / f"{name}.json").write_text(json.dumps(payload, indent=1))
    curve = f"{name}_loss_curve.png"
    if (run_dir / "loss_curve.png").exists():
        shutil.copyfile(run_dir / "loss_curve.png", root / "docs" / "results" / curve)
    return curve


def row_line(domain, label: str, metrics: dict, evaluator=None) -> str:
    """One table row in ``domain``'s format (``scmdm.domains.Domain.table``), to print as rows are measured."""
    return domain.table([(label, metrics)], evaluator).splitlines()[2]
