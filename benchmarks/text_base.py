"""Train a base text model and measure it next to the reference rows of the same evaluator: real held-out text
(the test books), unigram and bigram samples fitted on the training books. Writes runs/<config>/ (the checkpoint
post-training starts from), benchmarks/results/<config>.json, docs/<config>_loss_curve.png and the section
``<config>`` of docs/RESULTS.md.

    python benchmarks/text_base.py                              # configs/text_kjv.yaml: train ≤ 55 min, evaluate
    python benchmarks/text_base.py --config text_austen_bpe     # the BPE model on Austen (Persuasion held out)
    python benchmarks/text_base.py --skip-train                 # re-evaluate an existing run

Training resumes if the run folder already holds a checkpoint. Metrics (scmdm.evaluation.text): generative
perplexity and bits per character under SmolLM2-135M (not GPT-2: compare only within the table), unigram entropy
of the samples' scorer tokens, and the model's validation NELBO in bits per token and per character.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_results_section  # noqa: E402

from scmdm.checkpoint import load_checkpoint  # noqa: E402
from scmdm.config import SampleConfig, load_config  # noqa: E402
from scmdm.data import prepare_data  # noqa: E402
from scmdm.diffusion import validation_nelbo  # noqa: E402
from scmdm.evaluation import format_table  # noqa: E402
from scmdm.evaluation.lm_scorer import SCORER_NAME  # noqa: E402
from scmdm.evaluation.text import chars_per_token  # noqa: E402
from scmdm.schedules import get_schedule  # noqa: E402
from scmdm.training import Trainer  # noqa: E402
from scmdm.workflows import evaluator_for, resolve_config_path, sample_and_evaluate, table_columns  # noqa: E402


def full_validation(loaded, num_t: int = 16) -> tuple[float, float, int]:
    """Validation NELBO over every validation window (K = ``num_t`` midpoint times, seed 0): bits per token, bits
    per character, and the number of windows."""
    data = prepare_data(loaded.config.data, tokenizer=loaded.tokenizer, quiet=True)
    bits = validation_nelbo(lambda x, t: loaded.model(x, t), data.valid, get_schedule(loaded.config.diffusion.schedule),
                            loaded.tokenizer.mask_id, num_t=num_t, seed=0)
    return bits, bits / chars_per_token(loaded.tokenizer, data.valid), len(data.valid)


def excerpt(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return (text[:limit] + " …") if len(text) > limit else text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="text_kjv", help="a config name in configs/ or a YAML path")
    parser.add_argument("--out", help="run folder (default runs/<config>)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--num-samples", type=int, help="samples per row (default: the config's sample.num_samples)")
    parser.add_argument("--steps", type=int, nargs="+", help="sampling steps T (default: the config's, and its half)")
    parser.add_argument("--samplers", nargs="+", default=["ancestral"])
    parser.add_argument("--root", default=str(ROOT), help="where docs/ and benchmarks/results/ are written "
                                                           "(another folder for a trial run)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=3000")
    args = parser.parse_args()

    config_path = resolve_config_path(args.config)
    name = Path(config_path).stem
    config = load_config(config_path, args.overrides)
    if config.data.domain != "text":
        parser.error(f"{config_path} is a {config.data.domain} config; this benchmark is for text")
    out = Path(args.out) if args.out else ROOT / "runs" / name
    root = Path(args.root)
    n = args.num_samples or config.sample.num_samples
    steps = args.steps or sorted({config.sample.steps // 2, config.sample.steps})
    t0 = time.perf_counter()
    if not args.skip_train:
        result = Trainer(config, out).fit()
        print(f"trained {result.step} steps in {result.seconds / 60:.1f} min, val NELBO {result.val_nelbo_bits:.4f}")
    loaded = load_checkpoint(out)
    bits, bpc, n_valid = full_validation(loaded)
    print(f"full validation NELBO ({n_valid} windows, K=16): {bits:.4f} bits/token = {bpc:.4f} bits/char")
    evaluator = evaluator_for(loaded.config, loaded.split_info, tokenizer=loaded.tokenizer, show_progress=True)
    columns = table_columns("text")
    table_rows = [(f"real held-out text ({', '.join(loaded.split_info['titles']['test'])}; n={n})",
                   evaluator.reference_row(n=n).as_dict())]
    table_rows += [(label, m.as_dict()) for label, m in evaluator.baseline_rows(n=n)]
    for row in table_rows:
        print(format_table([row], columns=columns).splitlines()[-1], flush=True)
    rows, examples = [], {}
    for sampler in args.samplers:
        for t in steps:
            sample = SampleConfig(sampler=sampler, steps=t, num_samples=n, batch_size=config.sample.batch_size, seed=0)
            ev = sample_and_evaluate(loaded, evaluator, sample, show_progress=False)
            rows.append(ev.metrics)
            examples[ev.name] = ev.samples[:3]
            table_rows.append((ev.name, ev.metrics))
            print(format_table([table_rows[-1]], columns=columns).splitlines()[-1], flush=True)
    table = format_table(table_rows, columns=columns)
    print(table)

    state, c = loaded.state, loaded.config
    (root / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (root / "docs").mkdir(parents=True, exist_ok=True)
    payload = {"val_nelbo_bits": bits, "val_nelbo_bpc": bpc, "train_state": state, "config": c.to_dict(),
               "split": loaded.split_info, "rows": rows, "reference_rows": dict(table_rows[:3]), "examples": examples,
               "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                           "torch": torch.__version__}}
    payload["split"].pop("sha256", None)
    (root / "benchmarks" / "results" / f"{name}.json").write_text(json.dumps(payload, indent=1))
    curve = f"{name}_loss_curve.png"
    if (out / "loss_curve.png").exists():
        shutil.copyfile(out / "loss_curve.png", root / "docs" / curve)
    real = excerpt(evaluator.reference_windows[0])
    shown = "\n".join(f"- {label}: `{excerpt(s[0])}`" for label, s in examples.items() if s)
    titles = loaded.split_info["titles"]
    markdown = f"""## Text base model ({name})

Command: `python benchmarks/text_base.py --config {name}` (config `configs/{name}.yaml`; checkpoint in
`runs/{name}/checkpoints/`, rebuilt by the same command; `--skip-train` re-evaluates it).

Data: `{c.data.source}`, {c.data.tokenizer} tokenizer ({loaded.tokenizer.vocab_size} ids incl. specials), packed
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
    write_results_section(name, markdown, path=root / "docs" / "RESULTS.md")
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
