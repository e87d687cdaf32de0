"""benchmarks/ship_base.py: a finished run becomes a verified model folder whose card leads with how it was trained;
an unfinished run and an oversized folder are refused."""

from __future__ import annotations

import pytest

import scmdm
from benchmarks import ship_base
from tests.conftest import train_tiny

pytestmark = pytest.mark.usefixtures("single_thread")


def test_ship_a_finished_run_and_refuse_an_unfinished_one(tmp_path, tiny_data, monkeypatch) -> None:
    train_tiny(tmp_path / "runs" / "tiny", tiny_data)  # the TINY schedule
    shipment = ship_base.Shipment("runs/tiny", "tiny", "a tiny QM9 model", "scmdm train --out runs/tiny",
                                  "nowhere")
    out = ship_base.ship(shipment, root=tmp_path)
    m = scmdm.load(out)
    assert m.verified and m.state["step"] == m.config.train.steps  # the card's rewrite kept checksums.json true
    card = (out / "README.md").read_text()
    assert card.startswith("# tiny — a tiny QM9 model\n")
    assert f"| validation NELBO (trainer protocol, EMA) | {m.state['val_nelbo_bits']:.4f} bits/token |" in card
    assert "| how it was trained | `scmdm train --out runs/tiny` |" in card and "## Use it" in card
    assert "## Measured\n\nnowhere\n" in card

    train_tiny(tmp_path / "runs" / "long", tiny_data, ["train.steps=50", "train.max_minutes=0.00001"])
    with pytest.raises(SystemExit, match="stopped at step"):
        ship_base.ship(ship_base.Shipment("runs/long", "long", "x", "y", "z"), root=tmp_path)
    assert not (tmp_path / "models" / "long").exists()

    monkeypatch.setattr(ship_base, "MAX_MB", 0.01)
    with pytest.raises(SystemExit, match="over the 0.01 MB"):
        ship_base.ship(shipment, root=tmp_path)
    assert not out.exists()
