"""ReMDM remasking (Wang et al. 2025, "Remasking Discrete Diffusion Models with Inference-Time Scaling"): a token
revealed earlier may be masked again, so that more steps keep refining a sample.

On the grid t_k = 1 − k/T (step from t to s), with remasking probability σ_t ∈ [0, σ_max], σ_max = min(1, (1−α_s)/α_t):

    a revealed position   stays with probability 1 − σ_t, is masked again with probability σ_t;
    a masked position     is revealed with probability (α_s − (1 − σ_t)α_t) / (1 − α_t)
                                                  = (α_s − α_t)/(1 − α_t) + σ_t·α_t/(1 − α_t),
                          taking a token drawn from p_θ(x₀ | x_t), and stays masked otherwise,

which keeps the forward marginals: with σ_t = 0 it is the ancestral step exactly (same random numbers, same samples;
the remasking uniforms are drawn only when some σ_t > 0). Strategies (``sample.remask``), η = ``sample.eta``:

* ``cap``      σ_t = min(η, σ_max);
* ``rescale``  σ_t = η·σ_max;
* ``conf``     σ_tˡ = η·σ_max·softmax_l(−ψˡ) over the positions, ψˡ = the probability the token at l had when it was
               revealed (masked positions get weight 0): the least confident tokens are remasked first (η = 1 is
               ReMDM's conf);
* ``loop``     three phases in t: for t > t_on plain ancestral steps on α(t) = α_on·(1 − t)/(1 − t_on); for
               t_off < t ≤ t_on, α is held at α_on and σ = η (masks come and go, their number stays α_on in
               expectation); for t ≤ t_off ancestral steps on α(t) = 1 − (1 − α_on)·t/t_off. The loop phase is where
               extra steps refine (ReMDM's defaults: η = 0.02, t_on = 0.55, t_off = 0.05, α_on = 0.9).

Every step is one network evaluation: NFE = T. A self-conditioned model carries its hint.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from scmdm.categorical import sample_categorical
from scmdm.denoiser import Denoiser
from scmdm.sampling.steps import start_canvas, time_grid
from scmdm.schedules import NoiseSchedule

__all__ = ["REMASK_STRATEGIES", "remdm_sample", "loop_alphas", "remask_sigma"]

REMASK_STRATEGIES = ("cap", "rescale", "conf", "loop")


def loop_alphas(t: float, *, t_on: float, t_off: float, alpha_on: float) -> float:
    """α(t) of the loop schedule (module docstring)."""
    if t > t_on:
        return alpha_on * (1.0 - t) / (1.0 - t_on)
    if t <= t_off:
        return 1.0 - (1.0 - alpha_on) * t / t_off
    return alpha_on


def remask_sigma(strategy: str, eta: float, alpha_t: float, alpha_s: float) -> float:
    """The scalar σ_t of ``cap`` and ``rescale``, and the σ_max·η that ``conf`` spreads over positions."""
    sigma_max = min(1.0, (1.0 - alpha_s) / alpha_t) if alpha_t > 0 else 1.0
    if strategy == "cap":
        return min(eta, sigma_max)
    return eta * sigma_max  # rescale, and conf's total


@torch.inference_mode()
def remdm_sample(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, length: int, steps: int,
                 strategy: str = "cap", eta: float = 0.01, t_on: float = 0.55, t_off: float = 0.05,
                 alpha_on: float = 0.9, precision: str = "float64", generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", progress: tqdm | None = None,
                 start: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """ReMDM sampling of ``batch_size`` canvases with the remasking ``strategy`` (module docstring), from ``start`` (a
    template, whose given tokens are never remasked) or all MASK. Returns (tokens, NFE per sequence = ``steps``)."""
    if strategy not in REMASK_STRATEGIES:
        raise ValueError(f"unknown remasking strategy {strategy!r}; valid: {', '.join(REMASK_STRATEGIES)}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if strategy == "loop" and not (0.0 < t_off < t_on < 1.0 and 0.0 < alpha_on < 1.0):
        raise ValueError(f"the loop schedule needs 0 < t_off < t_on < 1 and 0 < alpha_on < 1, got t_off={t_off}, "
                         f"t_on={t_on}, alpha_on={alpha_on}")
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = start_canvas(batch_size, length, mask_id, start, device)
    given = x != mask_id  # a template's tokens: never remasked
    grid = time_grid(steps, device)
    times = time_grid(steps).tolist()  # host floats: no device → host copy inside the loop
    confidence = torch.full((batch_size, length), -torch.inf, dtype=torch.float64, device=device)  # −ψ (conf)
    hint: torch.Tensor | None = None
    for k in range(steps):
        t, s = times[k], times[k + 1]
        if strategy == "loop":
            a_t, a_s = (loop_alphas(v, t_on=t_on, t_off=t_off, alpha_on=alpha_on) for v in (t, s))
            looping = t_off < t <= t_on
            sigma = eta if looping else 0.0
            base = (a_s - a_t) / (1.0 - a_t) if a_t < 1.0 else 1.0
        else:
            a_t, a_s = float(schedule.alpha(torch.tensor(t, dtype=torch.float64))), float(
                schedule.alpha(torch.tensor(s, dtype=torch.float64)))
            sigma = remask_sigma(strategy, eta, a_t, a_s)
            base = float(schedule.unmask_probability(grid[k].cpu(), grid[k + 1].cpu()))
        log_p, hint = denoiser(x, grid[k].float().expand(batch_size), hint)
        masked = x == mask_id
        u = torch.rand((batch_size, length), dtype=torch.float64, generator=generator, device=device)
        draw = sample_categorical(log_p, precision=precision, generator=generator)
        if strategy == "conf" and sigma > 0:  # per position: the least confident revealed tokens first
            per_position = torch.softmax(confidence, dim=1).nan_to_num(0.0) * sigma
            boost = per_position * (a_t / (1.0 - a_t)) if a_t < 1.0 else torch.zeros_like(per_position)
            reveal = masked & (u < base + boost)
        else:
            per_position = None
            reveal = masked & (u < base + (sigma * a_t / (1.0 - a_t) if sigma > 0 and a_t < 1.0 else 0.0))
        remask = torch.zeros_like(masked)
        if sigma > 0:
            v = torch.rand((batch_size, length), dtype=torch.float64, generator=generator, device=device)
            remask = ~masked & ~given & (v < (per_position if per_position is not None else sigma))
        x = torch.where(reveal, draw, torch.where(remask, torch.full_like(x, mask_id), x))
        if strategy == "conf":
            drawn_p = log_p.gather(-1, draw[..., None]).squeeze(-1).double().exp()
            confidence = torch.where(reveal, -drawn_p, torch.where(remask, -torch.inf, confidence))
        if progress is not None:
            progress.update(1)
    return x, float(steps)
