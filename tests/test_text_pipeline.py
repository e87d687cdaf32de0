"""The text domain end to end: the SmolLM2 scorer (by hand, and ordering real text ahead of n-gram samples), a tiny
text model trained, sampled and evaluated through the CLI, and self-conditioned and speculative post-training on
text through the same code path as molecules."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scmdm.checkpoint import load_checkpoint
from scmdm.cli import main
from scmdm.config import load_config
from scmdm.domains.text.data import parse_text_samples
from scmdm.workflows import evaluator_for

from .conftest import TINY_TEXT


@pytest.fixture(scope="module")
def text_run(kjv, tmp_path_factory):
    """A 1-layer char model trained 6 steps on 512 real 32-character KJV windows, through the CLI."""
    run = tmp_path_factory.mktemp("text") / "run"
    assert main(["train", "--domain", "text", "--out", str(run), "--no-progress", *TINY_TEXT[1:]]) == 0
    return run


def test_train_and_sample_text_through_the_cli(text_run, tmp_path, capsys) -> None:
    loaded = load_checkpoint(text_run)
    assert loaded.config.data.domain == "text" and loaded.tokenizer.kind == "char"
    assert loaded.split_info["titles"]["test"] == ["Job", "Acts"]
    out = tmp_path / "samples.txt"
    assert main(["sample", str(text_run), "--domain", "text", "--out", str(out), "--no-progress",
                 "sample.num_samples=6", "sample.steps=8"]) == 0
    samples = parse_text_samples(out.read_text())
    assert len(samples) == 6 and all(0 < len(s) <= 32 for s in samples)
    capsys.readouterr()
    assert main(["sample", str(text_run), "--no-progress", "sample.num_samples=3", "sample.steps=4"]) == 0
    assert len(parse_text_samples(capsys.readouterr().out)) == 3
    assert main(["sample", str(text_run), "--domain", "molecule"]) == 2
    assert "is a text model" in capsys.readouterr().err


def test_self_conditioning_and_speculative_post_training_on_text(text_run, tmp_path) -> None:
    """The same Trainer, loss and samplers as for molecules: nothing here is text-specific."""
    post = ["train.steps=2", "train.eval_every=0", "train.save_every=0", "train.batch_size=32",
            "train.val_sequences=32", "train.val_num_t=2", "train.warmup_steps=1"]
    sc = tmp_path / "sc"
    assert main(["posttrain", "--from", str(text_run), "--out", str(sc), "--no-progress", *post]) == 0
    loaded = load_checkpoint(sc)
    assert loaded.config.selfcond.injection != "none" and loaded.model.self_conditioned
    assert loaded.state["val_nelbo_sc_bits"] > 0 and loaded.tokenizer == load_checkpoint(text_run).tokenizer
    spec = tmp_path / "spec"
    assert main(["posttrain", "--from", str(text_run), "--out", str(spec), "--speculative", "--no-progress",
                 *post]) == 0
    out = tmp_path / "spec.txt"
    assert main(["sample", str(spec), "--out", str(out), "--no-progress", "sample.sampler=speculative",
                 "sample.window=4", "sample.num_samples=4"]) == 0
    assert len(parse_text_samples(out.read_text())) == 4
    out_sc = tmp_path / "sc.txt"
    assert main(["sample", str(sc), "--out", str(out_sc), "--no-progress", "sample.num_samples=4",
                 "sample.steps=6"]) == 0
    assert len(parse_text_samples(out_sc.read_text())) == 4


@pytest.mark.slow
def test_scorer_nll_matches_one_text_at_a_time(text_scorer) -> None:
    """Batched, padded scoring equals scoring each text alone with log-softmax written out."""
    texts = ["In the beginning God created the heaven and the earth.", "Amen.", "And God said, Let there be light"]
    batched = text_scorer.score(texts, batch_size=3)
    for text, tokens, nll in zip(texts, batched.tokens, batched.nll, strict=True):
        ids = torch.tensor([[text_scorer.boundary_id, *text_scorer.token_ids([text])[0]]])
        with torch.inference_mode():
            logp = torch.log_softmax(text_scorer.model(input_ids=ids).logits[0, :-1].double(), dim=-1)
        expected = -logp.gather(1, ids[0, 1:, None]).sum().item()
        assert tokens == ids.shape[1] - 1 and nll == pytest.approx(expected, rel=1e-4)
    assert batched.perplexity == pytest.approx(math.exp(sum(batched.nll) / sum(batched.tokens)))


@pytest.mark.slow
def test_real_text_scores_far_better_than_ngram_samples(kjv, text_scorer) -> None:
    evaluator = evaluator_for(load_config(None, ["data.domain=text", "data.max_length=80"]))
    real = evaluator.reference_row(n=8)
    (_, unigram), (_, bigram) = evaluator.baseline_rows(n=8)
    assert real.n_samples == 8 and real.chars == 80
    assert real.gen_ppl * 5 < unigram.gen_ppl  # measured: ~60 vs ~1000
    assert real.scorer_bpc < bigram.scorer_bpc < unigram.scorer_bpc  # per character the bigram is better text
    assert 0 < real.entropy_bits < math.log2(real.scorer_tokens)


@pytest.mark.slow
def test_eval_through_the_cli_prints_the_reference_beside_the_model(text_run, text_scorer, tmp_path, capsys) -> None:
    metrics = tmp_path / "m.json"
    assert main(["eval", str(text_run), "--no-progress", "--json", str(metrics), "--baselines",
                 "sample.num_samples=6", "sample.steps=8"]) == 0
    table = capsys.readouterr().out
    assert "real held-out text (n=6)" in table and "bigram samples (char tokens" in table and "gen_ppl" in table
    assert "not GPT-2" in table
    data = json.loads(metrics.read_text())
    model, reference = data["model"], data["reference"]
    # a 6-step model writes near-gibberish: worse per character than real text (per scorer token it need not be,
    # and 32-character windows that start mid-word give even real text a perplexity in the thousands)
    assert model["n_samples"] == 6 and model["scorer_bpc"] > reference["scorer_bpc"] > 0
    assert model["nelbo_bpc"] == pytest.approx(load_checkpoint(text_run).state["val_nelbo_bits"])  # 1 char = 1 token
    samples = tmp_path / "s.txt"
    samples.write_text("In the beginning\n%\nGod created\n%\n")
    assert main(["eval", str(text_run), "--samples", str(samples), "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["model"]["n_samples"] == 2


def test_text_ablation_script_samples_caches_and_tabulates(text_run, tmp_path, monkeypatch, capsys) -> None:
    """benchmarks/selfcond_text.py end to end on the tiny model: post-trains each arm, samples and scores every row
    once (a second, --cached-only run reads the same rows back without sampling), tabulates the pair."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import selfcond_text

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
