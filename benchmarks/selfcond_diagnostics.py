"""What a self-conditioned model does with its hint, and with the hints sampling gives it (issue: SCMDM;
docs/results/selfcond_qm9.md, "What the network does with its hint").

Post-training shows the network one kind of hint: p̂ = p_θ(x₀ | x_t, null), computed at the *same* x_t
(``two_pass_logits``). Sampling hands it others: the previous step's prediction, made at a more-masked
state x_s (s = t + 1/T) and itself self-conditioned. This script measures the validation NELBO (bits per
token, the trainer's protocol: K-point midpoint rule in t, masks fixed by seed 0; every condition sees the
same x_t) of a post-trained model under each kind of hint:

    null        no hint (the first sampling step; pass 1 of training)
    fresh       p̂ from the null pass at the same x_t (what post-training trains on)
    iterated    the hint of ``fresh`` fed through one more self-conditioned pass at x_t, as at a sampling
                step that reveals nothing
    stale Δ     p̂ from the null pass at x_s ⊇ masks of x_t, s = t + Δ: each token x_t shows is masked again
                with probability 1 − α(s)/α(t) (Δ = 1/T is one sampling step)
    shuffled    the fresh hints of other sequences of the batch (how much the network leans on the hint)
    oracle      the one-hot of the true x₀ (how much the network can read from a hint at all)

    python -m benchmarks.selfcond_diagnostics runs/selfcond/control/seed0 runs/selfcond/mask_add@1/seed0 \
        runs/selfcond/projection@1/seed0

A model without self-conditioning (the control) gets the null row only, on the same masks.

Prints a markdown table, then the null and fresh rows at each t of the grid (where along the trajectory the null
path drifts, and where the hint helps: sampling's first step runs the null path at t ≈ 1); ``--out FILE`` also
writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import ROOT
from scmdm.checkpoint import load_checkpoint
from scmdm.diffusion import mask_tokens, masked_token_nll, subs_log_probs
from scmdm.domains import prepare_data
from scmdm.schedules import get_schedule
from scmdm.selfcond import carried_hint, lagged_input

STALE = (1 / 64, 1 / 16, 1 / 4)
CONDITIONS = ("null", "fresh", "iterated", *(f"stale 1/{round(1 / d)}" for d in STALE), "shuffled", "oracle")


@torch.no_grad()
def hint_nelbo(run: str | Path, *, num_t: int = 8, max_sequences: int = 1024, batch_size: int = 256) -> dict:
    """Validation NELBO (bits/token) of a self-conditioned checkpoint under each hint of ``CONDITIONS`` (of any
    other checkpoint: the null condition alone)."""
    loaded = load_checkpoint(run)
    model, config, tokenizer = loaded.model.eval(), loaded.config, loaded.tokenizer
    self_conditioned = bool(getattr(model, "self_conditioned", False))  # if not (a control): the null row only
    sc, mask_id = config.selfcond, tokenizer.mask_id
    schedule = get_schedule(config.diffusion.schedule)
    data = prepare_data(config, tokenizer, quiet=True).valid[:max_sequences]
    generator = torch.Generator().manual_seed(0)  # the masks of x_t: the same for every model
    hint_generator = torch.Generator().manual_seed(1)  # re-masking and token carries
    t_values = ((torch.arange(num_t, dtype=torch.float64) + 0.5) / num_t).tolist()
    by_t = {k: [0.0] * num_t for k in CONDITIONS}  # each condition's weighted NLL at each t of the grid
    length = data.shape[1]

    def carry(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return carried_hint(subs_log_probs(logits, x, mask_id), sc.carry, sharpen_temperature=sc.sharpen_temperature,
                            generator=hint_generator)

    for start in range(0, data.shape[0], batch_size):
        x0 = data[start:start + batch_size]
        for k_t, t_value in enumerate(t_values):
            t = torch.full((x0.shape[0],), t_value)
            x_t = mask_tokens(x0, t, schedule, mask_id, generator)
            weight = float(schedule.loss_weight(torch.tensor(t_value, dtype=torch.float64)))

            def nll(logits: torch.Tensor, x_t: torch.Tensor = x_t, x0: torch.Tensor = x0,
                    weight: float = weight) -> float:
                return float(masked_token_nll(logits, x0, x_t, mask_id).double().sum()) * weight

            null_logits = model(x_t, t)
            by_t["null"][k_t] += nll(null_logits)
            if not self_conditioned:
                continue
            fresh = carry(null_logits, x_t)
            fresh_logits = model(x_t, t, p_prev=fresh)
            by_t["fresh"][k_t] += nll(fresh_logits)
            by_t["iterated"][k_t] += nll(model(x_t, t, p_prev=carry(fresh_logits, x_t)))
            for delta in STALE:
                x_s, s = lagged_input(x_t, t, delta, schedule, mask_id, generator=hint_generator)
                by_t[f"stale 1/{round(1 / delta)}"][k_t] += nll(model(x_t, t, p_prev=carry(model(x_s, s), x_s)))
            shuffled = fresh[torch.roll(torch.arange(x0.shape[0]), 1)]
            by_t["shuffled"][k_t] += nll(model(x_t, t, p_prev=shuffled))
            by_t["oracle"][k_t] += nll(model(x_t, t, p_prev=F.one_hot(x0, fresh.shape[-1]).float()))
    scale = 1.0 / (data.shape[0] * length * math.log(2.0))  # bits per token at one t; the NELBO is their mean
    shown = [k for k in CONDITIONS if self_conditioned or k == "null"]
    return {"run": str(run), "step": loaded.state.get("step"), "sequences": int(data.shape[0]), "num_t": num_t,
            "injection": sc.injection, "rate": sc.rate, "t": t_values,
            "bits": {k: sum(by_t[k]) * scale / num_t if k in shown else None for k in CONDITIONS},
            "bits_by_t": {k: [v * scale for v in by_t[k]] if k in shown else None for k in CONDITIONS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="self-conditioned run folders or checkpoints")
    parser.add_argument("--num-t", type=int, default=8)
    parser.add_argument("--max-sequences", type=int, default=1024)
    parser.add_argument("--out", help="also write the numbers here (JSON)")
    args = parser.parse_args()
    results = [hint_nelbo(run, num_t=args.num_t, max_sequences=args.max_sequences) for run in args.runs]
    print("| run | " + " | ".join(CONDITIONS) + " |")
    print("|---|" + "---:|" * len(CONDITIONS))
    names = []
    for r in results:
        name = Path(r["run"]).resolve().relative_to(ROOT) if Path(r["run"]).resolve().is_relative_to(ROOT) else r["run"]
        cells = ["–" if r["bits"][k] is None else f"{r['bits'][k]:.4f}" for k in CONDITIONS]
        print(f"| {name} | " + " | ".join(cells) + " |")
        names.append(name)
    print("\nweighted NLL at each t of the grid (bits/token; the NELBO above is their mean), null | fresh:")
    print("| run | " + " | ".join(f"t={t:.3f}" for t in results[0]["t"]) + " |")
    print("|---|" + "---:|" * len(results[0]["t"]))
    for name, r in zip(names, results, strict=True):
        null, fresh = r["bits_by_t"]["null"], r["bits_by_t"]["fresh"]
        cells = [f"{n:.3f}" + (f" \\| {f:.3f}" if fresh else "") for n, f in zip(null, fresh or null, strict=True)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
