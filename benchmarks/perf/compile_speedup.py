"""Does ``torch.compile`` speed up sampling? Eager against ``generate(compile_network=True)``, measured in one run.

A random-init model of the QM9 base shape (speed only). For each sampler in --samplers and batch in --batches:
the compiled run's first call is timed on its own (compilation included), then eager and compiled runs at T =
--steps alternate for --repeats rounds (the order rotates each round); speed-up = median eager / median compiled.
Compilation changes floating-point rounding, so the compiled samples can differ from the eager ones where two
tokens nearly tie: `same tokens` is the fraction of tokens equal between the two at the same seed.

The switch stays off by default (``generate(compile_network=False)``) unless this measures a clear gain.

    python -m benchmarks.perf.compile_speedup                      # CPU: about 5 min (compilation included)
    python -m benchmarks.perf.compile_speedup --no-docs --batches 8 --steps 4 --repeats 2
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
    timed,
)
from scmdm.sampling import generate
from scmdm.schedules import get_schedule


def sample(model, sampler: str, batch: int, steps: int, device: torch.device, compiled: bool) -> torch.Tensor:
    return generate(model, get_schedule("loglinear"), mask_id=model.config.vocab_size - 1, num_samples=batch,
                    length=model.config.max_length, sampler=sampler, steps=steps, batch_size=batch, device=device,
                    show_progress=False, compile_network=compiled).tokens


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--samplers", nargs="+", default=["ancestral", "cached"], choices=["ancestral", "cached", "topk"])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 500])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = setup(args)
    rows = []
    for sampler in args.samplers:
        for batch in args.batches:
            torch._dynamo.reset()  # every row compiles from scratch: its compile time is its own
            model = speed_model(device)
            run = functools.partial(sample, model, sampler, batch, args.steps, device)
            first_s, compiled_tokens = timed(lambda run=run: run(True), device)
            eager_tokens = run(False)
            times = interleaved({"eager": lambda run=run: run(False), "compiled": lambda run=run: run(True)},
                                repeats=args.repeats, device=device)
            row = {"sampler": sampler, "batch": batch, "steps": args.steps, "first_call_s": first_s,
                   "eager_s": median(times["eager"]), "compiled_s": median(times["compiled"]),
                   "speedup": median(times["eager"]) / median(times["compiled"]), "times": times,
                   "same_tokens": float((compiled_tokens == eager_tokens).float().mean())}
            rows.append(row)
            print(f"{sampler} B={batch}: eager {row['eager_s']:.3f} s, compiled {row['compiled_s']:.3f} s "
                  f"(×{row['speedup']:.2f}; first call {first_s:.1f} s)", flush=True)
    info = machine(device)
    payload = {"command": command(), "machine": info, "rows": rows}
    finish(args, "compile", markdown(info, rows, args), payload)
    return 0


def markdown(info: dict, rows: list[dict], args) -> str:
    lines = ["## torch.compile for sampling", "", f"Command: `{command()}`", "", machine_line(info), "",
             f"Random-init model of the QM9 base shape, T = {args.steps}, one batch; medians of {args.repeats} "
             "interleaved rounds. `first call` = the compiled run's first call, compilation included. `same tokens` "
             "= fraction of tokens equal to the eager run's at the same seed (compilation changes rounding).", "",
             "| sampler | batch | eager s | compiled s | speed-up | first call s | same tokens |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['batch']} | {r['eager_s']:.3f} | {r['compiled_s']:.3f} | "
                     f"×{r['speedup']:.2f} | {r['first_call_s']:.1f} | {r['same_tokens']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
