"""Peak memory of training and of sampling, each case in a fresh process.

What is measured:
* CPU: the process's resident-set high-water mark (VmHWM of /proc/self/status, reset through
  /proc/self/clear_refs just before the baseline is read) minus the resident set (VmRSS) at the baseline, which
  is read after importing torch and scmdm and running a miniature of the case (batch 2, a small model), so that
  library code and workspaces the case's operators page in are not charged to it. It counts everything else the
  case made resident: weights, activations, gradients, optimizer state, allocator slack — an upper bound on what
  the tensors need. Linux only.
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` — the tensors alone, without the
  caching allocator's reserve or the CUDA context.

Cases (random-init models, speed/memory only): a training step (forward, backward, AdamW update; fp32) for each
width in --widths at --train-batch canvases of --length tokens (the QM9 base shape otherwise, 16 bytes per
parameter of weights + gradients + Adam state are part of it); one sampling run per sampler at each batch in
--sample-batches (QM9 base shape with one verifier layer, T = --steps, speculative W = 4).

    python -m benchmarks.perf.memory                               # about 3 min (each case a new process)
    python -m benchmarks.perf.memory --device cuda --sample-batches 64 500 2000
    python -m benchmarks.perf.memory --no-docs --widths 64 --train-batch 8 --sample-batches 8 --steps 2
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.perf.harness import QM9_SHAPE, ROOT, command, finish, machine, machine_line, parser, setup, speed_model
from scmdm.sampling import SAMPLER_NAMES, generate
from scmdm.schedules import get_schedule


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def run_case(case: dict, device: torch.device) -> torch.nn.Module:
    """Run one case; returns its model."""
    if case["kind"] == "train":
        from scmdm.diffusion import nelbo_loss

        model = speed_model(device, width=case["width"], heads=max(1, case["width"] // 32),
                            max_length=case["length"]).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x0 = torch.randint(0, model.config.vocab_size - 1, (case["batch"], case["length"]), device=device)
        for _ in range(2):  # the second step runs with the optimizer state already allocated
            optimizer.zero_grad(set_to_none=True)
            nelbo_loss(model, x0, get_schedule("loglinear"), model.config.vocab_size - 1).loss.backward()
            optimizer.step()
        return model
    model = speed_model(device, causal_layers=1, **case.get("shape", {}))
    generate(model, get_schedule("loglinear"), mask_id=model.config.vocab_size - 1, num_samples=case["batch"],
             length=model.config.max_length, sampler=case["sampler"], steps=case["steps"], batch_size=case["batch"],
             window=4, device=device, show_progress=False)
    return model


def child(case: dict) -> dict:
    """Run one case in this (fresh) process and return its peak memory in bytes. A miniature of the case runs
    first, so that library code and workspaces it pages in are not charged to the case."""
    device = torch.device(case["device"])
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    tiny = {**case, "batch": 2, "steps": 2, **({"width": 64} if case["kind"] == "train" else
                                             {"shape": {"depth": 1, "width": 64, "heads": 2}})}
    run_case(tiny, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current resident set
        baseline = _status_kib("VmRSS") * 1024
    model = run_case(case, device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = _status_kib("VmHWM") * 1024 - baseline
    return {**case, "peak_bytes": peak, "parameters": model.num_parameters()}


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return 0
    p = parser(__doc__)
    p.add_argument("--widths", type=int, nargs="+", default=[256, 384, 512])
    p.add_argument("--train-batch", type=int, default=256)
    p.add_argument("--length", type=int, default=QM9_SHAPE["max_length"])
    p.add_argument("--samplers", nargs="+", default=list(SAMPLER_NAMES), choices=list(SAMPLER_NAMES))
    p.add_argument("--sample-batches", type=int, nargs="+", default=[64, 500])
    p.add_argument("--steps", type=int, default=32)
    args = p.parse_args()
    device = setup(args)
    if device.type == "cpu" and not Path("/proc/self/clear_refs").exists():
        raise SystemExit("CPU peak memory is read from /proc/self (Linux); not available on this system")
    cases = [{"kind": "train", "width": w, "batch": args.train_batch, "length": args.length} for w in args.widths]
    cases += [{"kind": "sample", "sampler": s, "batch": b, "steps": args.steps} for b in args.sample_batches
              for s in args.samplers]
    rows = []
    for case in cases:
        case = {**case, "device": str(device), "threads": args.threads}
        out = subprocess.run([sys.executable, "-m", "benchmarks.perf.memory", "--child", json.dumps(case)],
                             capture_output=True, text=True, check=False, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"memory case {case} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{case}: {rows[-1]['peak_bytes'] / 2 ** 20:.0f} MiB", flush=True)
    info = machine(device)
    payload = {"command": command(), "machine": info, "rows": rows}
    finish(args, "memory", markdown(info, device, rows), payload)
    return 0


def markdown(info: dict, device: torch.device, rows: list[dict]) -> str:
    how = ("`torch.cuda.max_memory_allocated` (tensors only)" if device.type == "cuda" else
           "the resident-set high-water mark (VmHWM, reset via /proc/self/clear_refs) above the resident set after "
           "importing torch and scmdm and running a miniature of the case — everything the case made resident, "
           "allocator slack included")
    lines = ["## Peak memory of training and sampling", "", f"Command: `{command()}`", "", machine_line(info), "",
             f"Each case runs in a fresh process; peak = {how}. Training: two steps of forward, backward and AdamW "
             "(fp32; weights + gradients + Adam state = 16 bytes per parameter). Sampling: the QM9 base shape with "
             "one verifier layer, one batch.", "",
             "| case | model | batch × length | parameters | peak MiB |", "|---|---|---|---:|---:|"]
    for r in rows:
        if r["kind"] == "train":
            case, model, shape = "training step", f"width {r['width']}", f"{r['batch']} × {r['length']}"
        else:
            case = f"sampling, {r['sampler']}" + ("" if r["sampler"] == "speculative" else f" T={r['steps']}")
            model, shape = "QM9 base shape", f"{r['batch']} × {QM9_SHAPE['max_length']}"
        mib = r["peak_bytes"] / 2 ** 20
        lines.append(f"| {case} | {model} | {shape} | {r['parameters'] / 1e6:.2f} M | {mib:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
