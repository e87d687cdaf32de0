"""Self-speculative masked diffusion: the σ-order helpers and window schedule by hand, the verifier's
causality (a), the exactness of one speculative round against exact enumeration (b), a zeroed verifier
accepts every draft (c), the joint loss by hand, frozen-trunk post-training, self-conditioning, and the
command line on tiny real QM9 models."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from scmdm.config import ConfigError, load_config
from scmdm.denoiser import Denoiser
from scmdm.diffusion import masked_token_nll, subs_log_probs
from scmdm.model import BackboneConfig, Transformer
from scmdm.objectives.speculative import speculative_loss, trainable_parameters
from scmdm.sampling import generate
from scmdm.sampling.speculative import speculative_sample, verify_window, window_size
from scmdm.schedules import get_schedule
from scmdm.tracks import gather_tracks, mask_after, sample_revealed, scatter_tracks

from .conftest import TINY, requires_qm9

pytestmark = pytest.mark.usefixtures("single_thread")

REAL, L = 3, 4  # 3 real tokens + MASK, a canvas of 4: a window of 3 has 27 outcomes
MASK = REAL


def tiny_model(seed: int = 0, *, head: str = "shared", trained_verifier: bool = True,
               self_conditioning: str = "none") -> Transformer:
    """A real (untrained) transformer with a verifier. The output head is scaled so that drafts are far from
    uniform, and the verifier's zero-initialised output projection is drawn at random so that its target
    differs from the draft (test (b) checks that the draft's law is far from the target's) and depends on earlier
    tokens."""
    torch.manual_seed(seed)
    model = Transformer(BackboneConfig(vocab_size=REAL + 1, max_length=L, depth=1, width=16, heads=2, causal_layers=1,
                                       causal_head=head, self_conditioning=self_conditioning))
    with torch.no_grad():
        model.output_layer.linear.weight.mul_(3.0)
        if head == "separate":
            model.causal.output_layer.load_state_dict(model.output_layer.state_dict())
        if trained_verifier:
            model.causal.out_proj.weight.normal_(0.0, 1.0)
    return model.eval()


# ---- pieces by hand ---------------------------------------------------------------------------------------
def test_sigma_order_helpers_by_hand() -> None:
    order = torch.tensor([[2, 0, 3, 1]])
    x = torch.tensor([[10, 11, 12, 13]])
    assert gather_tracks(x, order).tolist() == [[12, 10, 13, 11]]  # track k holds the token at σ(k+1)
    assert torch.equal(scatter_tracks(gather_tracks(x, order), order), x)
    h = torch.arange(8.0).view(1, 4, 2)
    assert torch.equal(gather_tracks(h, order)[0, 0], h[0, 2])
    # two revealed: σ(1) = 2 and σ(2) = 0 keep their tokens, σ(3..4) = 3, 1 are masked
    assert mask_after(x, order, torch.tensor([2]), 99).tolist() == [[10, 99, 12, 99]]
    assert mask_after(x, order, torch.tensor([0]), 99).tolist() == [[99] * 4]
    i = sample_revealed(8, 4, generator=torch.Generator().manual_seed(0))  # stratified: two per value
    assert sorted(i.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


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


def test_a_model_without_verifier_is_unchanged() -> None:
    """No causal block: no new parameters, and the trunk's initial weights are those a verifier model draws
    first (the verifier is built last), so the draft of a verifier model is the plain model's output."""
    torch.manual_seed(3)
    plain = Transformer(BackboneConfig(vocab_size=REAL + 1, max_length=L, depth=2, width=16, heads=2)).eval()
    assert plain.causal is None and not plain.speculative
    torch.manual_seed(3)
    spec = Transformer(BackboneConfig(vocab_size=REAL + 1, max_length=L, depth=2, width=16, heads=2,
                                      causal_layers=1)).eval()
    trunk = {k: v for k, v in spec.state_dict().items() if not k.startswith("causal.")}
    assert trunk.keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in trunk.items())
    x = torch.tensor([[MASK, 1, MASK, 0]])
    assert torch.equal(spec(x), plain(x))
    with pytest.raises(ValueError, match="no causal verifier"):
        plain.verify(torch.zeros(1, L, 16), None, torch.arange(L)[None], x)


