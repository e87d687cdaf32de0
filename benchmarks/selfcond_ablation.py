"""Self-conditioned post-training ablation on QM9 (issue: SCMDM; docs/METHODS.md §2).

One base model (runs/qm9_base, from benchmarks/qm9_base.py) is post-trained for the same number of
steps in every arm:

    control          selfcond.injection=none: vanilla continuation, the compute-matched baseline
    controlx2        the control for twice the steps: the step-matched baseline of the x2 arms
    INJ@0.5          λ = 0.5 with injection INJ (mask_add | projection | gated)
    INJ@0.5x2        λ = 0.5 for twice the steps: as many self-conditioned updates as λ = 1
    INJ@1            λ = 1
    INJ@1+lagT32     λ = 1 with hint lag 1/32: pass 1 of training sees x_(t+1/32), the input a 32-step sampler's
                     previous step saw, instead of x_t (selfcond.hint_lag; the train–test hint mismatch remedy)
    INJ@1+drop0.3    λ = 1, each position's hint dropped to the null one with probability 0.3 in training
    INJ@1+noise1     λ = 1, Gaussian noise σ = 1 on the hint's log-probabilities in training (suffixes combine)
    base             the base model itself, not post-trained (a reference, not a control)

Each arm is post-trained once per seed (train.seed = 100 + seed: batch order, times, masks) and sampled
with sampling seed = seed, ancestral sampler, float64 draws, at every T × temperature. Rows are cached
in OUT/rows.jsonl, so an interrupted run continues where it stopped. Arms are interleaved within each
(T, temperature) so that the sampling-time ratio is measured side by side.

    python -m benchmarks.selfcond_ablation                       # everything (hours on 2 CPU cores)
    python -m benchmarks.selfcond_ablation --arms control mask_add@1 projection@1 --seeds 0 \\
        --T 32 64 --temperatures 0.9 1.0                         # a pilot
    python -m benchmarks.selfcond_ablation --arms control mask_add@1 --cached-only \\
        --rows-from benchmarks/results/selfcond_ablation.json   # the tables again, on a machine without the runs

Writes benchmarks/results/selfcond_ablation.json and, in docs/results/, selfcond_vs_T.png, the frontier figures
selfcond_frontier_INJECTION.png (one per injection, its rates beside the baselines; selfcond_frontier.png where
each injection ran at one rate) and selfcond_frontier_remedies.png (where arms with a suffix ran), and the
``selfcond_ablation`` section of selfcond_qm9.md. A variant that changes the control too (a learning rate, a
post-training length) is its own ablation: ``--tag lr3e-4 train.lr=3e-4`` keeps its runs in runs/selfcond_lr3e-4
and writes selfcond_ablation_lr3e-4.json, the plots with that suffix and its own section.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS,
    ROOT,
    append_row,
    command,
    fmt,
    mean_std,
    missing_base,
    parse_args,
    read_rows,
    repo_relative,
    write_results_section,
)
from scmdm.checkpoint import LoadedCheckpoint, find_checkpoint, load_checkpoint, read_state
from scmdm.config import SampleConfig
from scmdm.selfcond import INJECTIONS
from scmdm.training import Trainer
from scmdm.workflows import evaluator_for, post_train_config, sample_and_evaluate

DEFAULT_ARMS = [
    "base", "control", "controlx2", *[f"{inj}@{rate}" for inj in INJECTIONS for rate in ("0.5", "0.5x2", "1")]
]
BASELINES = ("base", "control", "controlx2")  # drawn dashed; no self-conditioned sampling time
METRICS = ("validity", "uniqueness", "novelty", "valid_unique_novel", "fcd")
BATCH_SIZE = 500  # molecules sampled a batch: a row's samples depend on it, so its diagnostics reuse it


@dataclass(frozen=True)
class Arm:
    """What an arm's name says about its post-training (λ = ``rate``; ``multiplier`` × the steps; the hint's
    training-time lag and corruption, ``scmdm.selfcond``)."""

    injection: str
    rate: float
    multiplier: int = 1
    hint_lag: float = 0.0
    hint_dropout: float = 0.0
    hint_noise: float = 0.0

    def without_hint_changes(self) -> Arm:
        """The twin arm with the paper's plain hint (no lag, no corruption)."""
        return replace(self, hint_lag=0.0, hint_dropout=0.0, hint_noise=0.0)

    def overrides(self) -> list[str]:
        return [f"selfcond.injection={self.injection}", f"selfcond.rate={self.rate}",
                f"selfcond.hint_lag={self.hint_lag}", f"selfcond.hint_dropout={self.hint_dropout}",
                f"selfcond.hint_noise={self.hint_noise}"]


