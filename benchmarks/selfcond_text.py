"""Self-conditioned post-training ablation on text: control vs λ = 0.5 vs λ = 1 (docs/METHODS.md §2), ≥ 3 seeds.

The same arms, post-training and caching as benchmarks/selfcond_ablation.py (whose ``post_train`` and arm
syntax this script uses: ``control``, ``INJ@RATE``, ``INJ@RATEx2``, ``base``), on a text base model from
benchmarks/text_base.py, judged by the text evaluator: the samples' bits per character and perplexity under
SmolLM2-135M, their unigram entropy, next to real held-out text. Self-conditioning can look better merely by
sharpening, so every arm is sampled over a temperature sweep and compared on the quality–diversity frontier:
``margin`` = the arm's scorer bits/char minus the control's at the same entropy (interpolated between the
control's temperatures, per seed against that seed's control) — negative means beyond the control's frontier.
Arms are compared with the control per seed (paired), and λ = 1 with λ = 0.5, as in the QM9 ablation.

    python -m benchmarks.selfcond_text                                  # base runs/text_kjv, 3 seeds
    python -m benchmarks.selfcond_text --seeds 0 --T 64 --temperatures 1.0 --num-samples 50   # a pilot

Rows are cached in OUT/rows.jsonl (an interrupted run continues). Writes benchmarks/results/selfcond_text.json
and the ``selfcond_text`` section of docs/results/selfcond_text.md.
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
    command,
    fmt,
    parse_args,
    read_rows,
    repo_relative,
    write_results_section,
)
from benchmarks.selfcond_ablation import (
    arm_runs,
    paired_differences,
    reference_pairs,
    row_key,
    seed_margins,
    sweep_rows,
    time_ratios,
    validation_nelbos,
)
from scmdm.checkpoint import load_checkpoint
from scmdm.domains.text.scorer import SCORER_NAME
from scmdm.workflows import evaluator_for, post_train_config

METRICS = ("gen_ppl", "scorer_bpc", "entropy_bits", "chars")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=str(ROOT / "runs" / "text_kjv"), help="the base text model (run folder)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "selfcond_text"), help="post-training runs, row cache")
    parser.add_argument("--arms", nargs="+", default=["base", "control", "mask_add@0.5", "mask_add@1"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=320, help="post-training steps per arm (x2 arms: twice)")
    parser.add_argument("--T", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.9, 1.0])
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/ or benchmarks/results/ (a trial)")
    parser.add_argument("--cached-only", action="store_true",
                        help="train and sample nothing: tables from the cached rows of the given arms, seeds, T and "
                             "temperatures that exist (e.g. after parallel runs, one per seed)")
    parser.add_argument("overrides", nargs="*", help="post-training config overrides, e.g. train.lr=3e-4")
    args = parse_args(parser)
    made_by = command(__file__)

    base, out = Path(args.base), Path(args.out)
    base_model = load_checkpoint(base, device=args.device)
    if base_model.config.data.domain != "text":
        parser.error(f"{base} is not a text model; benchmarks/selfcond_ablation.py is the molecule ablation")
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*args.overrides, f"train.device={args.device}"]
    t0 = time.perf_counter()
    runs = arm_runs(base, out, args.arms, args.seeds, args.steps, overrides, cached_only=args.cached_only)
    train_minutes = (time.perf_counter() - t0) / 60
    loaded = {key: base_model if path == base else load_checkpoint(path, device=args.device)
              for key, path in runs.items()}
    # The post-trained runs share the base model's data and tokenizer: with --cached-only they may all be gone.
    evaluator = evaluator_for(base_model.config, base_model.split_info, tokenizer=base_model.tokenizer,
                              device=args.device)
    cache_file = out / "rows.jsonl"
    cache = {row_key(r): r for r in read_rows(cache_file)}
    reference_key = ("real held-out text", -1, 0, 0.0, args.num_samples)
    if reference_key not in cache:
        cache[reference_key] = {"arm": "real held-out text", "seed": -1, "T": 0, "temperature": 0.0,
                                "num_samples": args.num_samples,
                                **evaluator.reference_row(n=args.num_samples).as_dict()}
        append_row(cache_file, cache[reference_key])
    reference = cache[reference_key]
    rows = sweep_rows(
        args, cache, cache_file, loaded, evaluator,
        describe=lambda m: (f"bits/char {m['scorer_bpc']:.3f} gen PPL {m['gen_ppl']:.1f} "
                            f"entropy {m['entropy_bits']:.3f} {m['seconds']:.1f}s"),
        batch_size=250)

    payload = {"command": made_by, "rows": rows, "reference": reference, "arms": args.arms, "seeds": args.seeds,
               "post_train_steps": args.steps, "base_state": base_model.state,
               "train_minutes_this_invocation": train_minutes,
               "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                           "torch": torch.__version__, "device": args.device}}
    section = markdown(args, rows, post_train_config(base, overrides), reference, made_by, payload["base_state"],
                       evaluator.chars_per_token)
    print(section)
    if args.no_docs:
        (out / "selfcond_text.json").write_text(json.dumps(payload, indent=1))
        return 0
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "selfcond_text.json").write_text(json.dumps(payload, indent=1))
    write_results_section("selfcond_text", section, page=RESULTS / "selfcond_text.md")
    return 0


def markdown(args, rows: list[dict], sc_config, reference: dict, command: str, base_state: dict,
             cpt: float) -> str:
    """The ``selfcond_text`` section of docs/results/selfcond_text.md from the cached rows (one per arm, seed, T,
    temperature; each carries its run's validation NELBO), with ``sc_config`` the post-training config (its lr and
    batch)."""
    temps, Ts, seeds = sorted(args.temperatures), sorted(args.T), args.seeds
    tau = 1.0 if 1.0 in temps else max(temps)
    by_seed = {(r["arm"], r["seed"], r["T"], r["temperature"]): r for r in rows}

    def values(arm: str, T: int, t: float, metric: str) -> list[float]:
        return [float(r[metric]) for seed in seeds if (r := by_seed.get((arm, seed, T, t)))]

    lines = [
        "## Self-conditioned post-training: ablation on text", "",
        f"Command: `{command}`", "",
        f"Base: `{repo_relative(args.base)}` (step {base_state.get('step')}, validation NELBO "
        f"{base_state.get('val_nelbo_bits', float('nan')):.4f} bits/token). Every arm is post-trained {args.steps} "
        f"steps (x2 arms: {2 * args.steps}) from the base model's EMA weights with the bundled config `selfcond` (lr "
        f"{sc_config.train.lr}, batch {sc_config.train.batch_size}); seeds {seeds} (post-training seed = 100 + s, "
        f"sampling seed = s); {args.num_samples} samples per row, ancestral sampler, float64 draws; mean ± std over "
        f"seeds (n). Scorer: {SCORER_NAME} (not GPT-2). Real held-out text ({args.num_samples} windows): gen PPL "
        f"{reference['gen_ppl']:.1f}, {reference['scorer_bpc']:.3f} bits/char, entropy "
        f"{reference['entropy_bits']:.3f} bits. NELBO columns: the post-trained EMA weights' validation NELBO in bits "
        "per character (trainer protocol), with the null condition and with two passes. Time: per seed, the arm's "
        "sampling seconds over the control's, both measured by one process one after the other.", "",
        f"### Against T (temperature {tau})", "",
        "| arm | T | scorer bits/char | gen PPL | entropy | NELBO null | NELBO two-pass | time / control |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for T in Ts:
        for arm in args.arms:
            bpc = values(arm, T, tau, "scorer_bpc")
            if not bpc:
                continue
            null, two = ([n / cpt for n in nelbos] for nelbos in validation_nelbos(rows, arm, seeds))
            ratios = time_ratios(by_seed, arm, T, tau, seeds)
            lines.append(f"| {arm} | {T} | {fmt(bpc, count=True)} | {fmt(values(arm, T, tau, 'gen_ppl'), 1)} | "
                         f"{fmt(values(arm, T, tau, 'entropy_bits'))} | {fmt(null, 4) if null else '–'} | "
                         f"{fmt(two, 4) if two else '–'} | "
                         f"{fmt(ratios, 2, unit='×', count=True) if ratios and arm != 'control' else '–'} |")
    lines += ["", "### Paired: arm minus control, and arm minus arm (same seed, T and temperature)", "",
              "Differences per seed, then mean ± std over the seeds that have both rows (n). Lower bits/char is "
              "better; lower entropy means more repetitive text.", "",
              "| arm | T | temperature | Δ scorer bits/char | Δ entropy | Δ gen PPL | n |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    pairs = [(arm, "control") for arm in args.arms if arm != "control"] + reference_pairs(args.arms)
    for arm, ref in pairs:
        for T in Ts:
            for t in temps:
                diffs = {k: paired_differences(by_seed, arm, T, t, seeds, k, ref)
                         for k in ("scorer_bpc", "entropy_bits", "gen_ppl")}
                if not diffs["scorer_bpc"]:
                    continue
                label = arm if ref == "control" else f"{arm} − {ref}"
                lines.append(f"| {label} | {T} | {t} | {fmt(diffs['scorer_bpc'], sign=True)} | "
                             f"{fmt(diffs['entropy_bits'], sign=True)} | {fmt(diffs['gen_ppl'], 1, sign=True)} | "
                             f"{len(diffs['scorer_bpc'])} |")
    lines += ["", "### The quality–diversity frontier (temperature sweep)", "",
              "`margin` = the arm's scorer bits/char minus the control's at the same entropy, interpolated between "
              "the control's temperatures of the same seed, then mean ± std over seeds (n); negative = beyond the "
              "control's frontier, – where the arm's entropy lies outside the control's range.", "",
              "| T | arm | temperature | scorer bits/char | entropy | gen PPL | margin |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    for T in Ts:
        for arm in args.arms:
            for t in temps:
                bpc = values(arm, T, t, "scorer_bpc")
                if not bpc:
                    continue
                margins = (seed_margins(by_seed, arm, T, t, seeds, temps, "entropy_bits", "scorer_bpc")
                           if arm != "control" else [])
                lines.append(f"| {T} | {arm} | {t} | {fmt(bpc)} | {fmt(values(arm, T, t, 'entropy_bits'))} | "
                             f"{fmt(values(arm, T, t, 'gen_ppl'), 1)} | "
                             f"{fmt(margins, sign=True, count=True) if margins else '–'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
