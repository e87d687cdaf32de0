"""Self-conditioned post-training ablation on text, DNA or images: control vs λ = 0.5 vs λ = 1 (docs/METHODS.md §2),
≥ 3 seeds, a few T, a temperature sweep — the protocol of the QM9 ablation (benchmarks/selfcond_ablation.py, whose
``post_train``, arm syntax, row cache and paired/frontier helpers this script uses) with each domain's own quality
and diversity metrics:

    domain  quality (lower is better)                        diversity (the frontier's x)     base (default)
    text    scorer bits/char (SmolLM2-135M)                  unigram entropy of the samples   runs/text_kjv
    dna     6-mer spectrum JS divergence, GC distance (W1)   entropy of the 6-mer spectrum    models/dna_ecoli
    image   Fréchet distance in the project's CNN features   CNN feature spread; classifier   models/fashion_mnist14
                                                             score as a second x

Arms (``control`` = selfcond.injection=none, the compute-matched baseline; ``INJ@RATE`` self-conditioning with
injection INJ at λ = RATE; ``base`` the base model itself) are post-trained from the base with
src/scmdm/configs/selfcond.yaml (train.seed = 100 + seed) and sampled with sampling seed = seed, ancestral sampler,
float64 draws, at every T × temperature. Self-conditioning can look better merely by sharpening, so each arm is
compared with the control per seed (paired differences) and on the quality–diversity frontier: ``margin`` = the arm's
quality minus the control's at the same diversity (interpolated between the control's temperatures, per seed against
that seed's control) — negative means beyond the control's frontier.

    python -m benchmarks.selfcond_domain --domain dna                      # base models/dna_ecoli, 3 seeds
    python -m benchmarks.selfcond_domain --domain dna --seeds 0            # one seed now, the others later
    python -m benchmarks.selfcond_domain --domain image --seeds 0 --T 32 --temperatures 1.0 --num-samples 200 \\
        --no-docs                                                          # a pilot, docs/ untouched
    python -m benchmarks.selfcond_domain --base runs/my_dna_run --arms control mask_add@1 --cached-only
    python -m benchmarks.selfcond_text                                     # text: the same script, text's defaults

Rows are cached in OUT/rows.jsonl (an interrupted run continues; parallel runs, one per seed, share it), keyed by
the base's weights (SHA-256), the post-training steps and overrides besides arm, seed, T, temperature and number of
samples; the rows of the committed benchmarks/results/selfcond_<domain>.json are reused too, so a sweep can be split
across machines or sessions (one seed each, then ``--cached-only`` for the tables): an arm is post-trained only
where it still lacks a row. ``--cached-only`` rebuilds the tables from the rows. Writes
benchmarks/results/selfcond_<domain>.json (every measured row: the shown ones and ``other_rows``), the figure
docs/results/selfcond_<domain>_frontier.png (quality against diversity over temperature, one column per T) and the
``selfcond_<domain>`` section of docs/results/selfcond_<domain>.md; with ``--no-docs`` the JSON and the figure go to
OUT instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import (
    RESULTS,
    ROOT,
    append_row,
    cached_rows,
    command,
    fmt,
    machine,
    mean_std,
    missing_base,
    parse_args,
    repo_relative,
    weights_id,
    write_results_section,
)
from benchmarks.selfcond_ablation import (
    BASELINES,
    arm_runs,
    paired_differences,
    reference_pairs,
    row_key,
    seed_margins,
    sweep_key,
    sweep_rows,
    time_ratios,
    validation_nelbos,
)


@dataclass(frozen=True)
class Column:
    """A metric of the rows as a table shows it: its key, its header and how many decimals."""

    key: str
    header: str
    digits: int = 3


@dataclass(frozen=True)
class Frontier:
    """Quality ``y`` (lower is better) read at equal ``x`` (diversity) against the control's temperature curve; the
    margin column is headed ``header`` and described as '``what`` ... at the same ``at``'."""

    x: str
    y: str
    header: str
    what: str
    at: str


@dataclass(frozen=True)
class DomainAblation:
    """What the ablation of one domain reads, shows and defaults to."""

    domain: str
    title: str  # the section's heading: "ablation on <title>"
    base: str  # the default base run, under the repository root
    T: tuple[int, ...]
    temperatures: tuple[float, ...]
    num_samples: int
    steps: int  # post-training steps per arm (x2 arms: twice)
    batch_size: int  # sampling batch
    by_T: tuple[Column, ...]  # the table against T (the first column also counts the seeds)
    paired: tuple[Column, ...]  # the paired differences
    sweep: tuple[Column, ...]  # the frontier table
    frontiers: tuple[Frontier, ...]
    unit: str  # what the NELBO columns are per: character, base, pixel
    reading: str  # how to read the paired differences
    arms: tuple[str, ...] = ("control", "mask_add@0.5", "mask_add@1")

    @property
    def section(self) -> str:
        return f"selfcond_{self.domain}"


SPECS = {
    "text": DomainAblation(
        domain="text", title="text", base="runs/text_kjv", T=(64, 128), temperatures=(0.9, 1.0), num_samples=200,
        steps=320, batch_size=250,
        by_T=(Column("scorer_bpc", "scorer bits/char"), Column("gen_ppl", "gen PPL", 1),
              Column("entropy_bits", "entropy")),
        paired=(Column("scorer_bpc", "Δ scorer bits/char"), Column("entropy_bits", "Δ entropy"),
                Column("gen_ppl", "Δ gen PPL", 1)),
        sweep=(Column("scorer_bpc", "scorer bits/char"), Column("entropy_bits", "entropy"),
               Column("gen_ppl", "gen PPL", 1)),
        frontiers=(Frontier("entropy_bits", "scorer_bpc", "margin", "scorer bits/char", "entropy"),),
        unit="character", reading="Lower bits/char is better; lower entropy means more repetitive text.",
        arms=("base", "control", "mask_add@0.5", "mask_add@1")),
    "dna": DomainAblation(
        # T = 64 left out: on this base its samples are level with T = 32's (docs/results/bases.md)
        domain="dna", title="DNA", base="models/dna_ecoli", T=(16, 32), temperatures=(0.9, 0.95, 1.0),
        num_samples=1000, steps=400, batch_size=250,
        by_T=(Column("js_6", "6-mer JS", 5), Column("gc_w1", "GC W1", 4), Column("kmer_entropy", "6-mer entropy", 4),
              Column("nearest_identity", "nearest identity")),
        paired=(Column("js_6", "Δ 6-mer JS", 5), Column("gc_w1", "Δ GC W1", 4),
                Column("kmer_entropy", "Δ 6-mer entropy", 4)),
        sweep=(Column("js_6", "6-mer JS", 5), Column("gc_w1", "GC W1", 4), Column("kmer_entropy", "6-mer entropy", 4)),
        frontiers=(Frontier("kmer_entropy", "js_6", "margin 6-mer JS", "6-mer JS divergence", "6-mer entropy"),
                   Frontier("kmer_entropy", "gc_w1", "margin GC W1", "GC W1 distance", "6-mer entropy")),
        unit="base", reading="Lower JS divergence and GC distance are better; lower 6-mer entropy means less diverse "
                             "(more repetitive) windows."),
    "image": DomainAblation(
        domain="image", title="images", base="models/fashion_mnist14", T=(32, 64), temperatures=(0.9, 0.95, 1.0),
        num_samples=1000, steps=400, batch_size=250,
        by_T=(Column("fd_cnn", "fd_cnn", 2), Column("classifier_score", "classifier score"),
              Column("feature_spread", "feature spread"), Column("class_entropy", "class entropy")),
        paired=(Column("fd_cnn", "Δ fd_cnn", 2), Column("classifier_score", "Δ classifier score"),
                Column("feature_spread", "Δ feature spread")),
        sweep=(Column("fd_cnn", "fd_cnn", 2), Column("classifier_score", "classifier score"),
               Column("feature_spread", "feature spread"), Column("class_entropy", "class entropy")),
        frontiers=(Frontier("feature_spread", "fd_cnn", "margin @ spread", "fd_cnn", "feature spread"),
                   Frontier("classifier_score", "fd_cnn", "margin @ score", "fd_cnn", "classifier score")),
        unit="pixel", reading="Lower fd_cnn is better; higher classifier score is more confident and balanced; "
                              "feature spread below 1 is less diverse than real images."),
}


# ---- the metrics this script adds to the evaluators' ------------------------------------------------------------
def kmer_entropy(windows: list[str], k: int = 6) -> float:
    """Shannon entropy in bits of the k-mer spectrum of ``windows`` (all their overlapping k-mers pooled; the
    counting rule of scmdm.domains.dna.evaluator.kmer_counts): 2k for a uniform spectrum, lower when the windows
    repeat few k-mers. nan without any k-mer."""
    from scmdm.domains.dna.evaluator import kmer_counts

    counts = kmer_counts(windows, k).astype(float)
    if counts.sum() <= 0:
        return math.nan
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def extra_metrics(domain: str, evaluator) -> Callable[[list], dict] | None:
    """The diversity metrics a domain's evaluator does not compute, as a function of the samples (None: none)."""
    if domain == "dna":
        return lambda windows: {"kmer_entropy": kmer_entropy(windows)}
    if domain == "image":
        return evaluator.diversity
    return None


