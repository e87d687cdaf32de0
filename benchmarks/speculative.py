"""Self-speculative sampling: quality against NFE, on any domain (issue: self-speculative MDM; docs/METHODS.md §3).

Models (post-training is skipped when its run folder already holds the final checkpoint):

    base      --base (runs/qm9_base, written by benchmarks/qm9_base.py; runs/text_kjv by benchmarks/text_base.py
              for text: the domain is the base model's)
    spec      base + a causal verifier trained on the frozen trunk (src/scmdm/configs/speculative.yaml) → OUT/spec
    sc        a self-conditioned post-training of the base: --sc-base, by default the mask_add λ = 1 run of
              benchmarks/selfcond_ablation.py (runs/selfcond/mask_add@1/seed0) when it exists, otherwise
              post-trained here with src/scmdm/configs/selfcond.yaml → OUT/sc
    sc_spec   sc + a verifier on its frozen trunk → OUT/sc_spec

Arms (rows = arm × setting × sampling seed):

    ancestral        base, ancestral sampler, T in --T               (NFE = T)
    cached           base, cached ancestral sampler, T in --T        (same samples as ancestral, fewer NFE)
    speculative      spec, speculative sampler, W in --windows for each --schedules
    draft-only       spec with its verifier's output projection zeroed, so q = p and every draft is accepted:
                     W tokens of σ per trunk pass, drawn independently from the draft (the control that says
                     how much of the speculative gain is verification, not the fixed number revealed per pass)
    sc-ancestral     sc, ancestral sampler                            (carries p_prev)
    sc-speculative   sc_spec, speculative sampler                     (carries p_prev between trunk passes)

The verifier's trunk is frozen, so spec's draft *is* the base model: the two arms differ only in the sampler.
NFE of the speculative sampler = trunk passes per sequence; verifier passes are reported apart, and as
"equivalent NFE" = trunk + verifier · causal_layers / depth (a verifier pass costs one layer of depth). The
NFE ratio at matched quality reads the baseline's NFE at the speculative row's quality off the baseline's
curve (piecewise linear in log NFE, first crossing); the wall-clock ratio does the same for its seconds,
measured in the same run. Rows are cached in OUT/rows.jsonl, so an interrupted run continues where it stopped.

    python -m benchmarks.speculative                             # everything (CPU hours, see docs/SPECULATIVE.md)
    python -m benchmarks.speculative --arms ancestral speculative --seeds 0 --T 8 16 32 --windows 2 4 8
    python -m benchmarks.speculative --base runs/text_kjv --arms ancestral speculative --num-samples 100 \
        --batch-size 100 --T 8 16 32 64 128 --windows 2 4 8 16 32   # text (see docs/SPECULATIVE.md)

Quality is the domain's (QUALITY below): molecules are matched on validity and FCD, text on the generative
perplexity under SmolLM2-135M and the same NLL in bits per character (its unigram entropy is plotted beside
it: a sampler that buys perplexity with repetition shows there). Writes benchmarks/results/NAME.json,
docs/results/NAME.png and the ``NAME`` section of its page, docs/results/speculative_qm9.md for molecules and
docs/results/NAME.md otherwise; NAME = ``speculative`` for molecules and ``speculative_<domain>`` otherwise
(``--no-docs``: only OUT/NAME.json, for trial runs); OUT defaults to runs/NAME.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
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
    write_results_section,
)
from scmdm.checkpoint import find_checkpoint, load_checkpoint, read_config, read_state
from scmdm.config import SampleConfig
from scmdm.domains import get_domain
from scmdm.training import Trainer
from scmdm.workflows import evaluator_for, post_train_config, sample_and_evaluate

ARMS = {  # arm → (model, sampler)
    "ancestral": ("base", "ancestral"),
    "cached": ("base", "cached"),
    "speculative": ("spec", "speculative"),
    "draft-only": ("spec_zero", "speculative"),
    "sc-ancestral": ("sc", "ancestral"),
    "sc-speculative": ("sc_spec", "speculative"),
}
BASELINES = {"speculative": ("ancestral", "cached", "draft-only"), "sc-speculative": ("sc-ancestral",)}
# domain → (metric, higher is better, matched on: the NFE ratio is read at its value) of the plots and ratios
QUALITY = {
    "molecule": (("validity", True, True), ("fcd", False, True)),
    "text": (("gen_ppl", False, True), ("entropy_bits", True, False), ("scorer_bpc", False, True)),
    "dna": (("js_6", False, True), ("gc_abs_diff", False, True)),
    "image": (("fd_cnn", False, True), ("classifier_score", True, True)),
}
DOMAIN_TITLES = {"molecule": "QM9", "text": "text", "dna": "DNA", "image": "images"}
HEADERS = {"valid_unique_novel": "valid∧unique∧novel", "fcd": "FCD"}  # table headers that differ from the key
NOT_QUALITY = {"n_samples", "nfe", "seconds", "chars", "nelbo_bpc", "qed", "sa", "gc", "valid"}


def metric_columns(domain: str) -> tuple[str, ...]:
    """The sample-quality columns of a domain's metrics table (what the rows of this benchmark average)."""
    return tuple(c for c in get_domain(domain).table_columns if c not in NOT_QUALITY)


