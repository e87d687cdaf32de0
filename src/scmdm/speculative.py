"""Self-speculative masked diffusion (arXiv 2510.03929): a causal verifier on the shared trunk, its loss,
the window schedule and the exact speculative sampler.

Notation. A canvas of D positions; a generation order σ, a permutation of the positions held as
``order`` [B, D] with ``order[:, k]`` = σ(k+1) (0-based k); the revealed positions are always a prefix
σ(1..n) of it. h = the trunk's hidden states of the canvas (revealed tokens, MASK elsewhere), ``head`` =
an output layer. Everything the verifier reads or writes is in σ order ("tracks").

Architecture (``CausalVerifier``, the optional submodule ``causal`` of the one ``backbone.Transformer``,
built when ``speculative.causal_layers`` > 0). Track k = 0..D−1 predicts the token at σ(k+1):

    u₀ = s + P_cur[start] + P_next[σ(1)] + B·LN(h_σ(1))                              (the learned start track)
    u_k = E_c[x_σ(k)] + A·LN(h_σ(k)) + P_cur[σ(k)] + P_next[σ(k+1)] + B·LN(h_σ(k+1))  k ≥ 1
    y = CausalBlocks(u)        the trunk's block kind, attention causal over tracks; rotary angles: σ(k+1)
                               for queries, σ(k) for keys (σ(1) for the start track), so the score of track j
                               for query k is a function of σ(k+1) − σ(j): where j's token sits relative to
                               the position predicted (``speculative.key_positions=token``; ``predicted``
                               rotates keys by σ(j+1) as well, the layout of verifiers saved before it)
    c_k = W_o·LN(y_k)          W_o, b_o zero-initialised: a fresh verifier adds nothing
    target q at σ(k+1):  head(h_σ(k+1) + c_k)         (the "output residual" of the trunk state)
    draft  p at σ(k+1):  head(h_σ(k+1))               (the MDM's own factorized prediction)

Scale matters (``speculative.state_norm``, on by default): the trunk's residual stream has norm ~200–400 in a
prenorm trunk, against ~0.3 for a token embedding drawn with std 0.02, so raw states A·h drown the tokens of
the tracks. A verifier trained that way (QM9, 1,000 steps) never read its tracks: shuffling their tokens did
not change q, and it beat the draft only on an all-masked canvas (benchmarks/verifier_diagnostics.py,
docs/SPECULATIVE.md). With state_norm the states enter as LN(h), A and B start with std 0.02 and E with
std 1, so a fresh verifier's input is led by the tokens (‖E·x‖ ≈ √width against ‖A·LN(h)‖ ≈ 0.02·width).

x_σ(k) is the real token while training, the revealed token or the draft while sampling. Track k sees the
tokens at σ(1..k) only, so **q at σ(d) depends neither on the token at σ(d) nor on any later one** — the
property that makes verification exact. ``head`` is the trunk's output layer (``speculative.head=shared``)
or the verifier's own (``separate``; copied from the trunk's when post-training starts).

Loss (``speculative_loss``). Draw σ uniformly and i ~ U{0..D−1} (stratified across the batch), reveal
σ(1..i), mask the rest; one trunk pass, one verifier pass with the real tokens (teacher forcing):

    L = D/(D − i) · [ Σ_{d>i} −log p(x_σ(d) | x_σ(≤i))  +  Σ_{d>i} −log q(x_σ(d) | x_σ(≤i), x_σ(i+1..d−1)) ]

reported per canvas token (÷ D). The first sum alone is an unbiased estimate of the MDM's NELBO in its
any-order form; the second trains the verifier. With ``speculative.freeze_trunk`` the trunk (embeddings,
blocks and a shared head) runs without gradient and in eval mode, and only the verifier learns
(post-training a model ``scmdm train`` wrote: ``scmdm posttrain --speculative``).

Sampler (``speculative_sample``). All sequences draw their own σ. Per round, for a sequence with n revealed:
  1. one trunk pass on the canvas → the draft p_k for every k > n;
  2. window W = W(n) (``window_size``); drafts x̂_k ~ p_k independently for k = n+1..n+W;
  3. one verifier pass on (revealed tokens, then drafts) → q_k for the window (q_k sees x̂_{<k} only);
  4. in σ order accept x̂_k with probability min(1, q_k(x̂_k)/p_k(x̂_k)); at the first rejection draw that
     position from normalize(max(0, q_k − p_k)) and stop: between 1 and W tokens are committed;
  5. ``verify_loops`` times more: steps 2–4 with fresh drafts, on the cached trunk states (no trunk pass).
Exactness (Leviathan et al. 2023; Chen et al. 2023): for one position,
    P(commit v) = p(v)·min(1, q(v)/p(v)) + (1 − Σ_w min(p(w), q(w))) · max(0, q(v) − p(v)) / Σ_w max(0, q(w) − p(w))
                = min(p(v), q(v)) + max(0, q(v) − p(v)) = q(v),        since 1 − Σ min(p, q) = Σ max(0, q − p);
and q_k depends only on x̂_{<k}, which are committed whenever position k is reached, so the committed tokens
are exact draws of the target chain x_σ(k) ~ q_k(· | x_σ(<k)) defined by the round's trunk pass.

Window schedule, n revealed of D, W_max = ``window``, W_min = ``min_window`` (rounded half to even,
clipped to [1, D − n]):   constant  W = W_max;   linear  W = W_min + (W_max − W_min)·n/D;
                          cosine  W = W_min + (W_max − W_min)·(1 − cos(π n/D))/2.

NFE. Per sequence, the sampler counts trunk passes (``nfe``, comparable to the other samplers' NFE) and
verifier passes (``nfe_causal``: each costs about causal_layers/depth of a trunk pass) separately.

Self-conditioning. A self-conditioned trunk gets p_prev = its own draft from its previous trunk pass (the
null condition at the first); verifier passes leave it alone — no extra forward pass. Training a verifier
on such a trunk runs the trunk as at sampling time: pass 1 null (no gradient) → hint, pass 2 with the hint.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from scmdm.backbone import Block, Embedding, LayerNorm, OutputLayer, RotaryEmbedding
from scmdm.diffusion import LossOutput, masked_token_nll

if typing.TYPE_CHECKING:
    from tqdm.auto import tqdm

    from scmdm.backbone import BackboneConfig
    from scmdm.sampling import Denoiser

__all__ = ["WINDOW_SCHEDULES", "HEADS", "NO_VERIFIER", "CausalVerifier", "gather_tracks", "scatter_tracks",
           "sample_orders", "sample_revealed", "mask_after", "SpeculativeLoss", "speculative_loss",
           "validation_speculative", "trainable_parameters", "set_train_mode", "copy_head_into_verifier",
           "window_size", "verify_window", "speculative_sample"]

WINDOW_SCHEDULES = ("constant", "linear", "cosine")
HEADS = ("shared", "separate")
NO_VERIFIER = ("the speculative sampler needs a model with a causal verifier layer (speculative.causal_layers > 0): "
               "post-train one with `scmdm posttrain --from RUN --out DIR --speculative`, or train one with "
               "speculative.causal_layers=1")

HintFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]


# ---- σ order ---------------------------------------------------------------------------------------------
def gather_tracks(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Canvas order → σ order: ``out[:, k] = values[:, order[:, k]]`` for values [B, D, ...]."""
    index = order.view(*order.shape, *([1] * (values.dim() - 2))).expand(*order.shape, *values.shape[2:])
    return values.gather(1, index)