def reference_rows(spec: DomainAblation, evaluator, n: int) -> list[tuple[str, Callable[[], dict]]]:
    """(label, how to measure it) of the rows every arm is read against: real held-out items (the evaluator's
    reference row) and, for DNA and images, the trivial baseline of the base-model table (Markov-3 chain;
    pixel-independent samples), with the same seeds and counts as ``reference_row`` and ``baseline_rows``."""
    if spec.domain == "text":
        return [("real held-out text", lambda: evaluator.reference_row(n=n).as_dict())]
    extra = extra_metrics(spec.domain, evaluator)
    real = evaluator._real(n, 1)  # the items reference_row(n) measures

    def measured(items) -> dict:
        return {**evaluator.evaluate(items).as_dict(), **extra(items)}

    if spec.domain == "dna":
        return [("real held-out windows", lambda: measured(real)),
                ("markov3 chain fit on train", lambda: measured(evaluator.markov_samples(len(real), order=3, seed=1)))]
    from scmdm.domains.image.evaluator import pixel_independent_samples

    return [("real held-out images", lambda: measured(real)),
            ("pixel-independent samples", lambda: measured(
                pixel_independent_samples(evaluator.train_images, evaluator.levels, len(real), seed=1)))]


def run_context(base_id: str, steps: int, overrides: list[str]) -> str:
    """What a row's arm and seed do not say: the base (by its weights, ``benchmarks.common.weights_id``), the
    post-training steps per arm and the config overrides, e.g. 'sha256:0123456789abcdef steps=400 train.lr=3e-4'.
    Rows are cached under it, so a row of another base or recipe is never reused."""
    return " ".join([base_id, f"steps={steps}", *sorted(overrides)])


