"""Training loop: AdamW with warm-up and cosine decay, gradient clipping, EMA, validation, checkpoints.

Learning rate at step s (W warm-up steps, S total, r = min_lr_ratio):
    lr(s) = lr · (s + 1)/W                                      for s < W
    lr(s) = lr · (r + (1 − r) · ½(1 + cos(π (s − W)/(S − W))))  afterwards
EMA:   θ̄ ← decay · θ̄ + (1 − decay) · θ        after every optimizer step.

Determinism and exact resume. The batch at step s is a function of (seed, s) alone: epoch
e = ⌊s / b⌋ (b batches per epoch, last partial batch dropped) uses the permutation
``randperm(N, Generator(seed·1 000 003 + e))``. Times and masks come from a dedicated generator
whose state, with torch's global RNG (dropout), is saved in every checkpoint, so training resumed
from a checkpoint takes exactly the steps an uninterrupted run would have taken — also after the
process was killed (SIGKILL, power loss): checkpoints are written atomically, and on resume the lines
of ``metrics.jsonl`` after the checkpoint's step (and a half-written last line) are dropped, so the
replayed steps are not logged twice.

Self-conditioned post-training (``selfcond.injection`` ≠ none): an update is two-pass with
probability ``selfcond.rate`` (``scmdm.selfcond``); validation then reports the NELBO with the null
condition (``val_nelbo_bits``) and with the two-pass condition (``val_nelbo_sc_bits``), both under the
same fixed masks, so drift of the null path is visible.

Self-speculative models (``speculative.causal_layers`` > 0) are trained with the joint loss of
``scmdm.speculative`` (draft + teacher-forced verifier cross-entropy, D/(D − i) weighting) instead of the
NELBO; with ``speculative.freeze_trunk`` only the verifier is in the optimizer (the trunk runs in eval mode,
without gradient). Validation adds ``val_draft_bits`` and ``val_target_bits`` (``validation_speculative``).

A non-finite loss or gradient norm stops training with ``FloatingPointError`` before the weights
are touched; the newest checkpoint on disk is the last good one.

Micro-batches and processes (``train.grad_accum``, ``torchrun``; ``scmdm.distributed``). ``train.batch_size``
is the global batch B of a step. All random numbers of the step — times and masks (NELBO), generation
orders and revealed counts (speculative loss), the hint's draws (two-pass updates) — are drawn for the
whole batch first (``draw_noise``, from the noise generator that every process holds in the same state,
in the order the losses themselves draw them), and each micro-batch takes its rows. Micro-batch k of
process r back-propagates W·(b_rk/B)·(its mean loss), so accumulated and reduced gradients equal the
one-process, one-batch gradient up to float32 round-off (the per-row sums are added in another order).
Dropout masks are the exception: they come from each process's own global RNG and depend on the
micro-batch shape, so exact agreement needs ``model.dropout=0``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from scmdm import distributed
from scmdm.checkpoint import (
    CheckpointError,
    build_model,
    find_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    read_json,
    read_tokenizer,
    read_weights,
    save_checkpoint,
)
from scmdm.config import Config, ConfigError
from scmdm.data import PreparedData, prepare_data
from scmdm.diffusion import mask_tokens, nelbo_loss, sample_times, validation_nelbo
from scmdm.schedules import get_schedule
from scmdm.selfcond import HintDraws, draw_hint_noise, first_pass_hint, self_condition_coin, two_pass_logits
from scmdm.speculative import (
    copy_head_into_verifier,
    sample_orders,
    sample_revealed,
    set_train_mode,
    speculative_loss,
    trainable_parameters,
    validation_speculative,
)

__all__ = ["EMA", "learning_rate", "batch_indices", "Trainer", "StepNoise", "resolve_device", "plot_metrics",
           "read_metrics"]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA if available, else CPU. A device that is not there is a ConfigError (one line)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available here; use cpu (or auto)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available here; use cpu (or auto)")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, mps, cuda, cuda:N")
    return torch.device(name)


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers, with warm-up:

        shadow ← d_n · shadow + (1 − d_n) · θ,     d_n = min(decay, (1 + n) / (10 + n))

    where n is the number of updates before this one (the training step). Without the warm-up the
    average would keep decay^n of the random initialisation (0.999^2400 ≈ 9 % after 2,400 steps)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        current = model.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.shadow[k] for k in floats], [current[k].detach() for k in floats],
                             1.0 - self.decay_at(step))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load full tensors (as a checkpoint holds them); under FSDP each process keeps its shard."""
        for k, v in state.items():
            self.shadow[k].copy_(distributed.like(v, self.shadow[k]))


