"""``generate``: the one entry point of every sampler — batching, seeding, the progress bar, the NFE count.

Samplers are registered in ``SAMPLERS`` by name (``sample.sampler``): each entry runs its sampler on one batch
from the options of ``generate`` and returns the tokens, the trunk passes per sequence (NFE) and the verifier-only
passes per sequence (the speculative sampler's; 0 for the others). All draws of one call come from one generator
seeded by ``seed``, so the same arguments give the same samples.

Hot path. Every sampler runs under ``torch.inference_mode`` and is vectorized over batch and positions (the Python
loops are over steps or speculative rounds, never positions). Per-step schedule values are computed on the host
before the loop; the only device → host reads inside a loop are the ones that decide how much work the next pass
does (the cached sampler's rows that changed, the speculative sampler's unfinished rows).
``generate(compile_network=True)`` runs the denoiser's forward through ``torch.compile`` (off by default: it
changes floating-point rounding, so samples are not bit-identical to eager ones; docs/PERFORMANCE.md measures its
speed-up). Where sampling time goes: ``scmdm.profiling.NetworkTimer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from scmdm.denoiser import Denoiser
from scmdm.model import Transformer
from scmdm.sampling.ancestral import ancestral_sample
from scmdm.sampling.blocks import block_sample
from scmdm.sampling.first_hitting import first_hitting_sample
from scmdm.sampling.remdm import remdm_sample
from scmdm.sampling.speculative import NO_VERIFIER, speculative_sample
from scmdm.sampling.threshold import threshold_sample
from scmdm.sampling.topk import topk_sample
from scmdm.schedules import NoiseSchedule

__all__ = ["SampleResult", "SamplerOptions", "Sampler", "SAMPLERS", "SAMPLER_NAMES", "generate"]


@dataclass
class SampleResult:
    tokens: torch.Tensor  # [N, L] long, no MASK left
    nfe: float  # mean network evaluations per sequence
    forward_passes: int  # batched network calls
    seconds: float
    nfe_causal: float = 0.0  # mean verifier-only passes per sequence (speculative sampler)


@dataclass
class SamplerOptions:
    """What a sampler may read besides the denoiser: the step count of the T-step samplers, the draw precision, the
    speculative sampler's window schedule, ReMDM's remasking, the block size and the confidence threshold."""

    steps: int = 64
    precision: str = "float64"
    window: int = 8
    min_window: int = 2
    window_schedule: str = "constant"
    verify_loops: int = 0
    remask: str = "cap"
    eta: float = 0.01
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9
    block_size: int = 8
    threshold: float = 0.9


#: (denoiser, schedule, batch size, canvas length, options, generator, device, progress bar, start canvas or None)
#:     -> (tokens, NFE per sequence, verifier passes per sequence)
RunBatch = Callable[[Denoiser, NoiseSchedule, int, int, SamplerOptions, torch.Generator, torch.device, tqdm,
                     torch.Tensor | None], tuple[torch.Tensor, float, float]]


@dataclass(frozen=True)
class Sampler:
    """A registered sampler: how to run it on one batch, and whether its progress counts steps (T) or revealed
    positions (the speculative sampler, which has no fixed step count)."""

    run: RunBatch
    counts_steps: bool = True
    needs_verifier: bool = False

    describe: Callable[[SamplerOptions], str] | None = None  # the knobs a progress bar and a table name

    def label(self, name: str, options: SamplerOptions) -> str:
        knobs = self.describe(options) if self.describe is not None else f"T={options.steps}"
        return f"{name}, {knobs}"


def _ancestral(cache: bool) -> RunBatch:
    def run(denoiser, schedule, size, length, o, generator, device, bar, start):
        tokens, nfe = ancestral_sample(denoiser, schedule, batch_size=size, length=length, steps=o.steps, cache=cache,
                                       precision=o.precision, generator=generator, device=device, progress=bar,
                                       start=start)
        return tokens, nfe, 0.0

    return run


def _topk(denoiser, schedule, size, length, o, generator, device, bar, start):
    tokens, nfe = topk_sample(denoiser, schedule, batch_size=size, length=length, steps=o.steps,
                              precision=o.precision, generator=generator, device=device, progress=bar, start=start)
    return tokens, nfe, 0.0


def _first_hitting(denoiser, schedule, size, length, o, generator, device, bar, start):
    tokens, nfe = first_hitting_sample(denoiser, schedule, batch_size=size, length=length, precision=o.precision,
                                       generator=generator, device=device, progress=bar, start=start)
    return tokens, nfe, 0.0


def _remdm(denoiser, schedule, size, length, o, generator, device, bar, start):
    tokens, nfe = remdm_sample(denoiser, schedule, batch_size=size, length=length, steps=o.steps, strategy=o.remask,
                               eta=o.eta, t_on=o.t_on, t_off=o.t_off, alpha_on=o.alpha_on, precision=o.precision,
                               generator=generator, device=device, progress=bar, start=start)
    return tokens, nfe, 0.0


def _blocks(denoiser, schedule, size, length, o, generator, device, bar, start):
    tokens, nfe = block_sample(denoiser, batch_size=size, length=length, steps=o.steps, block_size=o.block_size,
                               precision=o.precision, generator=generator, device=device, progress=bar, start=start)
    return tokens, nfe, 0.0


def _threshold(denoiser, schedule, size, length, o, generator, device, bar, start):
    tokens, nfe = threshold_sample(denoiser, batch_size=size, length=length, threshold=o.threshold,
                                   block_size=o.block_size if o.block_size < length else 0, precision=o.precision,
                                   generator=generator, device=device, progress=bar, start=start)
    return tokens, nfe, 0.0


def _speculative(denoiser, schedule, size, length, o, generator, device, bar, start):
    return speculative_sample(denoiser, batch_size=size, length=length, window=o.window, min_window=o.min_window,
                              window_schedule=o.window_schedule, verify_loops=o.verify_loops,
                              precision=o.precision, generator=generator, device=device, progress=bar, start=start)


SAMPLERS: dict[str, Sampler] = {
    "ancestral": Sampler(_ancestral(cache=False)),
    "cached": Sampler(_ancestral(cache=True)),
    "topk": Sampler(_topk),
    "first_hitting": Sampler(_first_hitting, counts_steps=False, describe=lambda o: "one reveal per NFE"),
    "remdm": Sampler(_remdm, describe=lambda o: (f"T={o.steps} {o.remask} η={o.eta:g}" + (
        f" t_on={o.t_on:g} t_off={o.t_off:g} α_on={o.alpha_on:g}" if o.remask == "loop" else ""))),
    "blocks": Sampler(_blocks, describe=lambda o: f"T={o.steps} block={o.block_size}"),
    "threshold": Sampler(_threshold, counts_steps=False, describe=lambda o: f"τ={o.threshold:g}"),
    "speculative": Sampler(_speculative, counts_steps=False, needs_verifier=True,
                           describe=lambda o: f"W={o.window} {o.window_schedule}"),
}
SAMPLER_NAMES = tuple(SAMPLERS)


def check_template(template: torch.Tensor | None, *, num_samples: int, length: int, vocab_size: int,
                   mask_id: int) -> torch.Tensor | None:
    """``template`` as a [num_samples, L] long tensor, checked: the canvas length, ids in the vocabulary, and at least
    one position to generate (MASK) in every row; ValueError naming the problem otherwise."""
    if template is None:
        return None
    template = torch.as_tensor(template).long().cpu()
    if template.ndim == 1:
        template = template.expand(num_samples, -1)
    if template.ndim != 2 or template.shape[0] != num_samples:
        raise ValueError(f"a template is one canvas [L] or one per sample [{num_samples}, L], got shape "
                         f"{tuple(template.shape)}")
    if template.shape[1] != length:
        raise ValueError(f"the template has {template.shape[1]} positions but the model's canvas has {length}")
    if template.numel() and (template.min() < 0 or template.max() >= vocab_size):
        raise ValueError(f"template ids must be in [0, {vocab_size}), got {int(template.min())}..{int(template.max())}")
    if missing := (~(template == mask_id).any(dim=1)).nonzero().flatten().tolist():
        raise ValueError(f"template #{missing[0] + 1} has no position to generate (no MASK, no gap)")
    return template


def generate(model: Transformer, schedule: NoiseSchedule, *, mask_id: int, num_samples: int, length: int,
             sampler: str = "ancestral", steps: int = 64, batch_size: int = 500, temperature: float = 1.0,
             top_p: float = 1.0, precision: str = "float64", seed: int = 0, device: torch.device | str = "cpu",
             show_progress: bool = True, carry: str = "distribution", sharpen_temperature: float = 0.5,
             window: int = 8, min_window: int = 2, window_schedule: str = "constant",
             verify_loops: int = 0, compile_network: bool = False, remask: str = "cap", eta: float = 0.01,
             t_on: float = 0.55, t_off: float = 0.05, alpha_on: float = 0.9, block_size: int = 8,
             threshold: float = 0.9, template: torch.Tensor | None = None) -> SampleResult:
    """Generate ``num_samples`` canvases in batches with the named sampler. ``carry`` and
    ``sharpen_temperature`` matter only for a self-conditioned model (its ``selfcond`` config); ``window``,
    ``min_window``, ``window_schedule`` and ``verify_loops`` only for the speculative sampler (which does not
    use ``steps``); ``remask``, ``eta``, ``t_on``, ``t_off``, ``alpha_on`` only for ReMDM; ``block_size`` for the
    block and threshold samplers; ``threshold`` for the threshold sampler. ``compile_network``: run the model's
    forward through ``torch.compile`` (the speculative sampler's trunk and verifier stay eager); off by default, see
    the module docstring. ``template``: conditional generation — a canvas [L] (for every sample) or [num_samples, L]
    holding given token ids where they are fixed and ``mask_id`` where the sampler generates; every sampler keeps the
    given tokens (``scmdm.templates`` builds templates from text, SMILES, DNA and images)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if num_samples <= 0 or steps <= 0 or batch_size <= 0:
        raise ValueError("num_samples, steps and batch_size must be positive")
    spec = SAMPLERS[sampler]
    templates = check_template(template, num_samples=num_samples, length=length, vocab_size=model.config.vocab_size,
                               mask_id=mask_id)
    if spec.needs_verifier and not getattr(model, "speculative", False):
        raise ValueError(NO_VERIFIER)
    options = SamplerOptions(steps=steps, precision=precision, window=window, min_window=min_window,
                             window_schedule=window_schedule, verify_loops=verify_loops, remask=remask, eta=eta,
                             t_on=t_on, t_off=t_off, alpha_on=alpha_on, block_size=block_size, threshold=threshold)
    device = torch.device(device)
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    network = torch.compile(model) if compile_network else model  # delegates attribute access to the model
    denoiser = Denoiser(network, mask_id, temperature=temperature, top_p=top_p, carry=carry,
                        sharpen_temperature=sharpen_temperature, generator=generator)
    sizes = [min(batch_size, num_samples - start) for start in range(0, num_samples, batch_size)]
    outputs, nfe_total, causal_total = [], 0.0, 0.0
    start = time.perf_counter()
    with tqdm(total=len(sizes) * (steps if spec.counts_steps else length), disable=not show_progress,
              desc=f"sample ({spec.label(sampler, options)})", dynamic_ncols=True,
              unit="step" if spec.counts_steps else "pos", leave=False) as bar:
        for first, size in zip(range(0, num_samples, batch_size), sizes, strict=True):
            canvas = None if templates is None else templates[first:first + size].to(device)
            tokens, nfe, nfe_causal = spec.run(denoiser, schedule, size, length, options, generator, device, bar,
                                               canvas)
            outputs.append(tokens.cpu())
            nfe_total += nfe * size
            causal_total += nfe_causal * size
    return SampleResult(tokens=torch.cat(outputs), nfe=nfe_total / num_samples, forward_passes=denoiser.calls,
                        seconds=time.perf_counter() - start, nfe_causal=causal_total / num_samples)
