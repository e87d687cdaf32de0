"""Fault injection: nothing lost, nothing silent.

* byte flips anywhere in a checkpoint folder: loading either succeeds with bit-identical tensors (a flip in a file it
  does not read) or fails with one line naming the file — never silently different weights, never a traceback
  (a seeded sweep whose counts docs/RELIABILITY.md quotes, and a hypothesis property);
* a full disk (ENOSPC) at each write of a checkpoint save and of an export, injected, and on a real small tmpfs:
  one line, exit status 1, the path named, the previous checkpoint intact, no temporary folder left;
* SIGKILL during an export: the model folder is there whole (and verifies) or not at all; the next export cleans up;
* a NaN, or 200 flipped bytes, in the EMA weights: every command that reads them stops with one line.

All on a tiny real QM9 model (``tiny_data``); the whole module runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from scmdm import files
from scmdm.checkpoint import CheckpointError, load_checkpoint
from scmdm.cli import main
from scmdm.files import MANIFEST, verify_folder
from tests.conftest import ROOT, TINY, requires_qm9, train_tiny

pytestmark = requires_qm9

#: the CLI runs of this module: TINY (the ``tiny_data`` settings), a checkpoint every 2 steps, every one kept
RUN = [*TINY, "train.steps=4", "train.save_every=2", "train.eval_every=2", "train.keep_checkpoints=5",
       "train.threads=1", "train.device=cpu"]
#: what the seeded sweep flips, and how many of the flips the sampling load catches (docs/RELIABILITY.md)
FLIPS, SEED = 400, 20260601


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data) -> Path:
    """A tiny run with checkpoints at steps 2 and 4, both validated (finite NELBO)."""
    out = tmp_path_factory.mktemp("faults") / "run"
    train_tiny(out, tiny_data, RUN[len(TINY):])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000002", "step_0000004"]
    return out


@pytest.fixture()
def cli_data(monkeypatch, tiny_data):
    """The CLI trains on the prepared ``tiny_data`` (what ``prepare_data`` would build for TINY) instead of preparing
    QM9 again: everything else runs as a user runs it."""
    monkeypatch.setattr("scmdm.training.trainer.prepare_data", lambda config, tokenizer=None, quiet=False: tiny_data)


def _reference(folder: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder).model.state_dict()


def _flip(path: Path, position: int, mask: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ mask]))


def _load_outcome(folder: Path, reference: dict[str, torch.Tensor]) -> str:
    """"caught" (one-line CheckpointError naming a file of ``folder``) or "identical" (every tensor bit-identical);
    anything else fails the test."""
    try:
        loaded = load_checkpoint(folder)
    except CheckpointError as err:
        message = str(err)
        assert "\n" not in message and str(folder) in message, message
        return "caught"
    state = loaded.model.state_dict()
    assert state.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(state[name], tensor), f"silently different weights: {name}"
    return "identical"


def _record_changed(path: Path, original: dict, names: set[str]) -> bool:
    """Whether the (flipped) ``checksums.json`` at ``path`` is no longer the record ``original`` for the files
    ``names``: unreadable, another format or algorithm, or another size or hash for one of them."""
    try:
        record = json.loads(path.read_bytes())
        return (any(record[key] != original[key] for key in ("format", "algorithm"))
                or any(record["files"].get(name) != original["files"].get(name) for name in names))
    except (ValueError, KeyError, TypeError, AttributeError):
        return True


def test_byte_flips_anywhere_are_caught_or_harmless(run, tmp_path, capsys) -> None:
    """FLIPS single-byte flips, each in a file chosen uniformly from the checkpoint folder at a uniform position (XOR
    with a random non-zero byte), undone after the load. Flips in a file sampling reads are all caught; flips in the
    files it does not read (raw weights, optimizer, RNG) leave the loaded tensors bit-identical. Every 40th flip also
    goes through ``scmdm sample``: exit 2 with one line, or exit 0."""
    folder = tmp_path / "step_0000004"
    shutil.copytree(run / "checkpoints" / "step_0000004", folder)
    reference = _reference(folder)
    names = sorted(p.name for p in folder.iterdir())
    rng = random.Random(SEED)
    outcomes = {name: {"caught": 0, "identical": 0} for name in names}
    manifest_record, record_changes = json.loads((folder / MANIFEST).read_text()), 0
    read = {"config.json", "tokenizer.json", "split.json", "ema.safetensors", "state.json"}  # what sampling reads
    for index in range(FLIPS):
        name = rng.choice(names)
        path = folder / name
        position, mask = int(rng.random() * path.stat().st_size), rng.randrange(1, 256)  # the draws: sizes aside
        _flip(path, position, mask)
        outcome = _load_outcome(folder, reference)
        outcomes[name][outcome] += 1
        if name == MANIFEST and _record_changed(path, manifest_record, read):
            assert outcome == "caught", ("a changed record of sizes and hashes loaded", position, mask)
            record_changes += 1
        if index % 40 == 0:
            code = main(["sample", str(folder), "--no-progress", "sample.num_samples=2", "sample.steps=2"])
            captured = capsys.readouterr()
            assert code == (2 if outcome == "caught" else 0), (name, captured.err)
            if code == 2:
                assert captured.err.startswith("scmdm sample: error: ") and captured.err.count("\n") == 1
        _flip(path, position, mask)  # undo
    for name, counts in outcomes.items():
        if name != MANIFEST:  # checksums.json: a flip that turns its JSON whitespace into other whitespace is harmless
            assert counts["identical" if name in read else "caught"] == 0, (name, counts)
    totals = {kind: sum(outcomes[n]["caught"] + outcomes[n]["identical"] for n in names if (n in read) == kind)
              for kind in (True, False)}  # True: the files sampling reads
    manifest = outcomes[MANIFEST]
    # the figures docs/RELIABILITY.md quotes: flips in the files sampling reads, in the others, in checksums.json
    assert (totals[True], totals[False] - manifest["caught"] - manifest["identical"]) == (230, 130), outcomes
    # which of the 40 checksums.json flips land on harmless bytes (whitespace, the version) depends on the file's
    # length, which its recorded sizes set: the rule, checked flip by flip above, is that every flip that changed
    # the record of the files sampling reads was caught
    assert manifest["caught"] + manifest["identical"] == 40 and record_changes > 0, outcomes


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_flips_load_identically_or_fail_with_one_line(run, tmp_path_factory, data) -> None:
    """The property behind the sweep, with 1-16 flips spread over any of the files at once."""
    folder = tmp_path_factory.mktemp("flip") / "step_0000004"
    shutil.copytree(run / "checkpoints" / "step_0000004", folder)
    reference = _reference(folder)
    names = sorted(p.name for p in folder.iterdir())
    for _ in range(data.draw(st.integers(1, 16), label="flips")):
        path = folder / data.draw(st.sampled_from(names), label="file")
        _flip(path, data.draw(st.integers(0, path.stat().st_size - 1), label="position"),
              data.draw(st.integers(1, 255), label="mask"))
    _load_outcome(folder, reference)


def test_a_flip_in_any_file_stops_a_resume_before_the_data_is_prepared(run, tmp_path, tiny_data) -> None:
    """Resuming reads every file: 3 flips in each of them, each caught with one line that names the file and the older
    intact checkpoint to resume from instead; the data is never prepared."""
    from scmdm.config import load_config
    from scmdm.training import Trainer

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    newest = copy / "checkpoints" / "step_0000004"
    rng, caught = random.Random(SEED + 1), 0
    config = load_config(None, [*RUN, "train.steps=6"])
    for path in sorted(newest.iterdir()):
        for _ in range(3):
            position, mask = rng.randrange(path.stat().st_size), rng.randrange(1, 256)
            _flip(path, position, mask)
            with pytest.raises(CheckpointError) as info:
                Trainer(config, copy, data=tiny_data, show_progress=False)
            message = str(info.value)
            assert str(newest) in message and "\n" not in message
            assert "an older intact checkpoint exists" in message and "--from-checkpoint step_0000002" in message
            caught += 1
            _flip(path, position, mask)
    assert caught == 3 * 10  # 10 files: 9 written by the save, and checksums.json


def _error_line(err: str, command: str) -> str:
    """The CLI's one error line: the last line of stderr (progress notes such as "resuming from" come before it)."""
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"scmdm {command}: error: "), err
    return line


