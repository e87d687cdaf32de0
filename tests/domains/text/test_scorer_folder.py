"""``eval.scorer=PATH``: any local Hugging Face causal-LM folder scores text samples (a tiny GPT-2 built here — no
download); a missing or wrong folder is one clear error."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")


def tiny_gpt2(folder: Path) -> Path:
    """A 1-layer GPT-2 with a byte-level BPE tokenizer whose boundary token is <|endoftext|>, saved like a Hub model."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["In the beginning God created the heaven and the earth."] * 20, vocab_size=300,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=1, n_head=2))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_local_causal_lm_folder_scores_text(tmp_path) -> None:
    from scmdm.domains.text.scorer import load_scorer, scorer_name

    folder = tiny_gpt2(tmp_path / "tiny-gpt2")
    scorer = load_scorer("cpu", str(folder))
    assert scorer.boundary_id == scorer.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    scored = scorer.score(["In the beginning", "the earth"])
    assert all(math.isfinite(x) and x > 0 for x in scored.nll) and scored.tokens[0] > 0
    # the NLL is the model's own: the first token given only the boundary token
    ids = scorer.token_ids(["the earth"])[0]
    inputs = torch.tensor([[scorer.boundary_id, *ids[:-1]]])
    with torch.no_grad():
        log_p = torch.log_softmax(scorer.model(input_ids=inputs).logits[0].double(), dim=-1)
    by_hand = -float(sum(log_p[j, ids[j]] for j in range(len(ids))))
    assert scored.nll[1] == pytest.approx(by_hand, rel=1e-5)
    assert "tiny-gpt2" in scorer_name(str(folder)) and scorer.name == scorer_name(str(folder))


def test_eval_scorer_reaches_the_table_and_bad_folders_are_one_line(tmp_path, capsys, kjv) -> None:
    from scmdm.cli import main
    from tests.conftest import TINY_TEXT

    folder = tiny_gpt2(tmp_path / "tiny-gpt2")
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--no-progress", *TINY_TEXT]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--no-progress", "sample.num_samples=4", "sample.steps=4",
                 f"eval.scorer={folder}"]) == 0
    out = capsys.readouterr().out
    assert "tiny-gpt2 (local causal LM" in out and "SmolLM2" not in out
    for bad, message in ((tmp_path / "nowhere", "no such folder"), (tmp_path, "not a Hugging Face model folder"),
                         (run, "cannot load a causal language model")):  # a run folder has a config.json of its own
        assert main(["eval", str(run), "--no-progress", "sample.num_samples=2", f"eval.scorer={bad}"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
