"""MDLM's Hugging Face checkpoint layout, read and written: every name that differs between MDLM and scmdm is
mapped here, and nowhere else.

A folder in MDLM's layout (``kuleshov-group/mdlm-owt``, or any model trained with MDLM's code) holds

    config.json        ``model_type: "mdlm"`` and the eight fields that define the model — vocab_size, model_length,
                       hidden_dim, cond_dim, n_blocks, n_heads, dropout, time_conditioning (the rest is Hugging Face
                       bookkeeping and is ignored)
    model.safetensors  the weights, keys ``backbone.<name>``
    a tokenizer        optional: ``tokenizer.json``, or GPT-2's ``vocab.json`` + ``merges.txt``

The model is scmdm's ``Transformer`` with adaLN blocks (MDLM's DiT): depth = n_blocks, width = hidden_dim, heads =
n_heads, MLP ratio 4, cond_dim, canvas = model_length, and ``time_input=sigma`` — MDLM embeds the total noise
σ(t) = −log(1 − (1 − 10⁻³)t) of its log-linear schedule (with ``time_conditioning`` false it embeds σ = 0, as scmdm
does). ``backbone.<name>`` is scmdm's ``<name>`` for every tensor; ``backbone.rotary_emb.inv_freq`` (MDLM saves its
rotary frequencies) is checked against scmdm's, which it recomputes, and written back on export. MASK is the last id
(vocab_size − 1): MDLM appends it to the tokenizer's vocabulary, as ``HfTokenizer`` does. Weights are read with
safetensors only; a ``pytorch_model.bin`` is refused (reading it would unpickle it).

Writing (``write_folder``): a model MDLM's architecture can express (adaLN blocks, MLP ratio 4, σ as time input) in
that layout, its config.json with the eight fields plus ``scmdm_config`` (scmdm's full config, so that importing it
back loses nothing). What scmdm adds — the self-conditioning input, the causal verifier — is written under the prefix
``scmdm.`` (MDLM's code ignores those tensors; scmdm reads them back), and the README says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from scmdm import files
from scmdm.config import Config
from scmdm.domains import DOMAINS
from scmdm.domains.text.tokenizer import HfTokenizer
from scmdm.errors import CheckpointError, ConfigError
from scmdm.files import write_folder_atomically
from scmdm.model import Transformer

__all__ = ["FIELDS", "is_mdlm_folder", "read_fields", "config_from_fields", "to_scmdm_weights", "to_mdlm_weights",
           "read_tokenizer", "read_folder", "write_folder", "BIN_REFUSED"]

#: config.json field → its type
FIELDS = {"vocab_size": int, "model_length": int, "hidden_dim": int, "cond_dim": int, "n_blocks": int,
          "n_heads": int, "dropout": float, "time_conditioning": bool}
PREFIX = "backbone."
ADDITIONS_PREFIX = "scmdm."
INV_FREQ = "rotary_emb.inv_freq"
SCMDM_TOKENIZER = "scmdm_tokenizer.json"
BIN_REFUSED = ("{path} holds pytorch_model.bin, a pickle: scmdm never unpickles weights. Convert it once, on a machine "
               "where you trust the file, with torch's restricted loader: python -c \"import torch; from "
               "safetensors.torch import save_file; save_file(torch.load('pytorch_model.bin', weights_only=True), "
               "'model.safetensors')\" in that folder (weights_only=True refuses anything but tensors)")


def is_mdlm_folder(folder: str | Path) -> bool:
    """Whether ``folder``'s config.json says ``model_type: mdlm``."""
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type") == "mdlm"
    except (OSError, ValueError, AttributeError):
        return False


