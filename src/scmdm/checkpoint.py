"""Checkpoints: tensors in safetensors, everything else in JSON — nothing is ever unpickled.

A checkpoint is a folder ``<run>/checkpoints/step_XXXXXXX/`` holding

    config.json        the full run config (scmdm.config.Config)
    tokenizer.json     the vocabulary
    split.json         the data split (seed, fractions, sizes, SHA-256 of each part)
    model.safetensors  raw weights            ema.safetensors  EMA weights (used for sampling)
    optimizer.safetensors + optimizer.json    AdamW moments and param groups
    rng.safetensors    torch global RNG, the trainer's noise generator (and CUDA RNG when present);
                       distributed runs add each other process's (``torch_rank<r>``, ``cuda_rank<r>``)
    state.json         step, tokens seen, elapsed time, last validation NELBO

    checksums.json     the size and SHA-256 of every other file (``scmdm.files``)

It is written into a temporary folder ``.tmp_step_XXXXXXX_<pid>`` (every file fsynced), renamed into
place and the parent folder fsynced, so a crash (even SIGKILL or power loss) never leaves a half-written
checkpoint under a ``step_*`` name; leftovers of a killed write are ignored and removed by the next save, and a
write that fails (a full disk) removes its temporary folder. Weights, EMA weights or optimizer moments holding
NaN or inf are never written (``FloatingPointError``). The newest ``keep`` (``train.keep_checkpoints``)
checkpoints are kept, and never fewer than the newest one whose validation NELBO is finite.

Reading verifies every file against ``checksums.json`` (a flipped byte, a truncation or a swapped file is an error
naming the file) and refuses tensors holding NaN or inf; a folder written before checksums existed is read
unverified (``LoadedCheckpoint.verified`` is False). When a run's newest checkpoint is damaged the error names
the newest older intact one and how to resume from it (``scmdm train --from-checkpoint step_N``).

An exported model folder (``export_model``, ``scmdm export``) holds config.json, model.safetensors,
tokenizer.json, split.json, export.json, a README.md and checksums.json; ``load_checkpoint`` (and ``scmdm.load``) read
it, a checkpoint folder or a run folder alike. Every problem with a file raises ``CheckpointError``
naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from scmdm import files, mdlm
from scmdm.config import Config
from scmdm.domains import DOMAINS, get_domain
from scmdm.errors import CheckpointError, ConfigError
from scmdm.files import write_folder_atomically
from scmdm.model import BackboneConfig, Transformer

__all__ = ["build_model", "save_checkpoint", "find_checkpoint", "load_checkpoint", "LoadedCheckpoint",
           "optimizer_to_tensors", "optimizer_from_tensors", "CheckpointError", "read_json", "read_weights",
           "read_tokenizer", "read_state", "export_model", "check_compatible", "EXPORT_FORMATS",
           "tensor_bytes", "non_finite", "checkpoint_problems", "older_intact_checkpoint", "recovery_hint"]

CHECKPOINT_GLOB = "step_*"
LEFTOVER_GLOBS = (".tmp_step_*", ".old_step_*")


def build_model(config: Config, tokenizer: Any) -> Transformer:
    m = config.model
    return Transformer(BackboneConfig(
        vocab_size=tokenizer.vocab_size, max_length=config.data.max_length, depth=m.depth, width=m.width,
        heads=m.heads, mlp_ratio=m.mlp_ratio, dropout=m.dropout, block_type=m.block_type,
        time_conditioning=m.time_conditioning, cond_dim=m.cond_dim, time_input=m.time_input,
        self_conditioning=config.selfcond.injection,
        causal_layers=config.speculative.causal_layers, causal_head=config.speculative.head,
        causal_state_norm=config.speculative.state_norm, causal_key_positions=config.speculative.key_positions))


def optimizer_to_tensors(optimizer: torch.optim.Optimizer | dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict (or an optimizer's) into flat tensors (``state.<param>.<key>``) and JSON
    metadata."""
    state = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _remove_leftovers(root: Path, keep: Path | None = None) -> None:
    """Remove temporary folders of earlier writes that were killed before they were renamed."""
    for pattern in LEFTOVER_GLOBS:
        for path in root.glob(pattern):
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)


def tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file's bytes (written with ``scmdm.files.write_file``, so a full disk is an ``OSError``)."""
    return safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor holding NaN or inf, or None."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def _finite_validation(folder: Path) -> bool:
    try:
        value = read_json(folder / "state.json", optional=True).get("val_nelbo_bits")
    except CheckpointError:
        return False
    return isinstance(value, int | float) and math.isfinite(value)


def save_checkpoint(run_dir: str | Path, *, step: int, config: Config, tokenizer: Any,
                    split_info: dict, model: torch.nn.Module | dict[str, torch.Tensor],
                    ema_state: dict[str, torch.Tensor] | None, optimizer: torch.optim.Optimizer | dict | None,
                    rng: dict[str, torch.Tensor], state: dict, keep: int = 2) -> Path:
    """Write a checkpoint atomically and prune all but the newest ``keep`` (and the newest one whose validation was
    finite). Returns its folder. ``model`` and ``optimizer`` may be given as (full) state dicts, as distributed
    training gathers them. Non-finite tensors are refused (FloatingPointError) before anything is written."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:07d}"
    weights = model if isinstance(model, dict) else model.state_dict()
    parts = {"model": weights, **({"ema": ema_state} if ema_state is not None else {})}
    optimizer_tensors, meta = optimizer_to_tensors(optimizer) if optimizer is not None else ({}, None)
    if optimizer is not None:
        parts["optimizer"] = optimizer_tensors
    for part, tensors in parts.items():
        if (name := non_finite(tensors)) is not None:
            raise FloatingPointError(f"not writing checkpoint {final}: its {part} tensor {name} holds NaN or inf; "
                                     "the checkpoints already on disk are kept")
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root)

    def write(tmp: Path) -> None:
        files.write_file(tmp / "config.json", json.dumps(config.to_dict(), indent=1))
        files.write_file(tmp / "tokenizer.json", json.dumps(tokenizer.to_dict(), indent=1))
        files.write_file(tmp / "split.json", json.dumps(split_info, indent=1))
        for part, tensors in parts.items():
            files.write_file(tmp / f"{part}.safetensors", tensor_bytes(tensors))
        if meta is not None:
            files.write_file(tmp / "optimizer.json", json.dumps(meta))
        files.write_file(tmp / "rng.safetensors", tensor_bytes(rng))
        files.write_file(tmp / "state.json", json.dumps({**state, "step": step}, indent=1))

    final = write_folder_atomically(final, write)
    existing = sorted(root.glob(CHECKPOINT_GLOB))
    doomed = existing[:-keep] if keep > 0 else []
    if doomed and not any(_finite_validation(kept) for kept in existing[-keep:]):
        good = [old for old in doomed if _finite_validation(old)]
        if good:  # the newest checkpoint whose validation was finite stays until a newer one is
            doomed.remove(good[-1])
    for old in doomed:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint or exported model folder, given it or a run folder (→ its newest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint found at {path}: it does not exist")
    if path.is_file():
        raise CheckpointError(f"{path} is a file; give a run folder, a checkpoint folder or an exported model folder")
    if (path / "model.safetensors").exists():
        return path
    if (path / "pytorch_model.bin").exists():
        raise CheckpointError(mdlm.BIN_REFUSED.format(path=path))
    candidates = sorted((path / "checkpoints").glob(CHECKPOINT_GLOB))
    if not candidates:
        if (path / "config.json").exists() or (path / "tokenizer.json").exists():
            raise CheckpointError(f"checkpoint file {path / 'model.safetensors'} is missing")
        raise CheckpointError(f"no checkpoint found at {path} (expected model.safetensors there or "
                              f"checkpoints/step_* below it)")
    return candidates[-1]


@dataclass
class LoadedCheckpoint:
    path: Path
    config: Config
    tokenizer: Any
    split_info: dict
    model: Transformer
    state: dict  # step, tokens_seen, val_nelbo_bits, ... ({} when unknown)
    weights_file: Path | None = None  # the safetensors file the model weights came from
    verified: bool = False  # its files matched checksums.json (False: a folder written before checksums existed)


def read_json(path: Path, *, optional: bool = False) -> dict:
    """A JSON object of a checkpoint or model folder, verified against its checksums.json (``optional``: {} when
    the file is missing and not recorded)."""
    try:
        data = json.loads(files.read_verified(Path(path)).decode("utf-8"))
    except FileNotFoundError:
        if optional:
            return {}
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint file {path} is not valid JSON (truncated or the wrong kind of file?): "
                              f"{err}") from None
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint file {path}: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} should hold a JSON object, found {type(data).__name__}")
    return data


def read_state(folder: Path) -> dict:
    """The training state of a checkpoint folder (``state.json``), or of an exported model folder (the
    ``training`` entry of ``export.json``); empty if it has neither. Reads no weights."""
    return read_json(folder / "state.json", optional=True) or read_json(folder / "export.json",
                                                                        optional=True).get("training", {})


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (never unpickled), verified against its folder's checksums.json and finite;
    CheckpointError naming the file otherwise."""
    try:
        data = files.read_verified(Path(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint file {path}: {err}") from None
    try:
        tensors = safetensors.torch.load(data)
    except Exception as err:  # safetensors raises its own error types for truncated/garbage files
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated, or the wrong kind of "
                              f"file?): {err}") from None
    if (name := non_finite(tensors)) is not None:
        raise CheckpointError(f"{path} holds NaN or inf in {name}: the file is damaged, or was written by a run that "
                              "diverged")
    return tensors


def read_config(path: Path) -> Config:
    data = read_json(path)
    speculative = data.get("speculative") if isinstance(data, dict) else None
    if isinstance(speculative, dict) and speculative.get("causal_layers"):
        # a verifier saved before an option existed was built the old way: raw trunk states, keys rotated by
        # σ(k+1). A model without a verifier keeps the defaults, so a verifier post-trained from it gets the new.
        speculative.setdefault("state_norm", False)
        speculative.setdefault("key_positions", "predicted")
    try:
        return Config.from_dict(data, where=str(path)).validate()
    except ConfigError as err:
        message = str(err) if str(path) in str(err) else f"{path}: {err}"
        raise CheckpointError(f"invalid config in checkpoint: {message}") from None


def read_tokenizer(path: Path, config: Config) -> Any:
    """The tokenizer in ``path``, checked to belong to ``config.data.domain``."""
    data = read_json(path)
    try:
        classes = get_domain(config.data.domain).tokenizers
    except ValueError as err:
        raise CheckpointError(f"{path.parent / 'config.json'}: {err}") from None
    expected = classes.get(data.get("kind"))
    if expected is None:
        raise CheckpointError(f"{path}: tokenizer kind {data.get('kind')!r} does not match data.domain="
                              f"{config.data.domain!r} in config.json (expects {' or '.join(map(repr, classes))}); "
                              f"this checkpoint is from another domain or its files were mixed up")
    try:
        return expected.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} is not a valid {expected.kind} tokenizer: {err}") from None