def scatter_tracks(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """σ order → canvas order (the inverse of ``gather_tracks``)."""
    index = order.view(*order.shape, *([1] * (values.dim() - 2))).expand(*order.shape, *values.shape[2:])
    return torch.empty_like(values).scatter_(1, index, values)


def sample_orders(batch: int, length: int, *, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """One uniformly random permutation of 0..length−1 per row, [B, D] long."""
    return torch.rand((batch, length), generator=generator, device=device).argsort(dim=1)


def sample_revealed(batch: int, length: int, *, antithetic: bool = True, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Revealed counts i ∈ {0..D−1}, uniform; stratified across the batch like ``diffusion.sample_times``."""
    if antithetic:
        u = torch.rand(1, generator=generator, device=device)
        frac = (u + torch.arange(batch, device=device) / batch) % 1.0
    else:
        frac = torch.rand(batch, generator=generator, device=device)
    return (frac * length).long().clamp_(0, length - 1)


def mask_after(x0: torch.Tensor, order: torch.Tensor, revealed: torch.Tensor, mask_id: int) -> torch.Tensor:
    """x0 with σ(i+1..D) masked (the first ``revealed[b]`` positions of ``order[b]`` kept)."""
    rank = scatter_tracks(torch.arange(x0.shape[1], device=x0.device).expand_as(order), order)
    return torch.where(rank >= revealed[:, None], torch.full_like(x0, mask_id), x0)


# ---- the verifier ----------------------------------------------------------------------------------------
class CausalVerifier(nn.Module):
    """The causal block over σ-ordered tracks; ``forward`` returns the contributions c (module docstring)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        width, length = config.width, config.max_length
        self.token_embedding = Embedding(config.vocab_size, width)
        self.start = nn.Parameter(torch.randn(width) * 0.02)
        self.position_current = nn.Parameter(torch.randn(length + 1, width) * 0.02)  # last row: the start track
        self.position_next = nn.Parameter(torch.randn(length, width) * 0.02)
        self.state_current = nn.Linear(width, width, bias=False)
        self.state_next = nn.Linear(width, width, bias=False)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.causal_layers))
        self.norm = LayerNorm(width)
        self.out_proj = nn.Linear(width, width)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        self.output_layer = OutputLayer(config) if config.causal_head == "separate" else None
        self.key_positions = config.causal_key_positions
        self.state_norm = LayerNorm(width) if config.causal_state_norm else None
        if self.state_norm is not None:  # the tokens of the tracks must not start drowned by the trunk states
            with torch.no_grad():
                self.token_embedding.embedding.normal_(0.0, 1.0)  # ‖E·x‖ ≈ √width
                self.state_current.weight.normal_(0.0, 0.02)  # ‖A·LN(h)‖ ≈ 0.02·width
                self.state_next.weight.normal_(0.0, 0.02)

    @staticmethod
    def key_order(order: torch.Tensor) -> torch.Tensor:
        """The key position of each track (``key_positions=token``): σ(k), where track k's token sits; the start
        track, which holds no token, takes σ(1)."""
        return torch.cat([order[:, :1], order[:, :-1]], dim=1)

    def forward(self, h_sigma: torch.Tensor, cond: torch.Tensor | None, order: torch.Tensor, tokens: torch.Tensor,
                rotary: RotaryEmbedding) -> torch.Tensor:
        """c [B, D, width] in σ order, from the trunk states in σ order ``h_sigma`` [B, D, width], the order
        [B, D] and the tokens in σ order [B, D] (``tokens[:, k]`` is the token at σ(k+1); the last is unused)."""
        batch, length = order.shape
        states = self.state_norm(h_sigma) if self.state_norm is not None else h_sigma
        current = (self.token_embedding(tokens[:, :-1]) + self.state_current(states[:, :-1])
                   + self.position_current[order[:, :-1]])
        start = (self.start + self.position_current[-1]).expand(batch, 1, -1)
        u = torch.cat([start.to(current.dtype), current], dim=1) + self.position_next[order] + self.state_next(states)
        angles = rotary(order, length)  # queries: the position each track predicts, σ(k+1)
        key_angles = None if self.key_positions == "predicted" else rotary(self.key_order(order), length)
        for block in self.blocks:
            u = block(u, cond, angles, is_causal=True, key_rotary=key_angles)
        return self.out_proj(self.norm(u))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Freeze the trunk (every parameter outside ``model.causal``); returns the verifier's parameters."""
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("causal."))
        if param.requires_grad:
            params.append(param)
    return params


