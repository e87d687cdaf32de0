"""Self-speculative sampling (scmdm.sampling.speculative): the window schedule by hand, a zeroed verifier accepts
every draft (c), the exactness of one speculative round against exact enumeration (b), the sampler loop reveals a
prefix of σ each round, and a self-conditioned trunk gets its previous draft at no extra cost."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scmdm.denoiser import Denoiser
from scmdm.sampling import generate
from scmdm.sampling.speculative import speculative_sample, verify_window, window_size
from scmdm.schedules import get_schedule
from scmdm.tracks import gather_tracks
from tests.conftest import tiny_model

pytestmark = pytest.mark.usefixtures("single_thread")

REAL, L = 3, 4  # 3 real tokens + MASK, a canvas of 4: a window of 3 has 27 outcomes
MASK = REAL
#: the verifier models here: one causal layer, the output head scaled so that drafts are far from uniform
#: (tests/conftest.py: random_verifier=True draws the verifier's output projection, so its target differs from the
#: draft — test (b) checks that the draft's law is far from the target's — and depends on earlier tokens)
VERIFIER = dict(head_scale=3.0, causal_layers=1)


def test_window_schedules_by_hand() -> None:
    n = torch.tensor([0, 6, 12, 18, 22, 24])
    D = 24
    assert window_size(n, D, window=8).tolist() == [8, 8, 8, 6, 2, 0]  # clipped to the D − n positions left
    # linear: 2 + 6·n/24 = 2, 3.5, 5, 6.5, 7.5 → rounded half to even: 2, 4, 5, 6, 8 → clipped: 2, 4, 5, 6, 2
    assert window_size(n, D, window=8, min_window=2, schedule="linear").tolist() == [2, 4, 5, 6, 2, 0]
    # cosine: 2 + 6·(1 − cos(πn/24))/2 = 2, 2.88, 5, 7.12, 7.94 → 2, 3, 5, 7, 8 → clipped: 2, 3, 5, 6, 2
    assert window_size(n, D, window=8, min_window=2, schedule="cosine").tolist() == [2, 3, 5, 6, 2, 0]
    with pytest.raises(ValueError, match="window schedule"):
        window_size(n, D, window=8, schedule="exponential")
    with pytest.raises(ValueError, match="min_window <= window"):
        window_size(n, D, window=2, min_window=3, schedule="linear")


# ---- (c) a zeroed verifier accepts everything -------------------------------------------------------------
@pytest.mark.parametrize("head", ["shared", "separate"])
@pytest.mark.parametrize(("window", "loops"), [(1, 0), (3, 0), (2, 1)])
def test_zero_verifier_accepts_every_draft(head: str, window: int, loops: int) -> None:
    """With the verifier's contribution zero (as a fresh verifier is), q = p exactly, every ratio q/p is 1
    and every round commits its whole window: trunk passes = ⌈L / (W·(1 + loops))⌉."""
    model = tiny_model(REAL + 1, L, **VERIFIER, causal_head=head)
    assert torch.count_nonzero(model.causal.out_proj.weight) == 0
    denoiser = Denoiser(model, MASK)
    batch = 64
    tokens, nfe, nfe_causal = speculative_sample(denoiser, batch_size=batch, length=L, window=window,
                                                 verify_loops=loops, generator=torch.Generator().manual_seed(0))
    assert not (tokens == MASK).any()
    assert nfe == math.ceil(L / (window * (1 + loops)))
    assert nfe_causal == math.ceil(L / window)
    assert denoiser.rows == nfe * batch and denoiser.causal_rows == nfe_causal * batch


# ---- (b) exactness of one round ---------------------------------------------------------------------------
def target_table(denoiser: Denoiser, trunk, prefix: list[int], n: int) -> dict[tuple[int, ...], torch.Tensor]:
    """q_k for every window position k = n..n+2 after every prefix of window tokens: {(y_n..y_{k−1}): q_k}.
    q_k depends only on the tokens before k, so one verifier pass per complete window gives them all."""
    outcomes = list(itertools.product(range(REAL), repeat=3))
    tokens = torch.tensor([[*prefix, *y, *[0] * (L - n - 3)] for y in outcomes])
    log_q = denoiser.verify(trunk.select(torch.zeros(len(outcomes), dtype=torch.long)), tokens).double()
    q = log_q[:, :, :REAL].exp()
    q = q / q.sum(-1, keepdim=True)  # float32 network probabilities, renormalised in float64
    return {y[:j]: q[row, n + j] for row, y in enumerate(outcomes) for j in range(3)}


def exact_round(p: torch.Tensor, q: dict, *, residual: str = "max(0, q - p)") -> dict[tuple[int, ...], float]:
    """Law of the window (y_1, y_2, y_3) after one round by exact enumeration of the speculative rule, the
    positions after the committed ones completed by the target chain. ``p`` [3, V] are the drafts.
    ``residual='q'`` is a plausible bug (redraw a rejected position from q instead of the residual)."""
    law: dict[tuple[int, ...], float] = {}

    def target_chain(prefix: tuple[int, ...], weight: float) -> None:
        if len(prefix) == 3:
            law[prefix] = law.get(prefix, 0.0) + weight
            return
        for v in range(REAL):
            target_chain((*prefix, v), weight * float(q[prefix][v]))

    def speculate(prefix: tuple[int, ...], weight: float) -> None:
        if len(prefix) == 3:
            law[prefix] = law.get(prefix, 0.0) + weight
            return
        pk, qk = p[len(prefix)], q[prefix]
        accept = torch.minimum(torch.ones_like(pk), qk / pk)
        for v in range(REAL):
            speculate((*prefix, v), weight * float(pk[v] * accept[v]))
        reject = 1.0 - float((pk * accept).sum())
        r = (qk - pk).clamp_min(0) if residual == "max(0, q - p)" else qk
        if reject <= 0:
            return
        for v in range(REAL):
            target_chain((*prefix, v), weight * reject * float(r[v] / r.sum()))

    speculate((), 1.0)
    return law


class SharedTrunkDenoiser(Denoiser):
    """The real denoiser for a batch of copies of one canvas: they share one trunk pass, so the verifier's
    output depends only on a row's tokens, and it is evaluated once per distinct token row (at most 27 + 1
    here) instead of N times — the same numbers for a fraction of the work."""

    def verify(self, trunk, tokens: torch.Tensor) -> torch.Tensor:
        assert (trunk.order == trunk.order[:1]).all() and (trunk.x == trunk.x[:1]).all()
        unique, inverse = tokens.unique(dim=0, return_inverse=True)
        return super().verify(trunk.select(torch.zeros(len(unique), dtype=torch.long)), unique)[inverse]


@pytest.mark.parametrize("revealed", [0, 1])
def test_one_round_commits_exact_samples_of_the_target_chain(revealed: int) -> None:
    """One speculative round (window 3) on a tiny model against exact enumeration of the target chain
    ∏_k q_k(y_k | y_<k). The positions of the window the round did not commit are completed by the target
    chain, so a correct rule makes the window's law exactly the target chain's.

    Tolerance. N = 200,000 rounds; each of the 27 cell frequencies f̂ is a binomial proportion with standard
    deviation s = √(f(1 − f)/N) ≤ 0.0011 here. We require |f̂ − f| ≤ 5s in every cell: under a correct sampler
    the chance that one of 27 approximately normal deviations exceeds 5s is ≤ 27 · 5.7e-7 ≈ 1.6e-5 (and the
    seed is fixed, so the test is deterministic). Power: the exact laws of two wrong samplers — accepting every
    draft, and redrawing a rejected position from q instead of max(0, q − p) — differ from the target chain by
    more than 20s in some cell (asserted below), so either bug would fail by a wide margin."""
    model = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True)
    denoiser = SharedTrunkDenoiser(model, MASK)
    order = torch.tensor([[2, 0, 3, 1]])
    x = torch.full((1, L), MASK)
    prefix = [1] * revealed
    if revealed:
        x[0, order[0, 0]] = 1
    trunk = denoiser.trunk(x, torch.ones(1), None, order)
    n = revealed
    q = target_table(denoiser, trunk, prefix, n)
    p = trunk.log_p[0, n:n + 3, :REAL].double().exp()
    p = p / p.sum(-1, keepdim=True)
    exact = {}
    for y in itertools.product(range(REAL), repeat=3):
        exact[y] = math.prod(float(q[y[:j]][y[j]]) for j in range(3))
    assert abs(sum(exact.values()) - 1) < 1e-12
    # the rule, enumerated exactly, is the target chain; the two bugs are not
    spec = exact_round(p, q)
    assert max(abs(spec[y] - exact[y]) for y in exact) < 1e-12

    N = 200_000
    sd = {y: math.sqrt(f * (1 - f) / N) for y, f in exact.items()}
    draft_law = {y: math.prod(float(p[j, y[j]]) for j in range(3)) for y in exact}
    for wrong in (draft_law, exact_round(p, q, residual="q")):
        assert max(abs(wrong[y] - exact[y]) / sd[y] for y in exact) > 20

    gen = torch.Generator().manual_seed(2024)
    batch = trunk.select(torch.zeros(N, dtype=torch.long))
    x_sigma = batch.x.clone()
    start = torch.full((N,), n)
    x_sigma, committed = verify_window(denoiser, batch, x_sigma, start, torch.full((N,), 3), generator=gen)
    assert committed.min() >= 1 and committed.max() <= 3
    assert (x_sigma[:, :n] == 1).all() and (x_sigma[:, n + 3:] == MASK).all()
    assert 0.1 < (committed == 3).float().mean() < 0.9  # both acceptance and rejection are exercised
    for k in range(n, n + 3):  # complete what the round left with the target chain
        todo = k >= n + committed
        log_q = denoiser.verify(batch, torch.where(x_sigma == MASK, 0, x_sigma))
        draw = torch.distributions.Categorical(logits=log_q[:, k].double()).sample()
        x_sigma[:, k] = torch.where(todo, draw, x_sigma[:, k])
    counts: dict[tuple[int, ...], int] = {}
    for row in map(tuple, x_sigma[:, n:n + 3].tolist()):
        counts[row] = counts.get(row, 0) + 1
    for y, f in exact.items():
        assert abs(counts.get(y, 0) / N - f) <= 5 * sd[y], (y, counts.get(y, 0) / N, f)


# ---- the sampler loop -------------------------------------------------------------------------------------
class RecordingDenoiser(Denoiser):
    """The real denoiser, recording the canvas and order of every trunk pass."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    def trunk(self, x_t, t, hint, order):
        self.seen.append((x_t.clone(), order.clone(), None if hint is None else hint.clone()))
        return super().trunk(x_t, t, hint, order)


