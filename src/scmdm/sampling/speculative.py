"""Self-speculative sampling (arXiv 2510.03929): draft a window of positions from the trunk's factorized p, score
them with the causal verifier's target q (``scmdm.model.verifier``) and commit between 1 and W of them exactly.

Sampler (``speculative_sample``). All sequences draw their own σ (with a template, its given positions first: they
are the revealed prefix, so everything below holds unchanged). Per round, for a sequence with n revealed:
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

import torch
from tqdm.auto import tqdm

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser, TrunkPass
from scmdm.sampling.steps import start_canvas
from scmdm.tracks import gather_tracks, sample_orders, scatter_tracks

__all__ = ["WINDOW_SCHEDULES", "NO_VERIFIER", "window_size", "verify_window", "speculative_sample"]

WINDOW_SCHEDULES = ("constant", "linear", "cosine")
NO_VERIFIER = ("the speculative sampler needs a model with a causal verifier layer (speculative.causal_layers > 0): "
               "post-train one with `scmdm posttrain --from RUN --out DIR --speculative`, or train one with "
               "speculative.causal_layers=1")


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


def verify_window(denoiser: Denoiser, trunk: TrunkPass, x_sigma: torch.Tensor, revealed: torch.Tensor,
                  window: torch.Tensor, *, precision: str = "float64",
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One verification on a trunk pass (``Denoiser.trunk``): draft the window, one verifier pass,
    accept/reject in σ order. ``x_sigma`` [B, D] holds the committed tokens in σ order (MASK after the first
    ``revealed[b]``). Returns (new x_sigma, tokens committed per row)."""
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
                       progress: tqdm | None = None,
                       start: torch.Tensor | None = None) -> tuple[torch.Tensor, float, float]:
    """Windowed self-speculative sampling of ``batch_size`` canvases (module docstring), from ``start`` (a template:
    its given positions come first in σ, in a random order, as if already revealed) or all MASK.
    Returns (tokens [B, D], trunk passes per sequence, verifier passes per sequence)."""
    if not denoiser.speculative:
        raise ValueError(NO_VERIFIER)
    if verify_loops < 0:
        raise ValueError(f"verify_loops must be >= 0, got {verify_loops}")
    window_size(torch.zeros(1, dtype=torch.long), length, window=window, min_window=min_window,
                schedule=window_schedule)  # validates the schedule's arguments once
    device = torch.device(device)
    mask_id = denoiser.mask_id
    if start is None:
        order = sample_orders(batch_size, length, generator=generator, device=device)
        x_sigma = torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
        revealed = torch.zeros(batch_size, dtype=torch.long, device=device)
    else:  # σ: the given positions first (uniformly ordered among themselves), then the masked ones
        canvas = start_canvas(batch_size, length, mask_id, start, device)
        key = torch.rand((batch_size, length), dtype=torch.float64, generator=generator, device=device)
        order = (key + (canvas == mask_id).double()).argsort(dim=1)
        x_sigma = gather_tracks(canvas, order)
        revealed = (canvas != mask_id).sum(dim=1)
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
