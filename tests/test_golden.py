"""Before/after check of the redesign: the code must train and sample exactly as the code that wrote
``tests/fixtures/golden`` (commit 5f3a7d5, before the modules were split) — for a base model, a self-conditioned
one, a speculative one and a self-conditioned speculative one, on real QM9 molecules.

Each kind is trained as the fixture's README says; its validation metrics and EMA weights must equal the recorded
ones, and every sampler it supports, run on the recorded weights, must draw the recorded samples token for token.

Metrics are compared to 1e-6 (relative) and weights to 2e-5 (absolute; 1e-5 relative) so that another CPU's
floating-point kernels do not fail the test: on a machine with other kernels (AVX-512) the metrics agree to 6e-8
and the weights to 4e-6, the post-trained ones differing most because Adam rescales near-zero gradients. A change of
the order of random draws, of a loss or of the optimiser moves weights by the order of the learning rate (1e-3).
Samples are drawn from the recorded weights, not the re-trained ones, because the top-k sampler's order among
near-tied confidences follows the last bit of the weights; on identical weights every sampler must be exact, and a
change of a sampler or of its random draws changes most tokens (another seed agrees on 8-57 % of them)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scmdm.checkpoint import load_checkpoint
from scmdm.config import load_config
from scmdm.domains import prepare_data
from scmdm.sampling import generate
from scmdm.schedules import get_schedule
from scmdm.training import Trainer

from .conftest import TINY, requires_qm9

GOLDEN = Path(__file__).parent / "fixtures" / "golden"

#: kind -> (overrides, the kind it is post-trained from)
KINDS = {
    "base": ([*TINY, "model.dropout=0.0", "train.steps=8"], None),
    "selfcond": ([*TINY, "model.dropout=0.0", "train.steps=6", "selfcond.injection=projection", "selfcond.rate=0.5",
                  "selfcond.hint_dropout=0.2", "selfcond.hint_noise=0.5", "train.seed=1"], "base"),
    "speculative": ([*TINY, "model.dropout=0.0", "train.steps=6", "speculative.causal_layers=1",
                     "speculative.freeze_trunk=true", "train.seed=1", "train.lr=3e-3"], "base"),
    "selfcond_speculative": ([*TINY, "model.dropout=0.0", "train.steps=6", "selfcond.injection=projection",
                              "speculative.causal_layers=1", "speculative.head=separate", "train.seed=2"], "selfcond"),
}
SAMPLERS = {
    "base": [("ancestral", {}), ("cached", {}), ("topk", {})],
    "selfcond": [("ancestral", {}), ("topk", {})],
    "speculative": [("speculative", {"window": 4, "window_schedule": "cosine", "min_window": 2}), ("ancestral", {})],
    "selfcond_speculative": [("speculative", {"window": 3, "verify_loops": 1})],
}
METRICS = ("val_nelbo_bits", "val_nelbo_sc_bits", "val_target_bits")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread) -> dict:
    """Every kind trained once (in the order of KINDS: a kind's parent comes first)."""
    work = tmp_path_factory.mktemp("golden")
    data = None
    results = {}
    for kind, (overrides, parent) in KINDS.items():
        config = load_config(None, overrides)
        data = data or prepare_data(config)
        results[kind] = Trainer(config, work / kind, data=data, show_progress=False,
                                init_from=work / parent if parent else None).fit()
        results[kind].config = config
    return results


@requires_qm9
@pytest.mark.parametrize("kind", list(KINDS))
def test_training_and_sampling_match_the_code_before_the_redesign(trained, kind: str) -> None:
    expected = json.loads((GOLDEN / "golden.json").read_text())[kind]
    tensors = load_file(str(GOLDEN / "golden.safetensors"))
    result = trained[kind]
    assert result.step == expected["step"]
    for key in METRICS:
        got = result.validation.get(key)
        assert (got is None) == (expected[key] is None), key
        if got is not None:
            assert got == pytest.approx(expected[key], rel=1e-6, abs=0), key
    loaded = load_checkpoint(result.run_dir)
    weights = loaded.model.state_dict()
    prefix = f"{kind}/weights/"
    assert set(weights) == {k[len(prefix):] for k in tensors if k.startswith(prefix)}
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, tensors[prefix + name], rtol=1e-5, atol=2e-5, msg=name)
    loaded.model.load_state_dict({name: tensors[prefix + name] for name in weights})
    for sampler, extra in SAMPLERS[kind]:
        out = generate(loaded.model, get_schedule("loglinear"), mask_id=loaded.tokenizer.mask_id, num_samples=24,
                       length=result.config.data.max_length, sampler=sampler, steps=12, batch_size=10,
                       temperature=0.9, top_p=0.95, seed=3, show_progress=False, carry=result.config.selfcond.carry,
                       **extra)
        assert torch.equal(out.tokens, tensors[f"{kind}/samples/{sampler}"]), sampler
        assert out.nfe == expected[f"nfe_{sampler}"] and out.nfe_causal == expected[f"nfe_causal_{sampler}"]
