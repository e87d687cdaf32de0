"""Train a base DNA model and measure it next to the rows of the same evaluator that tell good from bad: real
held-out windows (the validation region), shuffled held-out windows, uniform random bases, a third-order Markov
chain fit on the training windows, and training windows themselves (what memorisation looks like). Writes
runs/<config>/ (the checkpoint post-training starts from), benchmarks/results/<config>.json,
docs/results/<config>_loss_curve.png and the section ``<config>`` of docs/results/bases.md.

    python -m benchmarks.dna_base                     # src/scmdm/configs/dna_ecoli.yaml: train ≤ 55 min, then evaluate
    python -m benchmarks.dna_base --skip-train        # re-evaluate an existing run
    python -m benchmarks.dna_base --config dna_ecoli_v2   # 128-base windows, a wider model (runs/dna_ecoli_v2)
    python -m benchmarks.dna_base --root /tmp/trial --out /tmp/trial/run train.steps=2 model.width=32 \
        model.depth=1 model.heads=2 --num-samples 20 --steps 4     # a trial run that leaves docs/ alone

Training resumes if the run folder already holds a checkpoint. Metrics (scmdm.domains.dna.evaluator): k-mer spectrum
Jensen-Shannon divergence to the held-out test windows for k = 3..6, GC content, identity to the nearest training
window; every row has the same number of windows (the reference row's, at most the validation pool). Likelihood:
the model's validation NELBO in bits per base, next to the cross-entropy of order-k Markov chains fit on the
training windows (2 bits = uniform bases).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from benchmarks.common import (
    base_parser,
    benchmark_config,
    machine,
    model_rows,
    parse_args,
    row_line,
    save_run_files,
    train_and_load,
    validation_bits,
    write_results_section,
)
from scmdm.domains import get_domain
from scmdm.domains.dna.evaluator import kmer_counts
from scmdm.workflows import evaluator_for

MARKOV_ORDERS = (3, 4, 5, 6, 7, 8)  # the best of them is named: with more data a higher order wins


def markov_bits_per_base(train: list[str], valid: list[str], order: int) -> float:
    """Cross-entropy in bits per base of an order-``order`` Markov chain fit on ``train`` (add-one smoothing) on the
    bases of ``valid`` that follow ``order`` others in their window:
    ``−mean log2 p(b_i | b_{i−order} … b_{i−1})``, ``p = (count(context·b) + 1) / (count(context) + 4)``."""
    counts = kmer_counts(train, order + 1).reshape(4 ** order, 4).astype(np.float64) + 1.0
    log_p = np.log2(counts / counts.sum(axis=1, keepdims=True)).reshape(-1)
    seen = kmer_counts(valid, order + 1).astype(np.float64)
    return float(-(seen * log_p).sum() / seen.sum())


def main() -> int:
    parser = base_parser(__doc__, "dna_ecoli")
    args = parse_args(parser)
    name, config, out, root = benchmark_config(parser, args, "dna")
    steps = args.steps or sorted({config.sample.steps // 2, config.sample.steps})
    t0 = time.perf_counter()
    loaded = train_and_load(config, out, args.skip_train)
    bits, valid = validation_bits(loaded)
    print(f"full validation NELBO ({len(valid)} windows, K=16): {bits:.4f} bits/base")
    domain = get_domain("dna")
    evaluator = evaluator_for(loaded.config, loaded.split_info, tokenizer=loaded.tokenizer)
    markov = {k: markov_bits_per_base(evaluator.train_windows, evaluator.holdout_windows or [], k)
              for k in MARKOV_ORDERS}
    best = min(markov, key=markov.get)
    print("Markov chains on the validation windows: " + ", ".join(f"order {k} {b:.4f}" for k, b in markov.items())
          + f" bits/base; the best, order {best}: the model {bits - markov[best]:+.4f}")

    reference = evaluator.reference_row(n=args.num_samples or config.sample.num_samples)
    n = reference.n_samples  # every row is measured on this many windows
    table_rows = [(f"real held-out windows (validation region; n={n})", reference.as_dict())]
    table_rows += [(label, m.as_dict()) for label, m in evaluator.baseline_rows(n=n)]
    table_rows.append(("training windows (memorised)", evaluator.evaluate(evaluator.train_windows[:n]).as_dict()))
    for label, metrics in table_rows:
        print(row_line(domain, label, metrics), flush=True)

    def show(label: str, metrics: dict) -> None:
        table_rows.append((label, metrics))
        print(row_line(domain, label, metrics), flush=True)

    evaluations = model_rows(loaded, evaluator, args.samplers, steps, n, config.sample.batch_size, show)
    table = domain.table(table_rows)
    print(table)

    state, c = loaded.state, loaded.config
    split = loaded.split_info
    payload = {"val_nelbo_bits_per_base": bits, "markov_bits_per_base": markov, "train_state": state,
               "config": c.to_dict(), "split": split, "rows": [ev.metrics for ev in evaluations],
               "reference_rows": dict(table_rows[:5]), "examples": {ev.name: ev.samples[:3] for ev in evaluations},
               "machine": machine()}
    payload["split"].pop("sha256", None)
    curve = save_run_files(root, name, payload, out)
    sizes = split["sizes"]
    shown = "\n".join(f"- {ev.name}: `{ev.samples[0][:80]}…`" for ev in evaluations)
    holdout = (f"the last {c.data.test_fraction:.0%} of every record held out for testing and the "
               f"{c.data.valid_fraction:.0%} before it for validation" if c.dna.holdout == "region" else
               f"test genomes {', '.join(split['test_genomes'])}")
    markdown = f"""## DNA base model ({name})