def parse_arm(arm: str) -> Arm:
    """'projection@0.5x2' → Arm('projection', 0.5, multiplier=2); 'control' → Arm('none', 0); 'controlx2' →
    Arm('none', 0, multiplier=2). Suffixes, in any order: '+lagTN' hint lag 1/N, '+dropP' hint dropout P,
    '+noiseS' hint noise σ = S."""
    if arm in ("control", "controlx2"):
        return Arm("none", 0.0, 2 if arm == "controlx2" else 1)
    usage = (f"arm {arm!r} must be base, control, controlx2 or INJECTION@RATE[x2][+lagTN][+dropP][+noiseS] "
             f"(INJECTION in {INJECTIONS}; +lagTN: hint lag 1/N; +dropP: hint dropout P in (0, 1); "
             f"+noiseS: hint noise σ = S > 0)")
    if "@" not in arm:
        raise SystemExit(usage)
    injection, rest = arm.split("@", 1)
    rate, *suffixes = rest.split("+")
    multiplier = 1
    if rate.endswith("x2"):
        rate, multiplier = rate[:-2], 2
    changes: dict[str, float] = {}
    for suffix in suffixes:
        match = re.fullmatch(r"(lagT|drop|noise)(\d+(?:\.\d+)?)", suffix)
        value = float(match.group(2)) if match else 0.0
        if (not match or value == 0 or match.group(1) in changes or (match.group(1) == "drop" and value >= 1)
                or (match.group(1) == "lagT" and not value.is_integer())):
            raise SystemExit(usage)
        changes[match.group(1)] = value
    try:
        rate_value = float(rate)
    except ValueError:
        raise SystemExit(usage) from None
    if injection not in INJECTIONS:
        raise SystemExit(f"unknown injection {injection!r} in arm {arm!r}; valid: {', '.join(INJECTIONS)}")
    return Arm(injection, rate_value, multiplier, hint_lag=1.0 / changes["lagT"] if "lagT" in changes else 0.0,
               hint_dropout=changes.get("drop", 0.0), hint_noise=changes.get("noise", 0.0))


def post_train(base: Path, out: Path, arm: str, seed: int, steps: int, overrides: list[str]) -> Path:
    spec = parse_arm(arm)
    multiplier = spec.multiplier
    run_dir = out / arm / f"seed{seed}"
    config = post_train_config(base, [
        *spec.overrides(), f"train.steps={steps * multiplier}",
        f"train.seed={100 + seed}", f"train.eval_every={steps * multiplier}",
        f"train.save_every={max(1, steps * multiplier // 4)}",  # a killed run resumes from its last quarter
        *overrides])
    state_file = sorted((run_dir / "checkpoints").glob("step_*/state.json"))
    if state_file and json.loads(state_file[-1].read_text())["step"] >= config.train.steps:
        return run_dir
    print(f"post-training {arm} seed {seed}: {config.train.steps} steps → {run_dir}", flush=True)
    Trainer(config, run_dir, init_from=base).fit()
    return run_dir


def arm_runs(base: Path, out: Path, arms: list[str], seeds: list[int], steps: int, overrides: list[str], *,
             cached_only: bool = False) -> dict[tuple[str, int], Path]:
    """The run folder of every (arm, seed): the base model for ``base``, else its post-training under OUT
    (trained now if missing), or with ``cached_only`` only the finished ones that exist."""
    runs: dict[tuple[str, int], Path] = {}
    for seed in seeds:
        for arm in arms:
            if arm == "base":
                runs[(arm, seed)] = base
            elif not cached_only:
                runs[(arm, seed)] = post_train(base, out, arm, seed, steps, overrides)
            elif sorted((out / arm / f"seed{seed}" / "checkpoints").glob("step_*/state.json")):
                runs[(arm, seed)] = out / arm / f"seed{seed}"
    return runs


