"""Conditional generation: every sampler keeps a template's given tokens and fills only its MASK positions; the
speculative sampler, whose σ puts the given positions first, still draws exactly from its target chain."""

from __future__ import annotations

import pytest
import torch

from scmdm.denoiser import Denoiser
from scmdm.sampling import SAMPLER_NAMES, generate, speculative_sample
from scmdm.schedules import get_schedule
from tests.conftest import chi_square_pvalue, tiny_model

VOCAB, LENGTH = 7, 12
MASK = VOCAB - 1


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
@pytest.mark.parametrize("self_conditioning", ["none", "mask_add"])
def test_given_positions_never_change(sampler: str, self_conditioning: str) -> None:
    if sampler == "cached" and self_conditioning != "none":
        pytest.skip("the cached sampler refuses self-conditioned models")
    model = tiny_model(VOCAB, LENGTH, head_scale=5.0, self_conditioning=self_conditioning,
                       causal_layers=1 if sampler == "speculative" else 0,
                       random_verifier=sampler == "speculative")
    generator = torch.Generator().manual_seed(0)
    templates = torch.full((9, LENGTH), MASK)
    templates[:, :3] = torch.tensor([1, 2, 3])  # a prefix
    templates[3:6, 5:8] = torch.randint(0, MASK, (3, 3), generator=generator)  # and a fixed middle for some rows
    templates[6:, 1:11] = torch.randint(0, MASK, (3, 10), generator=generator)  # few gaps: 2 of 12 masked
    out = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=9, length=LENGTH, sampler=sampler,
                   steps=8, batch_size=4, seed=1, show_progress=False, template=templates, window=3,
                   block_size=5, threshold=0.8, remask="cap", eta=0.5)
    given = templates != MASK
    assert torch.equal(out.tokens[given], templates[given]) and (out.tokens != MASK).all(), sampler
    assert out.nfe > 0
    one = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=3, length=LENGTH, sampler=sampler,
                   steps=8, seed=1, show_progress=False, template=templates[0], window=3, block_size=5)
    assert torch.equal(one.tokens[:, :3], torch.tensor([[1, 2, 3]] * 3))  # one template [L] for every sample


def test_fewer_masks_cost_fewer_evaluations() -> None:
    """First-hitting spends one evaluation per masked position; threshold decoding finishes a short gap early."""
    model = tiny_model(VOCAB, LENGTH, head_scale=5.0)
    template = torch.full((LENGTH,), MASK)
    template[:9] = torch.arange(9) % MASK
    for sampler, nfe in (("first_hitting", 3.0),):
        out = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=4, length=LENGTH, sampler=sampler,
                       seed=0, show_progress=False, template=template)
        assert out.nfe == nfe
    full = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=4, length=LENGTH,
                    sampler="threshold", seed=0, show_progress=False)
    gap = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=4, length=LENGTH, sampler="threshold",
                   seed=0, show_progress=False, template=template)
    assert gap.nfe <= 3 and gap.nfe <= full.nfe


def test_bad_templates_are_one_clear_error() -> None:
    model = tiny_model(VOCAB, LENGTH)
    kw = dict(mask_id=MASK, num_samples=2, length=LENGTH, show_progress=False)
    with pytest.raises(ValueError, match="13 positions but the model's canvas has 12"):
        generate(model, get_schedule("loglinear"), template=torch.full((13,), MASK), **kw)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 7\)"):
        generate(model, get_schedule("loglinear"), template=torch.full((LENGTH,), 9), **kw)
    with pytest.raises(ValueError, match="no position to generate"):
        generate(model, get_schedule("loglinear"), template=torch.zeros(LENGTH, dtype=torch.long), **kw)
    with pytest.raises(ValueError, match=r"one per sample \[2, L\]"):
        generate(model, get_schedule("loglinear"), template=torch.full((3, LENGTH), MASK), **kw)


def test_speculative_with_a_template_draws_exactly_from_the_target_chain() -> None:
    """Canvas of 3, position 1 given; one token per trunk pass (W = 1), so each committed token must be an exact draw
    of that round's target q: the law of the output is the mean over the two orders of the masked positions of
    q₁(y at σ(2)) · q₂(y' at σ(3) | y), enumerated with the model's own trunk and verifier, against 60,000 samples."""
    real, length = 3, 3
    mask = real
    model = tiny_model(real + 1, length, head_scale=1.5, causal_layers=1, random_verifier=True)
    denoiser = Denoiser(model, mask)
    given = 2
    exact: dict[tuple[int, ...], float] = {}
    drafts: dict[tuple[int, ...], float] = {}  # the law if every draft were accepted: what a bug would give
    for second, third in ((0, 2), (2, 0)):
        order = torch.tensor([[1, second, third]])
        canvas = torch.tensor([[mask, given, mask]])
        trunk = denoiser.trunk(canvas, torch.ones(1), None, order)
        q1 = denoiser.verify(trunk, torch.tensor([[given, 0, 0]]))[0, 1].double().exp()
        p1 = trunk.log_p[0, 1].double().exp()
        for y in range(real):
            filled = canvas.clone()
            filled[0, second] = y
            trunk2 = denoiser.trunk(filled, torch.ones(1), None, order)
            q2 = denoiser.verify(trunk2, torch.tensor([[given, y, 0]]))[0, 2].double().exp()
            p2 = trunk2.log_p[0, 2].double().exp()
            for y2 in range(real):
                out = filled.clone()
                out[0, third] = y2
                key = tuple(out[0].tolist())
                exact[key] = exact.get(key, 0.0) + 0.5 * float(q1[y] / q1[:real].sum() * q2[y2] / q2[:real].sum())
                drafts[key] = drafts.get(key, 0.0) + 0.5 * float(p1[y] / p1[:real].sum() * p2[y2] / p2[:real].sum())
    assert abs(sum(exact.values()) - 1) < 1e-9 and max(exact.values()) < 0.7
    n = 60_000
    tokens, nfe, _ = speculative_sample(denoiser, batch_size=n, length=length, window=1,
                                        generator=torch.Generator().manual_seed(5),
                                        start=torch.tensor([[mask, given, mask]]).expand(n, -1))
    assert nfe == 2 and (tokens[:, 1] == given).all()
    assert chi_square_pvalue(tokens, exact) > 1e-3
    keys = sorted(exact)
    assert len(keys) == 9 and all(k[1] == given for k in keys)
    # power: accepting every draft would give a law far from the target chain's at this sample size
    sd = {k: (exact[k] * (1 - exact[k]) / n) ** 0.5 for k in keys}
    assert max(abs(drafts[k] - exact[k]) / sd[k] for k in keys) > 20
