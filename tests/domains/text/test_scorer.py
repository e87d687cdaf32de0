"""Tests of scmdm.domains.text.scorer: SmolLM2's batched, padded scoring equals scoring one text at a time."""

from __future__ import annotations

import math

import pytest
import torch


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
