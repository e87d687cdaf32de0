"""The jobs the command line runs, as functions: sample a checkpoint, evaluate samples, the demo.

Kept apart from argument parsing so that benchmarks and tests call exactly what users run. Every function
works for every data domain; what differs per domain (evaluator, sample files, table columns) comes from the
registry in ``scmdm.domains``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scmdm.checkpoint import LoadedCheckpoint, load_checkpoint
from scmdm.config import Config, SampleConfig, load_config
from scmdm.distributed import resolve_device
from scmdm.domains import get_domain
from scmdm.sampling import SampleResult, generate
from scmdm.schedules import get_schedule
from scmdm.training import Trainer

__all__ = ["sample_checkpoint", "evaluator_for", "SampledEvaluation", "sample_and_evaluate", "run_demo",
           "resolve_config_path", "post_train_config", "table_columns", "TABLE_COLUMNS"]

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


def post_train_config(init_from: str | Path | LoadedCheckpoint, overrides: list[str] | None = None,
                      config_name: str | None = "selfcond") -> Config:
    """The config of a post-training run: the model's own config (data, model, diffusion), then the
    post-training YAML (``configs/selfcond.yaml`` by default; ``speculative`` for the causal verifier), then
    ``overrides``."""
    base = (init_from if isinstance(init_from, LoadedCheckpoint) else load_checkpoint(init_from)).config
    return load_config(resolve_config_path(config_name), overrides, base=base)


def sample_checkpoint(loaded: LoadedCheckpoint, sample: SampleConfig, *, device: str | torch.device = "cpu",
                      show_progress: bool = True) -> tuple[list[Any], SampleResult]:
    """Sample from a loaded checkpoint with the settings in ``sample``; the canvases decoded by its tokenizer
    (SMILES, text windows, ...)."""
    sample.validate()
    model = loaded.model.to(device)
    result = generate(model, get_schedule(loaded.config.diffusion.schedule), mask_id=loaded.tokenizer.mask_id,
                      num_samples=sample.num_samples, length=loaded.config.data.max_length, sampler=sample.sampler,
                      steps=sample.steps, batch_size=sample.batch_size, temperature=sample.temperature,
                      top_p=sample.top_p, precision=sample.precision, seed=sample.seed, device=device,
                      show_progress=show_progress, carry=loaded.config.selfcond.carry,
                      sharpen_temperature=loaded.config.selfcond.sharpen_temperature, window=sample.window,
                      min_window=sample.min_window, window_schedule=sample.window_schedule,
                      verify_loops=sample.verify_loops, compile_network=sample.compile)
    return loaded.tokenizer.decode_batch(result.tokens), result


def evaluator_for(config: Config, split_info: dict | None = None, *, tokenizer: Any = None,
                  max_reference: int = 10000, **options: Any) -> Any:
    """The evaluator of a run's domain (``scmdm.domains``): molecules — novelty against its training split, FCD
    against its test split; text — the scorer's perplexity, reference windows from its test books, n-gram baselines
    from its training books, in the tokens of ``tokenizer`` (the checkpoint's; rebuilt from the config if not given);
    dna — k-mer spectra against its test windows, memorisation against its training windows; images — the CNN
    Fréchet distance against its test images.
    With ``split_info`` (from a checkpoint) the re-derived split is verified against it. ``options`` go to the
    domain's factory (text: ``device``, ``batch_size``, ``show_progress``; images: ``show_progress``)."""
    return get_domain(config.data.domain).evaluator(config, split_info, tokenizer, max_reference=max_reference,
                                                    **options)


@dataclass
class SampledEvaluation:
    name: str
    samples: list[Any]
    metrics: dict  # the evaluator's metrics + nfe, seconds, sampler, steps, temperature (+ checkpoint metrics)

    @property
    def smiles(self) -> list[Any]:  # the name it had when molecules were the only domain
        return self.samples


def sample_and_evaluate(loaded: LoadedCheckpoint, evaluator: Any, sample: SampleConfig, *,
                        name: str | None = None, device: str | torch.device = "cpu",
                        show_progress: bool = True) -> SampledEvaluation:
    samples, result = sample_checkpoint(loaded, sample, device=device, show_progress=show_progress)
    metrics = evaluator.evaluate(samples).as_dict()
    if hasattr(evaluator, "checkpoint_metrics"):  # model-only columns, e.g. text's NELBO in bits per character
        metrics.update(evaluator.checkpoint_metrics(loaded.state))
    metrics.update(nfe=result.nfe, seconds=result.seconds, sampler=sample.sampler, steps=sample.steps,
                   temperature=sample.temperature)
    default_name = f"{sample.sampler} T={sample.steps}"
    if sample.sampler == "speculative":  # its NFE comes from the window, not from steps
        metrics.update(nfe_causal=result.nfe_causal, window=sample.window, min_window=sample.min_window,
                       window_schedule=sample.window_schedule, verify_loops=sample.verify_loops)
        default_name = f"speculative W={sample.window} ({sample.window_schedule})"
    return SampledEvaluation(name=name or default_name, samples=samples, metrics=metrics)


def table_columns(domain: str) -> tuple[str, ...]:
    """The metric columns printed for ``domain``."""
    return get_domain(domain).table_columns


TABLE_COLUMNS = table_columns("molecule")  # kept for the molecule benchmarks


def run_demo(out_dir: str | Path = "runs/demo", config_name: str = "qm9_demo", overrides: list[str] | None = None,
             show_progress: bool = True, selfcond_steps: int = 0) -> str:
    """Train the demo model, sample it and print the metrics table next to real held-out data (QM9 molecules
    with the default config; any domain's config works).

    With ``selfcond_steps`` > 0 the trained model is then post-trained twice for that many steps — the
    compute-matched vanilla continuation (``selfcond.injection=none``) and self-conditioning
    (``configs/selfcond.yaml``) — and the table compares the two at equal NFE."""
    out_dir = Path(out_dir)
    config = load_config(resolve_config_path(config_name), overrides)
    if selfcond_steps < 0:
        raise ValueError(f"--selfcond-steps must be >= 0, got {selfcond_steps}")
    if selfcond_steps and config.sample.sampler == "cached":
        raise ValueError("the self-conditioning comparison needs sample.sampler=ancestral or topk: the cached sampler "
                         "refuses self-conditioned models")
    phases = 4 if selfcond_steps else 3
    domain = get_domain(config.data.domain)
    started = time.perf_counter()
    print(f"[1/{phases}] training a {config.model.depth}-layer, width-{config.model.width} masked diffusion model on "
          f"{'QM9' if config.data.resolved_source == 'qm9' else config.data.resolved_source} "
          f"({config.train.steps} steps, at most {config.train.max_minutes or '∞'} min) → {out_dir}")
    result = Trainer(config, out_dir, show_progress=show_progress).fit()
    print(f"      validation NELBO {result.val_nelbo_bits:.4f} bits/token after {result.step} steps "
          f"({result.seconds / 60:.1f} min); loss curve: {out_dir / 'loss_curve.png'}")
    s = config.sample
    models = [(f"MDM {s.sampler} T={s.steps}", result.checkpoint)]
    if selfcond_steps:
        print(f"[2/{phases}] post-training it for {selfcond_steps} more steps, twice: vanilla (the compute-matched "
              "control) and self-conditioned (configs/selfcond.yaml)")
        common = [f"train.steps={selfcond_steps}", f"train.eval_every={selfcond_steps}",
                  f"train.save_every={selfcond_steps}", f"train.device={config.train.device}",
                  f"train.threads={config.train.threads}"]
        arms = []
        for name, extra in (("control", ["selfcond.injection=none"]), ("selfcond", [])):
            arm_config = post_train_config(result.checkpoint, [*common, *extra])
            arm = Trainer(arm_config, out_dir / name, show_progress=show_progress, init_from=result.checkpoint).fit()
            two_pass = (f", two-pass {arm.validation['val_nelbo_sc_bits']:.4f}"
                        if "val_nelbo_sc_bits" in arm.validation else "")
            print(f"      {name}: validation NELBO {arm.val_nelbo_bits:.4f}{two_pass} bits/token "
                  f"({arm.seconds / 60:.1f} min)")
            arms.append((arm_config, arm.checkpoint))
        sc = arms[1][0].selfcond
        models = [(f"vanilla continuation {s.sampler} T={s.steps}", arms[0][1]),
                  (f"self-conditioned ({sc.injection}, λ={sc.rate:g}) {s.sampler} T={s.steps}", arms[1][1])]
    device = resolve_device(config.train.device)
    print(f"[{phases - 1}/{phases}] preparing the evaluator" + (" (ChemNet statistics of held-out test molecules)"
                                                                 if domain.name == "molecule" else ""))
    first = load_checkpoint(models[0][1], use_ema=s.use_ema, device=device)
    evaluator = evaluator_for(first.config, first.split_info, tokenizer=first.tokenizer)
    print(f"[{phases}/{phases}] sampling {s.num_samples} {domain.item_name} per model ({s.sampler}, T={s.steps}, "
          f"{s.precision} draws) and evaluating")
    reference = evaluator.reference_row(n=s.num_samples).as_dict()
    rows = [(f"{domain.reference_label} (n={s.num_samples})", reference)]
    evaluations = {}
    for name, checkpoint in models:
        loaded = load_checkpoint(checkpoint, use_ema=s.use_ema, device=device)
        evaluation = sample_and_evaluate(loaded, evaluator, s, name=name, device=device, show_progress=show_progress)
        rows.append((name, evaluation.metrics))
        evaluations[name] = evaluation
        stem = "samples" if checkpoint == result.checkpoint else f"samples_{Path(checkpoint).parents[1].name}"
        domain.write_samples(evaluation.samples, out_dir / f"{stem}{domain.sample_suffix}", loaded.tokenizer)
    table = domain.table(rows, evaluator)
    (out_dir / "metrics.json").write_text(json.dumps({
        "models": {name: ev.metrics for name, ev in evaluations.items()}, "reference": reference,
        "val_nelbo_bits": result.val_nelbo_bits, "train_steps": result.step, "selfcond_steps": selfcond_steps},
        indent=1))
    print()
    print(table)
    if domain.name == "molecule":
        print(f"\nFCD is against {evaluator.n_reference} held-out test molecules; uniqueness is among valid samples, "
              f"novelty among unique valid ones (against the training split).")
    if selfcond_steps and domain.name == "molecule":
        print("Both post-trained models spent the same steps and sample with the same NFE; a gain in validity alone "
              "can be mere sharpening (lower temperature does that too): see valid_unique_novel, and "
              "benchmarks/selfcond_ablation.py for the temperature sweep.")
    minutes = (time.perf_counter() - started) / 60
    print(f"Samples: {out_dir}/samples*{domain.sample_suffix}   total time {minutes:.1f} min")
    return table