def set_train_mode(model: nn.Module, freeze_trunk: bool) -> None:
    """``model.train()``; with a frozen trunk everything but the verifier stays in eval mode (no dropout), so
    the verifier learns on the trunk states it will see when sampling."""
    model.train()
    if freeze_trunk:
        for name, child in model.named_children():
            if name != "causal":
                child.eval()


def copy_head_into_verifier(model: nn.Module) -> None:
    """A separate verifier head starts as a copy of the trunk's, so a fresh verifier's target equals the draft."""
    if getattr(model, "causal", None) is not None and model.causal.output_layer is not None:
        model.causal.output_layer.load_state_dict(model.output_layer.state_dict())


# ---- loss --------------------------------------------------------------------------------------------------
@dataclass
class SpeculativeLoss(LossOutput):
    draft: torch.Tensor | None = None  # scalar, draft NELBO term in nats per canvas token (detached)
    target: torch.Tensor | None = None  # scalar, verifier term in nats per canvas token (detached)


def speculative_loss(model: nn.Module, x0: torch.Tensor, mask_id: int, *, antithetic: bool = True,
                     generator: torch.Generator | None = None, freeze_trunk: bool = False,
                     hint_fn: HintFn | None = None, order: torch.Tensor | None = None,
                     revealed: torch.Tensor | None = None) -> SpeculativeLoss:
    """The joint loss D/(D − i)·(draft CE + teacher-forced target CE of the masked block), per canvas token.

    ``order`` and ``revealed`` are drawn when not given; ``hint_fn(x_t, t)`` gives a self-conditioned trunk
    its hint (pass 1); with ``freeze_trunk`` the trunk runs under no-grad and only the verifier learns."""
    if getattr(model, "causal", None) is None:
        raise ValueError("speculative_loss needs a model with a causal verifier (speculative.causal_layers > 0)")
    batch, length = x0.shape
    if order is None:
        order = sample_orders(batch, length, generator=generator, device=x0.device)
    if revealed is None:
        revealed = sample_revealed(batch, length, antithetic=antithetic, generator=generator, device=x0.device)
    x_t = mask_after(x0, order, revealed, mask_id)
    t = (length - revealed).float() / length  # the masked fraction (= t of the log-linear schedule)
    hint = hint_fn(x_t, t) if hint_fn is not None else None
    with torch.set_grad_enabled(torch.is_grad_enabled() and not freeze_trunk):
        h, cond = model.encode(x_t, t, p_prev=hint)
        draft = masked_token_nll(model.output_layer(h, cond), x0, x_t, mask_id)
    target_logits = model.verify(gather_tracks(h, order), cond, order, gather_tracks(x0, order))
    target = masked_token_nll(target_logits, gather_tracks(x0, order), gather_tracks(x_t, order), mask_id)
    weight = length / (length - revealed).to(draft.dtype)
    loss = (weight * (draft + target)).mean() / length
    return SpeculativeLoss(loss=loss, t=t, num_masked=length - revealed,
                           draft=(weight * draft).mean().detach() / length,
                           target=(weight * target).mean().detach() / length)