def _full_disk_at(monkeypatch, failing: int) -> list[str]:
    """Make the ``failing``-th call of ``scmdm.files.write_file`` (0-based) fail with ENOSPC; returns the names of
    the files it was asked to write."""
    real, calls = files.write_file, []

    def write_file(path, data):
        calls.append(Path(path).name)
        if len(calls) == failing + 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(files, "write_file", write_file)
    return calls


SAVE_WRITES = ["config.json", "tokenizer.json", "split.json", "model.safetensors", "ema.safetensors",
               "optimizer.safetensors", "optimizer.json", "rng.safetensors", "state.json", MANIFEST]


@pytest.mark.parametrize("failing", range(len(SAVE_WRITES)))
def test_enospc_at_each_write_of_a_save_is_one_line_and_loses_nothing(run, tmp_path, capsys, monkeypatch, cli_data,
                                                                      failing) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = load_file(str(copy / "checkpoints" / "step_0000004" / "ema.safetensors"))
    calls = _full_disk_at(monkeypatch, failing)
    assert main(["train", "--out", str(copy), "--no-progress", *RUN, "train.steps=5"]) == 1
    line = _error_line(capsys.readouterr().err, "train")
    assert calls == SAVE_WRITES[:failing + 1]  # the save wrote these, in this order, and the last one failed
    assert line.startswith("scmdm train: error: [Errno 28] No space left on device: ")
    assert f"step_0000005_{os.getpid()}/{SAVE_WRITES[failing]}" in line  # the path named
    checkpoints = copy / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_0000002", "step_0000004"]  # no temporary folder
    assert verify_folder(checkpoints / "step_0000004") == []
    after = load_file(str(checkpoints / "step_0000004" / "ema.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


EXPORT_WRITES = ["config.json", "tokenizer.json", "split.json", "model.safetensors", "export.json", "README.md",
                 MANIFEST]


@pytest.mark.parametrize("failing", range(len(EXPORT_WRITES)))
def test_enospc_at_each_write_of_an_export_leaves_no_folder(run, tmp_path, capsys, monkeypatch, failing) -> None:
    out = tmp_path / "models" / "tiny"
    calls = _full_disk_at(monkeypatch, failing)
    assert main(["export", str(run), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert calls == EXPORT_WRITES[:failing + 1]
    assert err.startswith("scmdm export: error: [Errno 28] No space left on device: ") and err.count("\n") == 1
    assert EXPORT_WRITES[failing] in err
    assert not (tmp_path / "models").exists()  # no model folder, no .tmp_tiny_<pid>, not even the parent it made


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A mount point whose tmpfs ``mount(size)`` sets; skipped where mounting is not allowed."""
    point = tmp_path / "tmpfs"
    point.mkdir()
    mounted = []

    def mount(size: int) -> Path:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_real_full_disk_during_a_save_and_an_export(run, tmp_path, capsys, cli_data, small_tmpfs) -> None:
    """The same on a real filesystem that fills up: a tmpfs holding the run and one checkpoint, not two."""
    step2 = run / "checkpoints" / "step_0000002"
    size = sum(p.stat().st_size for p in step2.iterdir())
    disk = small_tmpfs(size + size // 2 + 64 * 1024)
    shutil.copytree(run, disk / "run", ignore=shutil.ignore_patterns("step_0000004", "loss_curve.png"))
    assert main(["train", "--out", str(disk / "run"), "--no-progress", *RUN]) == 1
    line = _error_line(capsys.readouterr().err, "train")
    assert "No space left on device" in line and str(disk / "run") in line
    assert sorted(p.name for p in (disk / "run" / "checkpoints").iterdir()) == ["step_0000002"]
    assert verify_folder(disk / "run" / "checkpoints" / "step_0000002") == []
    shutil.rmtree(disk / "run")
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * (free - 8192))  # leave less room than one model folder
    assert main(["export", str(run), "--out", str(disk / "model")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scmdm export: error: ") and "No space left on device" in err and err.count("\n") == 1
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


EXPORTER = """
import sys, time
import scmdm.files as files
real = files.write_file
def write_file(path, data):
    print("writing", path.name, flush=True)
    time.sleep(0.1)
    real(path, data)
files.write_file = write_file
from scmdm.cli import main
sys.exit(main(["export", sys.argv[1], "--out", sys.argv[2]]))
"""


def test_sigkill_during_an_export_leaves_the_folder_whole_or_absent(run, tmp_path) -> None:
    """An export is killed after its k-th file write started (k and a delay of 0-0.15 s from a seeded RNG, one kill in
    the last write, where the rename happens): the model folder is absent, or there and intact. The next export
    removes what the killed ones left and writes a folder that verifies and loads."""
    rng = random.Random(SEED + 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out, left = tmp_path / "model", []
    for k in (rng.randint(1, 3), rng.randint(4, 6), len(EXPORT_WRITES)):
        proc = subprocess.Popen([sys.executable, "-c", EXPORTER, str(run), str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
        for _ in range(k):
            assert proc.stdout.readline().startswith("writing")
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.15))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if out.exists():  # renamed into place before the kill: whole
            assert verify_folder(out) == [] and load_checkpoint(out).verified
            shutil.rmtree(out)
        left.append(sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp_model_")))
    # each killed write leaves its own temporary folder, which the next export of the folder removes
    assert len(left[0]) == len(left[1]) == 1 and left[0] != left[1] and len(left[2]) <= 1, left
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # ... until the next export of the folder
    assert verify_folder(out) == [] and load_checkpoint(out).verified


def _nan_in_ema(folder: Path) -> None:
    """One NaN in the EMA weights, written as an scmdm without checksums would have (no checksums.json)."""
    ema = load_file(str(folder / "ema.safetensors"))
    name = sorted(ema)[0]
    ema[name].view(-1)[0] = float("nan")
    save_file(ema, str(folder / "ema.safetensors"))
    (folder / MANIFEST).unlink()


def _flip_tensor_bytes(folder: Path) -> None:
    """200 flipped bytes inside the tensor data (past the header) of the EMA weights."""
    path = folder / "ema.safetensors"
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    rng = random.Random(SEED + 3)
    for position in rng.sample(range(header, path.stat().st_size), 200):
        _flip(path, position, rng.randrange(1, 256))


@pytest.mark.parametrize("damage, message", [(_nan_in_ema, "ema.safetensors holds NaN or inf in "),
                                             (_flip_tensor_bytes, "ema.safetensors is damaged: its SHA-256 differs")])
def test_damaged_ema_weights_stop_every_command_with_one_line(run, tmp_path, capsys, cli_data, damage,
                                                              message) -> None:
    """The issue's reproduction: sample, eval, export, posttrain --from and a resumed train all read the damaged
    weights, and each stops with one line naming the file (and, for the run, the older intact checkpoint)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    newest = copy / "checkpoints" / "step_0000004"
    damage(newest)
    commands = [["sample", str(copy), "--no-progress", "sample.num_samples=2"],
                ["eval", str(copy), "--no-progress", "sample.num_samples=2"],
                ["export", str(copy), "--out", str(tmp_path / "model")],
                ["posttrain", "--from", str(copy), "--out", str(tmp_path / "post"), "--no-progress"],
                ["train", "--out", str(copy), "--no-progress", *RUN, "train.steps=6"]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"scmdm {argv[0]}: error: ") and err.count("\n") == 1, err  # nothing else printed
        assert message in err and str(newest) in err, err
        assert "an older intact checkpoint exists" in err and "step_0000002" in err, err
    assert not (tmp_path / "model").exists() and not (tmp_path / "post").exists()
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == ["step_0000002", "step_0000004"]
