"""The sampling hot paths give bit-identical samples to the plain formulas they replace: the ancestral chain with the
reveal probabilities computed once on the host, and a compiled network. (In-place Gumbel noise:
tests/test_categorical.py; one SUBS pass for a self-conditioned model's draw and hint: tests/test_denoiser.py.)"""

from __future__ import annotations

import pytest
import torch

from scmdm.denoiser import Denoiser
from scmdm.sampling import ancestral_sample
from scmdm.sampling.steps import reveal_probabilities
from scmdm.schedules import NoiseSchedule, get_schedule
from tests.conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")

VOCAB, LENGTH = 9, 12
MASK = VOCAB - 1
HEAD_SCALE = 5.0  # predictions far from uniform


def plain_ancestral(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, steps: int,
                    generator: torch.Generator) -> torch.Tensor:
    """The ancestral chain as first written: the reveal probability read off the device at every step."""
    x = torch.full((batch_size, LENGTH), MASK, dtype=torch.long)
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    hint = None
    for k in range(steps):
        t, s = grid[k], grid[k + 1]
        log_p, hint = denoiser(x, t.float().expand(batch_size), hint)
        masked = x == MASK
        reveal_p = float(schedule.unmask_probability(t, s))
        u = torch.rand((batch_size, LENGTH), dtype=torch.float64, generator=generator)
        u_gumbel = torch.rand(log_p.shape, dtype=torch.float64, generator=generator)
        draw = (log_p.double() + -torch.log(-torch.log(u_gumbel))).argmax(dim=-1)
        x = torch.where(masked & (u < reveal_p), draw, x)
    return x


@pytest.mark.parametrize("schedule_name", ["loglinear", "cosine", "linear"])
@pytest.mark.parametrize("injection", ["none", "mask_add"])
def test_ancestral_sampler_is_bit_identical_to_the_plain_chain(schedule_name: str, injection: str) -> None:
    model = tiny_model(VOCAB, LENGTH, head_scale=HEAD_SCALE, self_conditioning=injection)
    schedule = get_schedule(schedule_name)
    fast, nfe = ancestral_sample(Denoiser(model, MASK), schedule, batch_size=32, length=LENGTH, steps=10,
                                 generator=torch.Generator().manual_seed(5))
    plain = plain_ancestral(Denoiser(model, MASK), schedule, batch_size=32, steps=10,
                            generator=torch.Generator().manual_seed(5))
    assert torch.equal(fast, plain) and nfe == 10
    grid = torch.linspace(1.0, 0.0, 11, dtype=torch.float64)
    assert reveal_probabilities(schedule, 10) == [float(schedule.unmask_probability(grid[k], grid[k + 1]))
                                                  for k in range(10)]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own use of torch.jit internals
def test_compiled_forward_samples_like_the_eager_one() -> None:
    """``compile_network`` changes only floating-point rounding: on a tiny model the samples match the eager
    ones (a rounding flip of a near-tie could change a token, hence the 95 %), at the same NFE."""
    from scmdm.sampling import generate

    model = tiny_model(VOCAB, LENGTH, head_scale=HEAD_SCALE)
    kwargs = dict(mask_id=MASK, num_samples=16, length=LENGTH, steps=6, batch_size=16, show_progress=False)
    eager = generate(model, get_schedule("loglinear"), **kwargs)
    compiled = generate(model, get_schedule("loglinear"), compile_network=True, **kwargs)
    assert (compiled.tokens == eager.tokens).float().mean() >= 0.95
    assert compiled.nfe == eager.nfe == 6 and not (compiled.tokens == MASK).any()
