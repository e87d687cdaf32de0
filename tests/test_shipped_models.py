"""The models scmdm ships in models/ (the demo starts from them): intact, small enough for the repository, loadable,
and documented by a model card."""

from __future__ import annotations

from pathlib import Path

import pytest

from scmdm.checkpoint import load_checkpoint
from scmdm.files import verify_folder
from scmdm.workflows import SHIPPED_BASE, SHIPPED_VERIFIER

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p for p in (ROOT / "models").iterdir() if p.is_dir()) if (ROOT / "models").is_dir() else []


def test_the_demo_models_are_shipped() -> None:
    names = {p.name for p in MODELS}
    assert {SHIPPED_BASE.name, SHIPPED_VERIFIER.name} <= names


@pytest.mark.parametrize("folder", MODELS, ids=lambda p: p.name)
def test_a_shipped_model_is_intact_small_and_loads(folder: Path) -> None:
    assert verify_folder(folder) == []  # every file matches checksums.json, the model card included
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 25 * 2**20
    card = (folder / "README.md").read_text()
    assert card.startswith(f"# {folder.name}") and "## Use it" in card and "## Measured" in card
    loaded = load_checkpoint(folder)
    assert loaded.verified and loaded.model.num_parameters() > 0