def sweep_key(context: str | None, arm: str, seed: int, T: int, temperature: float, num_samples: int) -> tuple:
    """What identifies a cached row: its context (which base and post-training, see ``sweep_rows``; None where the
    script records none), arm, seed, T, temperature and number of samples."""
    return context, arm, seed, T, temperature, num_samples


def row_key(row: dict) -> tuple:
    """``sweep_key`` of a row read back from a cache."""
    return sweep_key(row.get("context"), row["arm"], row["seed"], row["T"], row["temperature"], row["num_samples"])


def validation_nelbos(rows: list[dict], arm: str, seeds: list[int]) -> tuple[list[float], list[float]]:
    """(null, two-pass) validation NELBOs of ``arm``'s post-training runs at ``seeds``, read from their rows (each
    row carries its run's); a run without one (the control has no two-pass NELBO) is left out."""
    by_run = {(r["arm"], r["seed"]): (r.get("val_nelbo_bits"), r.get("val_nelbo_sc_bits")) for r in rows}
    pairs = [by_run[(arm, seed)] for seed in seeds if (arm, seed) in by_run]
    return [n for n, _ in pairs if n is not None], [n for _, n in pairs if n is not None]


def tag_suffix(tag: str) -> str:
    """What a ``--tag`` variant appends to its run folder, results file, plots and results section."""
    return f"_{tag}" if tag else ""


def sweep_rows(args: argparse.Namespace, cache: dict[tuple, dict], cache_file: Path,
               loaded: dict[tuple[str, int], LoadedCheckpoint], evaluator, describe: Callable[[dict], str],
               batch_size: int, extra: Callable[[list], dict] | None = None,
               context: str | None = None) -> list[dict]:
    """The rows of the sweep T × temperature × seed × arm, in that order (arms interleaved, so that sampling-time
    ratios are measured side by side). A row comes from ``cache`` (by ``row_key``) where it is there; else, unless
    ``args.cached_only``, it is sampled now (ancestral, on ``args.device``) and judged by ``evaluator`` (and by
    ``extra``, metrics of the samples the evaluator does not compute), tagged with this process, the run's
    validation NELBOs and ``context`` (what the arm names do not say: the base's weights and the post-training
    settings, so that rows of another base never stand in), appended to ``cache_file`` and printed with
    ``describe``."""
    process = uuid.uuid4().hex[:12]  # tags this invocation's rows: time ratios compare rows of one process only
    rows = []
    for T in args.T:
        for tau in args.temperatures:
            for seed in args.seeds:
                for arm in args.arms:
                    key = sweep_key(context, arm, seed, T, tau, args.num_samples)
                    if key not in cache and args.cached_only:
                        continue
                    if key not in cache:
                        if (arm, seed) not in loaded:
                            raise SystemExit(f"no post-training run for {arm} seed {seed}")
                        run = loaded[(arm, seed)]
                        sample = SampleConfig(sampler="ancestral", steps=T, num_samples=args.num_samples,
                                              batch_size=batch_size, temperature=tau, seed=seed)
                        evaluation = sample_and_evaluate(run, evaluator, sample, device=args.device,
                                                         show_progress=False)
                        cache[key] = {**({"context": context} if context is not None else {}),
                                      "arm": arm, "seed": seed, "T": T, "temperature": tau,
                                      "num_samples": args.num_samples, "process": process, **evaluation.metrics,
                                      **(extra(evaluation.samples) if extra else {}),
                                      "val_nelbo_bits": run.state.get("val_nelbo_bits"),
                                      "val_nelbo_sc_bits": run.state.get("val_nelbo_sc_bits")}
                        append_row(cache_file, cache[key])
                        print(f"T={T:<4} τ={tau:<4} seed={seed} {arm:<18} {describe(cache[key])}", flush=True)
                    rows.append(cache[key])
    return rows