def results_name(domain: str) -> str:
    return "speculative" if domain == "molecule" else f"speculative_{domain}"


def results_page(domain: str) -> Path:
    """The docs/results page of a domain's section: speculative_qm9.md for molecules, speculative_<domain>.md else."""
    return RESULTS / ("speculative_qm9.md" if domain == "molecule" else f"{results_name(domain)}.md")


def post_train(init_from: Path, run_dir: Path, config_name: str, overrides: list[str], *,
               cached_only: bool = False) -> Path:
    """Post-train ``init_from`` into ``run_dir`` with src/scmdm/configs/<config_name>.yaml, unless already done (or
    ``cached_only``: the run must exist)."""
    config = post_train_config(init_from, overrides, config_name)
    state_file = sorted((run_dir / "checkpoints").glob("step_*/state.json"))
    if cached_only:
        if not state_file:
            raise SystemExit(f"--cached-only: {run_dir} has no checkpoint; run without --cached-only first")
        return run_dir
    if state_file:
        done = json.loads(state_file[-1].read_text())["step"]
        planned = json.loads((run_dir / "config.json").read_text())["train"]["steps"]
        if planned != config.train.steps:  # never extend or cut short a run whose rows may be cached
            raise SystemExit(f"{run_dir} is a post-training of {planned} steps ({done} done), not the "
                             f"{config.train.steps} asked for; pass the step count it was trained with "
                             f"(--post-train-steps / --sc-post-train-steps) or move it aside to train afresh")
        if done >= config.train.steps:
            return run_dir
    print(f"post-training ({config_name}) {init_from} → {run_dir}: {config.train.steps} steps", flush=True)
    Trainer(config, run_dir, init_from=init_from).fit()
    return run_dir


def verifier_validation(checkpoint: Path) -> dict:
    """The last validation row of a verifier's run that has ``val_target_bits`` (with ``val_draft_bits``, the
    draft measured on the same σ and revealed counts), from the run's metrics.jsonl; {} if none."""
    rows = read_rows(Path(checkpoint).resolve().parents[1] / "metrics.jsonl")
    return next((r for r in reversed(rows) if "val_target_bits" in r), {})


def zero_verifier(model: torch.nn.Module) -> None:
    """Zero the verifier's contribution c_k (its output projection): q = p, and every draft is accepted
    (scmdm/model/verifier.py)."""
    with torch.no_grad():
        model.causal.out_proj.weight.zero_()
        model.causal.out_proj.bias.zero_()
    if model.causal.output_layer is not None:  # a separate verifier head becomes the trunk's again
        model.causal.output_layer.load_state_dict(model.output_layer.state_dict())


def settings(arm: str, args: argparse.Namespace) -> list[dict]:
    """The sampler settings of an arm's rows."""
    if ARMS[arm][1] != "speculative":
        return [{"steps": T} for T in args.T]
    return [{"window": w, "window_schedule": s, "min_window": min(args.min_window, w),
             "verify_loops": args.verify_loops} for s in args.schedules for w in args.windows
            if s == "constant" or w > args.min_window]  # W ≤ min_window: every schedule is the constant one


