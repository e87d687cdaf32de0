"""The sampling hot paths give bit-identical samples to the plain formulas they replace: in-place Gumbel noise,
the reveal probabilities computed once on the host, one SUBS pass for a self-conditioned model's draw and hint."""

from __future__ import annotations

import pytest
import torch

from scmdm.categorical import gumbel_noise, sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.diffusion import subs_log_probs
from scmdm.model import BackboneConfig, Transformer
from scmdm.sampling import ancestral_sample
from scmdm.sampling.steps import reveal_probabilities
from scmdm.schedules import NoiseSchedule, get_schedule
from scmdm.selfcond import carried_hint

pytestmark = pytest.mark.usefixtures("single_thread")

VOCAB, LENGTH = 9, 12
MASK = VOCAB - 1


def tiny_model(**kwargs) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(BackboneConfig(vocab_size=VOCAB, max_length=LENGTH, depth=1, width=16, heads=2, **kwargs))
    with torch.no_grad():
        model.output_layer.linear.weight.mul_(5.0)  # predictions far from uniform
    return model.eval()


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_gumbel_and_categorical_equal_the_plain_formulas(precision: str) -> None:
    dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
    u = torch.rand((64, 5, VOCAB), dtype=dtype, generator=torch.Generator().manual_seed(3))
    plain = -torch.log(-torch.log(u))
    fast = gumbel_noise((64, 5, VOCAB), precision=precision, generator=torch.Generator().manual_seed(3))
    assert torch.equal(fast, plain)
    log_p = torch.log_softmax(torch.randn(64, 5, VOCAB), dim=-1)
    draws = sample_categorical(log_p, precision=precision, generator=torch.Generator().manual_seed(3))
    assert torch.equal(draws, (log_p.to(dtype) + plain).argmax(dim=-1))


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
    model = tiny_model(self_conditioning=injection)
    schedule = get_schedule(schedule_name)
    fast, nfe = ancestral_sample(Denoiser(model, MASK), schedule, batch_size=32, length=LENGTH, steps=10,
                                 generator=torch.Generator().manual_seed(5))
    plain = plain_ancestral(Denoiser(model, MASK), schedule, batch_size=32, steps=10,
                            generator=torch.Generator().manual_seed(5))
    assert torch.equal(fast, plain) and nfe == 10
    grid = torch.linspace(1.0, 0.0, 11, dtype=torch.float64)
    assert reveal_probabilities(schedule, 10) == [float(schedule.unmask_probability(grid[k], grid[k + 1]))
                                                  for k in range(10)]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("carry", ["distribution", "token"])
def test_self_conditioned_draw_and_hint_equal_separate_computations(temperature: float, carry: str) -> None:
    model = tiny_model(self_conditioning="mask_add")
    x = torch.full((4, LENGTH), MASK)
    x[:, :3] = torch.tensor([1, 2, 3])
    denoiser = Denoiser(model, MASK, temperature=temperature, top_p=0.9, carry=carry,
                        generator=torch.Generator().manual_seed(1))
    log_p, hint = denoiser(x, torch.ones(4))
    with torch.no_grad():
        logits = model(x, torch.ones(4))
    expected_hint = carried_hint(subs_log_probs(logits, x, MASK), carry, generator=torch.Generator().manual_seed(1))
    assert torch.equal(hint, expected_hint)
    assert torch.equal(log_p, denoiser._log_probs(logits, x))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own use of torch.jit internals
def test_compiled_forward_samples_like_the_eager_one() -> None:
    """``compile_network`` changes only floating-point rounding: on a tiny model the samples match the eager
    ones (a rounding flip of a near-tie could change a token, hence the 95 %), at the same NFE."""
    from scmdm.sampling import generate

    model = tiny_model()
    kwargs = dict(mask_id=MASK, num_samples=16, length=LENGTH, steps=6, batch_size=16, show_progress=False)
    eager = generate(model, get_schedule("loglinear"), **kwargs)
    compiled = generate(model, get_schedule("loglinear"), compile_network=True, **kwargs)
    assert (compiled.tokens == eager.tokens).float().mean() >= 0.95
    assert compiled.nfe == eager.nfe == 6 and not (compiled.tokens == MASK).any()