# ---- the script ---------------------------------------------------------------------------------------------------
def build_parser(default_domain: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", choices=sorted(SPECS), default=default_domain,
                        help="text | dna | image (default: the base's; its defaults: base, T, temperatures, samples)")
    parser.add_argument("--base", help="the base model (run folder; default per domain: " +
                        ", ".join(f"{d} {s.base}" for d, s in SPECS.items()) + ")")
    parser.add_argument("--out", help="post-training runs and row cache (default runs/selfcond_<domain>)")
    parser.add_argument("--arms", nargs="+", help="control, INJ@RATE[x2], base, ... (benchmarks/selfcond_ablation.py; "
                        "default per domain: " + ", ".join(f"{d} {' '.join(s.arms)}" for d, s in SPECS.items()) + ")")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="post-training steps per arm, x2 arms twice (default per domain: " +
                        ", ".join(f"{d} {s.steps}" for d, s in SPECS.items()) + ")")
    parser.add_argument("--T", type=int, nargs="+", help="sampling steps (default per domain: " +
                        ", ".join(f"{d} {' '.join(map(str, s.T))}" for d, s in SPECS.items()) + ")")
    parser.add_argument("--temperatures", type=float, nargs="+", help="default per domain: " +
                        ", ".join(f"{d} {' '.join(map(str, s.temperatures))}" for d, s in SPECS.items()))
    parser.add_argument("--num-samples", type=int, help="samples per row (default per domain: " +
                        ", ".join(f"{d} {s.num_samples}" for d, s in SPECS.items()) + ")")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not touch docs/ or benchmarks/results/ (a trial): the JSON and the figure go to OUT")
    parser.add_argument("--cached-only", action="store_true",
                        help="train and sample nothing: tables from the cached rows of the given arms, seeds, T and "
                             "temperatures that exist (e.g. after parallel runs, one per seed)")
    parser.add_argument("overrides", nargs="*", help="post-training config overrides, e.g. train.lr=3e-4")
    return parser


