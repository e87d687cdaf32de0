"""The self-conditioning benchmarks' own rules: the frontier margin (benchmarks/selfcond_ablation.py), the hint
diagnostics (benchmarks/selfcond_diagnostics.py) and the text ablation's tables (benchmarks/selfcond_text.py), on
cases small enough to check by hand; and the text ablation end to end on a tiny model."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from benchmarks import selfcond_ablation, selfcond_diagnostics
from scmdm.cli import main
from tests.conftest import TINY_TEXT, requires_qm9, train_tiny


def test_frontier_margin_by_hand() -> None:
    control = [(0.6, 0.40), (0.5, 0.50)]  # (novelty, validity) at two temperatures, any order
    assert selfcond_ablation.frontier_margin((0.55, 0.45), control) == pytest.approx(0.0)  # on the line
    assert selfcond_ablation.frontier_margin((0.55, 0.47), control) == pytest.approx(0.02)  # beyond it
    assert selfcond_ablation.frontier_margin((0.60, 0.38), control) == pytest.approx(-0.02)  # an end point
    assert selfcond_ablation.frontier_margin((0.65, 0.50), control) is None  # outside the control's range


def test_seed_margins_use_each_seeds_own_control() -> None:
    def row(novelty: float, validity: float, fcd: float) -> dict:
        return {"novelty": novelty, "validity": validity, "fcd": fcd}

    by_seed = {
        ("control", 0, 64, 0.9): row(0.5, 0.5, 3.0), ("control", 0, 64, 1.0): row(0.6, 0.4, 2.0),
        ("control", 1, 64, 0.9): row(0.5, 0.6, 3.0), ("control", 1, 64, 1.0): row(0.6, 0.5, 2.0),
        ("sc", 0, 64, 1.0): row(0.55, 0.48, 2.2), ("sc", 1, 64, 1.0): row(0.55, 0.58, 2.2),
        ("sc", 2, 64, 1.0): row(0.55, 0.9, 1.0),  # seed 2 has no control curve: left out
    }
    seeds, temps = [0, 1, 2], [0.9, 1.0]
    validity = selfcond_ablation.seed_margins(by_seed, "sc", 64, 1.0, seeds, temps, "novelty", "validity")
    assert validity == pytest.approx([0.03, 0.03])  # 0.48 − 0.45 and 0.58 − 0.55
    # FCD at equal validity: seed 0's control has FCD 2.8 at validity 0.48; seed 1's has FCD 2.8 at 0.58
    fcd = selfcond_ablation.seed_margins(by_seed, "sc", 64, 1.0, seeds, temps, "validity", "fcd")
    assert fcd == pytest.approx([-0.6, -0.6])
    # against another arm's curve: 0.1 lower in validity than seed 0's control, so the margin grows by 0.1
    by_seed |= {("other", 0, 64, 0.9): row(0.5, 0.4, 3.0), ("other", 0, 64, 1.0): row(0.6, 0.3, 2.0)}
    assert selfcond_ablation.seed_margins(by_seed, "sc", 64, 1.0, seeds, temps, "novelty", "validity",
                                          reference="other") == pytest.approx([0.13])


def test_x2_arms_are_measured_against_the_control_of_as_many_steps() -> None:
    arms = ["control", "controlx2", "mask_add@1", "mask_add@0.5x2", "gated@0.5x2+drop0.3"]
    assert [selfcond_ablation.step_matched_control(arm, arms) for arm in arms] == [
        "control", "control", "control", "controlx2", "controlx2"]
    assert selfcond_ablation.step_matched_control("mask_add@0.5x2", ["control", "mask_add@0.5x2"]) == "control"


def test_one_colour_per_arm_in_every_panel(tmp_path) -> None:
    """An arm missing at some T (hint dropout has no T = 16) must not shift the colours of the arms after it:
    every arm is drawn in one colour in all panels of both figures, and no two arms share one."""
    metrics = ("validity", "valid_unique_novel", "novelty", "fcd")
    summary = {}
    for i, arm in enumerate(("mask_add@1+drop0.3", "control", "projection@1")):
        for T in (16, 32, 64):
            if arm.endswith("drop0.3") and T == 16:
                continue
            for tau in (1.0, 0.9):
                summary[(arm, T, tau)] = {k: [0.1 * i + 0.01 * T, 0.1 * i + 0.01 * T + 0.02] for k in metrics}
    arms = ["mask_add@1+drop0.3", "control", "projection@1"]
    drawn = selfcond_ablation.plot(summary, arms, [1.0, 0.9], [16, 32, 64], tmp_path)
    assert sorted(drawn) == sorted(arms)
    assert all(len(colours) == 1 for colours in drawn.values()), drawn
    assert len({next(iter(c)) for c in drawn.values()}) == len(arms)
    assert (tmp_path / "selfcond_vs_T.png").stat().st_size > 0 and (tmp_path / "selfcond_frontier.png").exists()
    assert (tmp_path / "selfcond_frontier_remedies.png").exists()


def test_one_figure_per_injection_where_rates_vary(tmp_path) -> None:
    metrics = ("validity", "valid_unique_novel", "novelty", "fcd")
    arms = ["control", "mask_add@1", "mask_add@0.5", "gated@1"]
    summary = {(arm, T, 1.0): {k: [0.1 * i + 0.01 * T] for k in metrics}
               for i, arm in enumerate(arms) for T in (16, 32)}
    drawn = selfcond_ablation.plot(summary, arms, [1.0], [16, 32], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "selfcond_frontier_gated.png", "selfcond_frontier_mask_add.png", "selfcond_vs_T.png"]
    assert all(len(colours) == 1 for colours in drawn.values()) and len(drawn) == len(arms)


def test_figure_groups_split_the_grid_by_injection_and_from_the_remedies() -> None:
    arms = ["control", "controlx2", "mask_add@1", "mask_add@0.5", "projection@1", "gated@1", "mask_add@1+lagT32",
            "projection@1+noise1"]
    assert selfcond_ablation.figure_groups(arms) == [
        ("_mask_add", ["control", "controlx2", "mask_add@1", "mask_add@0.5"]),
        ("_projection", ["control", "controlx2", "projection@1"]),
        ("_gated", ["control", "controlx2", "gated@1"]),
        ("_remedies", ["control", "controlx2", "mask_add@1", "projection@1", "mask_add@1+lagT32",
                       "projection@1+noise1"])]
    # one rate per injection: the injections side by side in one figure
    assert selfcond_ablation.figure_groups(["control", "mask_add@1", "gated@1"]) == [
        ("", ["control", "mask_add@1", "gated@1"])]
    assert selfcond_ablation.figure_groups(["control", "gated@1", "gated@0.5x2"]) == [
        ("", ["control", "gated@1", "gated@0.5x2"])]


def test_fmt_cells_by_hand() -> None:
    from benchmarks.common import fmt

    assert fmt([0.5, 0.7]) == "0.600 ± 0.141"  # sample std: sqrt(0.02) = 0.1414
    assert fmt([0.25]) == "0.250"
    assert fmt([-0.02, -0.04], sign=True, count=True) == "-0.030 ± 0.014 (2)"
    assert fmt([0.016], sign=True, count=True) == "+0.016 (1)"
    assert fmt([-1e-9], sign=True) == "+0.000"  # not -0.000
    assert fmt([1.0, 1.04], 2, unit="×", count=True) == "1.02× ± 0.03 (2)"


def test_overrides_anywhere_on_a_benchmark_command_line() -> None:
    """An override after a many-valued option is not read as one of its values (it once stopped a run:
    ``--temperatures 1.0 0.9 train.lr=3e-4`` → 'invalid float value')."""
    from benchmarks.common import parse_args

    parser = selfcond_ablation.build_parser()
    args = parse_args(parser, ["model.depth=2", "--temperatures", "1.0", "0.9", "train.lr=3e-4", "--seeds", "1"])
    assert args.temperatures == [1.0, 0.9] and args.seeds == [1]
    assert args.overrides == ["model.depth=2", "train.lr=3e-4"]
    assert parse_args(parser, ["--out", "runs/a=b", "--tag", "x"]).out == "runs/a=b"  # a path is not an override
    with pytest.raises(SystemExit):
        parse_args(parser, ["--temperatures", "warm"])


@pytest.mark.parametrize(("script", "argv", "default"), [
    ("selfcond_domain", ["--domain", "text"], "runs/text_kjv"),
    ("selfcond_ablation", [], "runs/qm9_base"),
    ("speculative", [], "runs/qm9_base"),
])
def test_a_missing_base_is_refused_before_loading(script, argv, default, tmp_path, monkeypatch, capsys) -> None:
    """Every benchmark that post-trains a base says, before loading anything, that the base is missing; for its
    default (a run folder a fresh clone lacks) also the command that writes it and the shipped stand-in."""
    import importlib

    from benchmarks import common

    module = importlib.import_module(f"benchmarks.{script}")
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--base", str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        module.main()
    err = capsys.readouterr().err
    assert f"no base model at {tmp_path / 'missing'}" in err and "it is written by" not in err
    monkeypatch.setattr(module, "ROOT", tmp_path)  # a checkout without runs/: the default is not there
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    with pytest.raises(SystemExit):
        module.main()
    builder, shipped = common.BASE_RUNS[default]
    assert f"no base model at {tmp_path / default}: it is written by `{builder}`; or pass --base {shipped}" in (
        capsys.readouterr().err)


def test_paired_differences_and_same_process() -> None:
    by_seed = {("control", 0, 32, 1.0): {"validity": 0.40}, ("control", 1, 32, 1.0): {"validity": 0.50},
               ("sc", 0, 32, 1.0): {"validity": 0.35}, ("sc", 1, 32, 1.0): {"validity": 0.47},
               ("sc", 2, 32, 1.0): {"validity": 0.90}}  # seed 2 has no control row: left out
    diffs = selfcond_ablation.paired_differences(by_seed, "sc", 32, 1.0, [0, 1, 2], "validity")
    assert diffs == pytest.approx([-0.05, -0.03])
    by_seed[("sc@0.5", 1, 32, 1.0)] = {"validity": 0.44}
    assert selfcond_ablation.paired_differences(by_seed, "sc", 32, 1.0, [0, 1], "validity",
                                                reference="sc@0.5") == pytest.approx([0.03])
    pairs = selfcond_ablation.reference_pairs(["control", "mask_add@1", "projection@1", "mask_add@0.5",
                                               "mask_add@0.5x2", "mask_add@1+lagT32", "gated@1+lagT16",
                                               "projection@1+drop0.3", "mask_add@0.5+noise1", "controlx2"])
    assert pairs == [("mask_add@1", "mask_add@0.5"), ("mask_add@1", "mask_add@0.5x2"),
                     ("mask_add@0.5x2", "mask_add@0.5"), ("mask_add@0.5x2", "controlx2"),
                     ("mask_add@1+lagT32", "mask_add@1"),
                     ("projection@1+drop0.3", "projection@1"), ("mask_add@0.5+noise1", "mask_add@0.5")]
    Arm = selfcond_ablation.Arm
    assert selfcond_ablation.parse_arm("mask_add@0.5x2+lagT16") == Arm("mask_add", 0.5, 2, hint_lag=1 / 16)
    assert selfcond_ablation.parse_arm("gated@1+noise0.5+drop0.25") == Arm("gated", 1.0, hint_dropout=0.25,
                                                                           hint_noise=0.5)
    assert selfcond_ablation.parse_arm("control") == Arm("none", 0.0)
    assert selfcond_ablation.parse_arm("controlx2") == Arm("none", 0.0, 2)
    assert "selfcond.hint_dropout=0.25" in selfcond_ablation.parse_arm("gated@1+drop0.25").overrides()
    for bad in ("mask_add@1+lagT0", "mask_add@1+lagTx", "mask_add", "mask_add@1+lagT2.5", "mask_add@1+drop1",
                "mask_add@1+drop0.1+drop0.2", "mask_add@1+blur2", "mask_add@one", "controlx3"):
        with pytest.raises(SystemExit, match="must be base, control, controlx2 or"):
            selfcond_ablation.parse_arm(bad)
    assert selfcond_ablation.same_process({"process": "a"}, {"process": "a"})
    assert not selfcond_ablation.same_process({"process": "a"}, {"process": "b"})
    assert not selfcond_ablation.same_process({"process": "a"}, {})  # a tagged row against an untagged one
    assert selfcond_ablation.same_process({}, {})  # rows cached before the tag existed


@requires_qm9
def test_post_train_resumes_a_killed_run_exactly(tmp_path, tiny_data) -> None:
    """A post-training run killed between checkpoints continues from its last one (not from the base model)
    and ends with the weights of an uninterrupted run."""
    from safetensors.torch import load_file

    train_tiny(tmp_path / "base", tiny_data)
    overrides = ["train.batch_size=16", "train.val_sequences=32", "train.val_num_t=2", "train.device=cpu"]
    whole = selfcond_ablation.post_train(tmp_path / "base", tmp_path / "a", "mask_add@1", 0, 8, overrides)
    killed = selfcond_ablation.post_train(tmp_path / "base", tmp_path / "b", "mask_add@1", 0, 8, overrides)
    assert sorted(p.name for p in (killed / "checkpoints").glob("step_*")) == ["step_0000006", "step_0000008"]
    shutil.rmtree(killed / "checkpoints" / "step_0000008")  # killed after step 6's checkpoint
    selfcond_ablation.post_train(tmp_path / "base", tmp_path / "b", "mask_add@1", 0, 8, overrides)
    a, b = (load_file(run / "checkpoints" / "step_0000008" / "ema.safetensors") for run in (whole, killed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@requires_qm9
def test_hint_nelbo_matches_the_trainers_validation(tmp_path, tiny_data) -> None:
    """Null hint = the trainer's null-condition NELBO and fresh hint = its two-pass NELBO (same masks);
    a model without self-conditioning gets the null row alone."""
    from scmdm.checkpoint import load_checkpoint
    from scmdm.diffusion import validation_nelbo
    from scmdm.schedules import get_schedule
    from scmdm.selfcond import two_pass_logits

    train_tiny(tmp_path / "sc", tiny_data, ["selfcond.injection=mask_add", "selfcond.rate=1"])
    train_tiny(tmp_path / "plain", tiny_data)
    result = selfcond_diagnostics.hint_nelbo(tmp_path / "sc", num_t=2, max_sequences=48, batch_size=32)
    loaded = load_checkpoint(tmp_path / "sc")
    model, mask_id = loaded.model.eval(), loaded.tokenizer.mask_id
    schedule = get_schedule(loaded.config.diffusion.schedule)
    data = tiny_data.valid[:48]
    kwargs = dict(num_t=2, seed=0, batch_size=32)
    null = validation_nelbo(lambda x, t: model(x, t), data, schedule, mask_id, **kwargs)
    fresh = validation_nelbo(lambda x, t: two_pass_logits(model, x, t, mask_id), data, schedule, mask_id, **kwargs)
    assert result["bits"]["null"] == pytest.approx(null, rel=1e-6)
    assert result["bits"]["fresh"] == pytest.approx(fresh, rel=1e-6)
    assert set(result["bits"]) == set(selfcond_diagnostics.CONDITIONS)
    assert all(v > 0 for v in result["bits"].values())
    for k, per_t in result["bits_by_t"].items():  # the NELBO is the mean of the grid's per-t terms
        assert len(per_t) == 2 and sum(per_t) / 2 == pytest.approx(result["bits"][k], rel=1e-12)
    plain = selfcond_diagnostics.hint_nelbo(tmp_path / "plain", num_t=2, max_sequences=48, batch_size=32)
    assert plain["bits"]["fresh"] is None and plain["bits"]["null"] > 0
    assert plain["bits_by_t"]["fresh"] is None and len(plain["bits_by_t"]["null"]) == 2


@requires_qm9
def test_hint_regimes_of_the_sampling_diagnostic(tmp_path, tiny_data) -> None:
    """chained = the library's sampler (same tokens); null never passes a hint; fresh = the two-pass hint of
    post-training at each step, at twice the network evaluations."""
    from benchmarks import selfcond_hint_sampling as hs
    from scmdm.checkpoint import load_checkpoint
    from scmdm.diffusion import subs_log_probs
    from scmdm.sampling import generate
    from scmdm.schedules import get_schedule
    from scmdm.selfcond import carried_hint

    train_tiny(tmp_path / "sc", tiny_data, ["selfcond.injection=mask_add", "selfcond.rate=1"])
    loaded = load_checkpoint(tmp_path / "sc")
    model, mask_id, length = loaded.model.eval(), loaded.tokenizer.mask_id, loaded.config.data.max_length
    kwargs = dict(steps=4, num_samples=6, temperature=0.9, seed=3, batch_size=4)
    chained, nfe, _ = hs.sample_tokens(loaded, "chained", **kwargs)
    library = generate(model, get_schedule(loaded.config.diffusion.schedule), mask_id=mask_id, num_samples=6,
                       length=length, steps=4, batch_size=4, temperature=0.9, seed=3, show_progress=False)
    assert torch.equal(chained, library.tokens) and nfe == 4
    fresh, nfe_fresh, _ = hs.sample_tokens(loaded, "fresh", **kwargs)
    null, nfe_null, _ = hs.sample_tokens(loaded, "null", **kwargs)
    assert (nfe_fresh, nfe_null) == (8, 4)
    assert not torch.equal(chained, null)  # from step 2 on the chained sampler passes a hint, null does not
    # one step from the all-mask canvas: chained and null are both the null pass (same draws, same tokens)
    one = dict(kwargs, steps=1)
    assert torch.equal(hs.sample_tokens(loaded, "chained", **one)[0], hs.sample_tokens(loaded, "null", **one)[0])
    # the fresh denoiser's output, by hand: the pass conditioned on the null pass's carried SUBS distribution
    x = torch.full((2, length), mask_id)
    x[:, :3] = tiny_data.valid[:2, :3]
    t = torch.full((2,), 0.7)
    with torch.no_grad():
        hint = carried_hint(subs_log_probs(model(x, t), x, mask_id), "distribution")
        expected = subs_log_probs(model(x, t, p_prev=hint), x, mask_id)
    log_p, _ = hs.FreshHintDenoiser(model, mask_id)(x, t)
    assert torch.allclose(log_p, expected, atol=1e-5)


def test_text_ablation_tables_by_hand() -> None:
    """benchmarks/selfcond_text.py (benchmarks/selfcond_domain.py on text): the paired cells are per-seed differences
    and the margin is read against each seed's own control curve (bits/char at equal entropy; negative = beyond the
    control)."""
    from argparse import Namespace
    from types import SimpleNamespace

    from benchmarks.selfcond_domain import SPECS, markdown

    def row(arm: str, seed: int, tau: float, bpc: float, entropy: float) -> dict:
        return {"arm": arm, "seed": seed, "T": 64, "temperature": tau, "scorer_bpc": bpc, "entropy_bits": entropy,
                "gen_ppl": 2 ** bpc, "seconds": 10.0, "val_nelbo_bits": 2.0 + seed,
                "val_nelbo_sc_bits": None if arm == "control" else 1.5}

    rows = [row("control", 0, 0.9, 3.6, 4.8), row("control", 0, 1.0, 4.0, 5.2),
            row("control", 1, 0.9, 3.8, 4.8), row("control", 1, 1.0, 4.2, 5.2),
            row("mask_add@1", 0, 1.0, 3.7, 5.0),   # control 0 at entropy 5.0: 3.8 → margin −0.1
            row("mask_add@1", 1, 1.0, 4.1, 5.0),   # control 1 at entropy 5.0: 4.0 → margin +0.1
            row("mask_add@0.5", 0, 1.0, 3.9, 5.1), row("mask_add@0.5", 1, 1.0, 4.3, 5.1)]
    state = {"step": 10, "val_nelbo_bits": 2.0}
    sc_config = SimpleNamespace(train=SimpleNamespace(lr=1e-4, batch_size=8))
    args = Namespace(temperatures=[0.9, 1.0], T=[64], seeds=[0, 1], arms=["control", "mask_add@0.5", "mask_add@1"],
                     base="runs/text_kjv", steps=4, num_samples=3)
    reference = {"gen_ppl": 3.0, "scorer_bpc": 1.7, "entropy_bits": 4.6}
    text = markdown(SPECS["text"], args, rows, sc_config, {"real held-out text": reference}, "cmd", state,
                    per_token=2.0, figure="selfcond_text_frontier.png")
    assert text.startswith("## Self-conditioned post-training: ablation on text\n\nCommand: `cmd`")
    assert "Real held-out text (3 windows): gen PPL 3.0, 1.700 bits/char, entropy 4.600 bits." in text
    assert "| arm | T | scorer bits/char | gen PPL | entropy | NELBO null | NELBO two-pass | time / control |" in text
    # NELBO columns from the rows, in bits per character: seeds 0 and 1 → (2.0, 3.0) / 2 bits/token per char.
    assert "| control | 64 | 4.100 ± 0.141 (2) | 17.2 ± 1.7 | 5.200 ± 0.000 | 1.2500 ± 0.3536 | – |" in text
    assert "| 0.7500 ± 0.0000 |" in text and "(lr 0.0001, batch 8)" in text
    assert "| mask_add@1 | 64 | 1.0 | -0.200 ± 0.141 | -0.200 ± 0.000 |" in text  # 3.7 − 4.0 and 4.1 − 4.2
    assert "| mask_add@1 − mask_add@0.5 | 64 | 1.0 | -0.200 ± 0.000 |" in text
    assert "| 64 | mask_add@1 | 1.0 | 3.900 ± 0.283 | 5.000 ± 0.000 |" in text
    assert text.count("+0.000 ± 0.141 (2)") == 1  # mask_add@1's margins −0.1 and +0.1
    assert "| T | arm | temperature | scorer bits/char | entropy | gen PPL | margin |" in text
    assert "`margin` = the arm's scorer bits/char minus the control's at the same entropy, interpolated" in text
    assert text.endswith("(selfcond_text_frontier.png)")


@requires_qm9
def test_cached_only_tables_from_a_results_file_without_runs(tmp_path, tiny_data, monkeypatch) -> None:
    """`--cached-only --rows-from FILE` tabulates the rows of an earlier results file when the post-training
    runs are gone (a fresh machine); OUT/rows.jsonl wins over the file where both hold a row, and the NELBO
    columns come from the rows."""
    import argparse
    import json

    from benchmarks.common import append_row
    from scmdm.workflows import post_train_config

    train_tiny(tmp_path / "base", tiny_data)

    def row(arm: str, validity: float, nelbo: float, nelbo_sc: float | None) -> dict:
        return {"arm": arm, "seed": 0, "T": 4, "temperature": 1.0, "num_samples": 10, "validity": validity,
                "uniqueness": 1.0, "novelty": 0.5, "valid_unique_novel": validity / 2, "fcd": 3.0, "seconds": 1.0,
                "val_nelbo_bits": nelbo, "val_nelbo_sc_bits": nelbo_sc}

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"rows": [row("control", 0.4, 0.97, None), row("mask_add@1", 0.3, 1.01, 0.96)]}))
    out = tmp_path / "selfcond"
    out.mkdir()
    append_row(out / "rows.jsonl", row("mask_add@1", 0.35, 1.02, 0.95))  # measured again here: this one wins
    argv = ["selfcond_ablation.py", "--base", str(tmp_path / "base"), "--out", str(out), "--arms", "control",
            "mask_add@1", "--seeds", "0", "--T", "4", "--temperatures", "1.0", "--num-samples", "10",
            "--cached-only", "--no-docs", "--rows-from", str(earlier)]
    monkeypatch.setattr(sys, "argv", argv)
    assert selfcond_ablation.main() == 0
    rows = json.loads((out / "selfcond_ablation.json").read_text())["rows"]
    assert [(r["arm"], r["validity"]) for r in rows] == [("control", 0.4), ("mask_add@1", 0.35)]

    args = argparse.Namespace(arms=["control", "mask_add@1"], seeds=[0], T=[4], temperatures=[1.0], steps=8,
                              num_samples=10, tag="", overrides=[], base=str(selfcond_ablation.ROOT / "runs" / "weak"))
    summary = {(r["arm"], 4, 1.0): {k: [r[k]] for k in (*selfcond_ablation.METRICS, "seconds")} for r in rows}
    text = selfcond_ablation.markdown(args, summary, rows, post_train_config(tmp_path / "base"), "cmd", {})
    assert "| control | 4 | 1 | 0.400 |" in text and "| 0.9700 | – |" in text
    assert "| mask_add@1 | 4 | 1 | 0.350 |" in text and "| 1.0200 | 0.9500 |" in text
    assert "ablation on QM9\n" in text and "(selfcond_vs_T.png)" in text
    assert "Base: `runs/weak` (step" in text  # the base it was given, named from the repository root
    # A tagged variant names its overrides and its own plots.
    args.tag, args.overrides = "lr3e-4", ["train.lr=3e-4"]
    text = selfcond_ablation.markdown(args, summary, rows, post_train_config(tmp_path / "base", args.overrides),
                                      "cmd", {})
    assert "ablation on QM9 — variant lr3e-4 (train.lr=3e-4)" in text and "(lr 0.0003," in text
    assert "(selfcond_vs_T_lr3e-4.png)" in text and "(selfcond_frontier_lr3e-4.png)" in text
    monkeypatch.setattr(sys, "argv", [*argv, "--tag", "lr 3e-4"])
    with pytest.raises(SystemExit, match="use letters, digits"):
        selfcond_ablation.main()
    monkeypatch.setattr(sys, "argv", [*argv[:-2], "--arms", "projection@1"])
    with pytest.raises(SystemExit, match="no rows for arms"):
        selfcond_ablation.main()


@pytest.fixture(scope="module")
def text_run(kjv, tmp_path_factory):
    """A 1-layer char model trained 6 steps on 512 real 32-character KJV windows, through the CLI."""
    run = tmp_path_factory.mktemp("text") / "run"
    assert main(["train", "--domain", "text", "--out", str(run), "--no-progress", *TINY_TEXT[1:]]) == 0
    return run


def test_text_ablation_script_samples_caches_and_tabulates(text_run, tmp_path, monkeypatch, capsys) -> None:
    """benchmarks/selfcond_text.py end to end on the tiny model: post-trains each arm, samples and scores every row
    once (a second, --cached-only run reads the same rows back without sampling), tabulates the pair."""
    from benchmarks import selfcond_text

    out = tmp_path / "ablation"
    argv = ["selfcond_text.py", "--base", str(text_run), "--out", str(out), "--arms", "control", "mask_add@1",
            "--seeds", "0", "--steps", "2", "--T", "4", "--temperatures", "1.0", "--num-samples", "4", "--no-docs",
            "train.batch_size=16", "train.val_sequences=16", "train.val_num_t=2", "train.warmup_steps=1"]
    monkeypatch.setattr(sys, "argv", argv)
    assert selfcond_text.main() == 0
    first = json.loads((out / "selfcond_text.json").read_text())["rows"]
    assert [(r["arm"], r["T"], r["temperature"]) for r in first] == [("control", 4, 1.0), ("mask_add@1", 4, 1.0)]
    assert all(r["scorer_bpc"] > 0 and r["val_nelbo_bits"] > 0 for r in first)
    assert first[0]["val_nelbo_sc_bits"] is None and first[1]["val_nelbo_sc_bits"] > 0
    assert "| mask_add@1 | 4 | 1.0 |" in capsys.readouterr().out  # its paired row against the control
    cached_lines = (out / "rows.jsonl").read_text().splitlines()
    monkeypatch.setattr(sys, "argv", [*argv, "--cached-only"])
    assert selfcond_text.main() == 0
    assert json.loads((out / "selfcond_text.json").read_text())["rows"] == first
    assert (out / "rows.jsonl").read_text().splitlines() == cached_lines  # nothing sampled again
    # Without the post-training runs (a fresh machine keeps the base and the row cache): the same tables.
    import shutil
    for arm in ("control", "mask_add@1"):
        shutil.rmtree(out / arm)
    table = capsys.readouterr().out
    assert selfcond_text.main() == 0
    assert json.loads((out / "selfcond_text.json").read_text())["rows"] == first
    assert capsys.readouterr().out == table