@torch.no_grad()
def validation_speculative(model: nn.Module, data: torch.Tensor, mask_id: int, *, num_i: int = 8, seed: int = 0,
                           batch_size: int = 256, device: torch.device | str = "cpu",
                           hint_fn: HintFn | None = None) -> dict[str, float]:
    """Draft and target NLL, bits per canvas token, under a fixed protocol: revealed counts on the midpoint
    grid i_k = ⌊D·(k + ½)/K⌋, k = 0..K−1, one σ per sequence and grid point from a generator seeded by
    ``seed``, float64 accumulation. ``val_draft_bits`` estimates the MDM's NELBO (any-order form),
    ``val_target_bits`` the verifier's; the target is lower when the verifier has learned how masked tokens
    depend on each other."""
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"validation data must be a non-empty [N, L] tensor, got shape {tuple(data.shape)}")
    generator = torch.Generator(device=device).manual_seed(seed)
    length = data.shape[1]
    grid = [min(length - 1, int(length * (k + 0.5) / num_i)) for k in range(num_i)]
    totals = {"draft": torch.zeros((), dtype=torch.float64), "target": torch.zeros((), dtype=torch.float64)}
    for start in range(0, data.shape[0], batch_size):
        x0 = data[start:start + batch_size].to(device)
        for i in grid:
            revealed = torch.full((x0.shape[0],), i, device=device)
            out = speculative_loss(model, x0, mask_id, generator=generator, hint_fn=hint_fn, revealed=revealed)
            for key in totals:
                totals[key] += getattr(out, key).double().cpu() * x0.shape[0]
    scale = num_i * data.shape[0] * math.log(2.0)
    return {"val_draft_bits": float(totals["draft"] / scale), "val_target_bits": float(totals["target"] / scale)}


# ---- sampler ---------------------------------------------------------------------------------------------
def window_size(revealed: torch.Tensor, length: int, *, window: int, min_window: int = 1,
                schedule: str = "constant") -> torch.Tensor:
    """W(n) per sequence (module docstring) for revealed counts n [B], clipped to [1, D − n] (0 when n = D)."""
    if schedule not in WINDOW_SCHEDULES:
        raise ValueError(f"unknown window schedule {schedule!r}; valid: {', '.join(WINDOW_SCHEDULES)}")
    if window < 1 or min_window < 1 or (min_window > window and schedule != "constant"):
        raise ValueError(f"need 1 <= min_window <= window, got min_window={min_window}, window={window}")
    frac = revealed.double() / length
    if schedule == "constant":
        w = torch.full_like(frac, float(window))
    elif schedule == "linear":
        w = min_window + (window - min_window) * frac
    else:
        w = min_window + (window - min_window) * (1.0 - torch.cos(math.pi * frac)) / 2.0
    return torch.minimum(torch.round(w).long().clamp_min(1), length - revealed)


