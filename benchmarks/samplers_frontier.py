"""Every sampler on one chart: sample quality against NFE and against wall clock, on one base model (issue 32).

For a budget of network evaluations, which sampler gives the best samples? Each sampler runs over a sweep of its own
knob (below), 3 sampling seeds a point, on the base model of one domain:

    ancestral       T                       the MDLM reverse chain, NFE = T
    cached          T                       the same samples as ancestral, NFE = steps where something was revealed
    first-hitting   –                       one reveal per event, NFE = canvas length (Zheng et al. 2024)
    top-k           T                       the T·k most confident positions, k = L/T per step (MaskGIT-style)
    blocks          T (block size B)        semi-autoregressive blocks, low-confidence remasking inside (LLaDA)
    threshold       τ                       reveal every position drawn with probability ≥ τ (Fast-dLLM); NFE adapts
    remdm           T (strategy, η)         remasking (ReMDM): more steps than positions keep refining
    speculative     W (window schedule)     the causal verifier accepts several drafted tokens per trunk pass
    self-cond       T                       a self-conditioned post-training of the base, ancestral sampler

The verifier (for speculative) and the self-conditioned model are post-trained from the base with
src/scmdm/configs/speculative.yaml and selfcond.yaml unless given (--verifier, --selfcond) or already in OUT.
NFE on the charts and in the budget table is *equivalent* NFE: trunk passes + verifier passes · causal_layers /
depth (a verifier pass costs one layer); for every other sampler it is the trunk passes per sequence.
``seconds`` is the sampling wall clock of a row (all its samples; the evaluator's time excluded), measured in this
run; run it with --threads 1 on a quiet core (or two invocations, one per core, on different --seeds: they share
the row cache OUT/rows.jsonl, and a last ``--cached-only`` call tabulates). A row is keyed by its arm, knob, seed,
temperature, sample count and the SHA-256 of the model's weights (not its path); rows already in
benchmarks/results/samplers_<domain>.json are reused, so a fresh clone measures only what the committed results lack.

    python -m benchmarks.samplers_frontier --base models/qm9_base --verifier models/qm9_base_spec   # QM9
    python -m benchmarks.samplers_frontier --base models/text_kjv --verifier models/text_kjv_spec \
        --num-samples 100 --batch-size 100                                                              # text
    python -m benchmarks.samplers_frontier --base models/qm9_base --arms ancestral threshold --seeds 0 --no-docs

Writes benchmarks/results/samplers_<domain>.json, docs/results/samplers_<domain>.png and the section
``samplers_<domain>`` of docs/results/samplers.md: the rows (mean ± std over seeds) and, for a few NFE budgets, the
sampler that wins on each quality metric, by how much, and at what diversity cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS,
    ROOT,
    append_row,
    cached_rows,
    command,
    fmt,
    mean_std,
    parse_args,
    repo_relative,
    weights_id,
    write_results_section,
)
from benchmarks.speculative import post_train
from scmdm.checkpoint import find_checkpoint, load_checkpoint, read_config
from scmdm.config import SampleConfig
from scmdm.workflows import evaluator_for, sample_and_evaluate

PAGE = RESULTS / "samplers.md"


def grid(domain: str, length: int) -> dict[str, tuple[str, list[dict]]]:
    """arm → (model, [settings of its rows]) for a canvas of ``length`` positions: each sampler's knob swept from a
    few NFE to beyond the canvas length (text's grid is thinner: a text row costs ~5× a molecule row)."""
    short = domain != "text"
    steps = [length // 4, length // 2, length, 2 * length] if short else [length // 8, length // 4, length // 2, length]
    block = 8 if short else 32
    return {
        "ancestral": ("base", [{"sampler": "ancestral", "steps": s} for s in steps]),
        "cached": ("base", [{"sampler": "cached", "steps": f * length} for f in ((1, 2, 4) if short else (1, 4))]),
        "first-hitting": ("base", [{"sampler": "first_hitting"}]),
        "top-k": ("base", [{"sampler": "topk", "steps": s} for s in ((4, 8, 12, 24) if short else (16, 32, 64))]),
        f"blocks B={block}": ("base", [{"sampler": "blocks", "block_size": block, "steps": s}
                                       for s in (length // 2, length)]),
        "threshold": ("base", [{"sampler": "threshold", "threshold": tau}
                               for tau in ((0.5, 0.7, 0.9, 0.99) if short else (0.5, 0.7, 0.9))]),
        "remdm loop η=0.02": ("base", [{"sampler": "remdm", "remask": "loop", "eta": 0.02, "steps": f * length}
                                       for f in ((1, 2, 4) if short else (2,))]),
        "remdm cap η=0.02": ("base", [{"sampler": "remdm", "remask": "cap", "eta": 0.02, "steps": 2 * length}]
                             if short else []),
        "speculative cosine": ("spec", [{"sampler": "speculative", "window": w, "min_window": 2,
                                         "window_schedule": "cosine"} for w in (4, 8, 16)]),
        "speculative constant": ("spec", [{"sampler": "speculative", "window": w, "window_schedule": "constant"}
                                          for w in ((2, 4) if short else (4,))]),
        "self-cond ancestral": ("sc", [{"sampler": "ancestral", "steps": s} for s in steps]),
    }


# domain → quality metrics (key, higher is better) on the charts and in the budget table, and the diversity column
QUALITY = {
    "molecule": ((("validity", True), ("valid_unique_novel", True), ("fcd", False)), "uniqueness"),
    "text": ((("scorer_bpc", False), ("gen_ppl", False)), "entropy_bits"),
}
BUDGETS = {"molecule": (6, 12, 24, 48), "text": (24, 48, 96, 192)}
LABELS = {"valid_unique_novel": "valid∧unique∧novel", "fcd": "FCD", "scorer_bpc": "scorer bits/char",
          "gen_ppl": "generative perplexity", "entropy_bits": "entropy (bits)", "uniqueness": "uniqueness"}


def setting_label(setting: dict) -> str:
    """The knob value of a row, as the table shows it."""
    if setting["sampler"] == "first_hitting":
        return "–"
    if setting["sampler"] == "threshold":
        return f"τ={setting['threshold']}"
    if setting["sampler"] == "speculative":
        return f"W={setting['window']}"
    return f"T={setting['steps']}"


def summarize(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple[str, str], dict[str, list[float]]]:
    """{(arm, knob label): {key: values over seeds}}, in the order the rows came."""
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for row in rows:
        entry = out.setdefault((row["arm"], row["label"]), {k: [] for k in keys})
        for k in keys:
            entry[k].append(float(row.get(k, float("nan"))))
    return out


def family(arm: str) -> str:
    """The sampler an arm is a setting of: 'remdm loop η=0.02' → remdm; cached is ancestral (the same samples)."""
    first = arm.split(" ")[0]
    return "ancestral" if first == "cached" else first


def budget_rows(summary: dict, domain: str) -> list[dict]:
    """For each NFE budget and quality metric: the best point with mean equivalent NFE ≤ budget, the best point of
    another sampler (the runner-up), the best ancestral point, and the diversity of each."""
    (metrics, diversity), out = QUALITY[domain], []
    for budget in BUDGETS[domain]:
        within = {key: s for key, s in summary.items() if mean_std(s["nfe_equivalent"])[0] <= budget + 1e-9}
        for metric, higher in metrics:
            def score(item, metric=metric, higher=higher):
                value = mean_std(item[1][metric])[0]
                return value if higher else -value

            ranked = sorted(within.items(), key=score, reverse=True)
            if not ranked:
                continue
            best = ranked[0]
            runner = next((item for item in ranked if family(item[0][0]) != family(best[0][0])), None)
            ancestral = next((item for item in ranked if item[0][0] in ("ancestral", "cached")), None)
            out.append({"budget": budget, "metric": metric, "higher": higher, "diversity": diversity,
                        "best": best, "runner_up": runner, "ancestral": ancestral})
    return out


def plot(summary: dict, domain: str, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    metrics = [m for m, _ in QUALITY[domain][0]] + [QUALITY[domain][1]]
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.6 * len(metrics), 7.6), squeeze=False)
    arms = list(dict.fromkeys(arm for arm, _ in summary))
    colors = plt.get_cmap("tab20")(range(len(arms)))
    for arm, color in zip(arms, colors, strict=True):
        points = sorted((s for (a, _), s in summary.items() if a == arm),
                        key=lambda s: mean_std(s["nfe_equivalent"])[0])
        style = dict(marker="o", ms=4, capsize=2, color=color, label=arm,
                     ls="-" if arm.startswith(("speculative", "self-cond")) else "--")
        for row, x in enumerate(("nfe_equivalent", "seconds")):
            for ax, metric in zip(axes[row], metrics, strict=True):
                ax.errorbar([mean_std(s[x])[0] for s in points], [mean_std(s[metric])[0] for s in points],
                            yerr=[mean_std(s[metric])[1] for s in points], **style)
    better = {m: "higher" if h else "lower" for m, h in QUALITY[domain][0]}
    for row, xlabel in enumerate(("NFE per sequence (speculative: trunk + verifier-equivalent)",
                                  "wall clock for all samples of a row (s)")):
        for ax, metric in zip(axes[row], metrics, strict=True):
            title = LABELS.get(metric, metric) + (f" ({better[metric]} is better)" if metric in better else "")
            log_y = metric == "fcd" and all(v > 0 for s in summary.values() for v in s[metric])  # FCD spans 1–20
            ax.set(xlabel=xlabel, title=title, xscale="log", yscale="log" if log_y else "linear")
            ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels overlap
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def markdown(summary: dict, budgets: list[dict], domain: str, args: argparse.Namespace, made_by: str,
             models: dict, states: dict) -> str:
    metrics, diversity = QUALITY[domain]
    columns = [m for m, _ in metrics] + [diversity]
    name = f"samplers_{domain}"
    base_state = states.get("base", {})
    lines = [f"## {'QM9' if domain == 'molecule' else 'Text'}: every sampler against NFE and wall clock", "",
             f"Command: `{made_by}`", "",
             f"Base: `{models['base']}` (validation NELBO {base_state.get('val_nelbo_bits', float('nan')):.4f} "
             f"bits/token, step {base_state.get('step')}); verifier: `{models.get('spec', '–')}`; self-conditioned: "
             f"`{models.get('sc', '–')}`. {args.num_samples} samples per row, sampling seeds {args.seeds} (mean ± std "
             f"over seeds), temperature {args.temperature}, float64 draws, {args.threads} thread(s). `NFE` = trunk "
             "passes per sequence, `equiv.` adds the speculative sampler's verifier passes at their cost (one layer "
             "of the trunk's depth); `seconds` = sampling wall clock of a row, measured in this run.", "",
             "### Which sampler for which budget", "",
             "Among the rows whose mean equivalent NFE is within the budget: the best on each metric, its margin over "
             "the best row of any other sampler (± = the two rows' seed std combined) and over the best ancestral "
             f"(or cached) row, and the {LABELS.get(diversity, diversity)} each has (the diversity cost).", "",
             "| NFE ≤ | metric | best | value | runner-up | margin | best ancestral | "
             f"{LABELS.get(diversity, diversity)}: best / ancestral |", "|---:|---|---|---:|---|---:|---|---:|"]

    def cell(item, metric: str) -> str:
        return "–" if item is None else fmt(item[1][metric], 3)

    for b in budgets:
        metric, best, runner, anc = b["metric"], b["best"], b["runner_up"], b["ancestral"]
        margin = "–"
        if runner is not None:
            diff = mean_std(best[1][metric])[0] - mean_std(runner[1][metric])[0]
            noise = (mean_std(best[1][metric])[1] ** 2 + mean_std(runner[1][metric])[1] ** 2) ** 0.5
            margin = f"{diff:+.3f} ± {noise:.3f}"
        runner_name = "–" if runner is None else " ".join(runner[0])
        lines.append(f"| {b['budget']} | {LABELS.get(metric, metric)} | {best[0][0]} {best[0][1]} | "
                     f"{cell(best, metric)} | {runner_name} ({cell(runner, metric)}) "
                     f"| {margin} | {'–' if anc is None else ' '.join(anc[0])} ({cell(anc, metric)}) | "
                     f"{cell(best, b['diversity'])} / {cell(anc, b['diversity'])} |")
    lines += ["", "### Every row", "",
              "| sampler | knob | seeds | NFE | equiv. | " + " | ".join(LABELS.get(c, c) for c in columns)
              + " | seconds |", "|---|---|---:|---:|---:|" + "---:|" * (len(columns) + 1)]
    for (arm, label), s in sorted(summary.items(), key=lambda item: (list(dict.fromkeys(a for a, _ in summary))
                                                                     .index(item[0][0]),
                                                                     mean_std(item[1]["nfe_equivalent"])[0])):
        lines.append(f"| {arm} | {label} | {len(s['nfe'])} | {fmt(s['nfe'], 2)} | {fmt(s['nfe_equivalent'], 2)} | "
                     + " | ".join(fmt(s[c], 2 if abs(mean_std(s[c])[0]) > 10 or c == 'fcd' else 3) for c in columns)
                     + f" | {fmt(s['seconds'], 1)} |")
    lines += ["", f"![quality against NFE (top) and wall clock (bottom)]({name}.png)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=str(ROOT / "models" / "qm9_base"), help="the base model (folder)")
    parser.add_argument("--verifier", help="the base with a causal verifier (default: post-trained into OUT/spec)")
    parser.add_argument("--selfcond", help="a self-conditioned post-training of the base (default: post-trained "
                                           "into OUT/sc)")
    parser.add_argument("--out", help="post-training runs and the row cache (default runs/samplers_<domain>)")
    parser.add_argument("--arms", nargs="+", help="a subset of the arms (default all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the wall clock depends on it)")
    parser.add_argument("--no-docs", action="store_true", help="write only OUT/ (a trial): docs/ untouched")
    parser.add_argument("--cached-only", action="store_true", help="tabulate the rows already in OUT/rows.jsonl")
    parser.add_argument("overrides", nargs="*", help="post-training overrides (verifier and self-conditioned), e.g. "
                                                     "train.threads=1")
    args = parse_args(parser, argv)
    made_by = command(__file__, argv)
    torch.set_num_threads(args.threads)

    base = Path(args.base)
    config = read_config(find_checkpoint(base) / "config.json")
    domain, length = config.data.domain, config.data.max_length
    if domain not in QUALITY:
        parser.error(f"{base} is a {domain} model; this benchmark knows {', '.join(QUALITY)}")
    arms = grid(domain, length)
    chosen = args.arms or list(arms)
    unknown = [a for a in chosen if a not in arms]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {list(arms)}")
    for arm in chosen:  # every setting is checked before anything is trained or sampled
        for setting in arms[arm][1]:
            SampleConfig(**setting).validate()
    out = Path(args.out) if args.out else ROOT / "runs" / f"samplers_{domain}"
    out.mkdir(parents=True, exist_ok=True)

    needed = {arms[a][0] for a in chosen}
    models = {"base": base}
    if "spec" in needed:
        models["spec"] = Path(args.verifier) if args.verifier else post_train(
            base, out / "spec", "speculative", args.overrides, cached_only=args.cached_only)
    if "sc" in needed:
        models["sc"] = Path(args.selfcond) if args.selfcond else post_train(
            base, out / "sc", "selfcond", args.overrides, cached_only=args.cached_only)
    loaded = {key: load_checkpoint(path) for key, path in models.items() if key in needed | {"base"}}
    evaluator = evaluator_for(loaded["base"].config, loaded["base"].split_info, tokenizer=loaded["base"].tokenizer)

    name = f"samplers_{domain}"
    cache_file = out / "rows.jsonl"
    cache = cached_rows(cache_file, ROOT / "benchmarks" / "results" / f"{name}.json")
    ids = {key: weights_id(ld) for key, ld in loaded.items()}
    rows = []
    for seed in args.seeds:  # arms interleaved per seed: the wall clocks of one seed are measured side by side
        for arm in chosen:
            model, settings = arms[arm]
            for setting in settings:
                label = setting_label(setting)
                key = json.dumps([arm, label, seed, args.temperature, args.num_samples, ids[model]])
                if key not in cache:
                    if args.cached_only:
                        continue
                    sample = SampleConfig(num_samples=args.num_samples, batch_size=args.batch_size, seed=seed,
                                          temperature=args.temperature, **setting)
                    ev = sample_and_evaluate(loaded[model], evaluator, sample, show_progress=False)
                    spec = loaded[model].config
                    causal = float(ev.metrics.get("nfe_causal", 0.0))
                    row = {"key": key, "arm": arm, "label": label, "seed": seed, "model": repo_relative(models[model]),
                           **{k: v for k, v in ev.metrics.items() if isinstance(v, (int, float, str))},
                           "nfe_equivalent": ev.metrics["nfe"] + causal * spec.speculative.causal_layers
                           / spec.model.depth}
                    append_row(cache_file, row)
                    cache[key] = row
                    shown = " ".join(f"{m} {row.get(m, float('nan')):.4g}" for m, _ in QUALITY[domain][0])
                    print(f"seed={seed} {arm:<22} {label:<7} NFE {row['nfe']:7.2f} equiv {row['nfe_equivalent']:7.2f} "
                          f"{shown} {row['seconds']:.1f}s", flush=True)
                rows.append(cache[key])

    metrics, diversity = QUALITY[domain]
    summary = summarize(rows, ("nfe", "nfe_equivalent", "seconds", diversity, *(m for m, _ in metrics)))
    budgets = budget_rows(summary, domain)
    states = {key: ld.state for key, ld in loaded.items()}
    named = {k: repo_relative(v) for k, v in models.items()}  # docs do not name one machine's paths
    section = markdown(summary, budgets, domain, args, made_by, named, states)
    tabulated = {row["key"] for row in rows}  # rows measured before but not asked for this time are kept too
    others = [row for key, row in cache.items() if key not in tabulated]
    payload = {"command": made_by, "domain": domain, "rows": rows, "other_rows": others, "models": named,
               "weights": ids,
               "model_states": states, "seeds": args.seeds, "num_samples": args.num_samples,
               "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                           "torch": torch.__version__}, "written": time.strftime("%Y-%m-%d")}
    if args.no_docs:
        (out / f"{name}.json").write_text(json.dumps(payload, indent=1))
        plot(summary, domain, out / f"{name}.png")
    else:
        (ROOT / "benchmarks" / "results" / f"{name}.json").write_text(json.dumps(payload, indent=1))
        plot(summary, domain, RESULTS / f"{name}.png")
        write_results_section(name, section, page=PAGE)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
