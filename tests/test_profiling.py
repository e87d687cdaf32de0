"""NetworkTimer: the time outside the network is a fraction in (0, 1), every network call is counted once (the
counts are the samplers' NFE), and the profiler's reading of the same run agrees."""

from __future__ import annotations

import pytest
import torch

from scmdm.profiling import NetworkTimer, profile_outside
from scmdm.sampling import generate
from scmdm.schedules import get_schedule
from tests.conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")

VOCAB, LENGTH, BATCH = 12, 16, 8
MASK = VOCAB - 1


#: two blocks of width 32
SIZES = dict(depth=2, width=32)


@pytest.mark.parametrize("sampler", ["ancestral", "cached", "topk"])
def test_forward_calls_are_the_nfe(sampler: str) -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES)
    steps = 12
    with NetworkTimer(model) as timer:
        result = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=BATCH, length=LENGTH,
                          sampler=sampler, steps=steps, batch_size=BATCH, show_progress=False)
    assert set(timer.calls) == {"forward"}  # the head inside forward is not counted again
    assert timer.calls["forward"] == result.forward_passes
    assert timer.rows["forward"] == round(result.nfe * BATCH)
    if sampler == "ancestral":
        assert timer.calls["forward"] == steps
    assert 0.0 < timer.fraction_outside(result.seconds) < 1.0
    assert 0.0 < timer.seconds < result.seconds


def test_speculative_trunk_and_verifier_passes_are_counted_apart() -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES, causal_layers=1, random_verifier=True)  # drafts get rejected
    with NetworkTimer(model) as timer:
        result = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=BATCH, length=LENGTH,
                          sampler="speculative", window=4, batch_size=BATCH, show_progress=False)
    assert timer.rows["encode"] == round(result.nfe * BATCH)  # trunk passes
    assert timer.rows["head"] == timer.rows["encode"]  # the draft head after each trunk pass
    assert timer.rows["verify"] == round(result.nfe_causal * BATCH)
    assert "forward" not in timer.calls
    assert 1 < result.nfe < LENGTH  # some drafts were accepted, some rejected
    assert 0.0 < timer.fraction_outside(result.seconds) < 1.0


def test_timer_restores_the_model_and_nested_calls_count_once() -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES)
    x = torch.full((2, LENGTH), MASK)
    with NetworkTimer(model) as timer:
        assert "forward" in vars(model)
        model(x)  # forward → encode → head: one call
        model.encode(x)
    assert dict(timer.calls) == {"forward": 1, "encode": 1}
    assert dict(timer.rows) == {"forward": 2, "encode": 2}
    assert not {"forward", "encode", "verify"} & set(vars(model)) and "forward" not in vars(model.output_layer)
    with pytest.raises(ValueError, match="wall_seconds"):
        timer.fraction_outside(0.0)


def test_profiler_reading_agrees_with_the_timer() -> None:
    model = tiny_model(VOCAB, LENGTH, **SIZES)
    with torch.profiler.profile() as prof, NetworkTimer(model) as timer:
        result = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=BATCH, length=LENGTH,
                          steps=8, batch_size=BATCH, show_progress=False)
    reading = profile_outside(prof, top=5)
    assert 0.0 < reading.fraction_outside < 1.0
    # the same run, two clocks: the profiler's ranges against perf_counter around the same calls
    assert abs(reading.network_us / 1e6 - timer.seconds) < 0.1 * timer.seconds
    names = [name for name, _ in reading.outside_ops]
    assert "aten::argmax" in names or "aten::log_" in names  # the categorical draws run outside the network
    assert not any(name in ("aten::addmm", "aten::mm", "aten::bmm") for name in names)  # no matmul outside
    assert timer.fraction_outside(result.seconds) > 0
