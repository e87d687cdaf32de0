"""Training throughput against the machine's own matmul peak, both measured in this run.

1. Matmul peak: square GEMMs C = A·B of each size in --gemm-sizes, repeated back to back for --gemm-seconds;
   sustained FLOP/s = 2·n³·calls / seconds; the peak is the best size. Measured before *and* after the training
   measurements; the fraction uses the higher of the two (the conservative choice).
2. Training forward+backward of the NELBO loss (scmdm.diffusion.nelbo_loss, null condition) on random-init
   models of depth --depth and each width in --widths (heads = width / 32, as in the QM9 base model), --batch
   canvases of --length tokens: median seconds over --steps timed steps after two warm-up steps.
   tokens/s = batch·length / seconds; achieved FLOP/s = scmdm.flops.training_flops / seconds (matmul FLOPs only,
   analytic, checked against torch's FlopCounterMode in tests/test_flops.py). A second timing adds the AdamW
   update (the full optimizer step).
3. A profile of one forward+backward of the first model of width ≥ 384: the share of time in matmul kernels,
   in the attention kernel and elsewhere, and the largest operators outside matmul — what stands between the
   achieved fraction and 100 %.

Goal (issue 5): forward+backward at ≥ 60 % of the measured fp32 matmul peak for a model of width ≥ 384 on CPU.

    python -m benchmarks.perf.matmul_training                      # CPU, fp32 (a few minutes)
    python -m benchmarks.perf.matmul_training --precisions float32 bfloat16
    python -m benchmarks.perf.matmul_training --device cuda --batch 512
    python -m benchmarks.perf.matmul_training --no-docs --widths 64 --steps 2 --gemm-sizes 128 --gemm-seconds 0.1
"""

from __future__ import annotations

import time

import torch