def setting_label(setting: dict) -> str:
    if "steps" in setting:
        return f"T={setting['steps']}"
    label = f"W={setting['window']}"
    if setting["window_schedule"] != "constant":
        label += f" {setting['window_schedule']} from {setting['min_window']}"
    return label + (f" +{setting['verify_loops']} loops" if setting["verify_loops"] else "")


def matched(curve: list[tuple[float, float, float]], quality: float,
            higher_is_better: bool) -> tuple[float, float] | None:
    """(NFE, seconds) at which a baseline curve [(nfe, quality, seconds)], sorted by NFE, first reaches
    ``quality``, interpolating linearly in log NFE between the two measured points around the crossing.
    None when the curve never reaches it, or already does at its smallest NFE (no point below to interpolate)."""
    def good(q: float) -> bool:
        return q >= quality if higher_is_better else q <= quality

    if not curve or good(curve[0][1]):
        return None
    for (n0, q0, s0), (n1, q1, s1) in zip(curve, curve[1:], strict=False):
        if good(q1):
            w = (quality - q0) / (q1 - q0)
            return math.exp(math.log(n0) + w * (math.log(n1) - math.log(n0))), s0 + w * (s1 - s0)
    return None


def series_of(row: dict) -> str:
    """The curve a row belongs to: its arm, split by window schedule for the speculative arms."""
    if "window" not in row:
        return row["arm"]
    loops = f" +{row['verify_loops']} loops" if row["verify_loops"] else ""
    return f"{row['arm']} ({row['window_schedule']}{loops})"


def summarize(rows: list[dict], metrics: tuple[str, ...]) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """{(arm, series, label): {metric: values over seeds}}, in the order the rows came."""
    summary: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for r in rows:
        entry = summary.setdefault((r["arm"], series_of(r), r["label"]),
                                   {k: [] for k in (*metrics, "nfe", "nfe_causal", "nfe_equivalent", "seconds")})
        for k in entry:
            entry[k].append(float(r.get(k, 0.0)))
    return summary


def curve_of(summary: dict, series: str, metric: str) -> list[tuple[float, float, float]]:
    """[(NFE, metric, seconds)] of one series, means over seeds, sorted by NFE."""
    return sorted(((mean_std(s["nfe"])[0], mean_std(s[metric])[0], mean_std(s["seconds"])[0])
                   for (_, name, _), s in summary.items() if name == series), key=lambda point: point[0])


def ratio_rows(summary: dict, arms: list[str], quality_metrics: tuple[tuple[str, bool, bool], ...]) -> list[dict]:
    """For every speculative row and each of its baselines: NFE and wall-clock ratios at matched quality, for each
    metric of ``quality_metrics`` that is matched on."""
    out = []
    for (arm, series, label), s in summary.items():
        for baseline in BASELINES.get(arm, ()):
            if baseline not in arms:
                continue
            for metric, higher in ((m, h) for m, h, matched_on in quality_metrics if matched_on):
                nfe, quality, seconds = (mean_std(s["nfe"])[0], mean_std(s[metric])[0], mean_std(s["seconds"])[0])
                equivalent = mean_std(s["nfe_equivalent"])[0]
                curve = baseline if ARMS[baseline][1] != "speculative" else f"{baseline} (constant)"
                hit = matched(curve_of(summary, curve, metric), quality, higher)
                out.append({"arm": arm, "series": series, "baseline": baseline, "label": label, "metric": metric,
                            "quality": quality, "nfe": nfe, "nfe_equivalent": equivalent,
                            "baseline_nfe": hit[0] if hit else None, "nfe_ratio": hit[0] / nfe if hit else None,
                            "nfe_equivalent_ratio": hit[0] / equivalent if hit else None,
                            "time_ratio": hit[1] / seconds if hit else None})
    return out


