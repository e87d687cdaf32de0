"""Self-conditioned against vanilla sampling time at equal T (ratio measured in one run).

Random-init models of the QM9 base shape, the same trunk weights (the self-conditioning input adds no draw
from the random stream): the vanilla model, and one self-conditioned model per injection in --injections. Each
samples --batch canvases with the ancestral sampler at each T in --T, carrying its previous prediction p_prev
(the full distribution) from step to step; NFE = T for all. The arms are timed interleaved (the order rotates
every round) for --repeats rounds after a warm-up; the ratio is median(self-conditioned) / median(vanilla).
``scmdm.profiling.NetworkTimer`` splits each arm's time into the network (the extra input p_prevᵀE is inside
it) and outside it (SUBS, the hint, the draws), which shows where any extra time goes.

Goal (issue 5): self-conditioned / vanilla sampling time ≤ 1.05 at equal T.

    python -m benchmarks.perf.selfcond_ratio                       # CPU: about 4 min on 2 quiet cores
    python -m benchmarks.perf.selfcond_ratio --no-docs --T 4 --repeats 2 --batch 8
"""

from __future__ import annotations

import functools

import torch

from benchmarks.perf.harness import (
    command,
    finish,
    interleaved,
    machine,
    machine_line,
    median,
    parser,
    setup,
    speed_model,
)
from scmdm.profiling import NetworkTimer
from scmdm.sampling import generate
from scmdm.schedules import get_schedule
from scmdm.selfcond import INJECTIONS


def sample_once(model, args, steps: int, device: torch.device, log: dict[str, list[float]]) -> None:
    """One sampling run of ``model``; its network and wall seconds are appended to ``log``."""
    with NetworkTimer(model) as timer:
        result = generate(model, get_schedule("loglinear"), mask_id=model.config.vocab_size - 1, num_samples=args.batch,
                          length=model.config.max_length, sampler=args.sampler, steps=steps, batch_size=args.batch,
                          device=device, show_progress=False)
    log["network"].append(timer.seconds)
    log["wall"].append(result.seconds)


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--injections", nargs="+", default=["mask_add", "projection"], choices=list(INJECTIONS))
    p.add_argument("--T", type=int, nargs="+", default=[64])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sampler", default="ancestral", choices=["ancestral", "topk"])
    args = p.parse_args()
    device = setup(args)
    models = {"vanilla": speed_model(device)}
    for injection in args.injections:
        models[injection] = speed_model(device, self_conditioning=injection)
        if injection == "projection":  # a trained projection is not zero; zero would multiply by zeros alike
            with torch.no_grad():
                models[injection].self_cond.proj.weight.normal_(0.0, 0.02)

    rows = []
    for steps in args.T:
        logs = {name: {"network": [], "wall": []} for name in models}
        arms = {name: functools.partial(sample_once, models[name], args, steps, device, logs[name]) for name in models}
        times = interleaved(arms, repeats=args.repeats, device=device)  # one warm-up call each, then the rounds
        base = median(times["vanilla"])
        for name in models:
            network, wall = logs[name]["network"][-args.repeats:], logs[name]["wall"][-args.repeats:]
            rows.append({"arm": name, "steps": steps, "batch": args.batch, "seconds": times[name],
                         "median_seconds": median(times[name]), "ratio": median(times[name]) / base,
                         "pair_ratios": [a / b for a, b in zip(times[name], times["vanilla"], strict=True)],
                         "network_seconds": median(network),
                         "outside_seconds": median([w - n for w, n in zip(wall, network, strict=True)])})
            print(f"T={steps} {name:<10} {median(times[name]):.3f} s  ratio {rows[-1]['ratio']:.3f}", flush=True)

    info = machine(device)
    payload = {"command": command(), "machine": info, "rows": rows}
    finish(args, "selfcond", markdown(args, info, models["vanilla"], rows), payload)
    return 0


def markdown(args, info: dict, model, rows: list[dict]) -> str:
    c = model.config
    lines = ["## Self-conditioned against vanilla sampling time at equal T", "", f"Command: `{command()}`", "",
             machine_line(info), "",
             f"Random-init models (depth {c.depth}, width {c.width}, vocabulary {c.vocab_size}, canvas {c.max_length}; "
             f"the same trunk weights), {args.sampler} sampler, {args.batch} sequences, NFE = T for every arm. "
             f"Interleaved rounds, median of {args.repeats}; `ratio` = median / vanilla's median, `range` = the "
             "smallest and largest per-round ratio. `network s` and `outside s`: medians over the rounds of the time "
             "inside and outside network calls (`scmdm.profiling.NetworkTimer`).", "",
             "| T | arm | seconds | ratio | range | network s | outside s |", "|---:|---|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['steps']} | {r['arm']} | {r['median_seconds']:.3f} | {r['ratio']:.3f} | "
                     f"{min(r['pair_ratios']):.3f}–{max(r['pair_ratios']):.3f} | {r['network_seconds']:.3f} | "
                     f"{r['outside_seconds']:.3f} |")
    sc = [r for r in rows if r["arm"] != "vanilla"]
    if sc:
        worst = max(sc, key=lambda r: r["ratio"])
        verdict = "met" if worst["ratio"] <= 1.05 else f"missed by {worst['ratio'] - 1.05:.3f}"
        lines += ["", f"Goal (self-conditioned / vanilla ≤ 1.05 at equal T): **{verdict}** (largest: {worst['arm']} "
                  f"at T = {worst['steps']}, {worst['ratio']:.3f})."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
