"""The training loop: AdamW with warm-up and cosine decay (``optim``), gradient clipping, EMA, validation,
checkpoints — for whatever objective the run's config asks for (``scmdm.objectives``): the trainer draws the
step's noise, runs the loss and validates through the objective and knows none of them.

Determinism and exact resume. The batch at step s is a function of (seed, s) alone (``optim.batch_indices``).
Every random number of a step comes from a dedicated noise generator whose state, with torch's global RNG
(dropout), is saved in every checkpoint, so training resumed from a checkpoint takes exactly the steps an
uninterrupted run would have taken — also after the process was killed (SIGKILL, power loss): checkpoints are
written atomically, and on resume the lines of ``metrics.jsonl`` after the checkpoint's step (and a half-written
last line) are dropped, so the replayed steps are not logged twice.

A non-finite loss or gradient norm stops training with ``FloatingPointError`` before the weights are touched, a
non-finite validation NELBO before the checkpoint is written; the newest checkpoint on disk is the last good one.
Resuming reads every file of the checkpoint verified against its checksums; when the newest one is damaged the
error names the newest older intact one, and ``from_checkpoint="step_N"`` (``scmdm train --from-checkpoint``)
resumes from it, moving the newer checkpoints aside (``checkpoints/superseded_step_M``, never deleted).

Micro-batches and processes (``train.grad_accum``, ``torchrun``; ``scmdm.distributed``). ``train.batch_size`` is
the global batch B of a step. The objective draws all random numbers of the step for the whole batch first
(``Objective.draw``), and each micro-batch takes its rows. Micro-batch k of process r back-propagates
W·(b_rk/B)·(its mean loss), so accumulated and reduced gradients equal the one-process, one-batch gradient up to
float32 round-off (the per-row sums are added in another order). Dropout masks are the exception: they come from
each process's own global RNG and depend on the micro-batch shape, so exact agreement needs ``model.dropout=0``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from scmdm import distributed
from scmdm.checkpoint import (
    build_model,
    check_compatible,
    checkpoint_problems,
    find_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    read_json,
    read_tokenizer,
    read_weights,
    recovery_hint,
    save_checkpoint,
)
from scmdm.config import Config
from scmdm.data import PreparedData
from scmdm.domains import prepare_data
from scmdm.errors import CheckpointError, ConfigError
from scmdm.files import naming
from scmdm.objectives import make_objective
from scmdm.schedules import get_schedule
from scmdm.training.metrics import plot_metrics, truncate_metrics
from scmdm.training.optim import EMA, batch_indices, learning_rate

__all__ = ["Trainer", "TrainResult"]


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    step: int
    val_nelbo_bits: float | None
    seconds: float
    stopped_early: bool
    validation: dict[str, float] = field(default_factory=dict)  # every validation metric of the objective


class Trainer:
    """Trains the masked diffusion model described by ``config`` into ``run_dir``.

    If ``run_dir`` already holds a checkpoint, training resumes from the newest (``resume=True``), or from
    ``from_checkpoint`` (``"step_N"`` or that folder: an older one, when the newest is damaged). Otherwise,
    with ``init_from`` (a run, checkpoint, exported or MDLM model folder; ``init_tokenizer``: an MDLM folder's
    tokenizer when it has none), training starts from that model's (EMA) weights and tokenizer — post-training; the
    model settings and canvas length must match.

    Inside a torch.distributed process group (``torchrun ... -m scmdm train``, see ``scmdm.distributed``)
    every process builds a Trainer with the same arguments; each computes its rows of every global batch and
    rank 0 alone writes files."""

    def __init__(self, config: Config, run_dir: str | Path, *, resume: bool = True,
                 data: PreparedData | None = None, show_progress: bool = True,
                 init_from: str | Path | None = None, init_tokenizer: str | Path | None = None,
                 from_checkpoint: str | Path | None = None) -> None:
        self.config = config
        self.dist = distributed.info()
        self.is_main = self.dist.is_main
        # the device first: a device that is not there stops here, before anything is written
        self.device = self._process_device(config.train.device)
        self.run_dir = Path(run_dir)  # created once the data and the model are ready: a failed check leaves none
        self.show_progress = show_progress and self.is_main
        tc = config.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        checkpoints = self.run_dir / "checkpoints"
        resume_from = find_checkpoint(self.run_dir) if resume and any(checkpoints.glob("step_*")) else None
        self._superseded: list[Path] = []
        if from_checkpoint is not None:
            resume_from = self._chosen_checkpoint(checkpoints, from_checkpoint)
            self._superseded = [p for p in sorted(checkpoints.glob("step_*")) if p.name > resume_from.name]
        if self.dist.enabled:
            distributed.agree(resume_from.name if resume_from else None, f"the checkpoint in {checkpoints} to resume "
                              "from", "; the run folder must be on a filesystem every process sees")
        init = None
        tokenizer = None
        if resume_from is not None:
            with _recovery(resume_from):
                if problems := checkpoint_problems(resume_from):  # every file, before the data is prepared
                    raise CheckpointError(problems[0])
                if config.data.max_length == "auto":  # the canvas the run already has
                    saved = read_json(resume_from / "config.json").get("data", {})
                    config.data.max_length = saved.get("max_length", "auto")
                check_compatible(resume_from, read_json(resume_from / "config.json"), config, "resume from")
                tokenizer = read_tokenizer(resume_from / "tokenizer.json", config)
        elif init_from is not None:
            # loaded after the seed: building it draws from the global RNG, before this run's own model
            init = load_checkpoint(init_from, use_ema=True, tokenizer=init_tokenizer)
            if config.data.max_length == "auto":  # the canvas of the model it starts from
                config.data.max_length = init.config.data.max_length
            check_compatible(init.path, init.config.to_dict(), config, "initialise from")
            tokenizer = init.tokenizer
        if data is None:
            data = prepare_data(config, tokenizer, quiet=not self.is_main)
        elif tokenizer is not None and data.tokenizer != tokenizer:
            raise CheckpointError(f"vocabulary mismatch: the data's tokenizer ({data.tokenizer.vocab_size} ids) "
                                  f"differs from {(resume_from or init.path) / 'tokenizer.json'} "
                                  f"({tokenizer.vocab_size} ids)")
        self.data = data
        self.tokenizer = self.data.tokenizer  # the domain's tokenizer (scmdm.domains)
        self.schedule = get_schedule(config.diffusion.schedule)
        self.objective = make_objective(config, self.schedule, mask_id=self.tokenizer.mask_id,
                                        vocab_size=self.tokenizer.vocab_size, device=self.device)
        self.model = build_model(config, self.tokenizer)  # the same initial weights on every process (same seed)
        if resume_from is not None:
            with _recovery(resume_from):
                self._resume_weights(resume_from)
        elif init is not None:
            self._load_initial_weights(init.model.state_dict(), init.weights_file)
        self.objective.select_trainable(self.model)
        if not tc.fsdp:
            self.model.to(self.device)
        # DDP / FSDP around the loss (FSDP moves the model to the device and shards it: before EMA and optimizer)
        self.runner = distributed.wrap(self.model, device=self.device, fsdp=tc.fsdp,
                                       find_unused=self.objective.may_leave_parameters_unused(self.model))
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
        self.last_validation: dict[str, float] = {}
        self.metrics_file = self.run_dir / "metrics.jsonl"
        self.init_from = str(init.path) if init is not None else None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.run_dir / f".config.json.tmp{os.getpid()}"  # atomic: a kill never leaves half a file
            with naming(tmp):
                tmp.write_text(json.dumps(config.to_dict(), indent=1))
            os.replace(tmp, self.run_dir / "config.json")
        if resume_from is not None:
            with _recovery(resume_from):
                self._resume(resume_from)
            if self.is_main:
                for newer in self._superseded:  # kept for inspection, out of the way of the next resume
                    aside = newer.with_name(f"superseded_{newer.name}")
                    os.replace(newer, aside)
                    print(f"note: moved {newer} aside to {aside}: training continues from {resume_from}",
                          file=sys.stderr)
                truncate_metrics(self.metrics_file, self.step)
                print(f"resuming from {resume_from} (step {self.step} of {tc.steps})", file=sys.stderr)
        else:
            if self.dist.rank > 0:  # dropout: a stream of its own for every process
                torch.manual_seed(self._rank_seed())
            if init is not None and self.is_main:
                print(f"initialised from {init.weights_file}", file=sys.stderr)
            elif init is None and self.is_main and self.metrics_file.exists():
                truncate_metrics(self.metrics_file, 0)  # a fresh start: an earlier, checkpoint-less attempt's go
        distributed.barrier()

    @staticmethod
    def _chosen_checkpoint(checkpoints: Path, chosen: str | Path) -> Path:
        """The folder ``from_checkpoint`` names: ``step_N`` (or ``N``) in ``checkpoints``, or that folder's path."""
        name = Path(chosen).name
        if name.isdigit():
            name = f"step_{int(name):07d}"
        folder = checkpoints / name
        if not folder.is_dir() or not name.startswith("step_"):
            available = ", ".join(p.name for p in sorted(checkpoints.glob("step_*"))) or "none"
            raise CheckpointError(f"--from-checkpoint {chosen}: no checkpoint {folder} (this run has: {available})")
        if problems := checkpoint_problems(folder):
            raise CheckpointError(f"--from-checkpoint {chosen}: {problems[0]}")
        return folder

    @property
    def last_val(self) -> float | None:
        """The newest validation NELBO (bits per token), None before the first validation."""
        return self.last_validation.get("val_nelbo_bits")

    def _process_device(self, name: str) -> torch.device:
        """``resolve_device``; in a process group CUDA means ``cuda:LOCAL_RANK``."""
        device = distributed.resolve_device(name)
        if self.dist.enabled and device.type == "cuda":
            if ":" in name and self.dist.world_size > 1:
                raise ConfigError(f"train.device={name!r}: in a distributed run every process uses cuda:LOCAL_RANK; "
                                  "set train.device=cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
            device = torch.device("cuda", self.dist.local_rank)
        return device

    def _rank_seed(self) -> int:
        return self.config.train.seed + 1_000_003 * self.dist.rank + self.step

    def _load_initial_weights(self, weights: dict[str, torch.Tensor], source: Path | None) -> None:
        """Post-training starts from ``weights``; only the model's additions may be missing."""
        missing, unexpected = self.model.load_pretrained(weights)
        if missing or unexpected:
            raise CheckpointError(f"cannot initialise from {source}: its weights do not fit this model "
                                  f"(selfcond.injection={self.config.selfcond.injection!r}, speculative.causal_layers="
                                  f"{self.config.speculative.causal_layers}): missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}")

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
        self.elapsed = state.get("elapsed", 0.0)
        self.last_validation = {k: v for k, v in state.items() if k.startswith("val_") and v is not None}

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
                       **{k: v for k, v in self.last_validation.items() if k != "val_nelbo_bits"},
                       "num_parameters": self.model.num_parameters(),
                       **({"world_size": self.dist.world_size} if self.dist.world_size > 1 else {}),
                       **({"init_from": self.init_from} if self.init_from else {})})
        distributed.barrier()  # nobody reads or prunes checkpoints while rank 0 writes
        return folder

    def _log(self, row: dict) -> None:
        if not self.is_main:
            return
        with naming(self.metrics_file), self.metrics_file.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    # ---- one step ---------------------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        """One optimizer step on the global batch of this step: this process's micro-batches (``distributed.
        shard_rows``), each loss scaled by W·(rows/B) so that the reduced gradient is the single-process one."""
        tc = self.config.train
        lr = learning_rate(self.step, lr=tc.lr, warmup=tc.warmup_steps, total=tc.steps, min_ratio=tc.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx = batch_indices(self.step, num_examples=len(self.train_data), batch_size=tc.batch_size, seed=tc.seed)
        x0 = self.train_data[idx.to(self.device)]
        self.objective.train_mode(self.model)
        noise = self.objective.draw(x0, self.step, self.noise_generator)
        batch, world = x0.shape[0], self.dist.world_size
        pieces = distributed.shard_rows(batch, rank=self.dist.rank, world_size=world, micro_batches=tc.grad_accum)
        names = self.objective.part_names
        self.optimizer.zero_grad(set_to_none=True)
        # the loss and its named parts: this process's share of the batch means (MPS has no float64)
        sums = torch.zeros(1 + len(names), dtype=torch.float32 if self.device.type == "mps" else torch.float64,
                           device=self.device)
        for k, rows in enumerate(pieces):
            share = (rows.stop - rows.start) / batch
            with distributed.gradient_sync(self.runner, enabled=k == len(pieces) - 1):
                terms = self.runner(partial(self.objective.loss, x0=x0[rows], noise=noise.rows(rows)))
                (terms.loss * (share * world)).backward()
            values = [terms.loss.detach(), *(terms.parts[name].detach() for name in names)]
            sums += torch.stack(values).to(sums.dtype) * share
        loss, *parts = (distributed.all_reduce_sum(sums) if world > 1 else sums).tolist()
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
        return {"loss": loss, "lr": lr, "grad_norm": float(grad_norm), "two_pass": noise.two_pass,
                "parts": dict(zip(names, parts, strict=True))}

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
        """The objective's validation metrics (bits per token) with the EMA weights (or ``weights``), under its
        fixed protocol. A distributed run validates on rank 0 alone (``_validate_and_log``)."""
        model = build_model(self.config, self.tokenizer).to(self.device)
        model.load_state_dict(weights if weights is not None else self._eval_weights())
        model.eval()
        return self.objective.validate(model, self.val_data, num_t=self.config.train.val_num_t)

    def _validate_and_log(self) -> None:
        weights = self._eval_weights()  # every process (gathering FSDP shards takes all of them)
        self.last_validation = distributed.broadcast_object(self.validate(weights) if self.is_main else None)
        self._log({"step": self.step, **self.last_validation})
        value = self.last_validation.get("val_nelbo_bits")
        if value is not None and not math.isfinite(value):  # never checkpoint (or rotate for) diverged weights
            checkpoints = sorted((self.run_dir / "checkpoints").glob("step_*"))
            kept = (f"the last checkpoint, {checkpoints[-1]}, is kept" if checkpoints
                    else "no checkpoint had been written yet")
            raise FloatingPointError(f"the validation NELBO became {value} at step {self.step}; stopped without "
                                     f"writing a checkpoint; {kept}; try a lower train.lr or train.grad_clip")

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
                           **{f"{name}_bits": value / math.log(2) for name, value in info["parts"].items()},
                           "elapsed": round(self.elapsed, 2)})
                bar.set_postfix(loss=f"{info['loss'] / math.log(2):.3f}b", tok_s=f"{tokens_per_s:,.0f}",
                                val=f"{self.last_val:.3f}" if self.last_val is not None else "-")
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
            plot_metrics(self.metrics_file, self.run_dir / "loss_curve.png", self.objective.metric_labels)
        return TrainResult(run_dir=self.run_dir, checkpoint=checkpoint, step=self.step,
                           val_nelbo_bits=self.last_val, seconds=self.elapsed, stopped_early=stopped_early,
                           validation=dict(self.last_validation))


@contextmanager
def _recovery(folder: Path) -> Iterator[None]:
    """A CheckpointError about ``folder`` also names the newest older intact checkpoint of the run, if any."""
    try:
        yield
    except CheckpointError as err:
        raise CheckpointError(f"{err}{recovery_hint(folder)}") from None


@contextmanager
def _resume_errors(folder: Path) -> Iterator[None]:
    """Turn what a damaged or mismatched checkpoint raises while loading into a CheckpointError naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, IndexError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"cannot resume from {folder}: {type(err).__name__}: {err}") from None
