"""The package as a user installs it: a wheel, installed into a fresh virtual environment, runs every command from
another folder — the bundled configs are package data, found through importlib.resources, not a source checkout.

The fresh environment reuses this one's installed dependencies (torch, RDKit, ...) through a .pth file that adds
this environment's site-packages to its path (after its own site-packages, where the wheel is installed, so the
wheel's scmdm is the one imported — the test checks that), which keeps the test to about a minute."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import requires_qm9

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.depth=1", "model.width=32", "model.heads=2", "data.subset=256", "train.batch_size=32", "train.steps=2",
        "train.warmup_steps=1", "train.eval_every=0", "train.save_every=0", "train.val_sequences=32",
        "train.val_num_t=2"]


def _run(args: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:  # (its python, the environment to run it in)
    """A wheel built from this checkout, installed (without dependencies) into a new virtual environment."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, cwd=work)
    wheel = next(dist.glob("scmdm-*.whl"))
    env_dir = work / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    env_site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    (env_site / "reuse_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(env_site), str(wheel)],
                   check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return python, env


@requires_qm9
def test_a_wheel_runs_every_command_from_another_folder(installed, tmp_path) -> None:
    python, env = installed
    where = _run([str(python), "-c", "import scmdm, scmdm.config; print(scmdm.__file__); "
                  "print(scmdm.config.resolve_config_path('qm9_demo'))"], tmp_path, env)
    assert str(ROOT / "src") not in where and "site-packages/scmdm/configs/qm9_demo.yaml" in where
    cli = [str(python), "-m", "scmdm"]  # the installed command: python -m scmdm is the wheel's scmdm entry point
    assert _run([*cli, "--version"], tmp_path, env).strip().startswith("scmdm ")
    _run([*cli, "train", "--config", "qm9_demo", "--out", "base", "--no-progress", *TINY], tmp_path, env)
    _run([*cli, "posttrain", "--from", "base", "--out", "sc", "--no-progress", *TINY[4:]], tmp_path, env)
    _run([*cli, "posttrain", "--from", "base", "--out", "spec", "--speculative", "--no-progress", *TINY[4:]],
         tmp_path, env)
    _run([*cli, "sample", "sc", "--out", "s.smi", "--no-progress", "sample.num_samples=8", "sample.steps=4"],
         tmp_path, env)
    out = _run([*cli, "eval", "base", "--samples", "s.smi", "--no-progress"], tmp_path, env)
    assert "real held-out molecules" in out
    _run([*cli, "export", "spec", "--out", "exported"], tmp_path, env)
    _run([*cli, "sample", "exported", "--no-progress", "sample.num_samples=4", "sample.sampler=speculative"],
         tmp_path, env)
    assert (tmp_path / "s.smi").read_text().count("\n") == 8 and (tmp_path / "exported" / "model.safetensors").exists()
