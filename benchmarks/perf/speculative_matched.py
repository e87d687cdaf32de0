"""Speculative against ancestral sampling: wall clock and NFE at matched quality, measured in one run.

Real models: the QM9 base model (--base, read only) and the same model with a causal verifier trained on its
frozen trunk (--spec, written by benchmarks/speculative.py or ``scmdm posttrain --speculative``), so the two
samplers draw from the same factorized model and differ only in how they reveal tokens. Rows, measured
alternately (ancestral T₁, speculative W₁, ancestral T₂, …) so that slow drift of the machine hits both alike:

    ancestral     base, ancestral sampler, each T in --T        (NFE = T)
    speculative   spec, speculative sampler, each W in --windows (NFE = trunk passes; verifier passes apart)

Each row samples --num-samples molecules (batches of --batch-size) and scores validity and FCD with the
project's evaluator; `seconds` is the sampler's wall clock (``SampleResult.seconds``, evaluation excluded).
For each speculative row the ancestral curve (means over seeds, sorted by NFE) is read at the row's quality by
``matched`` of benchmarks/speculative.py (first crossing, linear in log NFE), giving the ancestral NFE and
seconds needed for the same validity (or FCD): NFE ratio = ancestral NFE / speculative NFE, wall-clock ratio =
ancestral seconds / speculative seconds (> 1: speculative is cheaper). `equiv.` also charges each verifier pass
as causal_layers / depth of a trunk pass.

    python -m benchmarks.perf.speculative_matched                  # CPU: about 15 min on 2 quiet cores
    python -m benchmarks.perf.speculative_matched --no-docs --spec /tmp/spec --T 4 8 --windows 2 --num-samples 100
"""

from __future__ import annotations

from benchmarks.perf.harness import ROOT, command, finish, machine, machine_line, mean_std, parser, repo_relative, setup
from benchmarks.speculative import matched
from scmdm.checkpoint import load_checkpoint
from scmdm.config import SampleConfig
from scmdm.workflows import evaluator_for, sample_and_evaluate

QUALITY = (("validity", True), ("fcd", False))  # (metric, higher is better)