@pytest.mark.parametrize(("schedule", "loops"), [("constant", 0), ("cosine", 1), ("linear", 0)])
def test_sampler_reveals_a_prefix_of_sigma_each_round(schedule: str, loops: int) -> None:
    length = 10
    model = tiny_model(REAL + 1, length, seed=5, causal_layers=1, random_verifier=True)
    denoiser = RecordingDenoiser(model, MASK)
    batch = 32
    tokens, nfe, nfe_causal = speculative_sample(denoiser, batch_size=batch, length=length, window=4, min_window=2,
                                                 window_schedule=schedule, verify_loops=loops,
                                                 generator=torch.Generator().manual_seed(1))
    assert not (tokens == MASK).any()
    assert denoiser.rows == round(nfe * batch) and denoiser.causal_rows == round(nfe_causal * batch)
    assert nfe <= nfe_causal <= (1 + loops) * nfe and 1 <= nfe <= length
    first_x, first_order, _ = denoiser.seen[0]
    assert (first_x == MASK).all() and first_x.shape[0] == batch
    order = first_order
    for x_t, sub_order, _ in denoiser.seen:  # rows that are done drop out of the batch
        rows = [next(i for i in range(batch) if torch.equal(order[i], o)) for o in sub_order]
        revealed = gather_tracks(x_t, sub_order) != MASK
        n = revealed.sum(1)
        assert (revealed == (torch.arange(length) < n[:, None])).all()  # always a prefix of σ
        assert (n < length).all()
        assert torch.equal(x_t[revealed.gather(1, sub_order.argsort(1))], tokens[rows][x_t != MASK])
    rounds = len(denoiser.seen)
    assert rounds > 1 and len(denoiser.seen[-1][0]) < batch  # sequences finished at different rounds