def read_fields(folder: str | Path) -> dict[str, Any]:
    """The eight model fields of an MDLM config.json, checked (a CheckpointError names what is wrong)."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} should hold a JSON object")
    if missing := [k for k in FIELDS if k not in data]:
        raise CheckpointError(f"{path} is an MDLM config without {', '.join(missing)} (needs {', '.join(FIELDS)})")
    fields = {}
    for key, kind in FIELDS.items():
        value = data[key]
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, int | float) and not isinstance(value, bool) if kind is float else
              isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise CheckpointError(f"{path}: {key} must be {kind.__name__}, got {value!r}")
        fields[key] = kind(value)
    return fields


def config_from_fields(fields: dict[str, Any], where: str | Path = "config.json") -> Config:
    """scmdm's config of an MDLM model: a text model on a canvas of model_length with the model's own (``hf``)
    tokenizer, adaLN blocks, σ as time input (module docstring)."""
    config = Config()
    config.data.domain, config.data.max_length = "text", fields["model_length"]
    config.text.tokenizer = "hf"
    m = config.model
    m.depth, m.width, m.heads, m.mlp_ratio = fields["n_blocks"], fields["hidden_dim"], fields["n_heads"], 4.0
    m.dropout, m.block_type, m.cond_dim = fields["dropout"], "adaln", fields["cond_dim"]
    m.time_conditioning, m.time_input = fields["time_conditioning"], "sigma"
    try:
        return config.validate()
    except ConfigError as err:
        raise CheckpointError(f"{where}: this MDLM model cannot be built: {err}") from None


def to_scmdm_weights(tensors: dict[str, torch.Tensor], model: Transformer,
                     where: str | Path) -> dict[str, torch.Tensor]:
    """MDLM's ``backbone.*`` (and scmdm's ``scmdm.*`` additions) → scmdm's names; the rotary frequencies checked."""
    weights, unexpected = {}, []
    for key, value in tensors.items():
        if key == PREFIX + INV_FREQ:
            ours = model.rotary.inv_freq
            if value.shape != ours.shape or not torch.allclose(value.double(), ours.double(), rtol=1e-6, atol=0.0):
                raise CheckpointError(f"{where}: {key} holds other rotary frequencies than 1/10000^(2i/d) (d = "
                                      f"{2 * ours.numel()}): this is not MDLM's DiT")
        elif key.startswith(PREFIX):
            weights[key[len(PREFIX):]] = value
        elif key.startswith(ADDITIONS_PREFIX):
            weights[key[len(ADDITIONS_PREFIX):]] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"{where}: tensors that are neither backbone.* nor scmdm.*: {sorted(unexpected)[:5]}")
    return weights


def to_mdlm_weights(state: dict[str, torch.Tensor], model: Transformer) -> dict[str, torch.Tensor]:
    """scmdm's names → MDLM's (additions under ``scmdm.``), with MDLM's rotary frequencies."""
    out = {}
    for key, value in state.items():
        prefix = ADDITIONS_PREFIX if key.startswith(Transformer.ADDITIONS) else PREFIX
        out[prefix + key] = value.detach().cpu().contiguous()
    out[PREFIX + INV_FREQ] = model.rotary.inv_freq.detach().float().cpu().contiguous()
    return out


def read_tokenizer(folder: str | Path, given: str | Path | None = None) -> Any:
    """The tokenizer of an MDLM folder: ``given`` (a tokenizer.json or a folder with one or with vocab.json +
    merges.txt), else scmdm's own (``scmdm_tokenizer.json``, written on export), else the folder's tokenizer.json /
    vocab.json + merges.txt; None if there is none."""
    folder = Path(folder)
    if given is not None:
        return HfTokenizer.from_path(given)
    if (folder / SCMDM_TOKENIZER).exists():
        data = json.loads((folder / SCMDM_TOKENIZER).read_text(encoding="utf-8"))
        for domain in DOMAINS.values():
            if data.get("kind") in domain.tokenizers:
                return domain.tokenizers[data["kind"]].from_dict(data)
        raise CheckpointError(f"{folder / SCMDM_TOKENIZER}: unknown tokenizer kind {data.get('kind')!r}")
    if (folder / "tokenizer.json").exists() or (folder / "vocab.json").exists():
        return HfTokenizer.from_path(folder)
    return None


def read_folder(folder: str | Path, tokenizer: str | Path | None = None) -> tuple[Config, Any, dict]:
    """(scmdm config, tokenizer, raw tensors) of an MDLM folder (``tokenizer``: a path, when the folder has none)."""
    folder = Path(folder)
    if (folder / files.MANIFEST).exists():  # written by scmdm (export --format mdlm): every file as it was written
        manifest = files.read_manifest(folder) or {}
        if problems := files.verify_folder(folder):
            raise CheckpointError(problems[0])
        if "model.safetensors" not in manifest:
            raise CheckpointError(f"{folder / 'model.safetensors'} is not listed in {folder / files.MANIFEST}")
    fields = read_fields(folder)
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("scmdm_config")
    if isinstance(saved, dict):  # written by scmdm: its own config, whole
        try:
            config = Config.from_dict(saved, where=str(folder / "config.json")).validate()
        except ConfigError as err:
            raise CheckpointError(f"invalid scmdm_config in {folder / 'config.json'}: {err}") from None
    else:
        config = config_from_fields(fields, folder / "config.json")
    try:
        tok = read_tokenizer(folder, tokenizer)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read the tokenizer of {folder}: {err}") from None
    if tok is None:
        raise CheckpointError(f"{folder} holds an MDLM model but no tokenizer (tokenizer.json, or vocab.json + "
                              "merges.txt): give one with --tokenizer PATH (GPT-2's for mdlm-owt)")
    if tok.vocab_size != fields["vocab_size"]:
        raise CheckpointError(f"vocabulary mismatch: the tokenizer has {tok.vocab_size} ids with MASK appended, but "
                              f"{folder / 'config.json'} says vocab_size {fields['vocab_size']}")
    if (folder / "model.safetensors").exists():
        try:
            tensors = safetensors.torch.load_file(str(folder / "model.safetensors"))
        except Exception as err:  # safetensors raises its own error types for truncated/garbage files
            raise CheckpointError(f"{folder / 'model.safetensors'} is not a readable safetensors file: {err}") from None
    elif (folder / "pytorch_model.bin").exists():
        raise CheckpointError(BIN_REFUSED.format(path=folder))
    else:
        raise CheckpointError(f"checkpoint file {folder / 'model.safetensors'} is missing")
    return config, tok, tensors