def curve(rows: list[dict], metric: str) -> list[tuple[float, float, float]]:
    """The ancestral curve [(NFE, metric, seconds)], means over seeds, sorted by NFE."""
    by_t: dict[int, list[dict]] = {}
    for r in rows:
        if r["arm"] == "ancestral":
            by_t.setdefault(r["steps"], []).append(r)
    return sorted((mean_std([r["nfe"] for r in rs])[0], mean_std([r[metric] for r in rs])[0],
                   mean_std([r["seconds"] for r in rs])[0]) for rs in by_t.values())


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--base", default=str(ROOT / "runs" / "qm9_base"))
    p.add_argument("--spec", default=str(ROOT / "runs" / "speculative" / "spec"))
    p.add_argument("--T", type=int, nargs="+", default=[4, 6, 8, 12, 16, 24, 32, 64])
    p.add_argument("--windows", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    device = setup(args)
    base = load_checkpoint(args.base, device=device)
    spec = load_checkpoint(args.spec, device=device)
    if not spec.model.speculative:
        raise SystemExit(f"--spec {args.spec}: this model has no causal verifier (post-train one with "
                         "`scmdm posttrain --speculative`)")
    evaluator = evaluator_for(base.config, base.split_info)
    layers, depth = spec.config.speculative.causal_layers, spec.config.model.depth

    plan = [("ancestral", {"steps": T}) for T in args.T]
    spec_plan = [("speculative", {"window": w, "window_schedule": "constant", "min_window": min(2, w)})
                 for w in args.windows]
    order = [item for pair in zip(plan, spec_plan, strict=False) for item in pair]
    order += plan[len(spec_plan):] + spec_plan[len(plan):]  # the longer list's tail
    rows = []
    for seed in args.seeds:
        for arm, setting in order:
            loaded = base if arm == "ancestral" else spec
            sample = SampleConfig(sampler=arm, num_samples=args.num_samples, batch_size=args.batch_size, seed=seed,
                                  **setting)
            m = sample_and_evaluate(loaded, evaluator, sample, device=device, show_progress=False).metrics
            causal = m.get("nfe_causal", 0.0)
            row = {"arm": arm, "seed": seed, **setting, "nfe": m["nfe"], "nfe_causal": causal,
                   "nfe_equivalent": m["nfe"] + causal * layers / depth, "seconds": m["seconds"],
                   **{k: m[k] for k in ("validity", "uniqueness", "novelty", "fcd")}}
            rows.append(row)
            label = f"T={setting['steps']}" if arm == "ancestral" else f"W={setting['window']}"
            print(f"seed {seed} {arm:<11} {label:<5} NFE {row['nfe']:5.1f} valid {row['validity']:.3f} "
                  f"FCD {row['fcd']:.2f} {row['seconds']:.1f} s", flush=True)

    ratios = []
    for w in args.windows:
        rs = [r for r in rows if r["arm"] == "speculative" and r["window"] == w]
        nfe, equivalent = mean_std([r["nfe"] for r in rs])[0], mean_std([r["nfe_equivalent"] for r in rs])[0]
        seconds = mean_std([r["seconds"] for r in rs])[0]
        for metric, higher in QUALITY:
            quality = mean_std([r[metric] for r in rs])[0]
            hit = matched(curve(rows, metric), quality, higher)
            ratios.append({"window": w, "metric": metric, "quality": quality, "nfe": nfe, "nfe_equivalent": equivalent,
                           "seconds": seconds, "ancestral_nfe": hit[0] if hit else None,
                           "ancestral_seconds": hit[1] if hit else None,
                           "nfe_ratio": hit[0] / nfe if hit else None,
                           "nfe_equivalent_ratio": hit[0] / equivalent if hit else None,
                           "time_ratio": hit[1] / seconds if hit else None})

    info = machine(device)
    payload = {"command": command(), "machine": info, "base": str(base.path), "spec": str(spec.path), "rows": rows,
               "ratios": ratios}
    finish(args, "speculative", markdown(args, info, base, spec, rows, ratios), payload)
    return 0


def markdown(args, info: dict, base, spec, rows: list[dict], ratios: list[dict]) -> str:
    def cell(value: float | None, digits: int = 2) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["## Speculative against ancestral sampling at matched quality", "", f"Command: `{command()}`", "",
             machine_line(info), "",
             f"Base `{repo_relative(base.path)}`; verifier model `{repo_relative(spec.path)}` "
             f"({spec.config.speculative.causal_layers} causal "
             f"layer(s) on the frozen trunk). {args.num_samples} molecules per row in batches of {args.batch_size}, "
             f"seeds {args.seeds}, float64 draws; rows measured alternately. `seconds` = sampling wall clock.", "",
             "| sampler | setting | seed | NFE | verifier | validity | uniqueness | novelty | FCD | seconds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = f"T={r['steps']}" if r["arm"] == "ancestral" else f"W={r['window']}"
        lines.append(f"| {r['arm']} | {label} | {r['seed']} | {r['nfe']:.2f} | {r['nfe_causal']:.2f} | "
                     f"{r['validity']:.3f} | {r['uniqueness']:.3f} | {r['novelty']:.3f} | {r['fcd']:.2f} | "
                     f"{r['seconds']:.1f} |")
    lines += ["", "At matched quality (the ancestral curve read at the speculative row's validity or FCD; – = the "
              "ancestral curve does not cross that quality in the T measured):", "",
              "| W | matched on | quality | NFE | ancestral NFE | NFE ratio | equiv. ratio | seconds | ancestral s "
              "| wall-clock ratio |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in ratios:
        lines.append(f"| {r['window']} | {r['metric']} | {r['quality']:.3f} | {r['nfe']:.2f} | "
                     f"{cell(r['ancestral_nfe'], 1)} | {cell(r['nfe_ratio'])} | {cell(r['nfe_equivalent_ratio'])} | "
                     f"{r['seconds']:.1f} | {cell(r['ancestral_seconds'], 1)} | {cell(r['time_ratio'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