# ---- (a) causality ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["shared", "separate"])
def test_target_at_sigma_d_ignores_the_draft_there_and_later(head: str) -> None:
    model = tiny_model(head=head)
    gen = torch.Generator().manual_seed(0)
    order = torch.stack([torch.randperm(L, generator=gen) for _ in range(6)])
    x = torch.full((6, L), MASK)
    h, cond = model.encode(x)
    h_sigma = gather_tracks(h, order)
    tokens = torch.randint(0, REAL, (6, L), generator=gen)
    with torch.no_grad():
        q = model.verify(h_sigma, cond, order, tokens)
        for d in range(L):
            changed = tokens.clone()
            changed[:, d:] = (changed[:, d:] + 1 + torch.randint(0, REAL - 1, changed[:, d:].shape,
                                                                 generator=gen)) % REAL
            assert (changed[:, d:] != tokens[:, d:]).all()
            q_changed = model.verify(h_sigma, cond, order, changed)
            torch.testing.assert_close(q_changed[:, :d + 1], q[:, :d + 1], rtol=0, atol=1e-5)
            if d + 1 < L:  # not vacuous: the target at σ(d+2) does see the token at σ(d+1)
                assert (q_changed[:, d + 1] - q[:, d + 1]).abs().max() > 1e-2


# ---- (c) a zeroed verifier accepts everything -------------------------------------------------------------
@pytest.mark.parametrize("head", ["shared", "separate"])
@pytest.mark.parametrize(("window", "loops"), [(1, 0), (3, 0), (2, 1)])
def test_zero_verifier_accepts_every_draft(head: str, window: int, loops: int) -> None:
    """With the verifier's contribution zero (as a fresh verifier is), q = p exactly, every ratio q/p is 1
    and every round commits its whole window: trunk passes = ⌈L / (W·(1 + loops))⌉."""
    model = tiny_model(head=head, trained_verifier=False)
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
    model = tiny_model()
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
    torch.manual_seed(5)
    length = 10
    model = Transformer(BackboneConfig(vocab_size=REAL + 1, max_length=length, depth=1, width=16, heads=2,
                                       causal_layers=1)).eval()
    with torch.no_grad():
        model.causal.out_proj.weight.normal_(0.0, 1.0)
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
    torch.manual_seed(0)
    plain = Transformer(BackboneConfig(vocab_size=REAL + 1, max_length=L, depth=1, width=16, heads=2)).eval()
    with pytest.raises(ValueError, match="posttrain --from RUN --out DIR --speculative"):
        generate(plain, get_schedule("loglinear"), mask_id=MASK, num_samples=2, length=L, sampler="speculative",
                 show_progress=False)
    with pytest.raises(ValueError, match="causal verifier"):
        speculative_sample(Denoiser(plain, MASK), batch_size=2, length=L)


def test_generate_reports_trunk_and_verifier_passes_apart() -> None:
    result = generate(tiny_model(), get_schedule("loglinear"), mask_id=MASK, num_samples=50, length=L,
                      sampler="speculative", window=3, verify_loops=1, batch_size=20, show_progress=False)
    assert result.tokens.shape == (50, L) and not (result.tokens == MASK).any()
    assert 1 <= result.nfe <= L and result.nfe <= result.nfe_causal <= 2 * result.nfe


# ---- self-conditioning ------------------------------------------------------------------------------------
def test_self_conditioned_trunk_gets_its_previous_draft_at_no_extra_cost() -> None:
    sc = tiny_model(self_conditioning="mask_add")
    base = tiny_model(self_conditioning="none")
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


