"""How the cost grows with sequence length and with batch size (a plot and a table).

A random-init model of the QM9 base shape (depth 6, width 256, 8 heads, 33 tokens; canvas = the largest
length measured). Two sweeps: length L in --lengths at batch --batch-for-lengths, and batch B in --batches at
length --length-for-batches. At each point, the median over --repeats of
* one sampling step: an ancestral run of --steps steps on B canvases of L tokens, divided by the steps
  (forward pass + categorical draws);
* one training forward+backward of the NELBO loss (fp32) on B canvases of L tokens.
Reported per step and per token, with the achieved matmul FLOP/s (``scmdm.flops``). Per token, the forward costs
24d² + 4Ld matmul FLOPs per layer (d = width): the attention term 4Ld grows with L (at d = 256 it equals the rest
at L = 1,536), while a larger batch only makes the matrix products larger (usually more efficient).

    python -m benchmarks.perf.scaling                              # CPU: about 6 min on 2 quiet cores
    python -m benchmarks.perf.scaling --device cuda --batches 1 16 64 256 1024
    python -m benchmarks.perf.scaling --no-docs --lengths 16 32 --batches 1 4 --repeats 1 --steps 2
"""

from __future__ import annotations

import torch

from benchmarks.perf.harness import (
    QM9_SHAPE,
    command,
    figure_path,
    finish,
    machine,
    machine_line,
    median,
    parser,
    setup,
    speed_model,
    timed,
)
from scmdm.diffusion import nelbo_loss
from scmdm.flops import forward_flops, training_flops
from scmdm.sampling import generate
from scmdm.schedules import get_schedule


def measure(model, batch: int, length: int, *, steps: int, repeats: int, device: torch.device) -> dict:
    """Median seconds of one sampling step and of one training forward+backward at (batch, length)."""
    schedule, mask_id = get_schedule("loglinear"), model.config.vocab_size - 1

    def sample() -> None:
        generate(model.eval(), schedule, mask_id=mask_id, num_samples=batch, length=length, steps=steps,
                 batch_size=batch, device=device, show_progress=False)

    x0 = torch.randint(0, mask_id, (batch, length), device=device)

    def train() -> None:
        model.train().zero_grad(set_to_none=True)
        nelbo_loss(model, x0, schedule, mask_id).loss.backward()

    sample()
    train()  # warm-up
    sample_s = median([timed(sample, device)[0] for _ in range(repeats)]) / steps
    train_s = median([timed(train, device)[0] for _ in range(repeats)])
    model.zero_grad(set_to_none=True)
    tokens = batch * length
    return {"batch": batch, "length": length, "sample_step_s": sample_s, "train_s": train_s,
            "sample_us_per_token": 1e6 * sample_s / tokens, "train_us_per_token": 1e6 * train_s / tokens,
            "sample_gflops": forward_flops(model.config, batch, length) / sample_s / 1e9,
            "train_gflops": training_flops(model.config, batch, length) / train_s / 1e9}


def plot(rows: list[dict], out_png) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, sweep, key in ((axes[0], "length", "length"), (axes[1], "batch", "batch")):
        points = sorted((r for r in rows if r["sweep"] == sweep), key=lambda r: r[key])
        xs = [r[key] for r in points]
        ax.plot(xs, [r["sample_us_per_token"] for r in points], "o-", label="sampling step (forward + draws)")
        ax.plot(xs, [r["train_us_per_token"] for r in points], "s-", label="training forward+backward")
        fixed = points[0]["batch"] if sweep == "length" else points[0]["length"]
        ax.set(xscale="log", yscale="log", xlabel=f"{key} ({'batch' if sweep == 'length' else 'length'} {fixed})",
               ylabel="µs per token", title=f"cost per token against {key}")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--batch-for-lengths", type=int, default=16)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--length-for-batches", type=int, default=128)
    p.add_argument("--steps", type=int, default=4, help="sampling steps per timed run")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = setup(args)
    model = speed_model(device, max_length=max(*args.lengths, args.length_for_batches))
    rows = []
    for sweep, points in (("length", [(args.batch_for_lengths, L) for L in args.lengths]),
                          ("batch", [(B, args.length_for_batches) for B in args.batches])):
        for batch, length in points:
            row = {"sweep": sweep, **measure(model, batch, length, steps=args.steps, repeats=args.repeats,
                                             device=device)}
            rows.append(row)
            print(f"{sweep}: B={batch} L={length}: sampling step {row['sample_step_s'] * 1e3:.1f} ms, "
                  f"training {row['train_s'] * 1e3:.1f} ms", flush=True)
    png, link = figure_path(args, "perf_scaling.png")
    plot(rows, png)
    info = machine(device)
    payload = {"command": command(), "machine": info, "rows": rows}
    finish(args, "scaling", markdown(info, rows, link, args), payload)
    return 0


def markdown(info: dict, rows: list[dict], link: str, args) -> str:
    c = QM9_SHAPE
    lines = ["## Cost against sequence length and batch size", "", f"Command: `{command()}`", "", machine_line(info),
             "", f"Random-init model, depth {c['depth']}, width {c['width']}, {c['heads']} heads, vocabulary "
             f"{c['vocab_size']}. `sampling step` = an ancestral run of {args.steps} steps divided by {args.steps}; "
             f"`training` = one fp32 forward+backward of the NELBO loss; medians of {args.repeats}. GFLOP/s are matmul "
             "FLOPs by `scmdm.flops`.", "",
             "| sweep | batch | length | sampling step ms | µs/token | GFLOP/s | training ms | µs/token | GFLOP/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sweep']} | {r['batch']} | {r['length']} | {r['sample_step_s'] * 1e3:.1f} | "
                     f"{r['sample_us_per_token']:.1f} | {r['sample_gflops']:.1f} | {r['train_s'] * 1e3:.1f} | "
                     f"{r['train_us_per_token']:.1f} | {r['train_gflops']:.1f} |")
    lines += ["", f"![cost per token against length and batch]({link})"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
