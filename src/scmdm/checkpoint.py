"""Checkpoints: tensors in safetensors, everything else in JSON — nothing is ever unpickled.

A checkpoint is a folder ``<run>/checkpoints/step_XXXXXXX/`` holding

    config.json        the full run config (scmdm.config.Config)
    tokenizer.json     the vocabulary
    split.json         the data split (seed, fractions, sizes, SHA-256 of each part)
    model.safetensors  raw weights            ema.safetensors  EMA weights (used for sampling)
    optimizer.safetensors + optimizer.json    AdamW moments and param groups
    rng.safetensors    torch global RNG, the trainer's noise generator (and CUDA RNG when present)
    state.json         step, tokens seen, elapsed time, last validation NELBO

It is written into a temporary folder and renamed into place, so a crash never leaves a half-written
checkpoint under the final name; the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from scmdm.backbone import BackboneConfig, Transformer
from scmdm.config import Config
from scmdm.tokenizers import SmilesTokenizer

__all__ = ["build_model", "save_checkpoint", "find_checkpoint", "load_checkpoint", "LoadedCheckpoint",
           "optimizer_to_tensors", "optimizer_from_tensors", "CheckpointError"]

CHECKPOINT_GLOB = "step_*"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or incompatible; the message names the file."""


def build_model(config: Config, tokenizer: SmilesTokenizer) -> Transformer:
    m = config.model
    return Transformer(BackboneConfig(
        vocab_size=tokenizer.vocab_size, max_length=config.data.max_length, depth=m.depth, width=m.width,
        heads=m.heads, mlp_ratio=m.mlp_ratio, dropout=m.dropout, block_type=m.block_type,
        time_conditioning=m.time_conditioning, cond_dim=m.cond_dim))


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors (``state.<param>.<key>``) and JSON metadata."""
    state = optimizer.state_dict()
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: str | Path, *, step: int, config: Config, tokenizer: SmilesTokenizer,
                    split_info: dict, model: torch.nn.Module, ema_state: dict[str, torch.Tensor] | None,
                    optimizer: torch.optim.Optimizer | None, rng: dict[str, torch.Tensor], state: dict,
                    keep: int = 2) -> Path:
    """Write a checkpoint atomically and prune all but the newest ``keep``. Returns its folder."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    tokenizer.save(tmp / "tokenizer.json")
    (tmp / "split.json").write_text(json.dumps(split_info, indent=1))
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    if ema_state is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in ema_state.items()}, str(tmp / "ema.safetensors"))
    if optimizer is not None:
        tensors, meta = optimizer_to_tensors(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta))
    save_file({k: v.cpu().contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=1))
    for file in tmp.iterdir():
        with file.open("rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in sorted(root.glob(CHECKPOINT_GLOB))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, given it or a run folder (→ its newest checkpoint)."""
    path = Path(path)
    if (path / "model.safetensors").exists():
        return path
    candidates = sorted((path / "checkpoints").glob(CHECKPOINT_GLOB))
    if not candidates:
        raise CheckpointError(f"no checkpoint found at {path} (expected model.safetensors there or "
                              f"checkpoints/step_* below it)")
    return candidates[-1]


@dataclass
class LoadedCheckpoint:
    path: Path
    config: Config
    tokenizer: SmilesTokenizer
    split_info: dict
    model: Transformer
    state: dict


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint file {path} is not valid JSON: {err}") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except Exception as err:  # safetensors raises its own error types for truncated/garbage files
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None


def load_checkpoint(path: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load a checkpoint for sampling or further training (EMA weights by default, if present)."""
    folder = find_checkpoint(path)
    config = Config.from_dict(_read_json(folder / "config.json"), where=str(folder / "config.json")).validate()
    tokenizer = SmilesTokenizer.from_dict(_read_json(folder / "tokenizer.json"))
    model = build_model(config, tokenizer)
    weights_file = folder / ("ema.safetensors" if use_ema and (folder / "ema.safetensors").exists()
                             else "model.safetensors")
    weights = read_weights(weights_file)
    missing, unexpected = set(model.state_dict()) - set(weights), set(weights) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"{weights_file} does not match the architecture in config.json: "
                              f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    for name, tensor in model.state_dict().items():
        if weights[name].shape != tensor.shape:
            raise CheckpointError(f"{weights_file}: {name} has shape {tuple(weights[name].shape)}, the config "
                                  f"implies {tuple(tensor.shape)} (vocabulary or architecture mismatch)")
    model.load_state_dict(weights)
    model.to(device).eval()
    return LoadedCheckpoint(path=folder, config=config, tokenizer=tokenizer,
                            split_info=_read_json(folder / "split.json"), model=model,
                            state=_read_json(folder / "state.json"))
