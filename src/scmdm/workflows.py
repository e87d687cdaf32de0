"""The jobs the command line runs, as functions: sample a checkpoint, evaluate samples, the demo.

Kept apart from argument parsing so that benchmarks and tests call exactly what users run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from scmdm.checkpoint import LoadedCheckpoint, load_checkpoint
from scmdm.config import Config, SampleConfig, load_config
from scmdm.data.molecules import load_molecules, split_molecules
from scmdm.evaluation import MoleculeEvaluator, format_table
from scmdm.sampling import SampleResult, generate
from scmdm.schedules import get_schedule
from scmdm.training import Trainer, resolve_device

__all__ = ["sample_checkpoint", "evaluator_for", "SampledEvaluation", "sample_and_evaluate", "run_demo",
           "resolve_config_path"]

CONFIG_DIRS = (Path.cwd() / "configs", Path(__file__).resolve().parents[2] / "configs")


def resolve_config_path(name: str | None) -> Path | None:
    """A YAML path as given, or a bundled config by name (``qm9_demo`` → configs/qm9_demo.yaml)."""
    if name is None:
        return None
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    for folder in CONFIG_DIRS:
        if (folder / f"{name}.yaml").exists():
            return folder / f"{name}.yaml"
    available = sorted({p.stem for d in CONFIG_DIRS if d.exists() for p in d.glob("*.yaml")})
    raise FileNotFoundError(f"no config {name!r}; give a YAML path or one of: {', '.join(available) or 'none found'}")


def sample_checkpoint(loaded: LoadedCheckpoint, sample: SampleConfig, *, device: str | torch.device = "cpu",
                      show_progress: bool = True) -> tuple[list[str], SampleResult]:
    """Sample SMILES from a loaded checkpoint with the settings in ``sample``."""
    sample.validate()
    model = loaded.model.to(device)
    result = generate(model, get_schedule(loaded.config.diffusion.schedule), mask_id=loaded.tokenizer.mask_id,
                      num_samples=sample.num_samples, length=loaded.config.data.max_length, sampler=sample.sampler,
                      steps=sample.steps, batch_size=sample.batch_size, temperature=sample.temperature,
                      top_p=sample.top_p, precision=sample.precision, seed=sample.seed, device=device,
                      show_progress=show_progress, carry=loaded.config.selfcond.carry,
                      sharpen_temperature=loaded.config.selfcond.sharpen_temperature)
    return loaded.tokenizer.decode_batch(result.tokens), result


def evaluator_for(config: Config, split_info: dict | None = None, *, max_reference: int = 10000) -> MoleculeEvaluator:
    """The evaluator of a run: novelty against its training split, FCD against its test split.
    With ``split_info`` (from a checkpoint) the re-derived split is verified against it."""
    d = config.data
    split = split_molecules(load_molecules(d.source), source=d.source, seed=d.split_seed,
                            valid_fraction=d.valid_fraction, test_fraction=d.test_fraction)
    if split_info is not None:
        split.verify(split_info)
    return MoleculeEvaluator(split.train, split.test, max_reference=max_reference)


@dataclass
class SampledEvaluation:
    name: str
    smiles: list[str]
    metrics: dict  # MoleculeMetrics fields + nfe, seconds, sampler, steps, temperature


def sample_and_evaluate(loaded: LoadedCheckpoint, evaluator: MoleculeEvaluator, sample: SampleConfig, *,
                        name: str | None = None, device: str | torch.device = "cpu",
                        show_progress: bool = True) -> SampledEvaluation:
    smiles, result = sample_checkpoint(loaded, sample, device=device, show_progress=show_progress)
    metrics = evaluator.evaluate(smiles).as_dict()
    metrics.update(nfe=result.nfe, seconds=result.seconds, sampler=sample.sampler, steps=sample.steps,
                   temperature=sample.temperature)
    return SampledEvaluation(name=name or f"{sample.sampler} T={sample.steps}", smiles=smiles, metrics=metrics)


TABLE_COLUMNS = ("validity", "uniqueness", "novelty", "valid_unique_novel", "fcd", "qed", "sa", "nfe", "seconds")


def run_demo(out_dir: str | Path = "runs/demo", config_name: str = "qm9_demo", overrides: list[str] | None = None,
             show_progress: bool = True) -> str:
    """Train the demo model, sample it and print the metrics table next to real held-out molecules."""
    out_dir = Path(out_dir)
    config = load_config(resolve_config_path(config_name), overrides)
    started = time.perf_counter()
    print(f"[1/3] training a {config.model.depth}-layer, width-{config.model.width} masked diffusion model on QM9 "
          f"({config.train.steps} steps, at most {config.train.max_minutes or '∞'} min) → {out_dir}")
    result = Trainer(config, out_dir, show_progress=show_progress).fit()
    print(f"      validation NELBO {result.val_nelbo_bits:.4f} bits/token after {result.step} steps "
          f"({result.seconds / 60:.1f} min); loss curve: {out_dir / 'loss_curve.png'}")
    device = resolve_device(config.train.device)
    loaded = load_checkpoint(result.checkpoint, use_ema=config.sample.use_ema, device=device)
    print("[2/3] preparing the evaluator (ChemNet statistics of held-out test molecules)")
    evaluator = evaluator_for(loaded.config, loaded.split_info)
    print(f"[3/3] sampling {config.sample.num_samples} molecules ({config.sample.sampler}, T={config.sample.steps}, "
          f"{config.sample.precision} draws) and evaluating")
    evaluation = sample_and_evaluate(loaded, evaluator, config.sample, device=device, show_progress=show_progress)
    reference = evaluator.reference_row(n=config.sample.num_samples).as_dict()
    rows = [(f"real held-out molecules (n={config.sample.num_samples})", reference),
            (f"MDM {config.sample.sampler} T={config.sample.steps}", evaluation.metrics)]
    table = format_table(rows, columns=TABLE_COLUMNS)
    (out_dir / "samples.smi").write_text("\n".join(evaluation.smiles) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps({"model": evaluation.metrics, "reference": reference,
                                                      "val_nelbo_bits": result.val_nelbo_bits,
                                                      "train_steps": result.step}, indent=1))
    print()
    print(table)
    print(f"\nFCD is against {evaluator.n_reference} held-out test molecules; uniqueness is among valid samples, "
          f"novelty among unique valid ones (against the training split).")
    print(f"Samples: {out_dir / 'samples.smi'}   total time {(time.perf_counter() - started) / 60:.1f} min")
    return table