def test_speculative_sampler_needs_a_verifier() -> None:
    plain = tiny_model(REAL + 1, L)
    with pytest.raises(ValueError, match="posttrain --from RUN --out DIR --speculative"):
        generate(plain, get_schedule("loglinear"), mask_id=MASK, num_samples=2, length=L, sampler="speculative",
                 show_progress=False)
    with pytest.raises(ValueError, match="causal verifier"):
        speculative_sample(Denoiser(plain, MASK), batch_size=2, length=L)


def test_generate_reports_trunk_and_verifier_passes_apart() -> None:
    model = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True)
    result = generate(model, get_schedule("loglinear"), mask_id=MASK, num_samples=50, length=L,
                      sampler="speculative", window=3, verify_loops=1, batch_size=20, show_progress=False)
    assert result.tokens.shape == (50, L) and not (result.tokens == MASK).any()
    assert 1 <= result.nfe <= L and result.nfe <= result.nfe_causal <= 2 * result.nfe


# ---- self-conditioning ------------------------------------------------------------------------------------
def test_self_conditioned_trunk_gets_its_previous_draft_at_no_extra_cost() -> None:
    sc = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True, self_conditioning="mask_add")
    base = tiny_model(REAL + 1, L, **VERIFIER, random_verifier=True, self_conditioning="none")
    assert all(torch.equal(v, sc.state_dict()[k]) for k, v in base.state_dict().items())
    x, order = torch.full((1, L), MASK), torch.tensor([[2, 0, 3, 1]])
    # the hint is the untempered draft in canvas order — what every other sampler carries
    trunk = Denoiser(sc, MASK, temperature=0.5).trunk(x, torch.ones(1), None, order)
    _, hint = Denoiser(sc, MASK)(x, torch.ones(1))
    torch.testing.assert_close(trunk.next_hint, hint)
    results = {}
    for name, model in (("base", base), ("sc", sc)):
        denoiser = RecordingDenoiser(model, MASK)
        tokens, nfe, _ = speculative_sample(denoiser, batch_size=64, length=L, window=2,
                                            generator=torch.Generator().manual_seed(0))
        results[name] = tokens
        assert denoiser.calls == len(denoiser.seen) and denoiser.rows == round(nfe * 64)  # one pass per round
        hints = [h for _, _, h in denoiser.seen]
        assert hints[0] is None  # the null condition at the first trunk pass
        assert all((h is None) == (name == "base") for h in hints[1:])
    assert not torch.equal(results["base"], results["sc"])  # the hint reached the trunk
