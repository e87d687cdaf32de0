"""The jobs the command line runs, as functions: sample a checkpoint, evaluate samples, the demo.

Kept apart from argument parsing so that benchmarks and tests call exactly what users run. Every function
works for every data domain; what differs per domain (evaluator, sample files, table columns) comes from the
registry in ``scmdm.domains``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scmdm.checkpoint import LoadedCheckpoint, load_checkpoint
from scmdm.config import Config, SampleConfig, load_config, resolve_config_path
from scmdm.distributed import resolve_device
from scmdm.domains import get_domain
from scmdm.sampling import SampleResult, generate
from scmdm.schedules import get_schedule
from scmdm.training import Trainer

__all__ = ["sample_checkpoint", "evaluator_for", "SampledEvaluation", "sample_and_evaluate", "run_demo",
           "resolve_config_path", "post_train_config", "table_columns", "TABLE_COLUMNS", "checkpoint_validation"]

def post_train_config(init_from: str | Path | LoadedCheckpoint, overrides: list[str] | None = None,
                      config_name: str | None = "selfcond") -> Config:
    """The config of a post-training run: the model's own config (data, model, diffusion), then the
    post-training YAML (``src/scmdm/configs/selfcond.yaml`` by default; ``speculative`` for the causal verifier), then
    ``overrides``."""
    base = (init_from if isinstance(init_from, LoadedCheckpoint) else load_checkpoint(init_from)).config
    return load_config(resolve_config_path(config_name), overrides, base=base)


def sample_checkpoint(loaded: LoadedCheckpoint, sample: SampleConfig, *, device: str | torch.device = "cpu",
                      show_progress: bool = True,
                      template: torch.Tensor | None = None) -> tuple[list[Any], SampleResult]:
    """Sample from a loaded checkpoint with the settings in ``sample``; the canvases decoded by its tokenizer
    (SMILES, text windows, ...). ``template``: conditional generation (``scmdm.templates``), one canvas per sample
    ([num_samples, L]) or one for all ([L])."""
    sample.validate()
    model = loaded.model.to(device)
    num_samples = sample.num_samples if template is None or template.ndim == 1 else template.shape[0]
    result = generate(model, get_schedule(loaded.config.diffusion.schedule), mask_id=loaded.tokenizer.mask_id,
                      num_samples=num_samples, length=loaded.config.data.max_length, sampler=sample.sampler,
                      steps=sample.steps, batch_size=sample.batch_size, temperature=sample.temperature,
                      top_p=sample.top_p, precision=sample.precision, seed=sample.seed, device=device,
                      show_progress=show_progress, carry=loaded.config.selfcond.carry,
                      sharpen_temperature=loaded.config.selfcond.sharpen_temperature, window=sample.window,
                      min_window=sample.min_window, window_schedule=sample.window_schedule,
                      verify_loops=sample.verify_loops, compile_network=sample.compile, remask=sample.remask,
                      eta=sample.eta, t_on=sample.t_on, t_off=sample.t_off, alpha_on=sample.alpha_on,
                      block_size=sample.block_size, threshold=sample.threshold, template=template)
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


def checkpoint_validation(loaded: LoadedCheckpoint, *, device: str | torch.device = "cpu") -> dict[str, float]:
    """The validation metrics of a checkpoint (bits per token, EMA weights, the objective's fixed protocol): those
    its training recorded (``state.json``); the ones a model's objective reports but the state lacks (e.g. the
    two-pass NELBO of a self-conditioned model) are computed on its validation split with the same protocol
    (``train.val_sequences``, ``train.val_num_t``, seed 0), which reproduces the recorded values exactly. A model
    without a split (imported) gets only what was recorded."""
    from scmdm.domains import prepare_data
    from scmdm.objectives import make_objective

    recorded = {k: float(v) for k, v in loaded.state.items() if k.startswith("val_") and isinstance(v, int | float)}
    objective = make_objective(loaded.config, get_schedule(loaded.config.diffusion.schedule),
                               mask_id=loaded.tokenizer.mask_id, vocab_size=loaded.tokenizer.vocab_size,
                               device=torch.device(device))
    if set(objective.metric_labels) <= set(recorded) or not loaded.split_info:
        return recorded
    data = prepare_data(loaded.config, loaded.tokenizer, quiet=True)
    data.split.verify(loaded.split_info)
    n = loaded.config.train.val_sequences or len(data.valid)
    computed = objective.validate(loaded.model.to(device), data.valid[:n].to(device),
                                  num_t=loaded.config.train.val_num_t)
    return {**computed, **recorded}


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
    knobs = {"remdm": dict(remask=sample.remask, eta=sample.eta), "blocks": dict(block_size=sample.block_size),
             "threshold": dict(threshold=sample.threshold, block_size=sample.block_size)}.get(sample.sampler)
    if knobs is not None:
        if sample.sampler == "remdm" and sample.remask == "loop":
            knobs.update(t_on=sample.t_on, t_off=sample.t_off, alpha_on=sample.alpha_on)
        metrics.update(knobs)
        default_name = f"{sample.sampler} " + " ".join(f"{k}={v}" for k, v in knobs.items()) + (
            f" T={sample.steps}" if sample.sampler != "threshold" else "")
    if sample.sampler == "first_hitting":
        default_name = "first_hitting"
    if sample.sampler == "speculative":  # its NFE comes from the window, not from steps
        metrics.update(nfe_causal=result.nfe_causal, window=sample.window, min_window=sample.min_window,
                       window_schedule=sample.window_schedule, verify_loops=sample.verify_loops)
        default_name = f"speculative W={sample.window} ({sample.window_schedule})"
    return SampledEvaluation(name=name or default_name, samples=samples, metrics=metrics)


def table_columns(domain: str) -> tuple[str, ...]:
    """The metric columns printed for ``domain``."""
    return get_domain(domain).table_columns


TABLE_COLUMNS = table_columns("molecule")  # kept for the molecule benchmarks


SHIPPED_BASE = Path("models/qm9_base")
SHIPPED_VERIFIER = Path("models/qm9_base_spec")


def run_demo(out_dir: str | Path = "runs/demo", *, base: str | Path = SHIPPED_BASE,
             verifier: str | Path = SHIPPED_VERIFIER, overrides: list[str] | None = None,
             show_progress: bool = True) -> str:
    """Both methods on the shipped QM9 model, side by side (``src/scmdm/configs/demo.yaml``).

    From ``base``, post-train the compute-matched control (``selfcond.injection=none``) and the self-conditioned
    model for the same ``train.steps``; sample ``sample.num_samples`` molecules from the base (ancestral), both
    post-trained models (same sampler, same NFE) and, with ``verifier`` (the base's trunk with a causal verifier),
    speculatively; print one table beside real held-out molecules. Post-trained runs already in ``out_dir`` are
    resumed, not retrained. Returns the table."""
    out_dir, started = Path(out_dir), time.perf_counter()
    for path, what in ((base, "the QM9 base model"), (verifier, "its speculative verifier")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} is not at {path}: run the demo from the scmdm checkout (models/ ships "
                                    "with it), or give --base / --verifier")
    loaded_base = load_checkpoint(base)
    config = load_config(resolve_config_path("demo"), overrides, base=loaded_base.config)
    s, threads = config.sample, config.train.threads
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(config.train.device)
    print(f"[1/3] post-training the shipped model ({loaded_base.model.num_parameters() / 1e6:.1f} M parameters, "
          f"{base}) for {config.train.steps} steps, twice: the compute-matched control and self-conditioned "
          f"({config.selfcond.injection}, λ = {config.selfcond.rate:g}) → {out_dir}/control, {out_dir}/selfcond")
    runs = {}
    for name, extra in (("control", ["selfcond.injection=none"]), ("selfcond", [])):
        arm_config = load_config(resolve_config_path("demo"), [*(overrides or []), *extra], base=loaded_base.config)
        arm = Trainer(arm_config, out_dir / name, show_progress=show_progress, init_from=base).fit()
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in arm.validation.items())
        print(f"      {name}: {metrics} ({arm.seconds / 60:.1f} min)")
        runs[name] = arm.checkpoint
    print("[2/3] preparing the evaluator (ChemNet statistics of held-out test molecules; cached after the first run)")
    evaluator = evaluator_for(loaded_base.config, loaded_base.split_info, tokenizer=loaded_base.tokenizer)
    speculative = dataclasses.replace(s, sampler="speculative")
    arms = [("base", "base model, ancestral", base, s),
            ("control", "control (vanilla post-training), ancestral", runs["control"], s),
            ("selfcond", f"self-conditioned ({config.selfcond.injection}), ancestral", runs["selfcond"], s),
            ("speculative", f"base + verifier, speculative (W ≤ {s.window}, {s.window_schedule})", verifier,
             speculative)]
    print(f"[3/3] sampling {s.num_samples} molecules per row (T = {s.steps}, {s.precision} draws) and evaluating")
    reference = evaluator.reference_row(n=s.num_samples).as_dict()
    rows = [(f"real held-out molecules (n={reference['n_samples']})", reference)]
    for key, name, checkpoint, sample in arms:
        loaded = load_checkpoint(checkpoint, use_ema=sample.use_ema, device=device)
        evaluation = sample_and_evaluate(loaded, evaluator, sample, name=name, device=device,
                                         show_progress=show_progress)
        rows.append((name, evaluation.metrics))
        get_domain("molecule").write_samples(evaluation.samples, out_dir / f"samples_{key}.smi", loaded.tokenizer)
    table = get_domain("molecule").table(rows, evaluator)
    (out_dir / "metrics.json").write_text(json.dumps({"rows": dict(rows), "config": config.to_dict()}, indent=1))
    spec = rows[-1][1]
    print()
    print(table)
    print(f"\nFCD is against {evaluator.n_reference} held-out test molecules; uniqueness is among valid samples, "
          "novelty among unique valid ones (against the training split). The two post-trained rows spent the same "
          "steps and sample with the same NFE; a validity gain alone can be sharpening (a lower temperature does "
          "that too): the ablation in docs/results compares them over a temperature sweep. The speculative row's NFE "
          f"counts trunk passes; it also ran {spec.get('nfe_causal', float('nan')):.1f} verifier-only passes per "
          "molecule (one causal layer each, about 1/6 of a trunk pass here).")
    print(f"Samples: {out_dir}/samples_*.smi   total time {(time.perf_counter() - started) / 60:.1f} min")
    return table
