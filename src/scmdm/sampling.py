"""Samplers for masked diffusion. All are vectorized over batch and positions and report the number of
network function evaluations (NFE) they actually spent, per sequence.

Time grid: t_k = 1 − k/T, k = 0..T; step k goes from t = t_k to s = t_{k+1}.

Self-conditioned models (``selfcond``): every sampler hands the model's own prediction of one step
(its untempered SUBS distribution, in the model's ``carry`` form) to the next step as p_prev; the first
step gets the null condition. This costs no extra forward pass. The cached sampler refuses such models:
p_prev changes every step even when x_t does not, so a skipped pass would not be the pass the chain needs.

* **Ancestral** (MDLM). Each still-masked position is revealed with probability
      (α(s) − α(t)) / (1 − α(t))
  and, if revealed, takes a token drawn from p_θ(x₀ | x_t); clean tokens never change. At the last
  step s = 0, α(0) = 1, so every remaining mask is filled. NFE = T.
* **Cached ancestral.** Same chain, same random numbers. When no position of a sequence changed in a
  step, its network input — and so its output — is unchanged (valid only for a model whose input is
  x_t alone, i.e. without time conditioning; other models are refused), so its forward pass is
  skipped and the cached p_θ reused. Same output distribution, NFE ≤ T.
* **Confidence top-k** (MaskGIT / LLaDA style). The number of masks left after step k is
  m_{k+1} = round(L·(1 − α(t_{k+1}))); each step draws a token for every masked position and
  reveals the m_k − m_{k+1} positions whose drawn token has the highest probability. Steps that
  reveal nothing are skipped (no NFE).
* **Speculative** (self-speculative MDM, a model with a causal verifier): each trunk pass drafts a window
  of positions along a random order σ, one verifier pass scores them and accept/reject commits between 1
  and W of them exactly (rule and proof in ``scmdm.speculative``). NFE = trunk passes; verifier passes are
  counted apart (``SampleResult.nfe_causal``). ``Denoiser.trunk`` and ``Denoiser.verify`` are its two kinds
  of network evaluation.

Categorical draws are Gumbel-max, argmax_v (log p_v + g_v), g = −log(−log u), u ~ U[0, 1), in
float64 by default: float32 noise is bounded (g ≤ −log(−log(1 − 2⁻²⁴)) ≈ 16.6), which truncates the
tail and lowers the effective temperature (Zheng et al., arXiv 2409.02908). ``precision="float32"``
reproduces older papers. Temperature τ scales logits (p ∝ exp(logit/τ)); top-p keeps the smallest
set of tokens holding at least mass p.

Hot path. Every sampler runs under ``torch.inference_mode`` and is vectorized over batch and positions (the
Python loops are over steps or speculative rounds, never positions). Per-step schedule values are computed on
the host before the loop; the only device → host reads inside a loop are the ones that decide how much work
the next pass does (the cached sampler's rows that changed, the speculative sampler's unfinished rows).
``generate(compile_network=True)`` runs the denoiser's forward through ``torch.compile`` (off by default: it
changes floating-point rounding, so samples are not bit-identical to eager ones; docs/PERFORMANCE.md measures
its speed-up).
Where sampling time goes: ``scmdm.profiling.NetworkTimer``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from scmdm.backbone import Transformer
from scmdm.diffusion import subs_log_probs
from scmdm.schedules import NoiseSchedule
from scmdm.selfcond import carried_hint
from scmdm.speculative import NO_VERIFIER, gather_tracks, scatter_tracks, speculative_sample

__all__ = ["gumbel_noise", "sample_categorical", "apply_top_p", "Denoiser", "TrunkPass", "SampleResult",
           "ancestral_sample", "topk_sample", "generate", "SAMPLER_NAMES", "masked_counts",
           "reveal_probabilities"]

SAMPLER_NAMES = ("ancestral", "cached", "topk", "speculative")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def gumbel_noise(shape: tuple[int, ...], *, precision: str = "float64", generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard Gumbel noise −log(−log u) with u drawn in the given precision."""
    u = torch.rand(shape, dtype=_DTYPES[precision], generator=generator, device=device)
    return u.log_().neg_().log_().neg_()  # −log(−log u), in place: the same operations, no temporaries