def main(script: str | Path = __file__, default_domain: str | None = None) -> int:
    """Run the ablation; ``script`` is the module the command line names (benchmarks/selfcond_text.py runs this
    with ``default_domain='text'``)."""
    from scmdm.checkpoint import load_checkpoint
    from scmdm.workflows import evaluator_for, post_train_config

    parser = build_parser(default_domain)
    args = parse_args(parser)
    made_by = command(script)
    if args.base is None and args.domain is None:
        parser.error("say --domain (text, dna, image) or --base RUN")
    base = Path(args.base) if args.base else ROOT / SPECS[args.domain].base
    if error := missing_base(base):  # before any loading: the text default is a run a fresh clone lacks
        parser.error(error)
    base_model = load_checkpoint(base, device=args.device)
    domain = base_model.config.data.domain
    if domain not in SPECS:
        parser.error(f"{base} is a {domain} model; benchmarks/selfcond_ablation.py is the molecule ablation")
    if args.domain and args.domain != domain:
        parser.error(f"{base} is a {domain} model, not {args.domain}")
    spec = SPECS[domain]
    args.domain, args.base = domain, str(base)
    args.arms = args.arms or list(spec.arms)
    args.steps = args.steps or spec.steps
    args.T = args.T or list(spec.T)
    args.temperatures = args.temperatures or list(spec.temperatures)
    args.num_samples = args.num_samples or spec.num_samples
    out = Path(args.out) if args.out else ROOT / "runs" / spec.section
    out.mkdir(parents=True, exist_ok=True)

    overrides = [*args.overrides, f"train.device={args.device}"]
    context = run_context(weights_id(base_model), args.steps, args.overrides)
    cache_file = out / "rows.jsonl"
    committed = ROOT / "benchmarks" / "results" / f"{spec.section}.json"
    # Rows written before contexts were recorded (context None) match no run's; they are only carried over.
    cache = cached_rows(cache_file, committed, key=row_key)
    t0 = time.perf_counter()
    runs = {}
    for seed in args.seeds:  # post-train only the arms that still lack a row: sessions can share the sweep
        for arm in args.arms:
            if any(sweep_key(context, arm, seed, T, tau, args.num_samples) not in cache
                   for T in args.T for tau in args.temperatures):
                runs |= arm_runs(base, out, [arm], [seed], args.steps, overrides, cached_only=args.cached_only)
    train_minutes = (time.perf_counter() - t0) / 60
    loaded = {key: base_model if path == base else load_checkpoint(path, device=args.device)
              for key, path in runs.items()}
    # The post-trained runs share the base model's data and tokenizer: with --cached-only they may all be gone.
    options = {"device": args.device} if domain == "text" else {}
    evaluator = evaluator_for(base_model.config, base_model.split_info, tokenizer=base_model.tokenizer, **options)
    references = {}
    for label, measure in reference_rows(spec, evaluator, args.num_samples):
        key = sweep_key(context, label, -1, 0, 0.0, args.num_samples)
        if key not in cache:
            cache[key] = {"context": context, "arm": label, "seed": -1, "T": 0, "temperature": 0.0,
                          "num_samples": args.num_samples, **measure()}
            append_row(cache_file, cache[key])
        references[label] = cache[key]
    columns = spec.by_T
    rows = sweep_rows(args, cache, cache_file, loaded, evaluator,
                      describe=lambda m: " ".join(f"{c.key} {m[c.key]:.{c.digits}f}" for c in columns)
                      + f" {m['seconds']:.1f}s",
                      batch_size=spec.batch_size, extra=extra_metrics(domain, evaluator), context=context)
    if not rows:
        raise SystemExit(f"no rows for arms {args.arms} and seeds {args.seeds} (runs and cache in {out})")

    base_state = base_model.state
    shown = {row_key(r) for r in [*rows, *references.values()]}
    payload = {"command": made_by, "domain": domain, "context": context, "rows": rows,
               "reference": next(iter(references.values())), "references": references,
               # every other measured row (other seeds, T, arms or bases), so that the next run resumes from them
               "other_rows": [r for key, r in cache.items() if key not in shown],
               "arms": args.arms, "seeds": args.seeds, "post_train_steps": args.steps,
               "base_state": base_state, "train_minutes_this_invocation": train_minutes,
               "machine": {**machine(), "device": args.device}}
    per_token = getattr(evaluator, "chars_per_token", 1.0) if domain == "text" else 1.0
    figure_dir = out if args.no_docs else RESULTS
    figure_dir.mkdir(parents=True, exist_ok=True)
    figure = plot_frontiers(spec, rows, references, args, figure_dir)
    section = markdown(spec, args, rows, post_train_config(base, overrides), references, made_by, base_state,
                       per_token, evaluator=evaluator, figure=figure)
    print(section)
    results = out if args.no_docs else ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{spec.section}.json").write_text(json.dumps(payload, indent=1))
    if not args.no_docs:
        write_results_section(spec.section, section, page=RESULTS / f"{spec.section}.md")
    return 0


