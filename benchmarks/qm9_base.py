"""Train the QM9 base model and measure it: validation NELBO and the metrics table for every sampler
at T = 16, 32, 64, 128. Writes runs/qm9_base/ (the checkpoint post-training starts from),
benchmarks/results/qm9_base.json, docs/results/qm9_base.png and the section ``qm9_base`` of
docs/results/bases.md.

    python -m benchmarks.qm9_base                 # train (~50 min on 2 CPU cores) + evaluate (~15 min)
    python -m benchmarks.qm9_base --skip-train    # re-evaluate an existing runs/qm9_base

Training resumes if runs/qm9_base already holds a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, ROOT, parse_args, write_results_section
from scmdm.checkpoint import load_checkpoint
from scmdm.config import SampleConfig, load_config
from scmdm.diffusion import validation_nelbo
from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.evaluation import format_table
from scmdm.schedules import get_schedule
from scmdm.training import Trainer
from scmdm.workflows import TABLE_COLUMNS, evaluator_for, resolve_config_path, sample_and_evaluate


def full_validation_nelbo(loaded, num_t: int = 16) -> float:
    from scmdm.domains import prepare_data

    data = prepare_data(loaded.config, tokenizer=loaded.tokenizer)
    return validation_nelbo(lambda x, t: loaded.model(x, t), data.valid, get_schedule(loaded.config.diffusion.schedule),
                            loaded.tokenizer.mask_id, num_t=num_t, seed=0)


def plot(rows: list[dict], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        rs = [r for r in rows if r["sampler"] == sampler]
        for ax, key in zip(axes, ("validity", "valid_unique_novel", "fcd"), strict=True):
            ax.plot([r["steps"] for r in rs], [r[key] for r in rs], "o-", label=sampler)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("steps T")
            ax.set_title(key)
            ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("QM9 base model: quality against the number of steps (1,000 samples each)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "qm9_base"))
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--samplers", nargs="+", default=["ancestral", "cached", "topk"])
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=3000")
    args = parse_args(parser)

    config = load_config(resolve_config_path("qm9_base"), args.overrides)
    out = Path(args.out)
    t0 = time.perf_counter()
    if not args.skip_train:
        result = Trainer(config, out).fit()
        print(f"trained {result.step} steps in {result.seconds / 60:.1f} min, val NELBO {result.val_nelbo_bits:.4f}")
    loaded = load_checkpoint(out)
    nelbo = full_validation_nelbo(loaded)
    print(f"full validation NELBO (n={loaded.split_info['sizes']['valid']}, K=16): {nelbo:.4f} bits/token")
    evaluator = evaluator_for(loaded.config, loaded.split_info)
    rows, table_rows = [], []
    reference = evaluator.reference_row(n=args.num_samples).as_dict()
    table_rows.append((f"real held-out molecules (n={args.num_samples})", reference))
    for sampler in args.samplers:
        for steps in args.steps:
            sample = SampleConfig(sampler=sampler, steps=steps, num_samples=args.num_samples, batch_size=500, seed=0)
            ev = sample_and_evaluate(loaded, evaluator, sample, show_progress=False)
            rows.append(ev.metrics)
            table_rows.append((ev.name, ev.metrics))
            print(format_table([table_rows[-1]], columns=TABLE_COLUMNS).splitlines()[-1], flush=True)
    table = format_table(table_rows, columns=TABLE_COLUMNS)
    print(table)
    state = loaded.state
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {"val_nelbo_bits": nelbo, "train_state": state, "config": loaded.config.to_dict(), "rows": rows,
               "reference": reference, "machine": {"cpu_threads": torch.get_num_threads(),
                                                   "python": platform.python_version(), "torch": torch.__version__}}
    (results_dir / "qm9_base.json").write_text(json.dumps(payload, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, RESULTS / "qm9_base.png")
    shutil.copyfile(out / "loss_curve.png", RESULTS / "qm9_base_loss_curve.png")
    tok = SmilesTokenizer.load(loaded.path / "tokenizer.json")
    m = loaded.config.model
    markdown = f"""## QM9 base model

Command: `python -m benchmarks.qm9_base` (config `src/scmdm/configs/qm9_base.yaml`; checkpoint written to
`runs/qm9_base/checkpoints/`, rebuilt by the same command; `--skip-train` re-evaluates it).

Model: {m.depth} layers, width {m.width}, {m.heads} heads, {state.get('num_parameters', 0) / 1e6:.2f} M parameters,
vocabulary {tok.vocab_size} (incl. MASK), canvas {loaded.config.data.max_length}; trained {state['step']} steps
× {loaded.config.train.batch_size} molecules ({state['tokens_seen'] / 1e6:.1f} M canvas tokens) in
{state['elapsed'] / 60:.1f} min on {torch.get_num_threads()} CPU threads ({loaded.config.train.precision} autocast).

Validation NELBO (EMA weights, all {loaded.split_info['sizes']['valid']} validation molecules, K = 16 midpoint
times, seed 0): **{nelbo:.4f} bits per canvas token**.

{args.num_samples} samples per row, seed 0, float64 draws, temperature 1. Uniqueness is among valid samples,
novelty among unique valid ones against the training split, `valid_unique_novel` is the fraction of
all samples that are valid, unique and novel; FCD is against {evaluator.n_reference} held-out test
molecules (the reference row is real validation molecules, none of them in the FCD reference: its FCD is
the finite-sample floor of a perfect model).
`nfe` is network evaluations per sequence; `seconds` is wall clock for all samples.

{table}

![quality against steps](qm9_base.png) (ancestral and cached coincide: same chain, same random numbers,
same samples; only NFE and time differ)

![loss curve](qm9_base_loss_curve.png)
"""
    write_results_section("qm9_base", markdown, page=RESULTS / "bases.md")
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