def frontier_margin(point: tuple[float, float], control: list[tuple[float, float]]) -> float | None:
    """y of ``point`` (x, y) minus the control's y at the same x, by linear interpolation between the
    control's points (its temperatures); None where x lies outside the control's range. With (novelty,
    validity) a positive margin is beyond the control's frontier; with (validity, FCD), a negative one."""
    pts = sorted(control)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= point[0] <= x1:
            w = 0.0 if x1 == x0 else (point[0] - x0) / (x1 - x0)
            return point[1] - (y0 + w * (y1 - y0))
    return None


def same_process(a: dict, b: dict) -> bool:
    """Whether two cached rows were sampled by one invocation (wall-clock ratios mean nothing across processes
    on a shared machine). Rows cached before the ``process`` tag existed carry none and count as one process:
    each seed's control and mask_add@1 rows of the first ablation were sampled that way."""
    return a.get("process") == b.get("process")


def paired_differences(by_seed: dict, arm: str, T: int, tau: float, seeds: list[int], metric: str,
                       reference: str = "control") -> list[float]:
    """``metric`` of ``arm`` minus the ``reference`` arm's, per seed that has both rows (same T and temperature)."""
    return [a[metric] - c[metric] for seed in seeds
            if (a := by_seed.get((arm, seed, T, tau))) and (c := by_seed.get((reference, seed, T, tau)))]


def time_ratios(by_seed: dict, arm: str, T: int, tau: float, seeds: list[int]) -> list[float]:
    """Sampling seconds of ``arm`` over the control's, per seed whose two rows one process measured."""
    return [a["seconds"] / c["seconds"] for seed in seeds
            if (a := by_seed.get((arm, seed, T, tau))) and (c := by_seed.get(("control", seed, T, tau)))
            and same_process(a, c)]


def reference_pairs(arms: list[str]) -> list[tuple[str, str]]:
    """Arms compared with another arm besides the control. For every injection, whichever of these ran: (INJ@1,
    INJ@0.5), the paper's λ = 1 vs λ = 0.5; (INJ@1, INJ@0.5x2), the same with as many self-conditioned updates;
    (INJ@0.5x2, INJ@0.5), what twice the steps buys at λ = 0.5; (INJ@0.5x2, controlx2), against the control of
    as many steps. Then (ARM+lagTN, ARM) for every arm with a lagged or corrupted hint whose plain-hint twin
    ran."""
    parsed = {parse_arm(a): a for a in arms if a != "base"}
    rate_pairs = [((1.0, 1), (0.5, 1)), ((1.0, 1), (0.5, 2)), ((0.5, 2), (0.5, 1))]
    pairs = [(parsed[Arm(inj, *a)], parsed[Arm(inj, *b)]) for inj in INJECTIONS for a, b in rate_pairs
             if Arm(inj, *a) in parsed and Arm(inj, *b) in parsed]
    long_control = parse_arm("controlx2")
    pairs += [(parsed[Arm(inj, 0.5, 2)], parsed[long_control]) for inj in INJECTIONS
              if Arm(inj, 0.5, 2) in parsed and long_control in parsed]
    return pairs + [(arm, parsed[spec.without_hint_changes()]) for spec, arm in parsed.items()
                    if spec != spec.without_hint_changes() and spec.without_hint_changes() in parsed]


def step_matched_control(arm: str, arms: list[str]) -> str:
    """The control an arm's frontier margin is taken against: ``controlx2`` (as many post-training steps) for an
    x2 arm where it ran, else ``control``."""
    if arm not in BASELINES and parse_arm(arm).multiplier == 2 and "controlx2" in arms:
        return "controlx2"
    return "control"


