"""Shared by the benchmarks/perf scripts: arguments every script takes, synchronised timing, interleaved repeats,
random-init models of a given shape, the machine description, and where results go (a section of
docs/PERFORMANCE.md and benchmarks/results/perf_<name>.json; with ``--no-docs`` only <out>/perf_<name>.json and
the markdown on stdout, for trial runs)."""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.common import ROOT, mean_std, repo_relative, write_results_section  # noqa: F401  (re-exported)
from scmdm.model import BackboneConfig, Transformer
from scmdm.profiling import synchronize

PERFORMANCE_MD = ROOT / "docs" / "PERFORMANCE.md"
RESULTS_DIR = ROOT / "benchmarks" / "results"
#: The QM9 base model's shape (runs/qm9_base: src/scmdm/configs/qm9_base.yaml, 33-token SMILES vocabulary incl. MASK).
QM9_SHAPE = {"vocab_size": 33, "max_length": 24, "depth": 6, "width": 256, "heads": 8}


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every perf script has."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (every measurement has both paths)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--no-docs", action="store_true",
                   help="a trial: write only OUT/perf_<name>.json and print the markdown (docs/ untouched)")
    p.add_argument("--out", default=str(ROOT / "runs" / "perf"), help="where --no-docs writes")
    return p


def setup(args: argparse.Namespace) -> torch.device:
    """Apply --threads, check --device, and return it."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here; use --device cpu")
    return device


def machine(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):  # /proc/cpuinfo names the CPU on Linux
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    info = {"device": str(device), "cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_line(info: dict[str, Any]) -> str:
    where = info.get("gpu") or f"{info['cpu']}, {info['torch_threads']} torch threads"
    return f"Machine: {where}; torch {info['torch']}, device `{info['device']}`."


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of one call, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def interleaved(fns: dict[str, Callable[[], Any]], *, repeats: int, device: torch.device,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of each function, interleaved (A B, B A, A B, …: the order rotates each
    round) so that slow drift of the machine hits every arm alike; ``warmup`` untimed calls each first."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(timed(fns[name], device)[0])
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def speed_model(device: torch.device, *, seed: int = 0, **shape: Any) -> Transformer:
    """A random-init model of the given shape (speed only: quality does not matter), in eval mode."""
    torch.manual_seed(seed)
    model = Transformer(BackboneConfig(**{**QM9_SHAPE, **shape})).to(device).eval()
    if model.speculative:  # a verifier that disagrees with the draft a little, so that some drafts are rejected
        with torch.no_grad():
            model.causal.out_proj.weight.normal_(0.0, 0.02)
    return model


def command() -> str:
    """This run's command line as PERFORMANCE.md quotes it: ``python -m benchmarks.perf.NAME ARGS``."""
    return common.command(sys.argv[0])


def finish(args: argparse.Namespace, name: str, markdown: str, payload: dict[str, Any]) -> None:
    """Write the results: the ``perf-<name>`` section of docs/PERFORMANCE.md and benchmarks/results/perf_<name>.json
    (or, with --no-docs, OUT/perf_<name>.json only), and print the markdown. Results on an accelerator get their
    own section and file (``perf-<name>-cuda``, a heading that says so), so CPU and GPU numbers stand side by side."""
    kind = torch.device(args.device).type
    if kind != "cpu":
        name = f"{name}-{kind}"
        title, rest = markdown.split("\n", 1)
        markdown = f"{title} ({kind.upper()})\n{rest}"
    if args.no_docs:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"perf_{name}.json").write_text(json.dumps(payload, indent=1))
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"perf_{name}.json").write_text(json.dumps(payload, indent=1))
        write_results_section(f"perf-{name}", markdown, page=PERFORMANCE_MD)
    print(markdown)


def figure_path(args: argparse.Namespace, filename: str) -> tuple[Path, str]:
    """Where a figure goes (docs/ or, with --no-docs, OUT/) and how PERFORMANCE.md links it."""
    if args.no_docs:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        return Path(args.out) / filename, filename
    return ROOT / "docs" / filename, filename
