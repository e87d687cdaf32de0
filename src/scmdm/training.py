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
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

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
from scmdm.diffusion import nelbo_loss, validation_nelbo
from scmdm.schedules import get_schedule
from scmdm.selfcond import first_pass_hint, self_condition_coin, two_pass_logits
from scmdm.speculative import (
    copy_head_into_verifier,
    set_train_mode,
    speculative_loss,
    trainable_parameters,
    validation_speculative,
)

__all__ = ["EMA", "learning_rate", "batch_indices", "Trainer", "resolve_device", "plot_metrics", "read_metrics"]


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
        for k, v in state.items():
            self.shadow[k].copy_(v)


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


class Trainer:
    """Trains the masked diffusion model described by ``config`` into ``run_dir``.

    If ``run_dir`` already holds a checkpoint, training resumes from it (``resume=True``). Otherwise,
    with ``init_from`` (a run, checkpoint or exported model folder), training starts from that model's
    (EMA) weights and tokenizer — post-training; the model settings and canvas length must match."""

    def __init__(self, config: Config, run_dir: str | Path, *, resume: bool = True,
                 data: PreparedData | None = None, show_progress: bool = True,
                 init_from: str | Path | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.train.device)  # before anything is written: a bad device leaves nothing
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.show_progress = show_progress
        tc = config.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        checkpoints = self.run_dir / "checkpoints"
        resume_from = find_checkpoint(self.run_dir) if resume and any(checkpoints.glob("step_*")) else None
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
            data = prepare_data(config.data, tokenizer)
        elif tokenizer is not None and data.tokenizer != tokenizer:
            raise CheckpointError(f"vocabulary mismatch: the data's tokenizer ({data.tokenizer.vocab_size} ids) "
                                  f"differs from {(resume_from or init.path) / 'tokenizer.json'} "
                                  f"({tokenizer.vocab_size} ids)")
        self.data = data
        self.tokenizer = self.data.tokenizer  # the domain's tokenizer (scmdm.domains)
        self.schedule = get_schedule(config.diffusion.schedule)
        self.model = build_model(config, self.tokenizer).to(self.device)
        self.ema = EMA(self.model, tc.ema_decay) if tc.ema_decay > 0 else None
        params = (trainable_parameters(self.model) if config.speculative.freeze_trunk  # only the verifier learns
                  else self.model.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(tc.seed + 1)
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
        tmp = self.run_dir / f".config.json.tmp{os.getpid()}"  # atomic: a kill never leaves half a file
        tmp.write_text(json.dumps(config.to_dict(), indent=1))
        os.replace(tmp, self.run_dir / "config.json")
        if resume_from is not None:
            self._resume(resume_from)
            _truncate_metrics(self.metrics_file, self.step)
            print(f"resuming from {resume_from} (step {self.step} of {tc.steps})", file=sys.stderr)
        elif init is not None:
            self._load_initial_weights(init.model.state_dict(), init.weights_file)
            if self.ema is not None:
                self.ema.load_state_dict(self.model.state_dict())
            print(f"initialised from {init.weights_file}", file=sys.stderr)
        elif self.metrics_file.exists():  # a fresh start: metrics of an earlier, checkpoint-less attempt go
            _truncate_metrics(self.metrics_file, 0)

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
        state = {"torch": torch.get_rng_state(), "noise": self.noise_generator.get_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def _resume(self, folder: Path) -> None:
        self.data.split.verify(read_json(folder / "split.json"))
        try:
            self.model.load_state_dict(read_weights(folder / "model.safetensors"))
            if self.ema is not None:
                self.ema.load_state_dict(read_weights(folder / "ema.safetensors"))
            meta = read_json(folder / "optimizer.json")
            self.optimizer.load_state_dict(optimizer_from_tensors(read_weights(folder / "optimizer.safetensors"),
                                                                  meta))
            rng = read_weights(folder / "rng.safetensors")
            torch.set_rng_state(rng["torch"])
            self.noise_generator.set_state(rng["noise"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"])
            state = read_json(folder / "state.json")
            self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        except (KeyError, RuntimeError, ValueError) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"cannot resume from {folder}: {type(err).__name__}: {err}") from None
        self.elapsed, self.last_val = state.get("elapsed", 0.0), state.get("val_nelbo_bits")
        self.last_val_sc = state.get("val_nelbo_sc_bits")
        self.last_val_target = state.get("val_target_bits")

    def save(self) -> Path:
        return save_checkpoint(
            self.run_dir, step=self.step, config=self.config, tokenizer=self.tokenizer,
            split_info=self.data.split_info, model=self.model,
            ema_state=self.ema.state_dict() if self.ema else None, optimizer=self.optimizer,
            rng=self.rng_state(), keep=self.config.train.keep_checkpoints,
            state={"tokens_seen": self.tokens_seen, "elapsed": self.elapsed, "val_nelbo_bits": self.last_val,
                   **({"val_nelbo_sc_bits": self.last_val_sc} if self.last_val_sc is not None else {}),
                   **({"val_target_bits": self.last_val_target} if self.last_val_target is not None else {}),
                   "num_parameters": self.model.num_parameters(),
                   **({"init_from": self.init_from} if self.init_from else {})})

    def _log(self, row: dict) -> None:
        with self.metrics_file.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    # ---- one step ---------------------------------------------------------------------------------
    def _logits_fn(self, model: torch.nn.Module, *, two_pass: bool = False):
        """The denoiser the loss sees: one null-conditioned pass, or (self-conditioning) two passes."""
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
                                       generator=self.noise_generator if training else None)

        return logits_fn

    def _hint_fn(self, model: torch.nn.Module, two_pass: bool):
        """For a self-conditioned trunk under the speculative loss: pass 1 (null condition, no gradient) → hint."""
        if not two_pass:
            return None
        sc, training = self.config.selfcond, model.training

        def hint_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return first_pass_hint(model, x_t, t, self.tokenizer.mask_id, carry=sc.carry,
                                   sharpen_temperature=sc.sharpen_temperature,
                                   hint_dropout=sc.hint_dropout if training else 0.0,
                                   hint_noise=sc.hint_noise if training else 0.0,
                                   generator=self.noise_generator if training else None)

        return hint_fn

    def is_two_pass(self, step: int) -> bool:
        """Whether update ``step`` is a self-conditioned (two-pass) update."""
        sc = self.config.selfcond
        return sc.injection != "none" and self_condition_coin(sc.rate, seed=self.config.train.seed, step=step)

    def train_step(self) -> dict:
        tc = self.config.train
        lr = learning_rate(self.step, lr=tc.lr, warmup=tc.warmup_steps, total=tc.steps, min_ratio=tc.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        idx = batch_indices(self.step, num_examples=len(self.train_data), batch_size=tc.batch_size, seed=tc.seed)
        x0 = self.train_data[idx.to(self.device)]
        self.model.train()
        two_pass = self.is_two_pass(self.step)
        if self.model.speculative:
            frozen = self.config.speculative.freeze_trunk
            set_train_mode(self.model, frozen)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=tc.precision == "bfloat16"):
                out = speculative_loss(self.model, x0, self.tokenizer.mask_id, generator=self.noise_generator,
                                       antithetic=self.config.diffusion.antithetic, freeze_trunk=frozen,
                                       hint_fn=self._hint_fn(self.model, two_pass))
        else:
            out = nelbo_loss(self._logits_fn(self.model, two_pass=two_pass), x0, self.schedule,
                             self.tokenizer.mask_id, eps=self.config.diffusion.time_epsilon,
                             antithetic=self.config.diffusion.antithetic, generator=self.noise_generator)
        loss = out.loss
        if not torch.isfinite(loss):
            self._non_finite(f"the training loss became {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # with grad_clip = 0 the norm is still computed (max_norm = inf scales by exactly 1) to catch inf/NaN
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._non_finite(f"the gradient norm became {grad_norm.item()}")
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.step += 1
        self.tokens_seen += x0.numel()
        info = {"loss": loss.item(), "lr": lr, "grad_norm": float(grad_norm), "two_pass": two_pass}
        if getattr(out, "target", None) is not None:  # the speculative loss: its two terms
            info.update(draft=out.draft.item(), target=out.target.item())
        return info

    def _non_finite(self, what: str) -> None:
        checkpoints = sorted((self.run_dir / "checkpoints").glob("step_*"))
        kept = (f"the last good checkpoint, {checkpoints[-1]}, is kept (training resumes from it if rerun)"
                if checkpoints else "no checkpoint had been written yet")
        raise FloatingPointError(f"{what} at step {self.step}; stopped before updating the weights; {kept}; "
                                 f"try a lower train.lr or train.grad_clip")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation NELBO (bits/token) with the EMA weights, under the fixed protocol: ``val_nelbo_bits``
        (null condition) and, for a self-conditioned model, ``val_nelbo_sc_bits`` (two passes)."""
        model = build_model(self.config, self.tokenizer).to(self.device)
        model.load_state_dict(self.ema.state_dict() if self.ema else self.model.state_dict())
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
        result = self.validate()
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
            if tc.eval_every and self.step % tc.eval_every == 0 and self.step < tc.steps:
                self._validate_and_log()
            if tc.save_every and self.step % tc.save_every == 0 and self.step < tc.steps and not out_of_time:
                self.save()
            if out_of_time:
                stopped_early = True
                bar.write(f"stopping at step {self.step}: train.max_minutes={tc.max_minutes} reached")
                break
        bar.close()
        if self.step > start_step or self.last_val is None:
            self._validate_and_log()
        checkpoint = self.save()
        if self.metrics_file.exists():
            plot_metrics(self.metrics_file, self.run_dir / "loss_curve.png")
        return TrainResult(run_dir=self.run_dir, checkpoint=checkpoint, step=self.step,
                           val_nelbo_bits=self.last_val, seconds=self.elapsed, stopped_early=stopped_early,
                           val_nelbo_sc_bits=self.last_val_sc, val_target_bits=self.last_val_target)
