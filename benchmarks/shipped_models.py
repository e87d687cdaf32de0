"""Build the models scmdm ships (models/qm9_base and models/qm9_base_spec), measure them and write their model cards.

    python -m benchmarks.shipped_models            # train or resume both, export, evaluate, write cards (~4 h, 1 core)
    python -m benchmarks.shipped_models --skip-train   # re-export and re-evaluate what runs/ holds

1. The base: src/scmdm/configs/qm9_base.yaml for 6,000 steps (2.5× the 2,400 of the earlier base) → runs/qm9_long.
2. Its verifier: src/scmdm/configs/speculative.yaml (one causal layer, frozen trunk, 1,000 steps) → runs/qm9_long_spec.
3. Both exported (EMA weights) to models/, evaluated beside the earlier base's numbers (benchmarks/results/
   qm9_base.json): full validation NELBO (K = 16), and 1,000 molecules per row — the base ancestral at T = 32 and 64,
   the verifier's speculative sampler (cosine windows W ≤ 6 and W ≤ 12, constant W = 4); float64 draws, seed 0.
4. A model card (README.md) in each model folder, benchmarks/results/shipped_models.json and the section
   ``shipped_models`` of docs/results/shipped_models.md.

Training resumes where it stopped (steps decide, no wall-clock cap); every step is deterministic given the seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, write_results_section
from scmdm.checkpoint import export_model, load_checkpoint
from scmdm.config import load_config, resolve_config_path
from scmdm.diffusion import validation_nelbo
from scmdm.domains import prepare_data
from scmdm.evaluation import format_table
from scmdm.files import replace_file
from scmdm.schedules import get_schedule
from scmdm.training import Trainer
from scmdm.workflows import evaluator_for, post_train_config, sample_and_evaluate

BASE_RUN, SPEC_RUN = ROOT / "runs" / "qm9_long", ROOT / "runs" / "qm9_long_spec"
BASE_MODEL, SPEC_MODEL = ROOT / "models" / "qm9_base", ROOT / "models" / "qm9_base_spec"
BASE_OVERRIDES = ["train.steps=6000", "train.save_every=500", "train.eval_every=1000", "train.keep_checkpoints=2"]
RESULTS = ROOT / "benchmarks" / "results" / "shipped_models.json"
PAGE = ROOT / "docs" / "results" / "shipped_models.md"
COLUMNS = ("validity", "uniqueness", "novelty", "valid_unique_novel", "fcd", "qed", "sa", "nfe", "nfe_causal")


def train(skip: bool) -> None:
    if skip:
        return
    config = load_config(resolve_config_path("qm9_base"), BASE_OVERRIDES)
    print(f"base: {config.train.steps} steps → {BASE_RUN}", flush=True)
    Trainer(config, BASE_RUN).fit()
    export(BASE_RUN, BASE_MODEL, "scmdm train --config qm9_base --out runs/qm9_long " + " ".join(BASE_OVERRIDES))
    spec_config = post_train_config(BASE_MODEL, [], "speculative")
    print(f"verifier: {spec_config.train.steps} steps → {SPEC_RUN}", flush=True)
    Trainer(spec_config, SPEC_RUN, init_from=BASE_MODEL).fit()
    export(SPEC_RUN, SPEC_MODEL, "scmdm posttrain --from models/qm9_base --out runs/qm9_long_spec --speculative")


def export(run: Path, out: Path, trained_with: str) -> None:
    if out.exists():
        shutil.rmtree(out)
    exported = f"scmdm export {run.relative_to(ROOT)} --out {out.relative_to(ROOT)}"
    export_model(run, out, command=f"{trained_with}; {exported}")


def full_nelbo(folder: Path) -> float:
    loaded = load_checkpoint(folder)
    data = prepare_data(loaded.config, loaded.tokenizer, quiet=True)
    return validation_nelbo(lambda x, t: loaded.model(x, t), data.valid, get_schedule(loaded.config.diffusion.schedule),
                            loaded.tokenizer.mask_id, num_t=16, seed=0)


def evaluate() -> dict:
    base, spec = load_checkpoint(BASE_MODEL), load_checkpoint(SPEC_MODEL)
    evaluator = evaluator_for(base.config, base.split_info, tokenizer=base.tokenizer)
    sample = dataclasses.replace(base.config.sample, num_samples=1000, batch_size=500, seed=0, precision="float64")
    arms = [("base, ancestral T=32", base, dataclasses.replace(sample, steps=32)),
            ("base, ancestral T=64", base, dataclasses.replace(sample, steps=64)),
            ("verifier, speculative cosine W≤6", spec, dataclasses.replace(
                sample, sampler="speculative", window=6, min_window=2, window_schedule="cosine")),
            ("verifier, speculative cosine W≤12", spec, dataclasses.replace(
                sample, sampler="speculative", window=12, min_window=2, window_schedule="cosine")),
            ("verifier, speculative constant W=4", spec, dataclasses.replace(
                sample, sampler="speculative", window=4, window_schedule="constant"))]
    rows = {"real held-out molecules (n=1000)": evaluator.reference_row(n=1000).as_dict()}
    for name, loaded, settings in arms:
        print(f"sampling: {name}", flush=True)
        rows[name] = sample_and_evaluate(loaded, evaluator, settings, name=name, show_progress=False).metrics
    state = base.state
    return {"rows": rows, "n_reference": evaluator.n_reference,
            "val_nelbo_full": {"base": full_nelbo(BASE_MODEL), "verifier_trunk": full_nelbo(SPEC_MODEL)},
            "base_state": state, "spec_state": spec.state,
            "verifier_validation": {k: v for k, v in spec.state.items() if k.startswith("val_")},
            "num_parameters": {"base": base.model.num_parameters(), "verifier": spec.model.num_parameters()},
            "earlier_base": earlier_base(), "machine": {"cpu_threads": torch.get_num_threads(),
                                                         "torch": torch.__version__}}


def earlier_base() -> dict:
    """The base model scmdm used before (2,400 steps; benchmarks/results/qm9_base.json): its T = 64 row."""
    data = json.loads((ROOT / "benchmarks" / "results" / "qm9_base.json").read_text())
    row = next(r for r in data["rows"] if r["sampler"] == "ancestral" and r["steps"] == 64)
    return {"val_nelbo_full": data["val_nelbo_bits"], "steps": data["train_state"]["step"], "T64": row}


def cards(result: dict) -> None:
    rows = result["rows"]
    table = format_table(list(rows.items()), columns=COLUMNS)
    spec_state = result["spec_state"]
    earlier, t64 = result["earlier_base"], rows["base, ancestral T=64"]
    verifier_line = (f"\nVerifier validation (σ-order NLL, bits/token): draft "
                     f"{spec_state.get('val_draft_bits', float('nan')):.4f}, target "
                     f"{spec_state.get('val_target_bits', float('nan')):.4f} — the target is the better model.\n")
    models = (
        (BASE_MODEL, "a masked diffusion model of QM9 molecules (6 × 256 transformer, 4.7 M parameters)",
         f"`scmdm train --config qm9_base --out runs/qm9_long {' '.join(BASE_OVERRIDES)}`", result["base_state"], "",
         "base", "sample.steps=64"),
        (SPEC_MODEL, "the QM9 base model with a causal verifier layer trained on its frozen trunk",
         "`scmdm posttrain --from models/qm9_base --out runs/qm9_long_spec --speculative`", spec_state,
         verifier_line, "verifier_trunk", "sample.sampler=speculative sample.window=6 sample.window_schedule=cosine"))
    for folder, what, how, state, extra, nelbo_key, sample_args in models:
        readme = folder / "README.md"
        generated = readme.read_text()
        rest = generated.split("\n", 2)[2] if generated.startswith("# ") else generated
        tokens = state.get("tokens_seen", 0)
        card = "\n".join([
            f"# {folder.name} — {what}", "",
            "Shipped with scmdm (`models/`), built and measured by `python -m benchmarks.shipped_models`.", "",
            "| | |", "|---|---|",
            f"| how it was trained | {how} |",
            f"| training steps | {state.get('step')} × batch 256 QM9 molecules ({tokens:,} canvas tokens) |",
            f"| validation NELBO (1,024 validation molecules, K = 8, EMA) | {state.get('val_nelbo_bits', 0):.4f} "
            "bits/token |",
            f"| validation NELBO (all validation molecules, K = 16) | {result['val_nelbo_full'][nelbo_key]:.4f} "
            "bits/token |",
            extra, "## Measured (1,000 molecules a row, float64 draws, seed 0)", "", table, "",
            "`nfe` counts trunk passes, `nfe_causal` the verifier-only passes of the speculative sampler. FCD is "
            f"against {result['n_reference']:,} held-out test molecules; uniqueness among valid samples, novelty among "
            f"unique valid ones against the training split. The earlier base (2,400 steps, validation NELBO "
            f"{earlier['val_nelbo_full']:.4f} on all validation molecules) reached validity "
            f"{earlier['T64']['validity']:.3f}, novelty {earlier['T64']['novelty']:.3f} and FCD "
            f"{earlier['T64']['fcd']:.2f} at T = 64.", "",
            "## Use it", "", "```bash",
            f"scmdm sample {folder.relative_to(ROOT)} --out samples.smi sample.num_samples=1000 {sample_args}",
            f"scmdm posttrain --from {folder.relative_to(ROOT)} --out runs/my_sc          # self-conditioned",
            "```", "", "---", "", rest])
        replace_file(folder, "README.md", card)  # and its entry in checksums.json
    comparison = [
        ("validation NELBO, all validation molecules, K = 16", earlier["val_nelbo_full"],
         result["val_nelbo_full"]["base"], 4),
        ("validity at T = 64", earlier["T64"]["validity"], t64["validity"], 3),
        ("novelty at T = 64", earlier["T64"]["novelty"], t64["novelty"], 3),
        ("valid ∧ unique ∧ novel at T = 64", earlier["T64"]["valid_unique_novel"], t64["valid_unique_novel"], 3),
        ("FCD at T = 64", earlier["T64"]["fcd"], t64["fcd"], 2)]
    lines = [f"| {name} | {old:.{d}f} | {new:.{d}f} |" for name, old, new, d in comparison]
    section = "\n".join([
        "## The shipped QM9 models", "",
        "Command: `python -m benchmarks.shipped_models`. models/qm9_base: src/scmdm/configs/qm9_base.yaml trained "
        "6,000 steps (the earlier base: 2,400); models/qm9_base_spec: a causal verifier on its frozen trunk (1,000 "
        "steps). 1,000 molecules a row, float64 draws, seed 0.", "", table, "",
        "| | earlier base (2,400 steps) | shipped base (6,000 steps) |", "|---|---:|---:|", *lines])
    write_results_section("shipped_models", section, page=PAGE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-train", action="store_true", help="export and evaluate what runs/ holds")
    args = parser.parse_args()
    started = time.perf_counter()
    train(args.skip_train)
    if args.skip_train:
        export(BASE_RUN, BASE_MODEL, "scmdm train --config qm9_base --out runs/qm9_long " + " ".join(BASE_OVERRIDES))
        export(SPEC_RUN, SPEC_MODEL, "scmdm posttrain --from models/qm9_base --out runs/qm9_long_spec --speculative")
    result = evaluate()
    result["seconds"] = time.perf_counter() - started
    RESULTS.write_text(json.dumps(result, indent=1))
    cards(result)
    print(format_table(list(result["rows"].items()), columns=COLUMNS))


if __name__ == "__main__":
    main()