def _check_weights(weights: dict[str, torch.Tensor], model: Transformer, weights_file: Path,
                   tokenizer: Any) -> None:
    folder = weights_file.parent
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(weights), set(weights) - set(expected)
    if missing or unexpected:
        raise CheckpointError(f"{weights_file} does not match the architecture in {folder / 'config.json'} "
                              f"(architecture mismatch): missing {sorted(missing)[:5]}, unexpected "
                              f"{sorted(unexpected)[:5]}")
    vocab_names = [n for n, t in expected.items() if t.ndim >= 1 and t.shape[0] == tokenizer.vocab_size
                   and ("embedding" in n or "output_layer.linear" in n)]
    for name in vocab_names:
        if weights[name].shape[0] != tokenizer.vocab_size and weights[name].shape[1:] == expected[name].shape[1:]:
            raise CheckpointError(f"vocabulary mismatch: {folder / 'tokenizer.json'} has {tokenizer.vocab_size} "
                                  f"tokens (MASK included) but {weights_file} was trained with "
                                  f"{weights[name].shape[0]} ({name})")
    for name, tensor in expected.items():
        if weights[name].shape != tensor.shape:
            raise CheckpointError(f"architecture mismatch: {weights_file}: {name} has shape "
                                  f"{tuple(weights[name].shape)}, but {folder / 'config.json'} implies "
                                  f"{tuple(tensor.shape)}")
        if weights[name].dtype != tensor.dtype:
            raise CheckpointError(f"{weights_file}: {name} is {weights[name].dtype}, expected {tensor.dtype}")


