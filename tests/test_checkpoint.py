"""Safe loading (safetensors + JSON, one clear error per broken file) and the portable model folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import scmdm
from scmdm.checkpoint import CheckpointError, export_model, load_checkpoint, read_state
from scmdm.cli import main
from tests.conftest import ROOT, requires_qm9, train_tiny

TINY = ["model.depth=1", "model.width=32", "model.heads=2", "data.subset=512", "train.batch_size=64",
        "train.steps=4", "train.warmup_steps=1", "train.eval_every=0", "train.save_every=1",
        "train.keep_checkpoints=3", "train.val_sequences=64", "train.val_num_t=2", "train.ema_decay=0.9",
        "train.threads=1", "train.device=cpu"]

pytestmark = requires_qm9


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from scmdm.config import load_config
    from scmdm.training import Trainer

    out = tmp_path_factory.mktemp("run")
    Trainer(load_config(None, TINY), out, show_progress=False).fit()
    return out


@pytest.fixture()
def ckpt(run, tmp_path) -> Path:
    """A private copy of the newest checkpoint, free to damage."""
    folder = tmp_path / "step_0000004"
    shutil.copytree(run / "checkpoints" / "step_0000004", folder)
    return folder


def test_keeps_the_configured_number_of_checkpoints(run) -> None:
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000002", "step_0000003", "step_0000004"]
    assert load_checkpoint(run).path.name == "step_0000004"


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _as_written_before_checksums(folder: Path) -> Path:
    """A folder as scmdm wrote it before it recorded checksums: without checksums.json (read unverified)."""
    (folder / "checksums.json").unlink()
    return folder


DAMAGE = {
    "truncated weights": (lambda f: _truncate(f / "ema.safetensors"),
                          "ema.safetensors is not a readable safetensors file"),
    "empty weights": (lambda f: (f / "ema.safetensors").write_bytes(b""),
                      "ema.safetensors is not a readable safetensors file"),
    "random bytes": (lambda f: (f / "ema.safetensors").write_bytes(torch.randint(0, 256, (4096,),
                     generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()),
                     "ema.safetensors is not a readable safetensors file"),
    "JSON renamed to weights": (lambda f: shutil.copy(f / "config.json", f / "ema.safetensors"),
                                "ema.safetensors is not a readable safetensors file"),
    "pickle renamed to weights": (lambda f: torch.save({"x": torch.zeros(2)}, f / "ema.safetensors"),
                                  "ema.safetensors is not a readable safetensors file"),
    "vocabulary mismatch": (lambda f: _edit_json(f / "tokenizer.json", lambda d: d["itos"].insert(-1, "[Xe]")),
                            r"vocabulary mismatch: .*tokenizer.json has \d+ tokens .* but .*ema.safetensors was "
                            r"trained with \d+"),
    "architecture mismatch (width)": (lambda f: _edit_json(f / "config.json", lambda d: d["model"].update(width=64)),
                                      r"architecture mismatch: .*ema.safetensors: .* has shape .*config.json implies"),
    "architecture mismatch (depth)": (lambda f: _edit_json(f / "config.json", lambda d: d["model"].update(depth=2)),
                                      r"ema.safetensors does not match the architecture in .*config.json"),
    "truncated config": (lambda f: _truncate(f / "config.json"), "config.json is not valid JSON"),
    "config of the wrong kind": (lambda f: (f / "config.json").write_text("[1, 2, 3]"),
                                 "config.json should hold a JSON object"),
    "invalid config value": (lambda f: _edit_json(f / "config.json", lambda d: d["sample"].update(sampler="fast")),
                             r"invalid config in checkpoint: .*config.json: sample.sampler must be one of "
                             r"ancestral, cached, topk"),
    "unknown config key": (lambda f: _edit_json(f / "config.json", lambda d: d["model"].update(size=3)),
                           r"config.json: unknown key 'model.size'"),
    "another domain (tokenizer kind)": (lambda f: _edit_json(f / "tokenizer.json", lambda d: d.update(kind="text")),
                                        r"tokenizer.json: tokenizer kind 'text' does not match data.domain="
                                        r"'molecule' .*another domain"),
    "another domain (config)": (lambda f: _edit_json(f / "config.json", lambda d: d["data"].update(domain="protein")),
                                r"config.json: data.domain must be one of molecule, text"),
    "malformed tokenizer": (lambda f: _edit_json(f / "tokenizer.json", lambda d: d.update(itos=["C"])),
                            r"tokenizer.json is not a valid smiles tokenizer"),
    "missing tokenizer": (lambda f: (f / "tokenizer.json").unlink(), r"checkpoint file .*tokenizer.json is missing"),
    "missing split": (lambda f: (f / "split.json").unlink(), r"checkpoint file .*split.json is missing"),
    "missing weights": (lambda f: [(f / n).unlink() for n in ("model.safetensors", "ema.safetensors")],
                        r"checkpoint file .*model.safetensors is missing"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoint_gives_one_clear_error(ckpt, case, capsys) -> None:
    """A folder without checksums.json (written before checksums existed): each file's own checks find the damage."""
    damage, pattern = DAMAGE[case]
    damage(_as_written_before_checksums(ckpt))
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(ckpt)
    assert main(["sample", str(ckpt), "--no-progress", "sample.num_samples=2", "sample.steps=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scmdm sample: error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and str(ckpt) in err


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damage_to_a_checksummed_folder_is_named_before_anything_else(ckpt, case, capsys) -> None:
    """With checksums.json every kind of damage is the same clear error: the file named, damaged or missing."""
    damage, _ = DAMAGE[case]
    damage(ckpt)
    with pytest.raises(CheckpointError, match=r"step_0000004/\w+\.(safetensors|json) is (damaged: its SHA-256 differs|"
                                              r"damaged: it has \d+ bytes|missing)"):
        load_checkpoint(ckpt)
    assert main(["sample", str(ckpt), "--no-progress", "sample.num_samples=2", "sample.steps=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scmdm sample: error: ") and len(err.strip().splitlines()) == 1 and str(ckpt) in err


@pytest.mark.parametrize("checksums", [True, False])
def test_raw_weights_are_checked_too(ckpt, checksums) -> None:
    if not checksums:
        _as_written_before_checksums(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 7)
    assert load_checkpoint(ckpt).verified is checksums  # EMA weights are fine
    message = "model.safetensors is damaged" if checksums else "model.safetensors is not a readable safetensors file"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(ckpt, use_ema=False)


def test_paths_that_are_not_checkpoints(tmp_path, ckpt) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="is a file"):
        load_checkpoint(ckpt / "config.json")
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "step_0000004" / "..")  # a folder with neither weights nor checkpoints/


def test_state_json_is_optional(ckpt) -> None:
    (ckpt / "state.json").unlink()
    assert load_checkpoint(ckpt).state == {}


def test_read_state_needs_no_weights(ckpt, run, tmp_path) -> None:
    """read_state gives load_checkpoint's state from the JSON alone (the benchmarks read a base's step and NELBO
    with it), for a checkpoint and for an exported model."""
    expected = load_checkpoint(ckpt).state
    for weights in ckpt.glob("*.safetensors"):
        weights.unlink()
    assert read_state(ckpt) == expected and expected["step"] == 4
    exported = export_model(run, tmp_path / "model")
    assert read_state(exported) == load_checkpoint(exported).state and read_state(exported)["step"] == 4


def test_resume_from_a_damaged_or_different_checkpoint_is_a_clear_error(run, tmp_path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    argv = ["train", "--out", str(copy), "--no-progress", *TINY, "train.steps=6"]
    _truncate(copy / "checkpoints" / "step_0000004" / "optimizer.safetensors")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "step_0000004/optimizer.safetensors is damaged: it has" in err and "Traceback" not in err
    assert f"an older intact checkpoint exists: {copy}/checkpoints/step_0000003" in err  # and how to use it
    assert f"scmdm train --out {copy} --from-checkpoint step_0000003" in err
    shutil.rmtree(copy / "checkpoints" / "step_0000004")
    assert main([*argv, "model.width=64"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "model.width: 32 there, 64 here" in err


def test_export_then_load_and_sample(run, tmp_path, capsys) -> None:
    from scmdm.sampling import generate
    from scmdm.schedules import get_schedule

    out = tmp_path / "model"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert "exported EMA weights" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json", "split.json",
                                               "export.json", "README.md", "checksums.json"}
    assert scmdm.load(out).verified
    readme = (out / "README.md").read_text()
    for text in ("parameters", "training steps | 4 × batch 64", "validation NELBO", "bits/token", "source 'qm9'",
                 f"scmdm sample {out}", "scmdm.load(", "--init-from"):
        assert text in readme, text
    ema = load_file(str(run / "checkpoints" / "step_0000004" / "ema.safetensors"))
    assert all(torch.equal(t, ema[k]) for k, t in load_file(str(out / "model.safetensors")).items())

    m = scmdm.load(out)
    assert m.state["step"] == 4 and m.tokenizer == load_checkpoint(run).tokenizer
    result = generate(m.model, get_schedule(m.config.diffusion.schedule), mask_id=m.tokenizer.mask_id,
                      num_samples=5, length=m.config.data.max_length, sampler="ancestral", steps=8)
    smiles = m.tokenizer.decode_batch(result.tokens)
    assert len(smiles) == 5 and all(isinstance(s, str) for s in smiles)

    samples = tmp_path / "s.smi"  # the CLI reads the exported folder too
    assert main(["sample", str(out), "--out", str(samples), "--no-progress", "sample.num_samples=5",
                 "sample.steps=4"]) == 0
    assert len(samples.read_text().splitlines()) == 5

    assert main(["export", str(run), "--out", str(out)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_export_names_its_source_relative_to_the_working_directory(run, tmp_path, monkeypatch) -> None:
    """Inside the working directory the card names the run relatively (no machine's folders); outside, absolutely."""
    monkeypatch.chdir(run.parent)
    export_model(run.name, tmp_path / "inside")
    assert json.loads((tmp_path / "inside" / "export.json").read_text())["exported_from"] == \
        f"{run.name}/checkpoints/step_0000004"
    monkeypatch.chdir(tmp_path)
    export_model(run, tmp_path / "outside")
    named = json.loads((tmp_path / "outside" / "export.json").read_text())["exported_from"]
    assert named == str((run / "checkpoints" / "step_0000004").resolve())  # the run is not under tmp_path


def test_export_raw_weights(run, tmp_path) -> None:
    out = export_model(run / "checkpoints" / "step_0000003", tmp_path / "raw", use_ema=False)
    raw = load_file(str(run / "checkpoints" / "step_0000003" / "model.safetensors"))
    assert all(torch.equal(t, raw[k]) for k, t in load_file(str(out / "model.safetensors")).items())
    assert json.loads((out / "export.json").read_text())["weights"] == "raw"
    assert scmdm.load(out).state["step"] == 3


def test_continue_training_from_an_exported_model(run, tmp_path, capsys) -> None:
    out = export_model(run, tmp_path / "model")
    post = tmp_path / "post"
    assert main(["train", "--init-from", str(out), "--out", str(post), "--no-progress", "train.steps=2",
                 "train.save_every=0", "train.eval_every=0", "train.threads=1"]) == 0
    assert "initialised from" in capsys.readouterr().err
    loaded = load_checkpoint(post)
    assert loaded.state["step"] == 2 and loaded.state["init_from"] == str(out)
    assert loaded.config.model == scmdm.load(out).config.model  # the model settings came from the export
    assert main(["train", "--init-from", str(out), "--out", str(tmp_path / "post2"), "--no-progress",
                 "train.steps=2", "model.width=64"]) == 2
    assert "model.width: 32 there, 64 here" in capsys.readouterr().err


@requires_qm9
def test_a_verifier_saved_before_state_norm_loads_without_it(tmp_path, tiny_data) -> None:
    """A verifier checkpoint whose config.json has neither speculative.state_norm nor key_positions (written
    before the options) loads with state_norm=false and key_positions=predicted: the model it was trained as,
    its weights fit, its outputs unchanged."""
    from scmdm.checkpoint import read_weights
    from scmdm.workflows import post_train_config

    _, result = train_tiny(tmp_path / "spec", tiny_data, ["speculative.causal_layers=1",
                                                          "speculative.state_norm=false",
                                                          "speculative.key_positions=predicted"])
    before = load_checkpoint(result.checkpoint).model
    config_file = result.checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    assert config["speculative"].pop("state_norm") is False
    assert config["speculative"].pop("key_positions") == "predicted"
    config_file.write_text(json.dumps(config))
    _as_written_before_checksums(result.checkpoint)
    loaded = load_checkpoint(result.checkpoint)
    assert loaded.config.speculative.state_norm is False and loaded.model.causal.state_norm is None
    assert loaded.model.causal.key_positions == "predicted"
    assert not any(".state_norm." in k for k in read_weights(result.checkpoint / "model.safetensors"))
    h, order = torch.randn(2, 24, 32), torch.stack([torch.randperm(24) for _ in range(2)])
    tokens = torch.randint(0, 10, (2, 24))
    with torch.no_grad():
        assert torch.equal(loaded.model.causal(h, None, order, tokens, loaded.model.rotary),
                           before.causal(h, None, order, tokens, before.rotary))
    fresh = load_checkpoint(train_tiny(tmp_path / "new", tiny_data, ["speculative.causal_layers=1"])[1].checkpoint)
    assert fresh.model.causal.state_norm is not None and fresh.model.causal.key_positions == "token"  # defaults
    _, base = train_tiny(tmp_path / "base", tiny_data)  # no verifier, config written before the options existed
    config_file = base.checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    del config["speculative"]["state_norm"], config["speculative"]["key_positions"]
    config_file.write_text(json.dumps(config))
    _as_written_before_checksums(base.checkpoint)
    new_verifier = post_train_config(base.checkpoint, [], "speculative").speculative
    assert new_verifier.state_norm and new_verifier.key_positions == "token"  # a new verifier gets both


@requires_qm9
def test_checkpoints_written_before_still_load(tmp_path, tiny_data) -> None:
    """A config.json without the speculative section and sample fields (as written before) loads as before."""
    _, result = train_tiny(tmp_path / "old", tiny_data)
    config_file = result.checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    del config["speculative"]
    for key in ("window", "min_window", "window_schedule", "verify_loops"):
        del config["sample"][key]
    config_file.write_text(json.dumps(config))
    _as_written_before_checksums(result.checkpoint)
    loaded = load_checkpoint(result.checkpoint)
    assert not loaded.model.speculative and loaded.config.speculative.causal_layers == 0


def _save(run: Path, step: int, val: float | None, weights: dict | None = None) -> Path:
    from scmdm.checkpoint import save_checkpoint
    from scmdm.config import Config
    from scmdm.domains.molecule.tokenizer import SmilesTokenizer

    return save_checkpoint(run, step=step, config=Config().validate(), tokenizer=SmilesTokenizer.build(["CCO"]),
                           split_info={}, model=weights or {"w": torch.ones(2)}, ema_state=None, optimizer=None,
                           rng={"torch": torch.zeros(4, dtype=torch.uint8)}, state={"val_nelbo_bits": val}, keep=2)


def test_rotation_keeps_the_newest_checkpoint_whose_validation_was_finite(tmp_path) -> None:
    """keep=2, by hand: the newest two stay, and while neither of them has a finite validation NELBO the newest one
    that had does too; a NaN never counts."""
    names = lambda: sorted(p.name for p in (tmp_path / "checkpoints").iterdir())  # noqa: E731
    _save(tmp_path, 1, 1.5)
    _save(tmp_path, 2, 1.4)
    _save(tmp_path, 3, None)
    assert names() == ["step_0000002", "step_0000003"]  # step 2 (finite) is among the newest two
    _save(tmp_path, 4, None)
    _save(tmp_path, 5, float("nan"))
    assert names() == ["step_0000002", "step_0000004", "step_0000005"]  # step 2 stays: no newer finite one
    _save(tmp_path, 6, 1.3)
    assert names() == ["step_0000005", "step_0000006"]


def test_non_finite_tensors_are_never_written(tmp_path) -> None:
    with pytest.raises(FloatingPointError, match=r"not writing checkpoint .*step_0000001: its model tensor w holds"):
        _save(tmp_path, 1, 1.0, {"w": torch.tensor([1.0, float("inf")])})
    assert not list(tmp_path.iterdir())  # nothing: not even the checkpoints folder


#: one way of each kind to unpickle, with the name under which ruff bans it
UNPICKLING = [
    ("torch.load", "import torch\n\ntorch.load('w.pt')\n"),
    ("torch.load", "from torch import load\n\nload('w.pt')\n"),
    ("torch.serialization.load", "import torch.serialization\n\ntorch.serialization.load('w.pt')\n"),
    ("pickle.load", "import pickle\n\nwith open('x', 'rb') as f:\n    pickle.load(f)\n"),
    ("pickle.loads", "import pickle\n\npickle.loads(b'')\n"),
    ("pickle.Unpickler", "import pickle\n\npickle.Unpickler\n"),
    ("numpy.load", "import numpy as np\n\nnp.load('x.npy', allow_pickle=True)\n"),
]


def test_nothing_is_ever_unpickled() -> None:
    """pyproject.toml bans every call that can unpickle (ruff's banned-API rule TID251, which `make test` runs over
    src, tests and benchmarks): written in the package, each of them is an error. So the rule cannot be switched off
    or lose a name without this test failing."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (`make test` installs it)")
    for name, code in UNPICKLING:
        proc = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "--stdin-filename",
                               str(ROOT / "src" / "scmdm" / "unpickling.py"), "-"], input=code, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and f"TID251 `{name}` is banned" in proc.stdout, (code, proc.stdout, proc.stderr)