Command: `python -m benchmarks.dna_base --config {name}` (config `src/scmdm/configs/{name}.yaml`; checkpoint in
`runs/{name}/checkpoints/`, rebuilt by the same command; `--skip-train` re-evaluates it).

Data: {', '.join(split['genomes'])}, windows of {c.data.max_length} bases every {split['stride']} bases, {holdout};
{sizes['train']:,} training windows{' (reverse complements included)' if c.dna.reverse_complement else ''},
{sizes['valid']:,} validation, {sizes['test']:,} test. Model: {c.model.depth} layers, width {c.model.width},
{state.get('num_parameters', 0) / 1e6:.2f} M parameters; trained {state['step']} steps × {c.train.batch_size} windows
({state['tokens_seen'] / 1e6:.1f} M bases) in {state['elapsed'] / 60:.1f} min on {torch.get_num_threads()} CPU
threads ({c.train.precision} autocast).

Validation NELBO (EMA weights, all {len(valid)} validation windows, K = 16 midpoint times, seed 0):
**{bits:.4f} bits per base**. For comparison, order-k Markov chains fit on the training windows (add-one
smoothing) score {', '.join(f'{b:.4f} (k = {k})' for k, b in markov.items())} bits per base on the same windows
(the best, k = {best}: {markov[best]:.4f}; the model {bits - markov[best]:+.4f}), uniform bases 2; the NELBO is an upper
bound on the model's negative log-likelihood.

{n:,} windows per row (all rows the same n), seed 0, float64 draws, temperature 1. `js_k`: Jensen-Shannon
divergence (nats) of the k-mer spectrum of the rows' windows to that of the {sizes['test']:,} test windows;
`gc_abs_diff`, `gc_w1`: distance of the per-window GC content to the test windows'; `nearest_identity`: mean
identity to the closest training window, `near_copies`: the fraction at ≥ 0.95 (memorisation: the training-window
row shows what copying looks like); `valid`: windows of only A, C, G, T. `nfe` is network evaluations per window,
`seconds` the wall clock for all of them. The Markov row matches short k-mer spectra by construction: read a
model on every column, not `js_3` alone.

{table}

First windows: real held-out `{evaluator.holdout_windows[0][:80]}…`
{shown}

![loss curve]({curve})
"""
    write_results_section(name, markdown, page=root / "docs" / "results" / "bases.md")
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