def check_compatible(folder: Path, saved: dict, config: Config, verb: str) -> None:
    """The model saved in ``folder`` (its config.json, ``saved``) must have the architecture and canvas ``config``
    asks for; to resume (``verb`` = "resume from") also the same additions (self-conditioning input, verifier)."""
    wanted = config.to_dict()
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


def checkpoint_problems(folder: Path) -> list[str]:
    """Why ``folder`` cannot be trusted, one line each; ``[]`` when every file matches checksums.json (or, for a
    folder written before checksums existed, every safetensors file reads, finite, and every JSON file parses)."""
    folder = Path(folder)
    if (folder / files.MANIFEST).exists():
        return files.verify_folder(folder)
    problems = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            if path.suffix == ".safetensors":
                read_weights(path)
            elif path.suffix == ".json":
                read_json(path)
        except CheckpointError as err:
            problems.append(str(err))
    return problems


def older_intact_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint of the same run older than ``folder`` (``<run>/checkpoints/step_N``) that is intact
    (``checkpoint_problems`` finds nothing), or None."""
    folder = Path(folder)
    if folder.parent.name != "checkpoints" or not folder.name.startswith("step_"):
        return None
    for candidate in sorted(folder.parent.glob(CHECKPOINT_GLOB), reverse=True):
        if candidate.name < folder.name and not checkpoint_problems(candidate):
            return candidate
    return None


def recovery_hint(folder: Path) -> str:
    """" An older intact checkpoint exists: ..." (how to use it), or "" when there is none."""
    older = older_intact_checkpoint(folder)
    if older is None:
        return ""
    run = older.parent.parent
    return (f"; an older intact checkpoint exists: {older} (resume from it with `scmdm train --out {run} "
            f"--from-checkpoint {older.name}` and the run's --config and overrides, or give that folder to sample, "
            f"eval or export)")


def load_checkpoint(path: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu",
                    tokenizer: str | Path | None = None) -> LoadedCheckpoint:
    """Load a checkpoint, an exported model folder, a run's newest checkpoint or a folder in MDLM's Hugging Face
    layout (``scmdm.mdlm``; ``tokenizer``: its tokenizer's path when the folder has none), for sampling or further
    training (EMA weights by default, if present). Every file read is verified against the folder's checksums.json.
    Any problem raises CheckpointError naming the file (and, in a run, the newest older intact checkpoint)."""
    folder = find_checkpoint(path)
    try:
        return _load_folder(folder, use_ema=use_ema, device=device, tokenizer=tokenizer)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{recovery_hint(folder)}") from None


def _load_folder(folder: Path, *, use_ema: bool, device: str | torch.device,
                 tokenizer: str | Path | None) -> LoadedCheckpoint:
    verified = (folder / files.MANIFEST).exists()
    if mdlm.is_mdlm_folder(folder):
        config, tok, tensors = mdlm.read_folder(folder, tokenizer)
        model = build_model(config, tok)
        weights_file = folder / "model.safetensors"
        weights = mdlm.to_scmdm_weights(tensors, model, weights_file)
        _check_weights(weights, model, weights_file, tok)
        model.load_state_dict(weights)
        model.to(device).eval()
        return LoadedCheckpoint(path=folder, config=config, tokenizer=tok, split_info={}, model=model,
                                state={"imported_from": str(folder.resolve())}, weights_file=weights_file,
                                verified=verified)
    if tokenizer is not None:
        raise CheckpointError(f"a tokenizer path is for folders in MDLM's layout; {folder} has its own tokenizer.json")
    config = read_config(folder / "config.json")
    tokenizer = read_tokenizer(folder / "tokenizer.json", config)
    model = build_model(config, tokenizer)
    has_ema = (folder / "ema.safetensors").exists() or "ema.safetensors" in (files.read_manifest(folder) or {})
    weights_file = folder / ("ema.safetensors" if use_ema and has_ema else "model.safetensors")
    weights = read_weights(weights_file)
    _check_weights(weights, model, weights_file, tokenizer)
    model.load_state_dict(weights)
    model.to(device).eval()
    return LoadedCheckpoint(path=folder, config=config, tokenizer=tokenizer,
                            split_info=read_json(folder / "split.json"), model=model, state=read_state(folder),
                            weights_file=weights_file, verified=verified)


EXPORT_FORMATS = ("scmdm", "mdlm")


def export_model(source: str | Path, out: str | Path, *, use_ema: bool = True, command: str | None = None,
                 format: str = "scmdm", tokenizer: str | Path | None = None) -> Path:  # noqa: A002
    """Write a portable model folder. ``format="scmdm"``: config.json, model.safetensors (EMA weights unless
    ``use_ema`` is False), tokenizer.json, split.json, export.json and a README.md that says how it was trained;
    ``format="mdlm"``: MDLM's Hugging Face layout (``scmdm.mdlm.write_folder``). ``source`` is a run, checkpoint,
    exported or MDLM folder (``tokenizer``: an MDLM folder's tokenizer, when it has none); ``out`` must not exist
    yet (or be empty)."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):  # checked before the model is read
        raise FileExistsError(f"{out} already exists and is not an empty folder; choose another --out")
    loaded = load_checkpoint(source, use_ema=use_ema, tokenizer=tokenizer)
    if format == "mdlm":
        return mdlm.write_folder(loaded.config, loaded.tokenizer, loaded.model, out, source=str(loaded.path))
    weights_kind = "ema" if loaded.weights_file is not None and loaded.weights_file.name == "ema.safetensors" else "raw"
    info = {"format": "scmdm-model", "format_version": 1, "weights": weights_kind,
            "exported_from": _as_named(loaded.path), "training": loaded.state,
            "num_parameters": loaded.model.num_parameters(), "vocab_size": loaded.tokenizer.vocab_size}

    def write(tmp: Path) -> None:
        files.write_file(tmp / "config.json", json.dumps(loaded.config.to_dict(), indent=1))
        files.write_file(tmp / "tokenizer.json", json.dumps(loaded.tokenizer.to_dict(), indent=1))
        files.write_file(tmp / "split.json", json.dumps(loaded.split_info, indent=1))
        files.write_file(tmp / "model.safetensors", tensor_bytes(loaded.model.state_dict()))
        files.write_file(tmp / "export.json", json.dumps(info, indent=1))
        files.write_file(tmp / "README.md", _model_readme(loaded, info, out, command))

    return write_folder_atomically(out, write)


def _as_named(path: Path) -> str:
    """A path as an exported folder names it: relative to the working directory when inside it (a model card does
    not name one machine's folders), else absolute."""
    path, here = Path(path).resolve(), Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def _model_readme(loaded: LoadedCheckpoint, info: dict, out: Path, command: str | None) -> str:
    c, state, split = loaded.config, loaded.state, loaded.split_info
    val, tokens = state.get("val_nelbo_bits"), state.get("tokens_seen")
    weights = f"EMA (decay {c.train.ema_decay})" if info["weights"] == "ema" else "raw (not EMA)"
    rows = [
        ("parameters", f"{info['num_parameters']:,}"),
        ("architecture", f"{c.model.depth} × {c.model.block_type} transformer blocks, width {c.model.width}, "
                         f"{c.model.heads} heads, MLP ratio {c.model.mlp_ratio}, time conditioning "
                         f"{c.model.time_conditioning}"),
        ("canvas", f"{c.data.max_length} tokens{' (EOS included)' if c.data.domain == 'molecule' else ''}; "
                   f"vocabulary {loaded.tokenizer.vocab_size} ids (MASK included)"),
        ("domain / tokenizer", f"{c.data.domain} / {loaded.tokenizer.kind}"),
        ("noise schedule", c.diffusion.schedule),
        ("self-conditioning", "none" if c.selfcond.injection == "none" else
         f"{c.selfcond.injection} injection, carries the {c.selfcond.carry}, post-trained with λ = {c.selfcond.rate}"),
        ("causal verifier", "none" if not c.speculative.causal_layers else
         f"{c.speculative.causal_layers} causal layer(s), {c.speculative.head} head (sample.sampler=speculative)"),
        ("weights", weights),
        ("training steps", f"{state.get('step', 'unknown')} × batch {c.train.batch_size} (lr {c.train.lr}, "
                           f"{c.train.precision})"),
        ("tokens seen", f"{tokens:,} canvas tokens" if isinstance(tokens, int) else "unknown"),
        ("validation NELBO", (f"{val:.4f} bits/token (K = {c.train.val_num_t} midpoint rule, EMA weights)"
                              if isinstance(val, int | float) else "unknown")),
        ("data", f"source {split.get('source') or split.get('genomes') or c.data.source!r}, split seed "
                 f"{split.get('seed')}, "
                 f"sizes {split.get('sizes')}"),
        ("exported from", f"`{info['exported_from']}`"),
    ]
    if state.get("init_from"):
        rows.append(("initialised from", f"`{state['init_from']}`"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    exported_with = f"\nExported with: `{command}`\n" if command else ""
    suffix = DOMAINS[c.data.domain].sample_suffix if c.data.domain in DOMAINS else ".txt"
    return f"""# {out.name} — a masked diffusion model exported by scmdm

| | |
|---|---|
{table}

The full training configuration is in `config.json`; `split.json` holds the SHA-256 of each data split,
so `scmdm eval` can check that it evaluates against {c.data.domain} data the model did not see.
{exported_with}
## Use it

```bash
scmdm sample {out} --out samples{suffix} sample.steps=64 sample.num_samples=1000
scmdm eval {out} sample.steps=64
```

```python
import scmdm
from scmdm.sampling import generate
from scmdm.schedules import get_schedule

m = scmdm.load("{out}")
out = generate(m.model, get_schedule(m.config.diffusion.schedule), mask_id=m.tokenizer.mask_id,
               num_samples=10, length=m.config.data.max_length, sampler="ancestral", steps=64)
print(m.tokenizer.decode_batch(out.tokens))
```

Further training starts from these weights with `scmdm train --init-from {out} --out RUN ...` (same
model settings; new data must fit this tokenizer's vocabulary).

Files: `model.safetensors` (weights), `config.json`, `tokenizer.json`, `split.json`, `export.json` — no pickle;
`checksums.json` holds the SHA-256 of each, checked whenever scmdm reads the folder.
"""