from benchmarks.perf.harness import (
    QM9_SHAPE,
    command,
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
from scmdm.flops import training_flops
from scmdm.profiling import synchronize
from scmdm.schedules import get_schedule

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def matmul_peak(device: torch.device, dtype: torch.dtype, sizes: list[int], seconds: float) -> dict[int, float]:
    """Sustained FLOP/s of n×n GEMMs for each n, each run back to back for about ``seconds``."""
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        torch.mm(a, b, out=c)  # warm-up (library initialisation, caches)
        calls, elapsed = 0, 0.0
        synchronize(device)
        start = time.perf_counter()
        while elapsed < seconds:
            torch.mm(a, b, out=c)
            calls += 1
            if calls % 4 == 0 or device.type == "cpu":
                synchronize(device)
                elapsed = time.perf_counter() - start
        synchronize(device)
        rates[n] = 2 * n ** 3 * calls / (time.perf_counter() - start)
    return rates


def train_step_fn(model: torch.nn.Module, x0: torch.Tensor, precision: str, optimizer: torch.optim.Optimizer | None):
    schedule, mask_id = get_schedule("loglinear"), model.config.vocab_size - 1
    generator = torch.Generator(device=x0.device).manual_seed(0)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            loss = nelbo_loss(model, x0, schedule, mask_id, generator=generator).loss
        loss.backward()
        if optimizer is not None:
            optimizer.step()

    return step


def op_breakdown(prof: torch.profiler.profile, device: torch.device, top: int = 8) -> dict:
    """Shares of self time in matmul, attention and other operators, and the largest others (µs)."""
    def self_time(evt) -> float:
        return evt.self_device_time_total if device.type == "cuda" else evt.self_cpu_time_total

    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(self_time(e) for e in events) or 1.0
    matmul = sum(self_time(e) for e in events if e.key in MATMUL_OPS)
    attention = sum(self_time(e) for e in events if "scaled_dot_product" in e.key)
    others = sorted(((e.key, self_time(e)) for e in events
                     if e.key not in MATMUL_OPS and "scaled_dot_product" not in e.key), key=lambda kv: -kv[1])
    return {"matmul_share": matmul / total, "attention_share": attention / total,
            "other_share": 1 - (matmul + attention) / total, "top_other": others[:top], "total_us": total}


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--widths", type=int, nargs="+", default=[128, 256, 384, 512])
    p.add_argument("--depth", type=int, default=QM9_SHAPE["depth"])
    p.add_argument("--length", type=int, default=QM9_SHAPE["max_length"], help="canvas length L")
    p.add_argument("--vocab", type=int, default=QM9_SHAPE["vocab_size"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (after 2 warm-up steps)")
    p.add_argument("--precisions", nargs="+", default=["float32"], choices=list(DTYPES))
    p.add_argument("--gemm-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--gemm-seconds", type=float, default=2.0, help="seconds of back-to-back GEMMs per size")
    args = p.parse_args()
    device = setup(args)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 peak means fp32, not TF32
        torch.backends.cudnn.allow_tf32 = False

    peaks: dict[str, dict] = {}
    for precision in args.precisions:
        peaks[precision] = {"before": matmul_peak(device, DTYPES[precision], args.gemm_sizes, args.gemm_seconds)}
        print(f"{precision} matmul GFLOP/s (before): "
              + ", ".join(f"n={n}: {r / 1e9:.1f}" for n, r in peaks[precision]["before"].items()), flush=True)

    rows = []
    profile = None
    for precision in args.precisions:
        for width in args.widths:
            model = speed_model(device, vocab_size=args.vocab, max_length=args.length, depth=args.depth, width=width,
                                heads=max(1, width // 32)).train()
            x0 = torch.randint(0, args.vocab - 1, (args.batch, args.length), device=device)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            fwd_bwd = train_step_fn(model, x0, precision, None)
            full = train_step_fn(model, x0, precision, optimizer)
            for _ in range(2):
                fwd_bwd()
            fb = [timed(fwd_bwd, device)[0] for _ in range(args.steps)]
            full()
            st = [timed(full, device)[0] for _ in range(max(2, args.steps // 2))]
            flops = training_flops(model.config, args.batch, args.length)
            row = {"precision": precision, "depth": args.depth, "width": width, "heads": model.config.heads,
                   "length": args.length, "batch": args.batch, "parameters": model.num_parameters(),
                   "flops_per_step": flops, "fwd_bwd_seconds": median(fb), "fwd_bwd_all": fb,
                   "step_seconds": median(st), "tokens_per_s": args.batch * args.length / median(fb),
                   "step_tokens_per_s": args.batch * args.length / median(st), "flop_per_s": flops / median(fb)}
            rows.append(row)
            print(f"{precision} d={args.depth} w={width}: fwd+bwd {row['fwd_bwd_seconds'] * 1e3:.0f} ms, "
                  f"{row['tokens_per_s']:,.0f} tok/s, {row['flop_per_s'] / 1e9:.1f} GFLOP/s", flush=True)
            if profile is None and precision == "float32" and width >= 384:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if device.type == "cuda":
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                with torch.profiler.profile(activities=activities) as prof:
                    fwd_bwd()
                    synchronize(device)
                profile = {"width": width, **op_breakdown(prof, device)}
            del model, optimizer

    for precision in args.precisions:
        peaks[precision]["after"] = matmul_peak(device, DTYPES[precision], args.gemm_sizes, args.gemm_seconds)
        peaks[precision]["peak"] = max(*peaks[precision]["before"].values(), *peaks[precision]["after"].values())
    for row in rows:
        row["fraction_of_peak"] = row["flop_per_s"] / peaks[row["precision"]]["peak"]

    info = machine(device)
    payload = {"command": command(), "machine": info, "peaks": peaks, "rows": rows, "profile": profile}
    finish(args, "training", markdown(args, info, peaks, rows, profile), payload)
    return 0


def markdown(args, info: dict, peaks: dict, rows: list[dict], profile: dict | None) -> str:
    lines = ["## Training throughput against the measured matmul peak", "", f"Command: `{command()}`", "",
             machine_line(info), ""]
    for precision, p in peaks.items():
        cells = ", ".join(f"n = {n}: {p['before'][n] / 1e9:.1f} / {p['after'][n] / 1e9:.1f}" for n in p["before"])
        lines.append(f"{precision} matmul peak: **{p['peak'] / 1e9:.1f} GFLOP/s** (best sustained n×n GEMM, "
                     f"GFLOP/s before / after the training measurements: {cells}).")
    lines += ["", f"Forward+backward of the NELBO loss, {args.batch} canvases × {args.length} tokens, random-init "
              f"prenorm models of depth {args.depth}, vocabulary {args.vocab}; median of {args.steps} steps. "
              "FLOPs are matmul FLOPs by the analytic count of `scmdm.flops` (3× the forward); `step` adds the AdamW "
              "update.", "",
              "| precision | width | parameters | fwd+bwd ms | tokens/s | GFLOP/s | fraction of peak | step tokens/s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['width']} | {r['parameters'] / 1e6:.2f} M | "
                     f"{r['fwd_bwd_seconds'] * 1e3:.0f} | {r['tokens_per_s']:,.0f} | {r['flop_per_s'] / 1e9:.1f} | "
                     f"{r['fraction_of_peak']:.1%} | {r['step_tokens_per_s']:,.0f} |")
    goal = [r for r in rows if r["precision"] == "float32" and r["width"] >= 384]
    if goal:
        best = max(goal, key=lambda r: r["fraction_of_peak"])
        verdict = ("met" if best["fraction_of_peak"] >= 0.6 else
                   f"missed by {0.6 - best['fraction_of_peak']:.1%} of peak")
        lines += ["", f"Goal (fp32 forward+backward ≥ 60 % of the measured matmul peak, width ≥ 384): **{verdict}** "
                  f"(best: width {best['width']}, {best['fraction_of_peak']:.1%})."]
    if profile is not None:
        others = ", ".join(f"`{name}` {us / profile['total_us']:.1%}" for name, us in profile["top_other"])
        lines += ["", f"Profile of one fp32 forward+backward at width {profile['width']} (share of operator self "
                  f"time): matmul {profile['matmul_share']:.1%}, attention kernel {profile['attention_share']:.1%}, "
                  f"everything else {profile['other_share']:.1%} — largest: {others}. The fraction of peak can "
                  "reach at most the matmul share times the GEMMs' own efficiency at these shapes."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