# ---- tables and figure --------------------------------------------------------------------------------------------
def intro(spec: DomainAblation, references: dict[str, dict], args, evaluator) -> str:
    """What the rows are measured with, and the reference rows they are read against (after the common part)."""
    n = args.num_samples
    if spec.domain == "text":
        from scmdm.domains.text.scorer import SCORER_NAME

        real = references["real held-out text"]
        return (f"Scorer: {SCORER_NAME} (not GPT-2). Real held-out text ({n} windows): gen PPL "
                f"{real['gen_ppl']:.1f}, {real['scorer_bpc']:.3f} bits/char, entropy {real['entropy_bits']:.3f} bits. "
                "NELBO columns: the post-trained EMA weights' validation NELBO in bits per character (trainer "
                "protocol), with the null condition and with two passes.")

    def cells(row: dict) -> str:
        return ", ".join(f"{c.header} {row[c.key]:.{c.digits}f}" for c in spec.sweep)

    shown = "; ".join(f"{label}: {cells(row)}" for label, row in references.items())
    if spec.domain == "dna":
        what = ("`6-mer JS`: Jensen–Shannon divergence (nats) of the samples' 6-mer spectrum to the test windows'; "
                "`GC W1`: Wasserstein-1 distance of per-window GC content to the test windows' (quality, lower is "
                "better); `6-mer entropy`: entropy in bits of the samples' pooled 6-mer spectrum (diversity: 12 = "
                "every 6-mer equally often; repetitive windows score lower); `nearest identity`: identity to the "
                "closest training window (memorisation: real held-out windows show the level of chance).")
    else:
        cnn = f" The CNN: {evaluator.classifier_summary()}." if evaluator is not None else ""
        what = ("`fd_cnn`: Fréchet distance to the test images in the features of the project's own CNN — not "
                "Inception FID, comparable only within this page; `classifier score`: exp E[KL(p(y|x) ‖ p(y))] with "
                "the same CNN (10 = confident and balanced over the classes); `feature spread`: the total variance "
                "of the samples' CNN features over the test images' (1 = as diverse as real images); `class "
                f"entropy`: entropy in bits of the samples' mean class distribution (3.32 = every class equally).{cnn}")
    return (f"{what} Reference rows ({n} each, through the same evaluator): {shown}. NELBO columns: the "
            f"post-trained EMA weights' validation NELBO in bits per {spec.unit} (trainer protocol), with the null "
            "condition and with two passes.")