def learning_rate(step: int, *, lr: float, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(step: int, *, num_examples: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the training batch at ``step`` (a pure function of its arguments)."""
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {num_examples} training examples")
    epoch, position = divmod(step, per_epoch)
    perm = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[position * batch_size:(position + 1) * batch_size]


def read_metrics(metrics_file: Path) -> list[dict]:
    """The rows of a metrics.jsonl; lines that are not complete JSON objects (a line half-written when
    the process was killed) are skipped."""
    rows = []
    for line in Path(metrics_file).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def _truncate_metrics(metrics_file: Path, step: int) -> None:
    """Keep only complete rows up to ``step`` (the checkpoint resumed from); rewritten atomically."""
    if not metrics_file.exists():
        return
    rows = [r for r in read_metrics(metrics_file) if r["step"] <= step]
    tmp = metrics_file.with_name(metrics_file.name + f".tmp{os.getpid()}")
    with tmp.open("w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, metrics_file)


def plot_metrics(metrics_file: Path, out_png: Path) -> None:
    """Training loss (and validation NELBO) against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_file)
    train = [(r["step"], r["loss_bits"]) for r in rows if "loss_bits" in r]
    val = [(r["step"], r["val_nelbo_bits"]) for r in rows if "val_nelbo_bits" in r]
    val_sc = [(r["step"], r["val_nelbo_sc_bits"]) for r in rows if "val_nelbo_sc_bits" in r]
    val_target = [(r["step"], r["val_target_bits"]) for r in rows if "val_target_bits" in r]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    if train:
        ax.plot(*zip(*train, strict=True), lw=1, alpha=0.8, label="train loss (NELBO estimate)")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation NELBO (EMA weights)")
    if val_sc:
        ax.plot(*zip(*val_sc, strict=True), "s-", label="validation NELBO, two-pass (self-conditioned)")
    if val_target:
        ax.plot(*zip(*val_target, strict=True), "^-", label="validation NLL of the verifier's target")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per token")
    ax.set_title(metrics_file.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    if train:
        lo = min(v for _, v in (train + val))
        hi = sorted(v for _, v in train)[int(0.95 * (len(train) - 1))]
        ax.set_ylim(lo * 0.95, max(hi, lo * 1.05))
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    step: int
    val_nelbo_bits: float | None
    seconds: float
    stopped_early: bool
    val_nelbo_sc_bits: float | None = None  # two-pass validation NELBO of a self-conditioned model
    val_target_bits: float | None = None  # verifier NLL of a self-speculative model (validation_speculative)


@dataclass
class StepNoise:
    """Every random number of one update, drawn for the whole global batch: times ``t`` and the noised batch
    ``x_t`` (NELBO), or generation orders and revealed counts (speculative loss), and the hint draws of a
    two-pass update. ``rows`` gives a micro-batch's share."""

    t: torch.Tensor | None = None
    x_t: torch.Tensor | None = None
    order: torch.Tensor | None = None
    revealed: torch.Tensor | None = None
    hint: HintDraws | None = None

    def rows(self, index: slice) -> StepNoise:
        def cut(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value[index]

        return StepNoise(cut(self.t), cut(self.x_t), cut(self.order), cut(self.revealed),
                         self.hint.rows(index) if self.hint is not None else None)


class Trainer:
    """Trains the masked diffusion model described by ``config`` into ``run_dir``.

    If ``run_dir`` already holds a checkpoint, training resumes from it (``resume=True``). Otherwise,
    with ``init_from`` (a run, checkpoint or exported model folder), training starts from that model's
    (EMA) weights and tokenizer — post-training; the model settings and canvas length must match.

    Inside a torch.distributed process group (``torchrun ... -m scmdm train``, see ``scmdm.distributed``)
    every process builds a Trainer with the same arguments; each computes its rows of every global batch and
    rank 0 alone writes files."""

    def __init__(self, config: Config, run_dir: str | Path, *, resume: bool = True,
                 data: PreparedData | None = None, show_progress: bool = True,
                 init_from: str | Path | None = None) -> None:
        self.config = config
        self.dist = distributed.info()
        self.is_main = self.dist.is_main
        # the device first: a device that is not there stops here, before anything is written
        self.device = self._process_device(config.train.device)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.show_progress = show_progress and self.is_main
        tc = config.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        checkpoints = self.run_dir / "checkpoints"
        resume_from = find_checkpoint(self.run_dir) if resume and any(checkpoints.glob("step_*")) else None
        if self.dist.enabled:
            distributed.agree(resume_from.name if resume_from else None, f"the checkpoint in {checkpoints} to resume "
                              "from", "; the run folder must be on a filesystem every process sees")
        init = None
        tokenizer = None
        if resume_from is not None:
            self._check_compatible(resume_from, read_json(resume_from / "config.json"), "resume from")
            tokenizer = read_tokenizer(resume_from / "tokenizer.json", config)
        elif init_from is not None:
            init = load_checkpoint(init_from, use_ema=True)
            self._check_compatible(init.path, init.config.to_dict(), "initialise from")
            tokenizer = init.tokenizer
        if data is None:
            data = prepare_data(config.data, tokenizer, quiet=not self.is_main)
        elif tokenizer is not None and data.tokenizer != tokenizer:
            raise CheckpointError(f"vocabulary mismatch: the data's tokenizer ({data.tokenizer.vocab_size} ids) "
                                  f"differs from {(resume_from or init.path) / 'tokenizer.json'} "
                                  f"({tokenizer.vocab_size} ids)")
        self.data = data
        self.tokenizer = self.data.tokenizer  # the domain's tokenizer (scmdm.domains)
        self.schedule = get_schedule(config.diffusion.schedule)
        self.model = build_model(config, self.tokenizer)  # the same initial weights on every process (same seed)
        if resume_from is not None:
            self._resume_weights(resume_from)
        elif init is not None:
            self._load_initial_weights(init.model.state_dict(), init.weights_file)
        if config.speculative.freeze_trunk:  # only the verifier learns
            trainable_parameters(self.model)
        if not tc.fsdp:
            self.model.to(self.device)
        # DDP / FSDP around the loss (FSDP moves the model to the device and shards it: before EMA and optimizer)
        self.objective = distributed.wrap(self.model, device=self.device, fsdp=tc.fsdp,
                                          find_unused=self._may_leave_parameters_unused())
        self.ema = EMA(self.model, tc.ema_decay) if tc.ema_decay > 0 else None
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=tc.lr,
                                           betas=tuple(tc.betas), weight_decay=tc.weight_decay)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(tc.seed + 1)  # alike on every process
        self.train_data = self.data.train.to(self.device)
        n_val = tc.val_sequences or len(self.data.valid)
        self.val_data = self.data.valid[:n_val]
        self.step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.last_val: float | None = None
        self.last_val_sc: float | None = None
        self.last_val_target: float | None = None
        self.metrics_file = self.run_dir / "metrics.jsonl"
        self.init_from = str(init.path) if init is not None else None
        if self.is_main:
            tmp = self.run_dir / f".config.json.tmp{os.getpid()}"  # atomic: a kill never leaves half a file
            tmp.write_text(json.dumps(config.to_dict(), indent=1))
            os.replace(tmp, self.run_dir / "config.json")
        if resume_from is not None:
            self._resume(resume_from)
            if self.is_main:
                _truncate_metrics(self.metrics_file, self.step)
                print(f"resuming from {resume_from} (step {self.step} of {tc.steps})", file=sys.stderr)
        else:
            if self.dist.rank > 0:  # dropout: a stream of its own for every process
                torch.manual_seed(self._rank_seed())
            if init is not None and self.is_main:
                print(f"initialised from {init.weights_file}", file=sys.stderr)
            elif init is None and self.is_main and self.metrics_file.exists():
                _truncate_metrics(self.metrics_file, 0)  # a fresh start: an earlier, checkpoint-less attempt's go
        distributed.barrier()

    def _process_device(self, name: str) -> torch.device:
        """``resolve_device``; in a process group CUDA means ``cuda:LOCAL_RANK``."""
        device = resolve_device(name)
        if self.dist.enabled and device.type == "cuda":
            if ":" in name and self.dist.world_size > 1:
                raise ConfigError(f"train.device={name!r}: in a distributed run every process uses cuda:LOCAL_RANK; "
                                  "set train.device=cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
            device = torch.device("cuda", self.dist.local_rank)
        return device

    def _rank_seed(self) -> int:
        return self.config.train.seed + 1_000_003 * self.dist.rank + self.step

    def _may_leave_parameters_unused(self) -> bool:
        """Whether a step may give some trainable parameter no gradient (DDP's ``find_unused_parameters``): the
        self-conditioning projection on one-pass updates (rate below 1)."""
        sc = self.model.self_cond
        return (sc is not None and any(p.requires_grad for p in sc.parameters())
                and self.config.selfcond.rate < 1.0)

    def _load_initial_weights(self, weights: dict[str, torch.Tensor], source: Path | None) -> None:
        """Post-training starts from ``weights``; only the additions (self-conditioning input, causal verifier)
        may be missing. A new separate verifier head starts as a copy of the trunk's."""
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if any(k.startswith("causal.output_layer.") for k in missing):
            copy_head_into_verifier(self.model)
        missing = [k for k in missing if not k.startswith(("self_cond.", "causal."))]
        if missing or unexpected:
            raise CheckpointError(f"cannot initialise from {source}: its weights do not fit this model "
                                  f"(selfcond.injection={self.config.selfcond.injection!r}, speculative.causal_layers="
                                  f"{self.config.speculative.causal_layers}): missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}")

    def _check_compatible(self, folder: Path, saved: dict, verb: str) -> None:
        """The saved model must have the architecture and canvas this config asks for (and, to resume, the
        same self-conditioning input)."""
        wanted = self.config.to_dict()
        diffs = [f"model.{k}: {v!r} there, {wanted['model'].get(k)!r} here" for k, v in saved.get("model", {}).items()
                 if wanted["model"].get(k) != v]
        saved_injection = saved.get("selfcond", {}).get("injection", "none")
        if verb == "resume from" and saved_injection != wanted["selfcond"]["injection"]:
            diffs.append(f"selfcond.injection: {saved_injection!r} there, {wanted['selfcond']['injection']!r} here")
        for key, default in (("causal_layers", 0), ("head", "shared")):
            there = saved.get("speculative", {}).get(key, default)
            if verb == "resume from" and there != wanted["speculative"][key]:
                diffs.append(f"speculative.{key}: {there!r} there, {wanted['speculative'][key]!r} here")
        for key in ("max_length", "domain"):
            if saved.get("data", {}).get(key) != wanted["data"][key]:
                diffs.append(f"data.{key}: {saved.get('data', {}).get(key)!r} there, {wanted['data'][key]!r} here")
        if diffs:
            raise CheckpointError(f"cannot {verb} {folder}: its config.json differs ({'; '.join(diffs)}); use the "
                                  f"same model settings, or another --out folder for a new model")

    # ---- state ----------------------------------------------------------------------------------
    def rng_state(self) -> dict[str, torch.Tensor]:
        """The RNG states a checkpoint keeps: torch's global RNG ("torch", and "cuda"), the noise generator
        ("noise", alike on every process) and, in a distributed run, every other process's global RNG
        ("torch_rank<r>", "cuda_rank<r>"; collecting them is a collective)."""
        own = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            own["cuda"] = torch.cuda.get_rng_state()
        state = {**own, "noise": self.noise_generator.get_state()}
        if self.dist.world_size > 1:
            for rank, theirs in enumerate(distributed.all_gather_object(own)):
                if rank > 0:
                    state.update({f"{k}_rank{rank}": v for k, v in theirs.items()})
        return state

    def _resume_weights(self, folder: Path) -> None:
        """The raw weights of a checkpoint, into the (not yet placed or sharded) model."""
        self.data.split.verify(read_json(folder / "split.json"))
        with _resume_errors(folder):
            self.model.load_state_dict(read_weights(folder / "model.safetensors"))

    def _resume(self, folder: Path) -> None:
        """EMA, optimizer, RNG and counters of a checkpoint (the weights came first: ``_resume_weights``)."""
        with _resume_errors(folder):
            if self.ema is not None:
                self.ema.load_state_dict(read_weights(folder / "ema.safetensors"))
            meta = read_json(folder / "optimizer.json")
            saved = optimizer_from_tensors(read_weights(folder / "optimizer.safetensors"), meta)
            self.optimizer.load_state_dict(distributed.shard_optimizer_state(saved, self.optimizer))
            state = read_json(folder / "state.json")
            self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
            rng = read_weights(folder / "rng.safetensors")
            suffix = f"_rank{self.dist.rank}" if self.dist.rank > 0 else ""
            if f"torch{suffix}" in rng:
                torch.set_rng_state(rng[f"torch{suffix}"])
            else:  # the checkpoint was written by fewer processes: this one starts a dropout stream of its own
                torch.manual_seed(self._rank_seed())
            self.noise_generator.set_state(rng["noise"])
            if f"cuda{suffix}" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng[f"cuda{suffix}"])
        self.elapsed, self.last_val = state.get("elapsed", 0.0), state.get("val_nelbo_bits")
        self.last_val_sc = state.get("val_nelbo_sc_bits")
        self.last_val_target = state.get("val_target_bits")

    def save(self) -> Path:
        """Write a checkpoint (rank 0; under FSDP every process first helps gather the full tensors)."""
        fsdp = self.config.train.fsdp
        weights = distributed.full_state_dict(self.model.state_dict()) if fsdp else self.model
        ema = self.ema.state_dict() if self.ema else None
        if fsdp and ema is not None:
            ema = distributed.full_state_dict(ema)
        optimizer = distributed.full_optimizer_state(self.optimizer) if fsdp else self.optimizer
        rng = self.rng_state()
        folder = self.run_dir / "checkpoints" / f"step_{self.step:07d}"
        if self.is_main:
            folder = save_checkpoint(
                self.run_dir, step=self.step, config=self.config, tokenizer=self.tokenizer,
                split_info=self.data.split_info, model=weights, ema_state=ema, optimizer=optimizer,
                rng=rng, keep=self.config.train.keep_checkpoints,
                state={"tokens_seen": self.tokens_seen, "elapsed": self.elapsed, "val_nelbo_bits": self.last_val,
                       **({"val_nelbo_sc_bits": self.last_val_sc} if self.last_val_sc is not None else {}),
                       **({"val_target_bits": self.last_val_target} if self.last_val_target is not None else {}),
                       "num_parameters": self.model.num_parameters(),
                       **({"world_size": self.dist.world_size} if self.dist.world_size > 1 else {}),
                       **({"init_from": self.init_from} if self.init_from else {})})
        distributed.barrier()  # nobody reads or prunes checkpoints while rank 0 writes
        return folder

    def _log(self, row: dict) -> None:
        if not self.is_main:
            return
        with self.metrics_file.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    # ---- one step ---------------------------------------------------------------------------------
    def _logits_fn(self, model: torch.nn.Module, *, two_pass: bool = False, draws: HintDraws | None = None):
        """The denoiser the loss sees: one null-conditioned pass, or (self-conditioning) two passes. While
        training, the hint's random numbers are the pre-drawn ``draws``; in eval mode there are none, and no
        hint lag either (validation's two-pass NELBO is the fresh-hint protocol for every model)."""
        autocast = self.config.train.precision == "bfloat16"
        sc, mask_id = self.config.selfcond, self.tokenizer.mask_id
        training = model.training

        def logits_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                if not two_pass:
                    return model(x_t, t)
                return two_pass_logits(model, x_t, t, mask_id, carry=sc.carry,
                                       sharpen_temperature=sc.sharpen_temperature,
                                       hint_dropout=sc.hint_dropout if training else 0.0,
                                       hint_noise=sc.hint_noise if training else 0.0,
                                       hint_lag=sc.hint_lag if training else 0.0, schedule=self.schedule,
                                       draws=draws if training else None)

        return logits_fn

    def _hint_fn(self, model: torch.nn.Module, two_pass: bool, draws: HintDraws | None = None):
        """For a self-conditioned trunk under the speculative loss: pass 1 (null condition, no gradient) → hint."""
        if not two_pass:
            return None
        sc, training = self.config.selfcond, model.training

        def hint_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return first_pass_hint(model, x_t, t, self.tokenizer.mask_id, carry=sc.carry,
                                   sharpen_temperature=sc.sharpen_temperature,
                                   hint_dropout=sc.hint_dropout if training else 0.0,
                                   hint_noise=sc.hint_noise if training else 0.0,
                                   draws=draws if training else None)

        return hint_fn

    def is_two_pass(self, step: int) -> bool:
        """Whether update ``step`` is a self-conditioned (two-pass) update."""
        sc = self.config.selfcond
        return sc.injection != "none" and self_condition_coin(sc.rate, seed=self.config.train.seed, step=step)

    def draw_noise(self, x0: torch.Tensor, two_pass: bool) -> StepNoise:
        """All random numbers of the update of the global batch ``x0``, from the noise generator, in the order
        the losses would draw them themselves (so one process without accumulation trains exactly as a loss
        drawing its own noise would)."""
        g, (batch, length), d = self.noise_generator, x0.shape, self.config.diffusion
        if self.model.speculative:
            order = sample_orders(batch, length, generator=g, device=self.device)
            noise = StepNoise(order=order, revealed=sample_revealed(batch, length, antithetic=d.antithetic,
                                                                    generator=g, device=self.device))
        else:
            t = sample_times(batch, eps=d.time_epsilon, antithetic=d.antithetic, generator=g, device=self.device)
            noise = StepNoise(t=t, x_t=mask_tokens(x0, t, self.schedule, self.tokenizer.mask_id, g))
        if two_pass:
            sc = self.config.selfcond
            noise.hint = draw_hint_noise((batch, length, self.tokenizer.vocab_size), carry=sc.carry,
                                         hint_dropout=sc.hint_dropout, hint_noise=sc.hint_noise,
                                         hint_lag=sc.hint_lag, generator=g, device=self.device)
        return noise

    def _loss(self, model: torch.nn.Module, x0: torch.Tensor, noise: StepNoise, two_pass: bool) -> tuple:
        """(loss, draft term, target term) of a micro-batch: the speculative joint loss or the NELBO."""
        if model.speculative:
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self.config.train.precision == "bfloat16"):
                out = speculative_loss(model, x0, self.tokenizer.mask_id, order=noise.order, revealed=noise.revealed,
                                       freeze_trunk=self.config.speculative.freeze_trunk,
                                       hint_fn=self._hint_fn(model, two_pass, noise.hint))
            return out.loss, out.draft, out.target
        out = nelbo_loss(self._logits_fn(model, two_pass=two_pass, draws=noise.hint), x0, self.schedule,
                         self.tokenizer.mask_id, eps=self.config.diffusion.time_epsilon, t=noise.t, x_t=noise.x_t)
        return out.loss, None, None

    def train_step(self) -> dict:
        """One optimizer step on the global batch of this step: this process's micro-batches (``distributed.
        shard_rows``), each loss scaled by W·(rows/B) so that the reduced gradient is the single-process one."""
        tc = self.config.train
        lr = learning_rate(self.step, lr=tc.lr, warmup=tc.warmup_steps, total=tc.steps, min_ratio=tc.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx = batch_indices(self.step, num_examples=len(self.train_data), batch_size=tc.batch_size, seed=tc.seed)
        x0 = self.train_data[idx.to(self.device)]
        if self.model.speculative:
            set_train_mode(self.model, self.config.speculative.freeze_trunk)
        else:
            self.model.train()
        two_pass = self.is_two_pass(self.step)
        noise = self.draw_noise(x0, two_pass)
        batch, world = x0.shape[0], self.dist.world_size
        pieces = distributed.shard_rows(batch, rank=self.dist.rank, world_size=world, micro_batches=tc.grad_accum)
        self.optimizer.zero_grad(set_to_none=True)
        # loss, draft and target terms: this process's share of the batch means (MPS has no float64)
        parts = torch.zeros(3, dtype=torch.float32 if self.device.type == "mps" else torch.float64, device=self.device)
        for k, rows in enumerate(pieces):
            share = (rows.stop - rows.start) / batch
            with distributed.gradient_sync(self.objective, enabled=k == len(pieces) - 1):
                loss, draft, target = self.objective(partial(self._loss, x0=x0[rows], noise=noise.rows(rows),
                                                             two_pass=two_pass))
                (loss * (share * world)).backward()
            terms = [loss.detach(), *(v.detach() if v is not None else loss.new_zeros(()) for v in (draft, target))]
            parts += torch.stack(terms).to(parts.dtype) * share
        loss, draft, target = (distributed.all_reduce_sum(parts) if world > 1 else parts).tolist()
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            self._non_finite(f"the training loss became {loss}")
        # with grad_clip = 0 the norm is still computed (max_norm = inf scales by exactly 1) to catch inf/NaN
        grad_norm = distributed.full_tensor(torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf")))
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._non_finite(f"the gradient norm became {grad_norm.item()}")
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.step += 1
        self.tokens_seen += x0.numel()
        info = {"loss": loss, "lr": lr, "grad_norm": float(grad_norm), "two_pass": two_pass}
        if self.model.speculative:  # the speculative loss: its two terms
            info.update(draft=draft, target=target)
        return info

    def _non_finite(self, what: str) -> None:
        checkpoints = sorted((self.run_dir / "checkpoints").glob("step_*"))
        kept = (f"the last good checkpoint, {checkpoints[-1]}, is kept (training resumes from it if rerun)"
                if checkpoints else "no checkpoint had been written yet")
        raise FloatingPointError(f"{what} at step {self.step}; stopped before updating the weights; {kept}; "
                                 f"try a lower train.lr or train.grad_clip")

    def _eval_weights(self) -> dict[str, torch.Tensor]:
        """The weights validation uses (EMA if kept), full tensors (under FSDP a collective)."""
        weights = self.ema.state_dict() if self.ema else self.model.state_dict()
        return distributed.full_state_dict(weights) if self.config.train.fsdp else weights

    @torch.no_grad()
    def validate(self, weights: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Validation NELBO (bits/token) with the EMA weights (or ``weights``), under the fixed protocol:
        ``val_nelbo_bits`` (null condition) and, for a self-conditioned model, ``val_nelbo_sc_bits`` (two
        passes). A distributed run validates on rank 0 alone (``_validate_and_log``)."""
        model = build_model(self.config, self.tokenizer).to(self.device)
        model.load_state_dict(weights if weights is not None else self._eval_weights())
        model.eval()
        kwargs = dict(num_t=self.config.train.val_num_t, seed=0, device=self.device)
        mask_id = self.tokenizer.mask_id
        result = {"val_nelbo_bits": validation_nelbo(self._logits_fn(model), self.val_data, self.schedule, mask_id,
                                                     **kwargs)}
        if model.self_conditioned:
            result["val_nelbo_sc_bits"] = validation_nelbo(self._logits_fn(model, two_pass=True), self.val_data,
                                                           self.schedule, mask_id, **kwargs)
        if model.speculative:
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self.config.train.precision == "bfloat16"):
                result.update(validation_speculative(
                    model, self.val_data, mask_id, num_i=self.config.train.val_num_t, seed=0, device=self.device,
                    hint_fn=self._hint_fn(model, two_pass=model.self_conditioned)))
        return result

    def _validate_and_log(self) -> None:
        weights = self._eval_weights()  # every process (gathering FSDP shards takes all of them)
        result = distributed.broadcast_object(self.validate(weights) if self.is_main else None)
        self.last_val, self.last_val_sc = result["val_nelbo_bits"], result.get("val_nelbo_sc_bits")
        self.last_val_target = result.get("val_target_bits")
        self._log({"step": self.step, **result})

    # ---- loop ---------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        tc = self.config.train
        start_step, t_start = self.step, time.perf_counter()
        elapsed_before = self.elapsed
        stopped_early = False
        bar = tqdm(total=tc.steps, initial=self.step, desc="train", disable=not self.show_progress,
                   dynamic_ncols=True, unit="step")
        window_tokens, window_start = 0, time.perf_counter()
        while self.step < tc.steps:
            info = self.train_step()
            window_tokens += tc.batch_size * self.config.data.max_length
            self.elapsed = elapsed_before + time.perf_counter() - t_start
            if self.step % tc.log_every == 0 or self.step == tc.steps:
                now = time.perf_counter()
                tokens_per_s = window_tokens / max(now - window_start, 1e-9)
                window_tokens, window_start = 0, now
                self._log({"step": self.step, "loss_bits": info["loss"] / math.log(2), "lr": info["lr"],
                           "grad_norm": info["grad_norm"], "tokens_per_s": tokens_per_s,
                           **({"draft_bits": info["draft"] / math.log(2), "target_bits": info["target"] / math.log(2)}
                              if "target" in info else {}),
                           "elapsed": round(self.elapsed, 2)})
                bar.set_postfix(loss=f"{info['loss'] / math.log(2):.3f}b", tok_s=f"{tokens_per_s:,.0f}",
                                val=f"{self.last_val:.3f}" if self.last_val is not None else "-",
                                **({"val_target": f"{self.last_val_target:.3f}"}
                                   if self.last_val_target is not None else {}))
            bar.update(1)
            out_of_time = tc.max_minutes > 0 and (time.perf_counter() - t_start) / 60 > tc.max_minutes
            if tc.max_minutes > 0 and self.dist.world_size > 1:  # every process stops at the same step
                out_of_time = distributed.any_rank(out_of_time, self.device)
            if tc.eval_every and self.step % tc.eval_every == 0 and self.step < tc.steps:
                self._validate_and_log()
            if tc.save_every and self.step % tc.save_every == 0 and self.step < tc.steps and not out_of_time:
                self.save()
            if out_of_time:
                stopped_early = True
                if self.is_main:
                    bar.write(f"stopping at step {self.step}: train.max_minutes={tc.max_minutes} reached")
                break
        bar.close()
        if self.step > start_step or self.last_val is None:
            self._validate_and_log()
        checkpoint = self.save()
        if self.is_main and self.metrics_file.exists():
            plot_metrics(self.metrics_file, self.run_dir / "loss_curve.png")
        return TrainResult(run_dir=self.run_dir, checkpoint=checkpoint, step=self.step,
                           val_nelbo_bits=self.last_val, seconds=self.elapsed, stopped_early=stopped_early,
                           val_nelbo_sc_bits=self.last_val_sc, val_target_bits=self.last_val_target)


@contextmanager
def _resume_errors(folder: Path) -> Iterator[None]:
    """Turn what a damaged or mismatched checkpoint raises while loading into a CheckpointError naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, IndexError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot resume from {folder}: {type(err).__name__}: {err}") from None