# ---- the loss ---------------------------------------------------------------------------------------------
def test_joint_loss_by_hand_and_frozen_trunk_gradients() -> None:
    model = tiny_model()
    model.train()
    x0 = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    order = torch.tensor([[2, 0, 3, 1], [0, 1, 2, 3]])
    revealed = torch.tensor([1, 3])
    out = speculative_loss(model, x0, MASK, order=order, revealed=revealed)
    x_t = torch.tensor([[MASK, MASK, 2, MASK], [2, 2, 1, MASK]])
    with torch.no_grad():
        draft = masked_token_nll(model(x_t), x0, x_t, MASK)  # the MDM's own prediction at the masked positions
        h, cond = model.encode(x_t)
        log_q = subs_log_probs(model.verify(gather_tracks(h, order), cond, order, gather_tracks(x0, order)),
                               gather_tracks(x_t, order), MASK)
    # row 0: masked block σ(2..4) = positions 0, 3, 1 (tracks 1, 2, 3); row 1: σ(4) = position 3 (track 3)
    target = torch.stack([-(log_q[0, 1, 0] + log_q[0, 2, 0] + log_q[0, 3, 1]), -log_q[1, 3, 0]])
    expected = ((4 / 3) * (draft[0] + target[0]) + (4 / 1) * (draft[1] + target[1])) / 2 / 4
    torch.testing.assert_close(out.loss.detach(), expected)
    torch.testing.assert_close(out.draft + out.target, expected)

    def grads(freeze: bool) -> dict[str, bool]:
        model.zero_grad(set_to_none=True)
        speculative_loss(model, x0, MASK, order=order, revealed=revealed, freeze_trunk=freeze).loss.backward()
        return {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}

    free = grads(False)
    assert free["blocks.0.attn_qkv.weight"] and free["causal.blocks.0.attn_qkv.weight"]
    params = trainable_parameters(model)  # what the trainer optimises with a frozen trunk: the verifier only
    assert {id(p) for p in params} == {id(p) for n, p in model.named_parameters() if n.startswith("causal.")}
    frozen = grads(True)  # the trunk runs without gradient; the shared head passes gradient but does not move
    assert {name for name, g in frozen.items() if g} == {name for name in frozen if name.startswith("causal.")}


def test_a_fresh_verifier_costs_nothing_in_the_loss() -> None:
    """Zero-initialised verifier: q = p, so the target term equals the draft term."""
    model = tiny_model(trained_verifier=False)
    x0 = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    out = speculative_loss(model, x0, MASK, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.draft, out.target)


# ---- configuration ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("speculative.causal_layers=-1", "speculative.causal_layers must be >= 0, got -1"),
    ("speculative.head=tied", "speculative.head must be one of shared, separate, got 'tied'"),
    ("speculative.freeze_trunk=true", "speculative.freeze_trunk needs a verifier to train"),
    ("sample.window=0", "sample.window and sample.min_window must be positive"),
    ("sample.window_schedule=exp", "sample.window_schedule must be one of constant, linear, cosine"),
    ("sample.verify_loops=-2", "sample.verify_loops must be >= 0"),
])
def test_bad_speculative_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [override])


def test_min_window_above_window_is_named() -> None:
    with pytest.raises(ConfigError, match="must not exceed sample.window"):
        load_config(None, ["sample.window=2", "sample.min_window=3", "sample.window_schedule=cosine"])


# ---- training and the command line on tiny QM9 models -----------------------------------------------------
def _train(path, data, extra: list[str], **kwargs):
    from scmdm.training import Trainer

    return Trainer(load_config(None, [*TINY, *extra]), path, data=data, show_progress=False, **kwargs).fit()


