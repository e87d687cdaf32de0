"""benchmarks/samplers_frontier.py: the grids are valid settings, the budget table picks winners by hand, and the
script runs end to end on a tiny real QM9 model (the cached sampler's samples equal the ancestral ones at the same T,
the speculative sampler's equivalent NFE adds its verifier passes, --cached-only samples nothing)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from benchmarks import samplers_frontier as frontier
from scmdm.cli import main as cli
from scmdm.config import SampleConfig
from tests.conftest import requires_qm9

pytestmark = pytest.mark.usefixtures("single_thread")

POST = ["train.steps=2", "train.eval_every=0", "train.save_every=0", "train.batch_size=32", "train.val_sequences=32",
        "train.val_num_t=2", "train.warmup_steps=1"]


@pytest.mark.parametrize(("domain", "length"), [("molecule", 24), ("text", 128)])
def test_every_grid_setting_is_a_valid_sampler_setting(domain: str, length: int) -> None:
    grid = frontier.grid(domain, length)
    assert {"ancestral", "cached", "first-hitting", "top-k", "threshold", "speculative cosine",
            "self-cond ancestral"} <= set(grid)
    for model, settings in grid.values():
        assert model in ("base", "spec", "sc")
        for setting in settings:
            SampleConfig(**setting).validate()
    # the ancestral sweep reaches past the canvas length on the short canvas, ReMDM's loop at least twice the canvas
    assert max(s["steps"] for s in grid["ancestral"][1]) == (2 * length if domain == "molecule" else length)
    assert min(s["steps"] for s in grid["remdm loop η=0.02"][1]) <= 2 * length


def test_family_groups_the_settings_of_one_sampler() -> None:
    assert frontier.family("remdm loop η=0.02") == frontier.family("remdm cap η=0.02") == "remdm"
    assert frontier.family("cached") == frontier.family("ancestral") == "ancestral"  # the same samples
    assert frontier.family("speculative cosine") == frontier.family("speculative constant") != "ancestral"


def test_budget_table_by_hand() -> None:
    """Four points; budget 6 admits the two with NFE ≤ 6, budget 12 all four. FCD is lower-is-better."""
    def point(nfe: float, validity: list[float], fcd: list[float], uniqueness: float) -> dict:
        return {"nfe": [nfe] * 2, "nfe_equivalent": [nfe] * 2, "seconds": [1.0, 1.0], "validity": validity,
                "valid_unique_novel": validity, "fcd": fcd, "uniqueness": [uniqueness] * 2}

    summary = {("ancestral", "T=6"): point(6, [0.30, 0.34], [5.0, 5.2], 0.9),
               ("top-k", "T=4"): point(4, [0.50, 0.50], [9.0, 9.0], 0.4),
               ("cached", "T=24"): point(11.5, [0.40, 0.40], [3.0, 3.2], 0.95),
               ("remdm loop η=0.02", "T=12"): point(12, [0.38, 0.38], [2.9, 2.9], 0.93)}
    rows = {(r["budget"], r["metric"]): r for r in frontier.budget_rows(summary, "molecule")}
    six = rows[(6, "validity")]
    assert six["best"][0] == ("top-k", "T=4") and six["runner_up"][0] == ("ancestral", "T=6")
    assert six["ancestral"][0] == ("ancestral", "T=6")
    assert rows[(6, "fcd")]["best"][0] == ("ancestral", "T=6")
    twelve = rows[(12, "fcd")]
    assert twelve["best"][0] == ("remdm loop η=0.02", "T=12") and twelve["runner_up"][0] == ("cached", "T=24")
    assert twelve["ancestral"][0] == ("cached", "T=24")  # cached counts as the ancestral chain
    assert (48, "validity") in rows and rows[(48, "validity")]["best"][0] == ("top-k", "T=4")
    table = frontier.markdown(summary, frontier.budget_rows(summary, "molecule"), "molecule",
                              type("A", (), {"num_samples": 8, "seeds": [0, 1], "temperature": 1.0, "threads": 1})(),
                              "python -m benchmarks.samplers_frontier", {"base": "b"}, {})
    # the margin of top-k over ancestral at budget 6: 0.50 − 0.32, the seed stds combined
    assert "| 6 | validity | top-k T=4 | 0.500 ± 0.000 | ancestral T=6 (0.320 ± 0.028) | +0.180 ± 0.028 |" in table


@requires_qm9
def test_end_to_end_on_a_tiny_qm9_model(tmp_path, capsys, tiny_data, monkeypatch) -> None:
    from tests.conftest import train_tiny

    train_tiny(tmp_path / "base", tiny_data)
    base = str(tmp_path / "base")
    for name, extra in (("spec", ["--speculative"]), ("sc", ["selfcond.injection=mask_add", "selfcond.rate=1"])):
        assert cli(["posttrain", "--from", base, "--out", str(tmp_path / name), "--no-progress", *extra, *POST]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    argv = ["--base", base, "--verifier", str(tmp_path / "spec"), "--selfcond", str(tmp_path / "sc"), "--arms",
            "ancestral", "cached", "threshold", "speculative cosine", "self-cond ancestral", "--seeds", "0", "1",
            "--num-samples", "8", "--batch-size", "8", "--out", str(out), "--no-docs"]
    assert frontier.main(argv) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "samplers_molecule.json").read_text())["rows"]
    grid = frontier.grid("molecule", 24)
    per_seed = sum(len(grid[arm][1]) for arm in ("ancestral", "cached", "threshold", "speculative cosine",
                                                 "self-cond ancestral"))
    assert len(rows) == 2 * per_seed and {r["seed"] for r in rows} == {0, 1}
    ancestral = {(r["label"], r["seed"]): r for r in rows if r["arm"] == "ancestral"}
    for r in rows:
        if r["arm"] == "cached" and (r["label"], r["seed"]) in ancestral:  # T = 24 and 48: the same samples
            twin = ancestral[(r["label"], r["seed"])]
            for key in ("validity", "uniqueness", "novelty", "fcd", "qed"):
                assert r[key] == twin[key] or (math.isnan(r[key]) and math.isnan(twin[key])), key
            assert r["nfe"] <= twin["nfe"]
        if r["arm"] == "threshold":
            assert 1 <= r["nfe"] <= 24
        if r["arm"] == "speculative cosine":  # one causal layer over a depth-1 trunk: a verifier pass costs a pass
            assert r["nfe_equivalent"] == pytest.approx(r["nfe"] + r["nfe_causal"])
        else:
            assert r["nfe_equivalent"] == r["nfe"]
    assert "### Which sampler for which budget" in printed and "| self-cond ancestral | T=6 | 2 |" in printed
    assert (out / "samplers_molecule.png").stat().st_size > 0

    monkeypatch.setattr(frontier, "sample_and_evaluate", lambda *a, **k: pytest.fail("--cached-only sampled"))
    assert frontier.main([*argv, "--cached-only"]) == 0
    assert capsys.readouterr().out.split("### Which")[1] == printed.split("### Which")[1]
    # rows are keyed by the weights, not the path: the same models under other names are still cached
    copies = {str(tmp_path / n): str(tmp_path / f"copy_{n}") for n in ("base", "spec", "sc")}
    for original, copy in copies.items():
        shutil.copytree(original, copy)
    assert frontier.main([copies.get(a, a) for a in argv] + ["--cached-only"]) == 0
    assert capsys.readouterr().out.split("### Which")[1] == printed.split("### Which")[1]
    assert all(json.loads(r["key"])[-1].startswith("sha256:") for r in rows)
    # a call for fewer arms keeps the other rows in its results file (other_rows), for the next call to reuse
    assert frontier.main(["--base", base, "--arms", "ancestral", "--seeds", "0", "1", "--num-samples", "8",
                          "--out", str(out), "--no-docs", "--cached-only"]) == 0
    saved = json.loads((out / "samplers_molecule.json").read_text())
    assert {r["arm"] for r in saved["rows"]} == {"ancestral"}
    assert {r["key"] for r in rows} <= {r["key"] for r in saved["rows"] + saved["other_rows"]}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        frontier.main(["--base", base, "--arms", "nonsense", "--no-docs", "--out", str(out)])
    assert "unknown arm(s) ['nonsense']" in capsys.readouterr().err