def verify_window(denoiser: Denoiser, trunk: typing.Any, x_sigma: torch.Tensor, revealed: torch.Tensor,
                  window: torch.Tensor, *, precision: str = "float64",
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One verification on a trunk pass (``Denoiser.trunk``): draft the window, one verifier pass,
    accept/reject in σ order. ``x_sigma`` [B, D] holds the committed tokens in σ order (MASK after the first
    ``revealed[b]``). Returns (new x_sigma, tokens committed per row)."""
    from scmdm.sampling import sample_categorical

    batch, length = x_sigma.shape
    k = torch.arange(length, device=x_sigma.device)
    in_window = (k >= revealed[:, None]) & (k < (revealed + window)[:, None])
    drafts = sample_categorical(trunk.log_p, precision=precision, generator=generator)  # x̂_k ~ p_k, all k
    log_q = denoiser.verify(trunk, torch.where(k < revealed[:, None], x_sigma, drafts))
    log_p_draft = trunk.log_p.gather(-1, drafts[..., None]).squeeze(-1).double()
    log_q_draft = log_q.gather(-1, drafts[..., None]).squeeze(-1).double()
    u = torch.rand((batch, length), dtype=torch.float64, generator=generator, device=x_sigma.device)
    accept = u < torch.exp(log_q_draft - log_p_draft)  # u < 1, so this is probability min(1, q/p)
    rejected = in_window & ~accept
    seen = rejected.long().cumsum(dim=1)
    first = rejected & (seen == 1)  # the first rejection of each row (if any)
    keep = in_window & (seen == 0)  # the drafts accepted before it
    q, p = log_q.double().exp(), trunk.log_p.double().exp()
    residual = (q - p).clamp_min(0.0)
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, q)  # q = p up to rounding: any q draw
    resampled = sample_categorical(residual.log(), precision=precision, generator=generator)
    commit = keep | first
    x_sigma = torch.where(commit, torch.where(first, resampled, drafts), x_sigma)
    return x_sigma, commit.sum(dim=1)


@torch.inference_mode()
def speculative_sample(denoiser: Denoiser, *, batch_size: int, length: int, window: int = 8, min_window: int = 1,
                       window_schedule: str = "constant", verify_loops: int = 0, precision: str = "float64",
                       generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                       progress: tqdm | None = None) -> tuple[torch.Tensor, float, float]:
    """Windowed self-speculative sampling of ``batch_size`` canvases (module docstring).
    Returns (tokens [B, D], trunk passes per sequence, verifier passes per sequence)."""
    if not denoiser.speculative:
        raise ValueError(NO_VERIFIER)
    if verify_loops < 0:
        raise ValueError(f"verify_loops must be >= 0, got {verify_loops}")
    window_size(torch.zeros(1, dtype=torch.long), length, window=window, min_window=min_window,
                schedule=window_schedule)  # validates the schedule's arguments once
    device = torch.device(device)
    mask_id = denoiser.mask_id
    order = sample_orders(batch_size, length, generator=generator, device=device)
    x_sigma = torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    revealed = torch.zeros(batch_size, dtype=torch.long, device=device)
    hint: torch.Tensor | None = None  # self-conditioning: each row's draft from its previous trunk pass
    trunk_rows = causal_rows = 0
    done = 0
    while True:
        rows = (revealed < length).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        t = (length - revealed[rows]).float() / length  # the masked fraction, for time-conditioned models
        trunk = denoiser.trunk(scatter_tracks(x_sigma[rows], order[rows]), t,
                               None if hint is None else hint[rows], order[rows])
        trunk_rows += rows.numel()
        if trunk.next_hint is not None:
            if hint is None:  # the first round runs every row, so every row has a hint from now on
                hint = trunk.next_hint
            else:
                hint[rows] = trunk.next_hint
        xs, n = x_sigma[rows], revealed[rows]
        for _ in range(1 + verify_loops):
            live = (n < length).nonzero().squeeze(1)
            if live.numel() == 0:
                break
            sub = trunk.select(live)
            w = window_size(n[live], length, window=window, min_window=min_window, schedule=window_schedule)
            new, committed = verify_window(denoiser, sub, xs[live], n[live], w, precision=precision,
                                           generator=generator)
            xs[live], n[live] = new, n[live] + committed
            causal_rows += live.numel()
        x_sigma[rows], revealed[rows] = xs, n
        if progress is not None:
            now = int(revealed.min())
            progress.update(now - done)
            done = now
    return scatter_tracks(x_sigma, order), trunk_rows / batch_size, causal_rows / batch_size