@requires_qm9
def test_train_from_scratch_with_the_joint_loss(tmp_path, tiny_data, capsys) -> None:
    from scmdm.checkpoint import load_checkpoint
    from scmdm.cli import main

    result = _train(tmp_path / "spec", tiny_data, ["speculative.causal_layers=1", "speculative.head=separate"])
    assert result.validation.get("val_target_bits") is not None
    rows = [json.loads(line) for line in (tmp_path / "spec" / "metrics.jsonl").read_text().splitlines()]
    assert {"draft_bits", "target_bits"} <= set(rows[0]) and "val_draft_bits" in rows[-1]
    loaded = load_checkpoint(tmp_path / "spec")
    assert loaded.model.speculative and loaded.model.causal.output_layer is not None
    assert main(["sample", str(tmp_path / "spec"), "--no-progress", "sample.num_samples=8",
                 "sample.sampler=speculative", "sample.window=4", "sample.window_schedule=cosine"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8


@requires_qm9
def test_posttrain_speculative_freezes_the_trunk(tmp_path, tiny_data, capsys) -> None:
    from scmdm.checkpoint import load_checkpoint, read_weights
    from scmdm.cli import main

    _train(tmp_path / "base", tiny_data, [])
    base = load_checkpoint(tmp_path / "base")
    assert main(["sample", str(tmp_path / "base"), "--no-progress", "sample.num_samples=2",
                 "sample.sampler=speculative"]) == 2
    assert "--speculative" in capsys.readouterr().err  # says how to get a verifier
    assert main(["posttrain", "--from", str(tmp_path / "base"), "--out", str(tmp_path / "spec"), "--speculative",
                 "--no-progress", "train.steps=3", "train.eval_every=0", "train.save_every=0",
                 "train.val_sequences=64"]) == 0
    assert "validation NLL of the verifier's target" in capsys.readouterr().out
    spec = load_checkpoint(tmp_path / "spec")
    assert spec.config.speculative.freeze_trunk and spec.config.speculative.causal_layers == 1
    assert spec.config.train.lr == 1e-3 and spec.config.model.width == 32  # configs/speculative.yaml on the base
    raw = read_weights(spec.path / "model.safetensors")
    for name, value in base.model.state_dict().items():  # the trunk did not move (raw and EMA weights)
        assert torch.equal(raw[name], value) and torch.equal(spec.model.state_dict()[name], value), name
    assert not torch.equal(raw["causal.out_proj.weight"], torch.zeros_like(raw["causal.out_proj.weight"]))
    assert spec.state["val_nelbo_bits"] == pytest.approx(base.state["val_nelbo_bits"])  # same draft model
    json_out = tmp_path / "m.json"
    assert main(["eval", str(tmp_path / "spec"), "--no-progress", "sample.num_samples=20",
                 "sample.sampler=speculative", "sample.window=3", "--json", str(json_out)]) == 0
    metrics = json.loads(json_out.read_text())["model"]
    assert metrics["nfe"] <= tiny_data.train.shape[1] and metrics["nfe_causal"] >= metrics["nfe"]
    assert "speculative W=3" in capsys.readouterr().out


def test_state_norm_makes_the_verifier_blind_to_the_scale_of_trunk_states() -> None:
    """u_k reads LN(h): scaling the trunk states by 50 (a prenorm residual stream has norm ~200) leaves the
    verifier's contribution unchanged, so the track tokens are not drowned; without the norm it changes."""
    torch.manual_seed(0)
    h, order = torch.randn(2, L, 16), torch.stack([torch.randperm(L) for _ in range(2)])
    tokens = torch.randint(0, REAL, (2, L))
    for norm in (True, False):
        model = tiny_model()
        if not norm:
            model.causal.state_norm = None
        c = model.causal(h, None, order, tokens, model.rotary)
        c_scaled = model.causal(50.0 * h, None, order, tokens, model.rotary)
        assert torch.allclose(c, c_scaled, atol=1e-4) == norm


@requires_qm9
def test_a_verifier_saved_before_state_norm_loads_without_it(tmp_path, tiny_data) -> None:
    """A verifier checkpoint whose config.json has neither speculative.state_norm nor key_positions (written
    before the options) loads with state_norm=false and key_positions=predicted: the model it was trained as,
    its weights fit, its outputs unchanged."""
    from scmdm.checkpoint import load_checkpoint, read_weights
    from scmdm.workflows import post_train_config

    result = _train(tmp_path / "spec", tiny_data, ["speculative.causal_layers=1", "speculative.state_norm=false",
                                                   "speculative.key_positions=predicted"])
    before = load_checkpoint(result.checkpoint).model
    config_file = result.checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    assert config["speculative"].pop("state_norm") is False
    assert config["speculative"].pop("key_positions") == "predicted"
    config_file.write_text(json.dumps(config))
    loaded = load_checkpoint(result.checkpoint)
    assert loaded.config.speculative.state_norm is False and loaded.model.causal.state_norm is None
    assert loaded.model.causal.key_positions == "predicted"
    assert not any(".state_norm." in k for k in read_weights(result.checkpoint / "model.safetensors"))
    h, order = torch.randn(2, 24, 32), torch.stack([torch.randperm(24) for _ in range(2)])
    tokens = torch.randint(0, 10, (2, 24))
    with torch.no_grad():
        assert torch.equal(loaded.model.causal(h, None, order, tokens, loaded.model.rotary),
                           before.causal(h, None, order, tokens, before.rotary))
    fresh = load_checkpoint(_train(tmp_path / "new", tiny_data, ["speculative.causal_layers=1"]).checkpoint)
    assert fresh.model.causal.state_norm is not None and fresh.model.causal.key_positions == "token"  # defaults
    base = _train(tmp_path / "base", tiny_data, [])  # no verifier, config written before the options existed
    config_file = base.checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    del config["speculative"]["state_norm"], config["speculative"]["key_positions"]
    config_file.write_text(json.dumps(config))
    new_verifier = post_train_config(base.checkpoint, [], "speculative").speculative
    assert new_verifier.state_norm and new_verifier.key_positions == "token"  # a new verifier gets both


def test_verifier_keys_sit_at_the_track_token_position() -> None:
    """key_positions=token: track k's key is rotated by σ(k), where its token sits (σ(1) for the start track),
    its query by σ(k+1); so the attention score of key j for query k depends on σ(k+1) − σ(j)."""
    from scmdm.model.layers import Block, RotaryEmbedding, apply_rotary
    from scmdm.model.verifier import CausalVerifier

    order = torch.tensor([[2, 0, 3, 1]])  # σ = (2, 0, 3, 1)
    assert CausalVerifier.key_order(order).tolist() == [[2, 2, 0, 3]]
    torch.manual_seed(0)
    config = BackboneConfig(vocab_size=5, max_length=4, depth=1, width=8, heads=1)
    block, rotary = Block(config), RotaryEmbedding(8, 4)
    x = torch.randn(1, 4, 8)
    queries, keys = rotary(order, 4), rotary(CausalVerifier.key_order(order), 4)
    q, k, v = block.attn_qkv(x).chunk(3, dim=-1)
    q, k = apply_rotary(q, *(t[:, 0] for t in queries)), apply_rotary(k, *(t[:, 0] for t in keys))
    scores = (q @ k.transpose(1, 2)) / math.sqrt(8) + torch.full((4, 4), -math.inf).triu(1)
    expected = block.attn_out(scores.softmax(-1) @ v)
    with torch.no_grad():
        assert torch.allclose(block.attention(x, queries, None, True, keys), expected, atol=1e-6)
        assert not torch.allclose(block.attention(x, queries, None, True), expected, atol=1e-3)  # σ(k+1) keys differ
    # relative: the score of (query at position a, key at position b) is the same for (a + 1, b + 1)
    vector_q, vector_k = torch.randn(8), torch.randn(8)
    def score(a: int, b: int) -> torch.Tensor:
        qa = apply_rotary(vector_q, rotary.cos[a], rotary.sin[a])
        return qa @ apply_rotary(vector_k, rotary.cos[b], rotary.sin[b])
    assert torch.allclose(score(3, 1), score(2, 0), atol=1e-5) and not torch.allclose(score(3, 1), score(3, 0))
    model = tiny_model()  # the option reaches the verifier's blocks: the two layouts give different outputs
    h, tokens = torch.randn(1, L, 16), torch.randint(0, REAL, (1, L))
    order = torch.randperm(L)[None]
    with torch.no_grad():
        token_keys = model.causal(h, None, order, tokens, model.rotary)
        model.causal.key_positions = "predicted"
        assert not torch.allclose(model.causal(h, None, order, tokens, model.rotary), token_keys, atol=1e-4)


@requires_qm9
def test_checkpoints_written_before_still_load(tmp_path, tiny_data) -> None:
    """A config.json without the speculative section and sample fields (as written before) loads as before."""
    from scmdm.checkpoint import load_checkpoint

    result = _train(tmp_path / "old", tiny_data, [])
    config_file = result.checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    del config["speculative"]
    for key in ("window", "min_window", "window_schedule", "verify_loops"):
        del config["sample"][key]
    config_file.write_text(json.dumps(config))
    loaded = load_checkpoint(result.checkpoint)
    assert not loaded.model.speculative and loaded.config.speculative.causal_layers == 0


@requires_qm9
def test_speculative_posttraining_of_a_self_conditioned_model(tmp_path, tiny_data) -> None:
    from scmdm.checkpoint import load_checkpoint
    from scmdm.training import Trainer
    from scmdm.workflows import post_train_config

    _train(tmp_path / "sc", tiny_data, ["selfcond.injection=mask_add"])
    config = post_train_config(tmp_path / "sc", ["train.steps=2", "train.eval_every=0", "train.val_sequences=32"],
                               "speculative")
    assert config.selfcond.injection == "mask_add" and config.selfcond.rate == 1.0
    result = Trainer(config, tmp_path / "spec", data=tiny_data, show_progress=False, init_from=tmp_path / "sc").fit()
    assert {"val_target_bits", "val_nelbo_sc_bits"} <= set(result.validation)
    loaded = load_checkpoint(tmp_path / "spec")
    assert loaded.model.self_conditioned and loaded.model.speculative
    out = generate(loaded.model, get_schedule("loglinear"), mask_id=loaded.tokenizer.mask_id, num_samples=8,
                   length=loaded.config.data.max_length, sampler="speculative", window=4, show_progress=False)
    assert not (out.tokens == loaded.tokenizer.mask_id).any()


@requires_qm9
def test_benchmark_never_extends_a_cached_verifier(tmp_path, tiny_data) -> None:
    """benchmarks/speculative.py reuses a finished verifier run and refuses one trained for another number of
    steps (its rows may be cached): it once silently extended a 400-step verifier to 1,000 steps when a trial
    left out --post-train-steps."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speculative.py"
    spec = importlib.util.spec_from_file_location("speculative_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    _train(tmp_path / "base", tiny_data, [])
    overrides = ["train.steps=2", "train.eval_every=0", "train.save_every=0", "train.val_sequences=64",
                 "train.log_every=1", "train.warmup_steps=1"]
    run = benchmark.post_train(tmp_path / "base", tmp_path / "spec", "speculative", overrides)
    state = next((run / "checkpoints").glob("step_*/state.json"))
    assert json.loads(state.read_text())["step"] == 2
    written = state.stat().st_mtime_ns
    assert benchmark.post_train(tmp_path / "base", run, "speculative", overrides) == run  # done: reused
    assert state.stat().st_mtime_ns == written and len(list((run / "checkpoints").glob("step_*"))) == 1
    with pytest.raises(SystemExit, match="post-training of 2 steps"):
        benchmark.post_train(tmp_path / "base", run, "speculative", [*overrides, "train.steps=5"])
    assert len(list((run / "checkpoints").glob("step_*"))) == 1  # nothing was trained