def sample_categorical(log_probs: torch.Tensor, *, precision: str = "float64",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``log_probs`` [..., V] by Gumbel-max in ``precision``."""
    if precision not in _DTYPES:
        raise ValueError(f"precision must be one of {', '.join(_DTYPES)}, got {precision!r}")
    noise = gumbel_noise(tuple(log_probs.shape), precision=precision, generator=generator, device=log_probs.device)
    return noise.add_(log_probs.to(_DTYPES[precision])).argmax(dim=-1)  # log p + g (addition commutes exactly)


def apply_top_p(log_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose mass reaches ``top_p``,
    renormalize; the others get −∞."""
    if top_p >= 1.0:
        return log_probs
    sorted_lp, order = log_probs.sort(dim=-1, descending=True)
    mass_before = sorted_lp.exp().cumsum(dim=-1) - sorted_lp.exp()
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return torch.log_softmax(log_probs.masked_fill(drop, -math.inf), dim=-1)


@dataclass
class TrunkPass:
    """One trunk evaluation for the speculative sampler, everything in σ order (``order``): the trunk states
    ``h``, the conditioning vector, the canvas ``x`` the trunk saw, the draft ``log_p`` (as the Denoiser
    returns it) and, for a self-conditioned model, the next hint (canvas order)."""

    h: torch.Tensor
    cond: torch.Tensor | None
    order: torch.Tensor
    x: torch.Tensor
    log_p: torch.Tensor
    next_hint: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> TrunkPass:
        """The pass restricted to ``rows`` (the cached states of sequences still being verified)."""
        return TrunkPass(self.h[rows], None if self.cond is None else self.cond[rows], self.order[rows],
                         self.x[rows], self.log_p[rows], None if self.next_hint is None else self.next_hint[rows])


class Denoiser:
    """One network evaluation: ``(x_t, t, hint) -> (log p, next hint)``.

    ``log p`` is p_θ(x₀ | x_t, hint) as float32 log-probabilities [B, L, V] with SUBS, temperature and
    top-p applied (what the sampler draws from). ``next hint`` is, for a self-conditioned model, the
    untempered SUBS distribution in the model's carry form (what pass 1 of post-training produces), and
    None otherwise."""

    def __init__(self, model: Transformer, mask_id: int, *, temperature: float = 1.0, top_p: float = 1.0,
                 carry: str = "distribution", sharpen_temperature: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.model, self.mask_id, self.temperature, self.top_p = model, mask_id, temperature, top_p
        self.carry, self.sharpen_temperature, self.generator = carry, sharpen_temperature, generator
        self.calls = 0  # batched forward passes (of the trunk)
        self.rows = 0  # sequences evaluated
        self.causal_calls = 0  # batched verifier-only passes (speculative sampler)
        self.causal_rows = 0

    @property
    def uses_time(self) -> bool:
        return bool(self.model.config.time_conditioning)

    @property
    def self_conditioned(self) -> bool:
        return bool(getattr(self.model, "self_conditioned", False))

    @property
    def speculative(self) -> bool:
        return bool(getattr(self.model, "speculative", False))

    @torch.inference_mode()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor,
                 hint: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.calls += 1
        self.rows += x_t.shape[0]
        logits = self.model(x_t, t, p_prev=hint).float()
        return self._outputs(logits, x_t)

    def _outputs(self, logits: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(what the sampler draws from, the next hint) from one pass's logits. At temperature 1 the untempered
        SUBS distribution the hint is made of is the one drawn from, so it is computed once."""
        if not self.self_conditioned:
            return self._log_probs(logits, x_t), None
        untempered = subs_log_probs(logits, x_t, self.mask_id)
        next_hint = carried_hint(untempered, self.carry, sharpen_temperature=self.sharpen_temperature,
                                 generator=self.generator)
        if self.temperature == 1.0:
            return apply_top_p(untempered, self.top_p), next_hint
        return self._log_probs(logits, x_t), next_hint

    def _log_probs(self, logits: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """Temperature, SUBS, top-p: what the samplers draw from."""
        if self.temperature != 1.0:
            logits = logits / self.temperature
        log_probs = subs_log_probs(logits, x_t, self.mask_id)
        return apply_top_p(log_probs, self.top_p)

    @torch.inference_mode()
    def trunk(self, x_t: torch.Tensor, t: torch.Tensor, hint: torch.Tensor | None,
              order: torch.Tensor) -> TrunkPass:
        """One trunk pass (counted in ``calls``), kept in σ order for the verifier. The draft is the output head
        on the trunk states in σ order — the very computation ``verify`` adds the verifier's contribution to."""
        self.calls += 1
        self.rows += x_t.shape[0]
        h, cond = self.model.encode(x_t, t, p_prev=hint)
        h, x = gather_tracks(h, order), gather_tracks(x_t, order)
        logits = self.model.output_layer(h, cond).float()
        log_p, next_hint = self._outputs(logits, x)
        next_hint = None if next_hint is None else scatter_tracks(next_hint, order)
        return TrunkPass(h=h, cond=cond, order=order, x=x, log_p=log_p, next_hint=next_hint)

    @torch.inference_mode()
    def verify(self, trunk: TrunkPass, tokens: torch.Tensor) -> torch.Tensor:
        """One verifier pass (counted in ``causal_calls``) on cached trunk states: the target log q in σ order,
        processed like the draft (temperature, SUBS, top-p); ``tokens`` [B, D] in σ order."""
        self.causal_calls += 1
        self.causal_rows += tokens.shape[0]
        logits = self.model.verify(trunk.h, trunk.cond, trunk.order, tokens).float()
        return self._log_probs(logits, trunk.x)


@dataclass
class SampleResult:
    tokens: torch.Tensor  # [N, L] long, no MASK left
    nfe: float  # mean network evaluations per sequence
    forward_passes: int  # batched network calls
    seconds: float
    nfe_causal: float = 0.0  # mean verifier-only passes per sequence (speculative sampler)


def _time_grid(steps: int, device: torch.device) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)


@torch.inference_mode()
def ancestral_sample(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, length: int, steps: int,
                     cache: bool = False, precision: str = "float64", generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu", progress: tqdm | None = None) -> tuple[torch.Tensor, float]:
    """Ancestral (optionally cached) sampling of ``batch_size`` canvases. Returns (tokens, NFE per sequence)."""
    if cache and denoiser.uses_time:
        raise ValueError("the cached sampler needs a model without time conditioning: with t as an input the "
                         "network output changes every step even when x_t does not, so skipping is not exact")
    if cache and denoiser.self_conditioned:
        raise ValueError("the cached sampler cannot run a self-conditioned model: its input p_prev changes every "
                         "step even when x_t does not, so skipping a pass is not exact; use sampler=ancestral "
                         "(same NFE = T as the base model's ancestral sampler)")
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    grid = _time_grid(steps, device)
    reveal_ps = reveal_probabilities(schedule, steps)  # host floats: no device → host copy inside the loop
    log_p: torch.Tensor | None = None
    hint: torch.Tensor | None = None  # self-conditioning: the previous step's prediction (None = null)
    stale = torch.ones(batch_size, dtype=torch.bool, device=device)  # rows whose cached output is out of date
    evaluations = 0
    for k in range(steps):
        t_batch = grid[k].float().expand(batch_size)
        if not cache or log_p is None:
            log_p, hint = denoiser(x, t_batch, hint)
            evaluations += batch_size
        elif stale.any():
            rows = stale.nonzero().squeeze(1)
            log_p[rows] = denoiser(x[rows], t_batch[rows])[0]
            evaluations += rows.numel()
        masked = x == mask_id
        u = torch.rand((batch_size, length), dtype=torch.float64, generator=generator, device=device)
        draw = sample_categorical(log_p, precision=precision, generator=generator)
        reveal = masked & (u < reveal_ps[k])
        x = torch.where(reveal, draw, x)
        stale = reveal.any(dim=1)
        if progress is not None:
            progress.update(1)
    return x, evaluations / batch_size


def reveal_probabilities(schedule: NoiseSchedule, steps: int) -> list[float]:
    """(α(s) − α(t)) / (1 − α(t)) for every step k (t = t_k, s = t_{k+1}), computed on the host in float64."""
    grid = _time_grid(steps, torch.device("cpu"))
    return [float(schedule.unmask_probability(grid[k], grid[k + 1])) for k in range(steps)]


def masked_counts(schedule: NoiseSchedule, length: int, steps: int) -> list[int]:
    """m_k = round(L·(1 − α(t_k))) for k = 0..T, forced non-increasing with m_0 = L and m_T = 0."""
    grid = _time_grid(steps, torch.device("cpu"))
    counts = [round(length * float(1 - schedule.alpha(t))) for t in grid]
    counts[0], counts[-1] = length, 0
    for k in range(1, len(counts)):
        counts[k] = min(counts[k], counts[k - 1])
    return counts


@torch.inference_mode()
def topk_sample(denoiser: Denoiser, schedule: NoiseSchedule, *, batch_size: int, length: int, steps: int,
                precision: str = "float64", generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", progress: tqdm | None = None) -> tuple[torch.Tensor, float]:
    """Confidence-based top-k unmasking. Returns (tokens, NFE per sequence)."""
    device = torch.device(device)
    mask_id = denoiser.mask_id
    x = torch.full((batch_size, length), mask_id, dtype=torch.long, device=device)
    grid = _time_grid(steps, device)
    counts = masked_counts(schedule, length, steps)
    nfe = 0
    hint: torch.Tensor | None = None
    for k in range(steps):
        n_reveal = counts[k] - counts[k + 1]
        if n_reveal > 0:
            log_p, hint = denoiser(x, grid[k].float().expand(batch_size), hint)
            nfe += 1
            draw = sample_categorical(log_p, precision=precision, generator=generator)
            confidence = log_p.gather(-1, draw[..., None]).squeeze(-1).masked_fill(x != mask_id, -math.inf)
            top = confidence.topk(n_reveal, dim=-1).indices
            x = x.scatter(1, top, draw.gather(1, top))
        if progress is not None:
            progress.update(1)
    return x, float(nfe)


def generate(model: Transformer, schedule: NoiseSchedule, *, mask_id: int, num_samples: int, length: int,
             sampler: str = "ancestral", steps: int = 64, batch_size: int = 500, temperature: float = 1.0,
             top_p: float = 1.0, precision: str = "float64", seed: int = 0, device: torch.device | str = "cpu",
             show_progress: bool = True, carry: str = "distribution", sharpen_temperature: float = 0.5,
             window: int = 8, min_window: int = 2, window_schedule: str = "constant",
             verify_loops: int = 0, compile_network: bool = False) -> SampleResult:
    """Generate ``num_samples`` canvases in batches with the named sampler. ``carry`` and
    ``sharpen_temperature`` matter only for a self-conditioned model (its ``selfcond`` config); ``window``,
    ``min_window``, ``window_schedule`` and ``verify_loops`` only for the speculative sampler (which does not
    use ``steps``). ``compile_network``: run the model's forward through ``torch.compile`` (ancestral, cached
    and top-k samplers; the speculative sampler's trunk and verifier stay eager); off by default, see the
    module docstring."""
    if sampler not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLER_NAMES)}")
    if num_samples <= 0 or steps <= 0 or batch_size <= 0:
        raise ValueError("num_samples, steps and batch_size must be positive")
    if sampler == "speculative" and not getattr(model, "speculative", False):
        raise ValueError(NO_VERIFIER)
    device = torch.device(device)
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    network = torch.compile(model) if compile_network else model  # delegates attribute access to the model
    denoiser = Denoiser(network, mask_id, temperature=temperature, top_p=top_p, carry=carry,
                        sharpen_temperature=sharpen_temperature, generator=generator)
    sizes = [min(batch_size, num_samples - start) for start in range(0, num_samples, batch_size)]
    outputs, nfe_total, causal_total = [], 0.0, 0.0
    start = time.perf_counter()
    speculative = sampler == "speculative"
    with tqdm(total=len(sizes) * (length if speculative else steps), disable=not show_progress,
              desc=f"sample (speculative, W={window} {window_schedule})" if speculative else
              f"sample ({sampler}, T={steps})", dynamic_ncols=True, unit="pos" if speculative else "step",
              leave=False) as bar:
        for size in sizes:
            if speculative:
                tokens, nfe, nfe_causal = speculative_sample(
                    denoiser, batch_size=size, length=length, window=window, min_window=min_window,
                    window_schedule=window_schedule, verify_loops=verify_loops, precision=precision,
                    generator=generator, device=device, progress=bar)
                causal_total += nfe_causal * size
            elif sampler == "topk":
                tokens, nfe = topk_sample(denoiser, schedule, batch_size=size, length=length, steps=steps,
                                          precision=precision, generator=generator, device=device, progress=bar)
            else:
                tokens, nfe = ancestral_sample(denoiser, schedule, batch_size=size, length=length, steps=steps,
                                               cache=sampler == "cached", precision=precision, generator=generator,
                                               device=device, progress=bar)
            outputs.append(tokens.cpu())
            nfe_total += nfe * size
    return SampleResult(tokens=torch.cat(outputs), nfe=nfe_total / num_samples, forward_passes=denoiser.calls,
                        seconds=time.perf_counter() - start, nfe_causal=causal_total / num_samples)
