"""benchmarks/infill.py: its baselines and metrics on cases small enough to check by hand (the Markov infiller's
exact conditional, the bigram's sampling law, the training lookup, the nearest neighbour, recovery, span accuracy,
level error, the paired differences), its input checks, and the script end to end on tiny real models."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from benchmarks import infill
from benchmarks.infill import MarkovInfiller
from scmdm.cli import main as cli
from tests.conftest import chi_square_pvalue, requires_digits, requires_genomes, requires_qm9

pytestmark = pytest.mark.usefixtures("single_thread")

#: 2-step post-trainings (the verifier, the control, the self-conditioned model)
POST = ["train.steps=2", "train.eval_every=0", "train.save_every=0", "train.batch_size=32", "train.val_sequences=32",
        "train.val_num_t=2", "train.warmup_steps=1"]
#: the DNA and image models: 1 layer, width 32, 4 steps
MODEL = ["model.depth=1", "model.width=32", "model.heads=2", "train.batch_size=32", "train.steps=4",
         "train.warmup_steps=1", "train.eval_every=0", "train.save_every=0", "train.val_sequences=32",
         "train.val_num_t=2"]


def test_bigram_infiller_conditions_on_both_sides_by_hand() -> None:
    # alphabet {1, 2, 3}; transitions counted in the one training canvas, add-one smoothing
    train = torch.tensor([[1, 2, 1, 3, 1, 2, 3, 3, 1, 2]])
    chain = MarkovInfiller(1, [1, 2, 3]).fit(train)
    counts = np.array([[0, 3, 1], [1, 0, 1], [2, 0, 1]])  # c(u v): from 1: 1→2 ×3, 1→3 ×1; from 2: 2→1, 2→3; ...
    assert np.allclose(chain.P, (counts + 1) / (counts.sum(1, keepdims=True) + 3))
    P = chain.P
    # one position between 1 and 3: p(v | 1, 3) ∝ P(v | 1) P(3 | v)
    expected = P[0] * P[:, 2] / (P[0] * P[:, 2]).sum()
    assert np.allclose(chain.marginals(torch.tensor([[1, 0, 3]]), 1, 2)[0, 0], expected)
    left_only = MarkovInfiller(1, [1, 2, 3], both_sides=False).fit(train)
    assert np.allclose(left_only.marginals(torch.tensor([[1, 0, 3]]), 1, 2)[0, 0], P[0])  # the right side ignored
    # two positions: the exact joint p(a, b | 1, 3) ∝ P(a | 1) P(b | a) P(3 | b), and the sampler draws from it
    joint = {(a + 1, b + 1): P[0, a] * P[a, b] * P[b, 2] for a, b in itertools.product(range(3), repeat=2)}
    total = sum(joint.values())
    marginals = chain.marginals(torch.tensor([[1, 0, 0, 3]]), 1, 3)[0]
    assert np.allclose(marginals[0], [sum(p for (a, _), p in joint.items() if a == v) / total for v in (1, 2, 3)])
    assert np.allclose(marginals[1], [sum(p for (_, b), p in joint.items() if b == v) / total for v in (1, 2, 3)])
    filled = chain.sample(torch.tensor([[1, 0, 0, 3]]).repeat(4000, 1), 1, 3, seed=0)
    assert (filled[:, 0] == 1).all() and (filled[:, 3] == 3).all()  # the given tokens stay
    assert chi_square_pvalue(filled[:, 1:3], joint) > 1e-3
    assert chain.most_frequent() == 1  # 1 occurs 4 times, 2 and 3 three times each


def test_the_right_side_decides_where_the_left_cannot() -> None:
    """2 is only ever followed by 2, so the one position between 1 and 1 must be 1; left to right it is a coin."""
    train = torch.tensor([[1, 2, 2, 2], [1, 1, 2, 2]])
    both = MarkovInfiller(1, [1, 2], alpha=1e-9).fit(train)
    assert both.mode(torch.tensor([[1, 0, 1]]), 1, 2).tolist() == [[1, 1, 1]]
    assert (both.sample(torch.tensor([[1, 0, 1]]).repeat(50, 1), 1, 2, seed=3)[:, 1] == 1).all()
    left = MarkovInfiller(1, [1, 2], alpha=1e-9, both_sides=False).fit(train)
    assert np.allclose(left.marginals(torch.tensor([[1, 0, 1]]), 1, 2)[0, 0], [1 / 3, 2 / 3])  # 1→1 once, 1→2 twice


def test_markov3_infiller_on_a_periodic_sequence() -> None:
    """Order 3 on ACGT repeated: the 3 bases before a gap fix every base in it (ids A=2 .. T=5, as DNA's)."""
    ids = torch.tensor([["ACGT".index(b) + 2 for b in "ACGT" * 10]])
    chain = MarkovInfiller(3, [2, 3, 4, 5], alpha=1e-6).fit(ids)
    window = ids[:, :16]
    gap = window.clone()
    gap[:, 5:11] = 6  # MASK: ignored by the infiller
    assert torch.equal(chain.mode(gap, 5, 11), window)
    assert torch.equal(chain.sample(gap.repeat(5, 1), 5, 11, seed=1), window.repeat(5, 1))
    order1 = MarkovInfiller(1, [2, 3, 4, 5], alpha=1e-6).fit(ids)  # an order-1 chain: the same, from one base
    assert torch.equal(order1.mode(gap, 5, 11), window)
    with pytest.raises(ValueError, match="needs 3 given tokens before it"):
        chain.mode(gap, 2, 8)
    with pytest.raises(ValueError, match="outside the chain's alphabet"):
        chain.mode(torch.tensor([[2, 3, 0, 6, 6, 2]]), 3, 5)


def test_lookup_nearest_and_accuracy_by_hand() -> None:
    eos, pad = 1, 0
    train = torch.tensor([[5, 6, 7, 1, 0], [5, 6, 8, 9, 1], [5, 9, 1, 0, 0]])
    truth = torch.tensor([[5, 6, 9, 1, 0], [7, 7, 1, 0, 0], [5, 8, 1, 0, 0]])
    keep = torch.tensor([2, 1, 1])
    seen = set()
    for seed in range(20):
        filled, found = infill.lookup_fill(truth, keep, train, eos_id=eos, pad_id=pad, seed=seed)
        assert found == 2  # [5, 6] twice in train, [7] nowhere, [5] three times
        assert filled[0].tolist() in (train[0].tolist(), train[1].tolist())
        assert filled[1].tolist() == [7, 1, 0, 0, 0]  # no match: the given prefix alone, then EOS
        assert filled[2, 0] == 5
        seen.add(tuple(filled[0].tolist()))
    assert len(seen) == 2  # the match is drawn at random
    # nearest neighbour on the given positions (the first three): template 0 is closest to train 1, 1 to train 2
    templates = torch.tensor([[5, 6, 8, 3, 3], [5, 9, 2, 3, 3]])
    masked = torch.tensor([False, False, False, True, True])
    assert infill.nearest_fill(templates, masked, train, chunk=2).tolist() == [[5, 6, 8, 9, 1], [5, 9, 2, 0, 0]]
    # accuracy over the generated positions only, every position weighing the same
    tokens, real = torch.tensor([[1, 2, 3], [1, 9, 9]]), torch.tensor([[1, 2, 4], [1, 9, 8]])
    generated = torch.tensor([[False, True, True], [False, False, True]])
    assert infill.span_accuracy(tokens, real, generated) == pytest.approx(1 / 3)
    assert infill.span_accuracy(tokens, real, torch.tensor([False, True, False])) == 1.0
    images = [np.array([[0, 1], [2, 3]]), np.array([[0, 0], [0, 0]])]
    truths = [np.array([[0, 1], [3, 3]]), np.array([[0, 0], [3, 1]])]
    assert infill.level_mae(images, truths, torch.tensor([False, False, True, True])) == pytest.approx(5 / 4)


@requires_qm9
def test_recovery_is_canonical_equality() -> None:
    assert infill.recovery(["OCC", "C1CC1", "C(", ""], ["CCO", "CCC", "CC", "C"]) == 0.25
    assert infill.recovery(["c1ccccc1"], ["C1=CC=CC=C1"]) == 1.0  # Kekulé and aromatic: one molecule
    with pytest.raises(ValueError, match="one sample per held-out molecule"):
        infill.recovery(["C"], ["C", "CC"])


def test_paired_differences_and_task_checks_by_hand() -> None:
    rows = [{"kind": "model", "arm": arm, "label": "T=8", "seed": seed, "validity": v}
            for arm, seed, v in (("control", 0, 0.5), ("selfcond", 0, 0.6), ("control", 1, 0.7),
                                 ("selfcond", 1, 0.6), ("control", 2, 0.9))]  # seed 2 has no pair: left out
    assert infill.paired_differences(rows, "validity", "T=8") == pytest.approx([0.1, -0.1])
    rows[1]["validity"] = float("nan")  # e.g. FCD of fewer than two valid molecules: that pair is left out
    assert infill.paired_differences(rows, "validity", "T=8") == pytest.approx([-0.1])
    assert infill.paired_differences(rows, "validity", "T=16") == []
    curve = [(4.0, 0.40, 1.0), (8.0, 0.50, 2.0)]  # (NFE, validity, seconds) of a baseline
    assert infill.unmatched(curve, 0.62, True) == "never (best 0.500)"
    assert infill.unmatched(curve, 0.30, True) == "≤ 4.0 (already at its smallest)"
    assert infill.unmatched(curve, 0.30, False) == "never (best 0.400)"  # lower is better: never that low
    from argparse import Namespace

    from scmdm.domains.text.tokenizer import CharTokenizer

    args = Namespace(span_fraction=0.25, gap=32)
    assert "characters 48..79" in infill.task_spec("text", 128, CharTokenizer.build(["ab"]), args)
    assert "bases 112..143" in infill.task_spec("dna", 256, None, args)
    with pytest.raises(ValueError, match="at least 3 given bases on each side"):
        infill.task_spec("dna", 37, None, args)
    with pytest.raises(ValueError, match="character-level model"):
        infill.task_spec("text", 128, Namespace(kind="bpe"), args)
    assert list(infill.held_out_rows(3, 5)) == [0, 1, 2]
    picked = infill.held_out_rows(100, 10)
    assert len(set(picked.tolist())) == 10 and list(picked) == sorted(picked)
    assert list(picked) == list(infill.held_out_rows(100, 10))  # the same items every time


def _run(argv: list[str], capsys) -> str:
    assert infill.main(argv) == 0
    return capsys.readouterr().out


@requires_qm9
def test_molecules_end_to_end_with_both_questions(tmp_path, capsys, tiny_data, monkeypatch) -> None:
    """A tiny QM9 base, a verifier, a control and a self-conditioned model: every row of the page, the given tokens
    kept, the speculative NFE only on what is filled, paired differences; --cached-only samples nothing; bad inputs
    stop before any sampling with one clear message."""
    from tests.conftest import train_tiny

    train_tiny(tmp_path / "base", tiny_data)
    base = str(tmp_path / "base")
    for name, extra in (("spec", ["--speculative"]), ("ctl", ["selfcond.injection=none"]),
                        ("sc", ["selfcond.injection=mask_add", "selfcond.rate=1"])):
        assert cli(["posttrain", "--from", base, "--out", str(tmp_path / name), "--no-progress", *extra, *POST]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    argv = ["--domain", "molecule", "--base", base, "--verifier", str(tmp_path / "spec"), "--control",
            str(tmp_path / "ctl"), str(tmp_path / "ctl"), "--selfcond", str(tmp_path / "sc"), str(tmp_path / "sc"),
            "--seeds", "0", "1", "--num-samples", "12", "--T", "2", "8", "--sc-T", "4", "--windows", "2", "4",
            "--batch-size", "8", "--no-docs", "--out", str(out)]
    printed = _run(argv, capsys)
    payload = json.loads((out / "infill_molecule.json").read_text())
    rows = payload["rows"]
    arms = {(r["kind"], r["arm"], r["label"]) for r in rows}
    assert {("model", "ancestral", "T=2"), ("model", "cached", "T=8"), ("model", "speculative", "W=4 cosine from 2"),
            ("model", "control", "T=4"), ("model", "selfcond", "T=4")} <= arms
    assert sum(r["kind"] == "reference" for r in rows) == 1 and sum(r["kind"] == "baseline" for r in rows) == 2
    assert len(rows) == 1 + 2 + 2 * (2 + 2 + 2 + 1 + 1)  # reference, lookup per seed, 8 model rows per seed
    for r in rows:
        assert r["n_items" if r["kind"] != "reference" else "n_samples"] == 12
        if r["kind"] == "model":
            assert 0 < r["masked_per_item"] < 24 and 0 <= r["recovery"] <= 1 and 0 <= r["validity"] <= 1
            if r["arm"] == "speculative":  # at most one trunk pass per position to fill
                assert 1 <= r["nfe"] <= r["masked_per_item"] + 1e-9 and r["nfe_causal"] >= r["nfe"]
            elif r["arm"] != "cached":
                assert r["nfe"] == int(r["label"][2:])
    ancestral = {(r["label"], r["seed"]): r for r in rows if r["arm"] == "ancestral"}
    for r in rows:
        if r["arm"] == "cached":  # the same samples as ancestral, fewer passes
            twin = ancestral[(r["label"], r["seed"])]
            assert r["validity"] == twin["validity"] and r["recovery"] == twin["recovery"] and r["nfe"] <= twin["nfe"]
    for heading in ("### Infilling quality", "### Does self-conditioning help infilling?",
                    "### Does speculative sampling keep its NFE advantage with a template?", "training lookup",
                    "real held-out molecules", "Command: `python -m benchmarks.infill --domain molecule"):
        assert heading in printed, heading
    assert "(2) |" in printed  # a paired difference over the two pairs

    def no_sampling(*args, **kwargs):
        raise AssertionError("--cached-only sampled")

    monkeypatch.setattr(infill, "sample_checkpoint", no_sampling)
    monkeypatch.setattr(infill, "build_task", no_sampling)
    again = _run([*argv, "--cached-only"], capsys)
    assert json.loads((out / "infill_molecule.json").read_text())["rows"] == rows
    assert again.split("### Infilling quality")[1] == printed.split("### Infilling quality")[1]

    def refused(extra: list[str], message: str) -> None:
        with pytest.raises(SystemExit):
            infill.main(["--domain", "molecule", "--base", base, "--no-docs", "--out", str(out), *extra])
        assert message in capsys.readouterr().err, message

    refused(["--verifier", base], "has no causal verifier")
    refused(["--control", base], "give --control and --selfcond together")
    refused(["--control", base, "--selfcond", str(tmp_path / "sc"), "--seeds", "0", "1"],
            "names 1 model(s) for 2 seed(s)")
    refused(["--control", str(tmp_path / "sc"), "--selfcond", str(tmp_path / "sc"), "--seeds", "0"],
            "is self-conditioned")
    refused(["--control", base, "--selfcond", base, "--seeds", "0"], "is not self-conditioned")
    refused(["--verifier", str(tmp_path / "nowhere")], "does not exist")
    refused(["--verifier", str(tmp_path / "spec"), "--windows", "0"], "must be positive")
    with pytest.raises(SystemExit):
        infill.main(["--domain", "dna", "--base", base, "--no-docs", "--out", str(out)])
    assert "is a molecule model, not --domain dna" in capsys.readouterr().err


@requires_genomes
def test_dna_end_to_end(tmp_path, capsys) -> None:
    run = tmp_path / "dna"
    assert cli(["train", "--out", str(run), "--no-progress", "data.domain=dna", "data.max_length=64",
                "data.subset=512", *MODEL]) == 0
    capsys.readouterr()
    printed = _run(["--domain", "dna", "--base", str(run), "--gap", "8", "--num-samples", "16", "--seeds", "0", "1",
                    "--T", "4", "--no-docs", "--out", str(tmp_path / "out")], capsys)
    rows = json.loads((tmp_path / "out" / "infill_dna.json").read_text())["rows"]
    labels = [r["label"] for r in rows if r["kind"] == "baseline"]
    assert labels.count("Markov-3 infiller, sampled (both sides: the 3 bases before and the 3 after the gap)") == 2
    assert labels.count("Markov-3 infiller, posterior mode per base") == 1  # deterministic: one row
    assert all(0 <= r["span_accuracy"] <= 1 for r in rows) and not any(r["kind"] == "reference" for r in rows)
    assert "bases 28..35 (a 8-base gap in the middle)" in printed
    assert "| base, ancestral | T=4 | 2 | 4.00 ± 0.00 |" in printed


@requires_digits
def test_images_end_to_end(tmp_path, capsys) -> None:
    run = tmp_path / "digits"
    assert cli(["train", "--out", str(run), "--no-progress", "data.domain=image", "data.source=digits",
                "image.levels=4", "data.subset=256", *MODEL]) == 0
    capsys.readouterr()
    printed = _run(["--domain", "image", "--base", str(run), "--num-samples", "16", "--seeds", "0", "--T", "4",
                    "--no-docs", "--out", str(tmp_path / "out")], capsys)
    rows = json.loads((tmp_path / "out" / "infill_image.json").read_text())["rows"]
    model = next(r for r in rows if r["kind"] == "model")
    assert model["masked_per_item"] == 32 and 0 <= model["level_mae"] <= 3 and model["fd_cnn"] >= 0
    nearest = next(r for r in rows if r["label"].startswith("nearest"))
    assert 0 <= nearest["span_accuracy"] <= 1 and "rows 4..7 (the lower half) of each 8×8" in printed


def test_text_end_to_end_with_a_stand_in_scorer(tmp_path, capsys, kjv, monkeypatch) -> None:
    """The text rows without loading SmolLM2: a stand-in evaluator (bits/char = the share of 'e'), so the rows are
    checked for what the benchmark itself computes: the real windows' accuracy 1, the bigram's both-sided fill."""
    from tests.conftest import TINY_TEXT

    class Metrics(dict):
        def as_dict(self) -> dict:
            return dict(self)

    class StandIn:
        def evaluate(self, windows):
            chars = "".join(windows)
            return Metrics(scorer_bpc=chars.count("e") / len(chars), entropy_bits=1.0, n_samples=len(windows))

    monkeypatch.setattr(infill, "evaluator_for", lambda *args, **kwargs: StandIn())
    run = tmp_path / "kjv"
    assert cli(["train", "--out", str(run), "--no-progress", *TINY_TEXT]) == 0
    capsys.readouterr()
    printed = _run(["--domain", "text", "--base", str(run), "--num-samples", "10", "--seeds", "0", "--T", "4",
                    "--no-docs", "--out", str(tmp_path / "out")], capsys)
    rows = json.loads((tmp_path / "out" / "infill_text.json").read_text())["rows"]
    real = next(r for r in rows if r["kind"] == "reference")
    assert real["span_accuracy"] == 1.0
    bigram = next(r for r in rows if r["label"].startswith("bigram"))
    assert 0 < bigram["span_accuracy"] < 1
    assert "characters 12..19 (the middle 25%) of each 32-character" in printed and "− real window" in printed