def seed_margins(by_seed: dict, arm: str, T: int, tau: float, seeds: list[int], temps: list[float],
                 x: str, y: str, reference: str = "control") -> list[float]:
    """``frontier_margin`` of (x, y) per seed, each against the ``reference`` arm's curve of the same seed (its
    rows at every temperature); seeds where the point lies outside that curve are left out."""
    margins = []
    for seed in seeds:
        row = by_seed.get((arm, seed, T, tau))
        control = [(r[x], r[y]) for t in temps if (r := by_seed.get((reference, seed, T, t))) is not None]
        if row is None or len(control) < 2 or row[y] != row[y]:
            continue
        margin = frontier_margin((row[x], row[y]), control)
        if margin is not None:
            margins.append(margin)
    return margins


def plot(summary: dict, arms: list[str], temps: list[float], Ts: list[int], out_dir: Path,
         suffix: str = "") -> dict[str, set[str]]:
    """Draw metric-vs-T and the frontier panels; return the colours (hex) each arm was drawn in, over all panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tab20 = plt.get_cmap("tab20").colors  # one colour per arm in every panel: the ten dark ones, then the light
    color = {arm: (tab20[0::2] + tab20[1::2])[i % 20] for i, arm in enumerate(arms)}
    tau = 1.0 if 1.0 in temps else max(temps)
    groups, panels = figure_groups(arms), ("validity", "valid_unique_novel", "novelty", "fcd")
    fig, axes = plt.subplots(len(groups), 4, figsize=(17, 3.8 * len(groups)), squeeze=False)
    for row, (name, group) in enumerate(groups):
        for arm in group:
            for ax, key in zip(axes[row], panels, strict=True):
                pts = [(T, *mean_std(summary[(arm, T, tau)][key])) for T in Ts if (arm, T, tau) in summary]
                if pts:
                    ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                                capsize=3, label=arm, color=color[arm], ls="--" if arm in BASELINES else "-")
        for ax, key in zip(axes[row], panels, strict=True):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("steps T (= NFE)")
            ax.set_title(f"{key} (temperature {tau})" + (f": {name.lstrip('_')}" if name else ""))
            ax.grid(alpha=0.3)
        axes[row, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"selfcond_vs_T{suffix}.png", dpi=90)
    drawn = _colours_drawn(fig)
    plt.close(fig)

    frontier_Ts = [T for T in Ts if T <= 64] or Ts
    for name, group in groups:
        fig, axes = plt.subplots(2, len(frontier_Ts), figsize=(4.6 * len(frontier_Ts), 8), squeeze=False)
        for col, T in enumerate(frontier_Ts):
            for arm in group:
                pts = [(mean_std(summary[(arm, T, t)]["novelty"]), mean_std(summary[(arm, T, t)]["validity"]),
                        mean_std(summary[(arm, T, t)]["fcd"])) for t in temps if (arm, T, t) in summary]
                if not pts:
                    continue
                style = dict(marker="o", capsize=2, label=arm, color=color[arm], ls="--" if arm in BASELINES else "-")
                axes[0, col].errorbar([p[0][0] for p in pts], [p[1][0] for p in pts], xerr=[p[0][1] for p in pts],
                                      yerr=[p[1][1] for p in pts], **style)
                axes[1, col].errorbar([p[1][0] for p in pts], [p[2][0] for p in pts], xerr=[p[1][1] for p in pts],
                                      yerr=[p[2][1] for p in pts], **style)
            axes[0, col].set(xlabel="novelty", ylabel="validity",
                             title=f"T = {T}: validity vs novelty over temperature")
            axes[1, col].set(xlabel="validity", ylabel="FCD (lower is better)", title=f"T = {T}: FCD vs validity")
            for ax in axes[:, col]:
                ax.grid(alpha=0.3)
        handles = {}  # every arm once, though an arm may be sampled at some T only
        for ax in axes.flat:
            artists, labels = ax.get_legend_handles_labels()
            handles.update(zip(labels, artists, strict=True))
        axes[0, 0].legend(handles.values(), handles.keys(), fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / f"selfcond_frontier{name}{suffix}.png", dpi=110)
        for arm, colours in _colours_drawn(fig).items():
            drawn.setdefault(arm, set()).update(colours)
        plt.close(fig)
    return drawn


def figure_groups(arms: list[str]) -> list[tuple[str, list[str]]]:
    """The arms drawn together: (file-name part, arms); one frontier figure and one row of the metric-vs-T figure
    each, so that none draws every arm at once. The grid (baselines and INJECTION@RATE[x2]) is one group, or,
    where several injections ran and one of them at more than one rate, one group per injection (``_mask_add``
    ...), each with the baselines: a figure then compares the rates of one injection. Where remedies (arms with a
    ``+`` suffix) ran, one more: ``_remedies``, the baselines, each remedy's remedy-free twin and the remedies."""
    specs = {arm: parse_arm(arm) for arm in arms if arm != "base"}
    remedies = [arm for arm, spec in specs.items() if spec != spec.without_hint_changes()]
    grid = [arm for arm in arms if arm not in remedies]
    baselines = [arm for arm in grid if arm in BASELINES]
    by_injection: dict[str, list[str]] = {}
    for arm in grid:
        if arm not in BASELINES:
            by_injection.setdefault(specs[arm].injection, []).append(arm)
    if len(by_injection) > 1 and any(len(rates) > 1 for rates in by_injection.values()):
        groups = [(f"_{injection}", baselines + rates) for injection, rates in by_injection.items()]
    else:
        groups = [("", grid)]
    if remedies:
        twins = {specs[arm].without_hint_changes() for arm in remedies}
        groups.append(("_remedies", [arm for arm in grid if arm in BASELINES or specs[arm] in twins] + remedies))
    return groups