def markdown(spec: DomainAblation, args, rows: list[dict], sc_config, references: dict[str, dict], command: str,
             base_state: dict, per_token: float = 1.0, *, evaluator=None, figure: str | None = None) -> str:
    """The ``selfcond_<domain>`` section from the cached rows (one per arm, seed, T, temperature; each carries its
    run's validation NELBOs, shown per ``spec.unit``: bits per token / ``per_token``), ``sc_config`` the
    post-training config (its lr and batch)."""
    temps, Ts, seeds = sorted(args.temperatures), sorted(args.T), args.seeds
    tau = 1.0 if 1.0 in temps else max(temps)
    by_seed = {(r["arm"], r["seed"], r["T"], r["temperature"]): r for r in rows}

    def values(arm: str, T: int, t: float, metric: str) -> list[float]:
        return [float(r[metric]) for seed in seeds if (r := by_seed.get((arm, seed, T, t))) and metric in r]

    lines = [
        f"## Self-conditioned post-training: ablation on {spec.title}", "",
        f"Command: `{command}`", "",
        f"Base: `{repo_relative(args.base)}` (step {base_state.get('step')}, validation NELBO "
        f"{base_state.get('val_nelbo_bits', float('nan')):.4f} bits/token). Every arm is post-trained {args.steps} "
        f"steps (x2 arms: {2 * args.steps}) from the base model's EMA weights with `src/scmdm/configs/selfcond.yaml` "
        f"(lr {sc_config.train.lr}, batch {sc_config.train.batch_size}); seeds {seeds} (post-training seed = 100 + s, "
        f"sampling seed = s); {args.num_samples} samples per row, ancestral sampler, float64 draws; mean ± std over "
        f"seeds (n). {intro(spec, references, args, evaluator)} Time: per seed, the arm's sampling seconds over the "
        "control's, both measured by one process one after the other.", "",
        f"### Against T (temperature {tau})", "",
        "| arm | T | " + " | ".join(c.header for c in spec.by_T) + " | NELBO null | NELBO two-pass | time / control |",
        "|---|---:|" + "---:|" * (len(spec.by_T) + 3),
    ]
    for T in Ts:
        for arm in args.arms:
            first = values(arm, T, tau, spec.by_T[0].key)
            if not first:
                continue
            null, two = ([n / per_token for n in nelbos] for nelbos in validation_nelbos(rows, arm, seeds))
            ratios = time_ratios(by_seed, arm, T, tau, seeds)
            cells = [fmt(first, spec.by_T[0].digits, count=True)]
            cells += [fmt(values(arm, T, tau, c.key), c.digits) for c in spec.by_T[1:]]
            cells += [fmt(null, 4) if null else "–", fmt(two, 4) if two else "–",
                      fmt(ratios, 2, unit="×", count=True) if ratios and arm != "control" else "–"]
            lines.append(f"| {arm} | {T} | " + " | ".join(cells) + " |")
    lines += ["", "### Paired: arm minus control, and arm minus arm (same seed, T and temperature)", "",
              f"Differences per seed, then mean ± std over the seeds that have both rows (n). {spec.reading}", "",
              "| arm | T | temperature | " + " | ".join(c.header for c in spec.paired) + " | n |",
              "|---|---:|---:|" + "---:|" * (len(spec.paired) + 1)]
    pairs = [(arm, "control") for arm in args.arms if arm != "control"] + reference_pairs(args.arms)
    for arm, ref in pairs:
        for T in Ts:
            for t in temps:
                diffs = [paired_differences(by_seed, arm, T, t, seeds, c.key, ref) for c in spec.paired]
                if not diffs[0]:
                    continue
                label = arm if ref == "control" else f"{arm} − {ref}"
                lines.append(f"| {label} | {T} | {t} | " + " | ".join(
                    fmt(d, c.digits, sign=True) for d, c in zip(diffs, spec.paired, strict=True))
                             + f" | {len(diffs[0])} |")
    described = "; ".join(f"`{f.header}` = the arm's {f.what} minus the control's at the same {f.at}"
                          for f in spec.frontiers)
    ats = " or ".join(dict.fromkeys(f.at for f in spec.frontiers))
    lines += ["", "### The quality–diversity frontier (temperature sweep)", "",
              f"{described}, interpolated between the control's temperatures of the same seed, then mean ± std over "
              f"seeds (n); negative = beyond the control's frontier, – where the arm's {ats} lies outside the "
              "control's range.", "",
              "| T | arm | temperature | " + " | ".join(c.header for c in spec.sweep) + " | "
              + " | ".join(f.header for f in spec.frontiers) + " |",
              "|---:|---|---:|" + "---:|" * (len(spec.sweep) + len(spec.frontiers))]
    for T in Ts:
        for arm in args.arms:
            for t in temps:
                if not values(arm, T, t, spec.sweep[0].key):
                    continue
                cells = [fmt(values(arm, T, t, c.key), c.digits) for c in spec.sweep]
                for f in spec.frontiers:
                    margins = (seed_margins(by_seed, arm, T, t, seeds, temps, f.x, f.y) if arm != "control" else [])
                    digits = next((c.digits for c in spec.sweep if c.key == f.y), 3)
                    cells.append(fmt(margins, digits, sign=True, count=True) if margins else "–")
                lines.append(f"| {T} | {arm} | {t} | " + " | ".join(cells) + " |")
    if figure:
        lines += ["", f"![quality against diversity over the temperature sweep]({figure})"]
    return "\n".join(lines)


