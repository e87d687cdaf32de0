"""Sample a self-conditioned model under three hint regimes, to locate where the ablation's loss of validity
comes from (issue: SCMDM; docs/results/selfcond_qm9.md, "Sampling with the hint of training").

    chained   the library's sampler: step k's hint is step k−1's prediction, made at a more-masked x and
              itself self-conditioned (T network evaluations)
    fresh     every step first runs the null pass at its own x_t, then the conditioned pass on that hint:
              the hint post-training trains on (2T network evaluations; a diagnostic, not a sampler to use)
    null      the hint is never given: the model's null path alone (T network evaluations)

With the default ``carry=distribution`` the hint draws no random numbers, so the three regimes consume the same
random stream: their differences come from the hint alone. If ``fresh`` recovers the control's validity and
``chained`` does not, the cost is the sampler's stale, iterated hint (train–test mismatch); if ``fresh`` loses
too, the hint-conditioned network itself makes less valid molecules from the hint it was trained on.

    python -m benchmarks.selfcond_hint_sampling runs/selfcond/control/seed0 runs/selfcond/mask_add@1/seed0 \
        runs/selfcond/mask_add@0.5/seed0 --T 32 --temperature 1.0

Works in every domain: the metrics are the domain evaluator's plus the diversity metrics of
``benchmarks.selfcond_domain`` (6-mer entropy for DNA, feature spread for images), as in the ablation's rows, e.g.

    python -m benchmarks.selfcond_hint_sampling runs/selfcond_image/control/seed0 \
        runs/selfcond_image/mask_add@1/seed0 --T 32 --temperature 1.0

Prints a markdown table of the domain's headline metrics (``COLUMNS``; a model that is not self-conditioned gets the
chained row only: its three regimes are one); ``--out FILE`` also writes the rows, every metric, as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT
from benchmarks.selfcond_ablation import BATCH_SIZE
from benchmarks.selfcond_domain import SPECS, extra_metrics
from scmdm.checkpoint import LoadedCheckpoint, load_checkpoint
from scmdm.denoiser import Denoiser
from scmdm.sampling import ancestral_sample
from scmdm.schedules import get_schedule
from scmdm.workflows import evaluator_for

REGIMES = ("chained", "fresh", "null")
#: the metrics the printed table shows, per domain (the JSON rows hold every metric)
COLUMNS = {"molecule": ("validity", "uniqueness", "novelty", "valid_unique_novel", "fcd"),
           "dna": ("js_6", "gc_w1", "kmer_entropy", "nearest_identity"),
           "image": ("fd_cnn", "classifier_score", "feature_spread", "class_entropy"),
           "text": ("scorer_bpc", "gen_ppl", "entropy_bits")}


class FreshHintDenoiser(Denoiser):
    """Ignores the carried hint: each call is the null pass at x_t, then the pass conditioned on its hint."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor,
                 hint: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        _, fresh = super().__call__(x_t, t, None)
        return super().__call__(x_t, t, fresh)


class NullHintDenoiser(Denoiser):
    """Ignores the carried hint: every call is the null pass."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor,
                 hint: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return super().__call__(x_t, t, None)


DENOISERS = {"chained": Denoiser, "fresh": FreshHintDenoiser, "null": NullHintDenoiser}


def sample_tokens(loaded: LoadedCheckpoint, regime: str, *, steps: int, num_samples: int, temperature: float = 1.0,
                  seed: int = 0, batch_size: int = BATCH_SIZE) -> tuple[torch.Tensor, float, float]:
    """(tokens, network evaluations per sequence, seconds): ancestral sampling in batches, float64 draws, under the
    hint ``regime``; the generator is seeded as ``scmdm.sampling.generate`` seeds it."""
    model, config = loaded.model.eval(), loaded.config
    generator = torch.Generator().manual_seed(seed)
    denoiser = DENOISERS[regime](model, loaded.tokenizer.mask_id, temperature=temperature,
                                 carry=config.selfcond.carry, sharpen_temperature=config.selfcond.sharpen_temperature,
                                 generator=generator)
    schedule = get_schedule(config.diffusion.schedule)
    started, outputs = time.perf_counter(), []
    for start in range(0, num_samples, batch_size):
        size = min(batch_size, num_samples - start)
        tokens, _ = ancestral_sample(denoiser, schedule, batch_size=size, length=config.data.max_length,
                                     steps=steps, generator=generator)
        outputs.append(tokens)
    return torch.cat(outputs), denoiser.rows / num_samples, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="post-training run folders (the control's too)")
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, help="sampling seed (default: the run's train.seed − 100, as in "
                        "selfcond_ablation.py, so the chained row repeats the ablation's)")
    parser.add_argument("--regimes", nargs="+", choices=REGIMES, default=list(REGIMES),
                        help="hint regimes to sample (chained repeats the ablation's cached row)")
    parser.add_argument("--batch-size", type=int, help="samples per batch (default: the ablation's for the domain, "
                        "selfcond_ablation 500 for molecules, selfcond_domain's SPECS otherwise: the chained row then "
                        "draws the ablation's samples)")
    parser.add_argument("--out", help="also write the rows here (JSON)")
    args = parser.parse_args()
    rows, evaluator, extra, columns = [], None, None, ()
    for run in args.runs:
        loaded = load_checkpoint(run)
        if evaluator is None:
            domain = loaded.config.data.domain
            evaluator, columns = evaluator_for(loaded.config, loaded.split_info), COLUMNS[domain]
            extra = extra_metrics(domain, evaluator)
            batch_size = args.batch_size or (SPECS[domain].batch_size if domain in SPECS else BATCH_SIZE)
            print("| run | hint | " + " | ".join(columns) + " | NFE | seconds |")
            print("|---|---|" + "---:|" * (len(columns) + 2))
        seed = args.seed if args.seed is not None else loaded.config.train.seed - 100
        regimes = args.regimes if getattr(loaded.model, "self_conditioned", False) else ["chained"]
        path = Path(run).resolve()
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else run
        for regime in regimes:
            tokens, nfe, seconds = sample_tokens(loaded, regime, steps=args.T, num_samples=args.num_samples,
                                                 temperature=args.temperature, seed=seed, batch_size=batch_size)
            items = loaded.tokenizer.decode_batch(tokens)
            m = {**evaluator.evaluate(items).as_dict(), **(extra(items) if extra else {})}
            rows.append({"run": str(name), "hint": regime, "T": args.T, "temperature": args.temperature,
                         "seed": seed, "nfe": nfe, "seconds": seconds, **m})
            print(f"| {name} | {regime} | " + " | ".join(f"{m[c]:.4g}" for c in columns)
                  + f" | {nfe:.0f} | {seconds:.0f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