def _colours_drawn(fig) -> dict[str, set[str]]:
    """Label -> the hex colours of the lines carrying that label, over every axes of `fig`."""
    from matplotlib.colors import to_hex

    drawn: dict[str, set[str]] = {}
    for ax in fig.axes:
        for container in ax.containers:  # errorbar: its data line carries the colour
            label = container.get_label()
            drawn.setdefault(label, set()).add(to_hex(container.lines[0].get_color()))
    return drawn


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=str(ROOT / "runs" / "qm9_base"), help="the base model (run folder)")
    parser.add_argument("--out", help="post-training runs and row cache (default runs/selfcond, with --tag "
                                       "runs/selfcond_TAG)")
    parser.add_argument("--tag", default="", help="a variant ablation with its own control, e.g. 'lr3e-4' with the "
                        "override train.lr=3e-4: its own runs, results file, plots and results section")
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=480, help="post-training steps per arm (x2 arms: twice)")
    parser.add_argument("--T", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 0.8, 0.9, 1.0])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/ or benchmarks/results/ (a trial)")
    parser.add_argument("--cached-only", action="store_true",
                        help="train and sample nothing: tables and plots from the cached rows of the given arms, "
                             "seeds, T and temperatures that exist (e.g. after parallel runs, one per seed)")
    parser.add_argument("--rows-from", type=Path, action="append", default=[], metavar="JSON",
                        help="also read the rows of a results file this script wrote (e.g. benchmarks/results/"
                             "selfcond_ablation.json); OUT/rows.jsonl wins where both have a row. With "
                             "--cached-only the tables regenerate from them without the post-training runs")
    parser.add_argument("overrides", nargs="*", help="post-training config overrides, e.g. train.lr=3e-4 "
                                                     "(anywhere on the command line)")
    return parser