def plot(summary: dict, out_png: Path, quality: tuple[tuple[str, bool, bool], ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [metric for metric, _, _ in quality]
    wall_metric = [metric for metric, _, matched in quality if matched][-1]  # a matched metric against seconds
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(5.3 * (len(metrics) + 1), 4.2))
    for series in dict.fromkeys(name for (_, name, _) in summary):
        points = sorted((s for (_, name, _), s in summary.items() if name == series),
                        key=lambda s: mean_std(s["nfe"])[0])
        style = dict(marker="o", capsize=3, label=series, ls="-" if "speculative" in series else "--")
        for ax, key, x in [*((ax, m, "nfe") for ax, m in zip(axes[:-1], metrics, strict=True)),
                                  (axes[-1], wall_metric, "seconds")]:
            ax.errorbar([mean_std(s[x])[0] for s in points], [mean_std(s[key])[0] for s in points],
                        yerr=[mean_std(s[key])[1] for s in points], **style)
    better = {m: "higher" if h else "lower" for m, h, _ in quality}
    titles = [("NFE (trunk passes per sequence)", f"{m} ({better[m]} is better)") for m in metrics]
    for ax, (xlabel, title) in zip(axes, [*titles, ("wall clock for all samples (s)", f"{wall_metric} against "
                                                                                      "wall clock")], strict=True):
        ax.set_xscale("log", base=2)
        ax.set(xlabel=xlabel, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=str(ROOT / "runs" / "qm9_base"), help="the base model (run folder)")
    parser.add_argument("--sc-base", default=None,
                        help="a self-conditioned post-training of the base (default: runs/selfcond/mask_add@1/seed0 "
                             "if it exists, else one is post-trained into OUT/sc)")
    parser.add_argument("--out", default=None, help="post-training runs and row cache (default runs/NAME)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    parser.add_argument("--T", type=int, nargs="+", default=[4, 6, 8, 12, 16, 24, 32, 64],
                        help="steps of the ancestral / cached baselines")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 24],
                        help="speculative windows W (the largest, for linear / cosine schedules)")
    parser.add_argument("--schedules", nargs="+", default=["constant", "cosine"],
                        choices=["constant", "linear", "cosine"])
    parser.add_argument("--min-window", type=int, default=2, help="W at nothing revealed (linear / cosine)")
    parser.add_argument("--verify-loops", type=int, default=0, help="extra verifier-only passes per trunk pass")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500, help="samples per sampler batch")
    parser.add_argument("--post-train-steps", type=int, default=None,
                        help="verifier post-training steps (default: src/scmdm/configs/speculative.yaml)")
    parser.add_argument("--sc-post-train-steps", type=int, default=None,
                        help="steps of the self-conditioned post-training, when one is run here (default: "
                             "src/scmdm/configs/selfcond.yaml)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/ or benchmarks/results (a trial)")
    parser.add_argument("--cached-only", action="store_true",
                        help="tabulate only the rows already in OUT/rows.jsonl: no post-training, no sampling; a "
                             "missing (arm, setting, seed) is left out and the `seeds` column says how many each has")
    parser.add_argument("overrides", nargs="*", help="verifier post-training overrides, e.g. speculative.head=separate")
    args = parse_args(parser)
    made_by = command(__file__)

    base = Path(args.base)
    if error := missing_base(base):  # the defaults (runs/qm9_base, runs/text_kjv) are runs a fresh clone lacks
        parser.error(error)
    domain = read_config(find_checkpoint(base) / "config.json").data.domain  # no weights needed yet
    name, quality, metrics = results_name(domain), QUALITY[domain], metric_columns(domain)
    out = Path(args.out) if args.out else ROOT / "runs" / name
    out.mkdir(parents=True, exist_ok=True)

    def steps(n: int | None) -> list[str]:
        return [] if not n else [f"train.steps={n}", f"train.eval_every={n}", f"train.save_every={n}",
                                 f"train.warmup_steps={min(50, max(1, n // 10))}"]

    overrides = [*args.overrides, f"train.device={args.device}", *steps(args.post_train_steps)]
    t0 = time.perf_counter()
    runs = {"base": base}
    needed = {ARMS[arm][0] for arm in args.arms}
    if needed & {"spec", "spec_zero"}:
        runs["spec"] = post_train(base, out / "spec", "speculative", overrides, cached_only=args.cached_only)
    if needed & {"sc", "sc_spec"}:
        default_sc = ROOT / "runs" / "selfcond" / "mask_add@1" / "seed0"
        if args.sc_base:
            runs["sc"] = Path(args.sc_base)
        elif (any((default_sc / "checkpoints").glob("step_*"))  # the ablation's run, if it started from this base
              and str(base.resolve()) in str(read_state(find_checkpoint(default_sc)).get("init_from", ""))):
            runs["sc"] = default_sc
        else:
            runs["sc"] = post_train(base, out / "sc", "selfcond",
                                    [f"train.device={args.device}", *steps(args.sc_post_train_steps)],
                                    cached_only=args.cached_only)
        if "sc_spec" in needed:
            runs["sc_spec"] = post_train(runs["sc"], out / "sc_spec", "speculative", overrides,
                                          cached_only=args.cached_only)
    train_minutes = (time.perf_counter() - t0) / 60

    if "spec_zero" in needed:
        runs["spec_zero"] = runs["spec"]
    loaded = {name: load_checkpoint(path, device=args.device) for name, path in runs.items() if name in needed}
    if "spec_zero" in loaded:
        zero_verifier(loaded["spec_zero"].model)
    first = next(iter(loaded.values()))
    evaluator = evaluator_for(first.config, first.split_info, tokenizer=first.tokenizer)
    cache_file = out / "rows.jsonl"
    cache = {row["key"]: row for row in read_rows(cache_file)}
    rows = []
    for seed in args.seeds:
        # interleave the arms per seed, so the wall-clock ratios compare rows measured side by side
        for arm in args.arms:
            model_name, sampler = ARMS[arm]
            for setting in settings(arm, args):
                label = setting_label(setting)
                key = json.dumps([arm, label, seed, args.temperature, args.num_samples, str(runs[model_name])])
                if key not in cache and args.cached_only:
                    continue
                if key not in cache:
                    sample = SampleConfig(sampler=sampler, num_samples=args.num_samples, batch_size=args.batch_size,
                                          temperature=args.temperature, seed=seed, **setting)
                    ev = sample_and_evaluate(loaded[model_name], evaluator, sample, device=args.device,
                                             show_progress=False)
                    m = loaded[model_name].config.model
                    layers = loaded[model_name].config.speculative.causal_layers
                    causal = ev.metrics.get("nfe_causal", 0.0)
                    cache[key] = {"key": key, "arm": arm, "label": label, "seed": seed, "model": str(runs[model_name]),
                                  "temperature": args.temperature, "num_samples": args.num_samples, **setting,
                                  **ev.metrics, "nfe_causal": causal,
                                  "nfe_equivalent": ev.metrics["nfe"] + causal * layers / m.depth,
                                  "val_nelbo_bits": loaded[model_name].state.get("val_nelbo_bits"),
                                  "val_target_bits": loaded[model_name].state.get("val_target_bits")}
                    append_row(cache_file, cache[key])
                    r = cache[key]
                    shown = " ".join(f"{k} {r[k]:.4g}" for k in metrics)
                    print(f"seed={seed} {arm:<15} {label:<24} NFE {r['nfe']:6.2f} (+{causal:5.2f} verifier) {shown} "
                          f"{r['seconds']:.1f}s", flush=True)
                rows.append(cache[key])

    summary = summarize(rows, metrics)
    ratios = ratio_rows(summary, args.arms, quality)
    states = {name: ld.state for name, ld in loaded.items()}
    payload = {"command": made_by, "domain": domain, "rows": rows, "ratios": ratios, "arms": args.arms,
               "seeds": args.seeds,
               "models": {name: str(path) for name, path in runs.items()}, "model_states": states,
               "train_minutes_this_invocation": train_minutes,
               "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                           "torch": torch.__version__, "device": args.device}}
    if args.no_docs:
        (out / f"{name}.json").write_text(json.dumps(payload, indent=1))
        plot(summary, out / f"{name}.png", quality)
        print(markdown(args, summary, ratios, loaded, made_by, domain))
        return 0
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(payload, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(summary, RESULTS / f"{name}.png", quality)
    section = markdown(args, summary, ratios, loaded, made_by, domain)
    write_results_section(name, section, page=results_page(domain))
    print(section)
    return 0


def markdown(args: argparse.Namespace, summary: dict, ratios: list[dict], loaded: dict, command: str,
             domain: str = "molecule") -> str:
    spec = loaded.get("spec") or loaded.get("sc_spec")
    metrics, name = metric_columns(domain), results_name(domain)
    lines = [f"## Self-speculative sampling on {DOMAIN_TITLES[domain]}: quality against NFE", "",
             f"Command: `{command}`", ""]
    if spec is not None:
        c = spec.config
        keys = "σ(k), its token's" if c.speculative.key_positions == "token" else "σ(k+1), the predicted"
        lines += [f"Verifier: {c.speculative.causal_layers} causal layer(s), {c.speculative.head} head, "
                  f"state_norm {'on' if c.speculative.state_norm else 'off'}, keys rotated by {keys} position; trained "
                  f"{spec.state.get('step')} steps on the frozen trunk (lr {c.train.lr}, batch {c.train.batch_size}); "
                  "validation NLL (bits/token, the same σ and revealed counts for both; the trainer's own NELBO, "
                  "another estimator, in brackets): "
                  + ", ".join(f"{name}: draft {bits.get('val_draft_bits', float('nan')):.4f}, target "
                              f"{bits.get('val_target_bits', float('nan')):.4f} "
                              f"({ld.state.get('val_nelbo_bits', float('nan')):.4f})"
                              for name, ld in loaded.items() if ld.model.speculative and name != "spec_zero"
                              for bits in [verifier_validation(ld.path)]) + ".", ""]
    lines += [f"{args.num_samples} samples per row, sampling seeds {args.seeds} (mean ± std over the `seeds` a row "
              f"has), temperature {args.temperature}, float64 draws. NFE = trunk passes per sequence; `verifier` = "
              "verifier-only passes per sequence; `equiv.` = NFE + verifier · causal_layers / depth. `seconds` = "
              "wall clock for all samples of a row, measured in this run.", "",
              "| arm | setting | seeds | NFE | verifier | equiv. | " + " | ".join(HEADERS.get(k, k) for k in metrics)
              + " | seconds |",
              "|---|---|---:|---:|---:|---:|" + "---:|" * (len(metrics) + 1)]
    for series in dict.fromkeys(name for (_, name, _) in summary):
        keyed = sorted(((label, s) for (_, name, label), s in summary.items() if name == series),
                       key=lambda item: mean_std(item[1]["nfe"])[0])
        for label, s in keyed:
            lines.append(f"| {series} | {label} | {len(s['nfe'])} | {fmt(s['nfe'], 2)} | {fmt(s['nfe_causal'], 2)} | "
                         f"{fmt(s['nfe_equivalent'], 2)} | "
                         + " | ".join(fmt(s[k], 2 if mean_std(s[k])[0] > 10 or k == "fcd" else 3) for k in metrics)
                         + f" | {fmt(s['seconds'], 1)} |")
    lines += ["", "### NFE and wall-clock ratios at matched quality", "",
              "For each speculative row: the baseline's NFE at which its curve (mean over seeds, piecewise linear in "
              "log NFE) first reaches the row's "
              f"{' or '.join(m for m, _, on in QUALITY[domain] if on)}, divided by the row's NFE (`ratio`) and by its "
              "equivalent NFE (`ratio equiv.`); `time ratio` = the baseline's interpolated seconds over the row's "
              "seconds. Above 1 = the speculative sampler needs less. – = the baseline never reaches that quality "
              "in the range of T measured (or already exceeds it at its smallest T).", "",
              "| arm | setting | baseline | matched on | quality | NFE | baseline NFE | ratio | ratio equiv. "
              "| time ratio |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in ratios:
        def cell(value: float | None, digits: int = 2) -> str:
            return "–" if value is None else f"{value:.{digits}f}"

        lines.append(f"| {r['series']} | {r['label']} | {r['baseline']} | {r['metric']} | {r['quality']:.3f} | "
                     f"{r['nfe']:.2f} | {cell(r['baseline_nfe'], 1)} | {cell(r['nfe_ratio'])} | "
                     f"{cell(r['nfe_equivalent_ratio'])} | {cell(r['time_ratio'])} |")
    lines += ["", f"![quality against NFE]({name}.png)"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
