"""What a post-trained causal verifier has learned: does it read the tokens of its tracks? (docs/SPECULATIVE.md,
"Why the verifier normalises the trunk states and puts keys at σ(k)").

For a verifier run (default runs/speculative/spec) on its validation canvases:

1. draft and target NLL, bits per canvas token, at each fixed revealed count i (σ drawn per canvas, seed 0):
   D/(D − i)·Σ_{d>i} −log p / D and the same for q (``speculative_loss`` with ``revealed = i``). The
   target can beat the draft by the dependence among the masked tokens; a verifier that reads its tracks
   gains at every i, not at i = 0 alone;
2. the target NLL again with the tokens of the masked tracks shuffled between canvases: unchanged means the
   verifier does not condition on earlier drafts at all;
3. the norms of the terms of the verifier's track input, E·x against A·LN?(h) and B·LN?(h).

``--retrain`` trains a fresh verifier on the frozen trunk for ``--steps`` steps (AdamW, lr 1e-3, 20 warm-up
steps, ``--batch-size`` canvases: by default the run's own training batch) and repeats 1–3: by default the
library's verifier (``speculative.state_norm``: LN(h), E drawn with std 1, A and B with std 0.02);
``--legacy-init`` keeps LN(h) but draws E with std 0.02 and A, B as ``nn.Linear`` does (the initialisation
before state_norm); ``--no-state-norm`` adds raw states as well.

    python -m benchmarks.verifier_diagnostics                                  # the trained verifier
    python -m benchmarks.verifier_diagnostics --retrain --steps 150            # the verifier as built now
    python -m benchmarks.verifier_diagnostics --retrain --steps 150 --legacy-init   # LayerNorm alone
    python -m benchmarks.verifier_diagnostics --retrain --key-positions predicted   # keys at σ(k+1), as before
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch

from benchmarks.common import ROOT
from scmdm.checkpoint import load_checkpoint
from scmdm.diffusion import masked_token_nll
from scmdm.domains import prepare_data
from scmdm.model import KEY_POSITIONS
from scmdm.model.verifier import CausalVerifier
from scmdm.objectives.speculative import set_train_mode, speculative_loss, trainable_parameters
from scmdm.tracks import gather_tracks, mask_after, sample_orders


def nll_by_revealed(model, x0: torch.Tensor, mask_id: int, counts: list[int]) -> list[dict]:
    """Draft and target NLL (bits per canvas token) at each revealed count, real and shuffled track tokens."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    batch, length = x0.shape
    bits = 1.0 / (length * math.log(2.0))
    for i in counts:
        order = sample_orders(batch, length, generator=generator)
        revealed = torch.full((batch,), i)
        x_t = mask_after(x0, order, revealed, mask_id)
        h, cond = model.encode(x_t, (length - revealed).float() / length)
        h_sigma, tokens, x_t_sigma = gather_tracks(h, order), gather_tracks(x0, order), gather_tracks(x_t, order)
        shuffled = tokens.clone()
        shuffled[:, i:] = tokens[torch.randperm(batch, generator=generator), i:]
        weight = length / (length - i)
        draft = masked_token_nll(model.output_layer(h, cond), x0, x_t, mask_id).mean() * weight * bits
        target = masked_token_nll(model.verify(h_sigma, cond, order, tokens), tokens, x_t_sigma, mask_id)
        target_shuffled = masked_token_nll(model.verify(h_sigma, cond, order, shuffled), tokens, x_t_sigma, mask_id)
        verifier = model.causal
        states = verifier.state_norm(h_sigma) if verifier.state_norm is not None else h_sigma
        rows.append({"i": i, "draft": float(draft), "target": float(target.mean() * weight * bits),
                     "target_shuffled": float(target_shuffled.mean() * weight * bits),
                     "norm_tokens": float(verifier.token_embedding(tokens).norm(dim=-1).mean()),
                     "norm_state_current": float(verifier.state_current(states).norm(dim=-1).mean()),
                     "norm_state_next": float(verifier.state_next(states).norm(dim=-1).mean())})
    return rows


def retrain(model, train: torch.Tensor, mask_id: int, *, steps: int, state_norm: bool, legacy_init: bool,
            key_positions: str = "token", batch_size: int = 256, seed: int = 0) -> None:
    """A fresh verifier on the frozen trunk, trained ``steps`` steps of ``batch_size`` canvases."""
    torch.manual_seed(seed)
    model.causal = CausalVerifier(dataclasses.replace(model.config, causal_state_norm=state_norm,
                                                      causal_key_positions=key_positions))
    if legacy_init:
        with torch.no_grad():
            model.causal.token_embedding.embedding.normal_(0.0, 0.02)
        model.causal.state_current.reset_parameters()
        model.causal.state_next.reset_parameters()
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 20)
        set_train_mode(model, freeze_trunk=True)
        batch = train[torch.randint(0, len(train), (batch_size,), generator=generator)]
        out = speculative_loss(model, batch, mask_id, generator=generator, freeze_trunk=True)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step}: draft {float(out.draft) / math.log(2):.4f} target "
                  f"{float(out.target) / math.log(2):.4f} bits/token ({time.perf_counter() - start:.0f} s)", flush=True)
    model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(ROOT / "runs" / "speculative" / "spec"), help="a verifier run")
    parser.add_argument("--canvases", type=int, default=512, help="validation canvases")
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 1, 2, 3, 6, 12, 18], help="revealed counts i")
    parser.add_argument("--retrain", action="store_true", help="train a fresh verifier first (see the options)")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--batch-size", type=int, help="retraining batch (default: the run's train.batch_size)")
    parser.add_argument("--no-state-norm", action="store_true", help="retrain on raw trunk states (implies "
                                                                        "--legacy-init)")
    parser.add_argument("--legacy-init", action="store_true", help="E with std 0.02, A and B as nn.Linear draws them")
    parser.add_argument("--key-positions", choices=KEY_POSITIONS, default="token",
                        help="retrain with keys rotated by σ(k) (token, the default) or σ(k+1) (predicted: "
                             "verifiers saved without the field)")
    args = parser.parse_args()
    loaded = load_checkpoint(args.run)  # the trunk is frozen: its raw and EMA weights are the same
    model, mask_id = loaded.model.eval(), loaded.tokenizer.mask_id
    if not model.speculative:
        parser.error(f"{args.run} has no verifier")
    data = prepare_data(loaded.config, tokenizer=loaded.tokenizer, quiet=True)
    if args.retrain:
        retrain(model, data.train, mask_id, steps=args.steps, state_norm=not args.no_state_norm,
                batch_size=args.batch_size or loaded.config.train.batch_size,
                legacy_init=args.legacy_init or args.no_state_norm, key_positions=args.key_positions)
    with torch.inference_mode():
        rows = nll_by_revealed(model, data.valid[:args.canvases], mask_id, args.counts)
    how = (f"retrained {args.steps} steps{', legacy init' if args.legacy_init or args.no_state_norm else ''}"
           if args.retrain else "as trained")
    print(f"{args.run} ({how}, state_norm={model.causal.state_norm is not None}, "
          f"key_positions={model.causal.key_positions}); bits per canvas token, "
          f"{args.canvases} canvases")
    print("| i | draft | target | gain | target, masked-track tokens shuffled | ‖E·x‖ | ‖A·h‖ | ‖B·h‖ |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['i']} | {r['draft']:.4f} | {r['target']:.4f} | {r['draft'] - r['target']:+.4f} | "
              f"{r['target_shuffled']:.4f} | {r['norm_tokens']:.1f} | {r['norm_state_current']:.1f} | "
              f"{r['norm_state_next']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
