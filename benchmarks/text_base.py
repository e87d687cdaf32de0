"""Train a base text model and measure it next to the reference rows of the same evaluator: real held-out text
(the test books), unigram and bigram samples fitted on the training books. Writes runs/<config>/ (the checkpoint
post-training starts from), benchmarks/results/<config>.json, docs/results/<config>_loss_curve.png and the
section ``<config>`` of docs/results/bases.md.

    python -m benchmarks.text_base                              # config text_kjv: train ≤ 55 min, evaluate
    python -m benchmarks.text_base --config text_austen_bpe     # the BPE model on Austen (Persuasion held out)
    python -m benchmarks.text_base --skip-train                 # re-evaluate an existing run

Training resumes if the run folder already holds a checkpoint. Metrics (scmdm.domains.text.evaluator): generative
perplexity and bits per character under SmolLM2-135M (not GPT-2: compare only within the table), unigram entropy
of the samples' scorer tokens, and the model's validation NELBO in bits per token and per character.
"""

from __future__ import annotations

import sys
import time

import torch

from benchmarks.common import (
    base_parser,
    benchmark_config,
    machine,
    model_rows,
    parse_args,
    save_run_files,
    train_and_load,
    validation_bits,
    write_results_section,
)
from scmdm.domains.text.evaluator import chars_per_token
from scmdm.domains.text.scorer import SCORER_NAME
from scmdm.evaluation import format_table
from scmdm.workflows import evaluator_for, table_columns


def full_validation(loaded, num_t: int = 16) -> tuple[float, float, int]:
    """Validation NELBO over every validation window (K = ``num_t`` midpoint times, seed 0): bits per token, bits
    per character, and the number of windows."""
    bits, valid = validation_bits(loaded, num_t)
    return bits, bits / chars_per_token(loaded.tokenizer, valid), len(valid)


def excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return (text[:limit] + " …") if len(text) > limit else text


def main() -> int:
    parser = base_parser(__doc__, "text_kjv")
    args = parse_args(parser)
    name, config, out, root = benchmark_config(parser, args, "text")
    n = args.num_samples or config.sample.num_samples
    steps = args.steps or sorted({config.sample.steps // 2, config.sample.steps})
    t0 = time.perf_counter()
    loaded = train_and_load(config, out, args.skip_train)
    bits, bpc, n_valid = full_validation(loaded)
    print(f"full validation NELBO ({n_valid} windows, K=16): {bits:.4f} bits/token = {bpc:.4f} bits/char")
    evaluator = evaluator_for(loaded.config, loaded.split_info, tokenizer=loaded.tokenizer, show_progress=True)
    columns = table_columns("text")
    table_rows = [(f"real held-out text ({', '.join(loaded.split_info['titles']['test'])}; n={n})",
                   evaluator.reference_row(n=n).as_dict())]
    table_rows += [(label, m.as_dict()) for label, m in evaluator.baseline_rows(n=n)]
    for row in table_rows:
        print(format_table([row], columns=columns).splitlines()[-1], flush=True)

    def show(label: str, metrics: dict) -> None:
        table_rows.append((label, metrics))
        print(format_table([table_rows[-1]], columns=columns).splitlines()[-1], flush=True)

    evaluations = model_rows(loaded, evaluator, args.samplers, steps, n, config.sample.batch_size, show)
    rows = [ev.metrics for ev in evaluations]
    examples = {ev.name: ev.samples[:3] for ev in evaluations}
    table = format_table(table_rows, columns=columns)
    print(table)

    state, c = loaded.state, loaded.config
    payload = {"val_nelbo_bits": bits, "val_nelbo_bpc": bpc, "train_state": state, "config": c.to_dict(),
               "split": loaded.split_info, "rows": rows, "reference_rows": dict(table_rows[:3]), "examples": examples,
               "machine": machine()}
    payload["split"].pop("sha256", None)
    curve = save_run_files(root, name, payload, out)
    real = excerpt(evaluator.reference_windows[0])
    shown = "\n".join(f"- {label}: `{excerpt(s[0])}`" for label, s in examples.items() if s)
    titles = loaded.split_info["titles"]
    markdown = f"""## Text base model ({name})

Command: `python -m benchmarks.text_base --config {name}` (config `src/scmdm/configs/{name}.yaml`; checkpoint in
`runs/{name}/checkpoints/`, rebuilt by the same command; `--skip-train` re-evaluates it).

Data: `{c.data.source}`, {c.text.tokenizer} tokenizer ({loaded.tokenizer.vocab_size} ids incl. specials), packed
windows of {c.data.max_length} tokens; test books {', '.join(titles['test'])}, validation books
{', '.join(titles['valid'])}, {len(titles['train'])} training books. Model: {c.model.depth} layers, width
{c.model.width}, {state.get('num_parameters', 0) / 1e6:.2f} M parameters; trained {state['step']} steps ×
{c.train.batch_size} windows ({state['tokens_seen'] / 1e6:.1f} M tokens) in {state['elapsed'] / 60:.1f} min on
{torch.get_num_threads()} CPU threads ({c.train.precision} autocast).

Validation NELBO (EMA weights, all {n_valid} validation windows, K = 16 midpoint times, seed 0):
**{bits:.4f} bits per token = {bpc:.4f} bits per character**.

{n} samples per row, seed 0, float64 draws, temperature 1. `gen_ppl` and `scorer_bpc` are the perplexity per
scorer token and the bits per character of the samples under {SCORER_NAME} — not GPT-2, so read them only against
the real-text row of this table; `entropy_bits` is the mean per-sample unigram entropy of the scorer tokens
(repetitive samples score low); `nelbo_bpc` is the checkpoint's own validation NELBO per character (first
{c.train.val_sequences} validation windows, K = {c.train.val_num_t}, as logged in training); `nfe` is network
evaluations per sequence, `seconds` the wall clock for all samples. The n-gram rows are samples of the model's
own tokens fitted on the training books: a model that does not beat them has learned nothing beyond token pair
statistics.

{table}

First samples (whitespace collapsed): real held-out text `{real}`
{shown}

![loss curve]({curve})
"""
    write_results_section(name, markdown, page=root / "docs" / "results" / "bases.md")
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