def main() -> int:
    parser = build_parser()
    args = parse_args(parser)
    made_by = command(__file__)
    if error := missing_base(args.base):  # the default, runs/qm9_base, is a run a fresh clone lacks
        parser.error(error)

    if args.tag and not re.fullmatch(r"[\w.+-]+", args.tag):
        raise SystemExit(f"--tag {args.tag!r}: use letters, digits and . + - _ only (it names files)")
    suffix = tag_suffix(args.tag)
    base, out = Path(args.base), Path(args.out or ROOT / "runs" / f"selfcond{suffix}")
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*args.overrides, f"train.device={args.device}"]
    t0 = time.perf_counter()
    runs = arm_runs(base, out, args.arms, args.seeds, args.steps, overrides, cached_only=args.cached_only)
    train_minutes = (time.perf_counter() - t0) / 60

    loaded = {key: load_checkpoint(path, device=args.device) for key, path in runs.items()}
    first = next(iter(loaded.values()), None)
    evaluator = evaluator_for(first.config, first.split_info) if first else None  # None: nothing to sample
    cache_file = out / "rows.jsonl"
    imported = [row for path in args.rows_from for row in json.loads(path.read_text())["rows"]]
    cache = {row_key(row): row for row in [*imported, *read_rows(cache_file)]}
    rows = sweep_rows(
        args, cache, cache_file, loaded, evaluator,
        describe=lambda m: (f"valid {m['validity']:.3f} VUN {m['valid_unique_novel']:.3f} novel {m['novelty']:.3f} "
                            f"FCD {m['fcd']:.3f} {m['seconds']:.1f}s"),
        batch_size=BATCH_SIZE)
    if not rows:
        raise SystemExit(f"no rows for arms {args.arms} and seeds {args.seeds} (runs and cache in {out})")
    # Rows are computed in the order given (put the most wanted first); tables and plots read sorted.
    args.T, args.temperatures = sorted(args.T), sorted(args.temperatures)
    summary: dict[tuple[str, int, float], dict[str, list[float]]] = {}
    for r in rows:
        entry = summary.setdefault((r["arm"], r["T"], r["temperature"]), {k: [] for k in (*METRICS, "seconds")})
        for k in (*METRICS, "seconds"):
            entry[k].append(float(r[k]))

    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    base_state = read_state(find_checkpoint(base))  # its step and NELBO; no weights needed
    payload = {"command": made_by, "rows": rows, "arms": args.arms, "seeds": args.seeds, "post_train_steps": args.steps,
               "base_state": base_state, "train_minutes_this_invocation": train_minutes,
               "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                           "torch": torch.__version__, "device": args.device}}
    if args.no_docs:
        (out / "selfcond_ablation.json").write_text(json.dumps(payload, indent=1))
        return 0
    (results / f"selfcond_ablation{suffix}.json").write_text(json.dumps(payload, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(summary, args.arms, args.temperatures, args.T, RESULTS, suffix)
    section = markdown(args, summary, rows, post_train_config(base, overrides), made_by, base_state)
    write_results_section(f"selfcond_ablation{suffix}", section, page=RESULTS / "selfcond_qm9.md")
    print(section)
    return 0


def markdown(args, summary, rows: list[dict], sc_config, command: str, base_state: dict) -> str:
    tau = 1.0 if 1.0 in args.temperatures else max(args.temperatures)
    suffix = tag_suffix(args.tag)
    variant = f" — variant {args.tag} ({' '.join(args.overrides) or 'no overrides'})" if args.tag else ""
    lines = [
        f"## Self-conditioned post-training: ablation on QM9{variant}", "",
        f"Command: `{command}`", "",
        f"Base: `{repo_relative(args.base)}` (step {base_state.get('step')}, validation NELBO "
        f"{base_state.get('val_nelbo_bits', float('nan')):.4f} bits/token on the trainer's protocol). Every arm "
        f"is post-trained {args.steps} steps (x2 arms: {2 * args.steps}) from the base model's EMA weights with "
        f"`src/scmdm/configs/selfcond.yaml` (lr {sc_config.train.lr}, batch {sc_config.train.batch_size}); seeds "
        f"{args.seeds} (post-training seed = 100 + s, sampling seed = s); {args.num_samples} samples per row, "
        "ancestral sampler, float64 draws. Mean ± std over seeds. NELBO: validation NELBO of the post-trained "
        "EMA weights (trainer protocol) with the null condition and with two passes.", "",
        f"### Against T (temperature {tau})", "",
        "| arm | T | seeds | validity | uniqueness | novelty | valid∧unique∧novel | FCD | NELBO null | "
        "NELBO two-pass |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for T in args.T:
        for arm in args.arms:
            s = summary.get((arm, T, tau))
            if s is None:
                continue
            null, two = validation_nelbos(rows, arm, args.seeds)
            lines.append(f"| {arm} | {T} | {len(s['validity'])} | {fmt(s['validity'])} | {fmt(s['uniqueness'])} | "
                         f"{fmt(s['novelty'])} | "
                         f"{fmt(s['valid_unique_novel'])} | {fmt(s['fcd'], 2)} | {fmt(null, 4) if null else '–'} | "
                         f"{fmt(two, 4) if two else '–'} |")
    by_seed = {(r["arm"], r["seed"], r["T"], r["temperature"]): r for r in rows}
    lines += ["", "### The quality–diversity frontier (temperature sweep)", "",
              "Margins are taken per seed, against the control's curve of the same seed (linear interpolation "
              "between its temperatures), then averaged (mean ± std over the seeds whose point lies inside the "
              "control's range; `n` says how many; – where none does). `validity margin` = validity minus the "
              "control's validity at the same novelty: positive is beyond the control's frontier. `FCD margin` = "
              "FCD minus the control's FCD at the same validity: negative is beyond. An x2 arm's margins are "
              "taken against controlx2's curve where it ran (as many post-training steps; column `against`).", "",
              "| T | arm | temperature | seeds | validity | novelty | valid∧unique∧novel | FCD | against | "
              "validity margin (n) | FCD margin (n) |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for T in args.T:
        for arm in args.arms:
            for t in args.temperatures:
                s = summary.get((arm, T, t))
                if s is None:
                    continue
                cells, reference = [], step_matched_control(arm, args.arms)
                for x, y in (("novelty", "validity"), ("validity", "fcd")):
                    m = [] if arm == "control" else seed_margins(by_seed, arm, T, t, args.seeds, args.temperatures,
                                                                 x, y, reference)
                    cells.append(fmt(m, sign=True, count=True) if m else "–")
                against = "–" if arm == "control" else reference
                lines.append(f"| {T} | {arm} | {t} | {len(s['validity'])} | {fmt(s['validity'])} | "
                             f"{fmt(s['novelty'])} | {fmt(s['valid_unique_novel'])} | {fmt(s['fcd'], 2)} | "
                             f"{against} | {cells[0]} | {cells[1]} |")
    lines += ["", "### Paired: arm minus control, and arm minus arm (same seed, T and temperature)", "",
              "Mean ± std over the seeds that have both rows (n); this cancels the seed-to-seed spread the "
              "columns above carry.", "",
              "| arm | T | temperature | validity | uniqueness | novelty | valid∧unique∧novel | FCD | n |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pairs = [(arm, "control") for arm in args.arms if arm not in ("control", "base")] + reference_pairs(args.arms)
    for arm, reference in pairs:
        for T in args.T:
            for t in args.temperatures:
                diffs = {k: paired_differences(by_seed, arm, T, t, args.seeds, k, reference) for k in METRICS}
                if not diffs["validity"]:
                    continue
                cells = [fmt(v, 2 if k == "fcd" else 3, sign=True) for k, v in diffs.items()]
                label = arm if reference == "control" else f"{arm} − {reference}"
                lines.append(f"| {label} | {T} | {t} | " + " | ".join(cells) + f" | {len(diffs['validity'])} |")
    lines += ["", "### Sampling time, self-conditioned over control (same run, equal T, temperature "
              f"{tau})", "",
              "Each ratio is taken per seed, between rows the same process measured one after the other, then "
              "averaged over the seeds that have both (n); – where no seed's rows share a process.", "",
              "| arm | " + " | ".join(f"T={T}" for T in args.T) + " |", "|---|" + "---:|" * len(args.T)]
    for arm in args.arms:
        if arm in BASELINES:
            continue
        cells = []
        for T in args.T:
            ratios = time_ratios(by_seed, arm, T, tau, args.seeds)
            cells.append(fmt(ratios, 2, unit="×", count=True) if ratios else "–")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", f"![metrics against T](selfcond_vs_T{suffix}.png)"]
    for name, _ in figure_groups(args.arms):
        what = ("frontier of the remedies, their twins and the baselines" if name == "_remedies" else
                f"frontier of {name.lstrip('_')} at each rate, and the baselines" if name else "frontier")
        lines += ["", f"![{what}](selfcond_frontier{name}{suffix}.png)"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