def _expressible(config: Config) -> list[str]:
    m = config.model
    problems = []
    if m.block_type != "adaln":
        problems.append(f"model.block_type={m.block_type!r} (MDLM's DiT has adaln blocks)")
    if m.mlp_ratio != 4.0:
        problems.append(f"model.mlp_ratio={m.mlp_ratio} (MDLM's is 4)")
    if m.time_conditioning and m.time_input != "sigma":
        problems.append("model.time_input='t' with time conditioning (MDLM embeds the total noise σ: time_input=sigma)")
    return problems


def write_folder(config: Config, tokenizer: Any, model: Transformer, out: str | Path, *,
                 source: str = "") -> Path:
    """Write ``model`` in MDLM's layout into ``out`` (which must not exist, or be empty); atomic."""
    if problems := _expressible(config):
        raise ValueError(f"this model cannot be written in MDLM's layout: {'; '.join(problems)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder; choose another --out")
    m = config.model
    fields = {"vocab_size": tokenizer.vocab_size, "model_length": config.data.max_length, "hidden_dim": m.width,
              "cond_dim": m.cond_dim, "n_blocks": m.depth, "n_heads": m.heads, "dropout": m.dropout,
              "time_conditioning": m.time_conditioning}
    meta = {"architectures": ["MDLM"], "model_type": "mdlm",
            "auto_map": {"AutoConfig": "configuration_mdlm.MDLMConfig", "AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
            **fields, "return_dict": False, "torch_dtype": "float32", "scmdm_config": config.to_dict()}
    additions = sorted({k.split(".")[0] for k in model.state_dict() if k.startswith(Transformer.ADDITIONS)})

    def write(tmp: Path) -> None:
        files.write_file(tmp / "config.json", json.dumps(meta, indent=1))
        weights = {k: v.detach().cpu().contiguous() for k, v in to_mdlm_weights(model.state_dict(), model).items()}
        files.write_file(tmp / "model.safetensors", safetensors.torch.save(weights, metadata={"format": "pt"}))
        if isinstance(tokenizer, HfTokenizer):
            files.write_file(tmp / "tokenizer.json", tokenizer.hf.to_str())
        else:
            files.write_file(tmp / SCMDM_TOKENIZER, json.dumps(tokenizer.to_dict(), indent=1))
        files.write_file(tmp / "README.md", _readme(out, fields, additions, tokenizer, source))

    return write_folder_atomically(out, write)


def _readme(out: Path, fields: dict, additions: list[str], tokenizer: Any, source: str) -> str:
    added = ("" if not additions else
             f"\nscmdm adds to MDLM's architecture: {', '.join(additions)} (the self-conditioning input `self_cond`, "
             "the causal verifier `causal`). Their tensors are stored under the prefix `scmdm.`; MDLM's own code "
             "ignores them (and then runs the base model), scmdm reads them back.\n")
    if isinstance(tokenizer, HfTokenizer):
        tok = "`tokenizer.json` (Hugging Face; MASK is appended as id vocab_size − 1)"
    else:
        tok = f"`{SCMDM_TOKENIZER}` (scmdm's {tokenizer.kind} tokenizer, which MDLM's code does not read)"
    return f"""# {out.name} — an MDLM-layout model written by scmdm

`config.json` holds MDLM's model fields {json.dumps(fields)} and, under `scmdm_config`, scmdm's full
configuration; `model.safetensors` holds the weights under MDLM's names (`backbone.*`); the tokenizer is {tok}.
{added}{f"Exported from `{source}`." if source else ""}

Load it with scmdm (`scmdm sample {out}`, `scmdm.load("{out}")`) or with MDLM's Hugging Face code.
"""