def plot_frontiers(spec: DomainAblation, rows: list[dict], references: dict[str, dict], args,
                   out_dir: Path) -> str | None:
    """Draw selfcond_<domain>_frontier.png in ``out_dir``: one panel per (frontier, T), each arm's quality against
    diversity over the temperatures (mean ± std over seeds), the reference rows as black marks. Returns its file name
    (None without any row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    Ts, temps = sorted(args.T), sorted(args.temperatures)
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(len(spec.frontiers), len(Ts), figsize=(4.8 * len(Ts), 4.0 * len(spec.frontiers)),
                             squeeze=False)
    labels = {c.key: c.header for c in (*spec.by_T, *spec.sweep)}
    for i, f in enumerate(spec.frontiers):
        for j, T in enumerate(Ts):
            ax = axes[i, j]
            for k, arm in enumerate(args.arms):
                pts = []
                for t in temps:
                    group = [r for r in rows if r["arm"] == arm and r["T"] == T and r["temperature"] == t
                             and r["seed"] in args.seeds]
                    if group:
                        pts.append((mean_std([float(r[f.x]) for r in group]), mean_std([float(r[f.y]) for r in group])))
                if pts:
                    ax.errorbar([p[0][0] for p in pts], [p[1][0] for p in pts], xerr=[p[0][1] for p in pts],
                                yerr=[p[1][1] for p in pts], marker="o", capsize=2, label=arm,
                                color=colours[k % len(colours)], ls="--" if arm in BASELINES else "-")
            for marker, (label, row) in zip("*xP", references.items(), strict=False):
                if f.x in row and f.y in row:
                    ax.plot([row[f.x]], [row[f.y]], marker=marker, color="black", ls="none", markersize=9, label=label)
            ax.set(xlabel=labels.get(f.x, f.x), ylabel=f"{labels.get(f.y, f.y)} (lower is better)",
                   title=f"T = {T}: {labels.get(f.y, f.y)} vs {labels.get(f.x, f.x)}")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Self-conditioning on {spec.title}:\neach arm over temperatures {', '.join(map(str, temps))}",
                 fontsize=10)
    fig.tight_layout()
    name = f"{spec.section}_frontier.png"
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    return name


if __name__ == "__main__":
    raise SystemExit(main())
