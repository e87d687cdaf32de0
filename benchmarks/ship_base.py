"""Ship a trained base model (and its verifier) into models/, with a model card, so that later work and users start
from it instead of retraining: runs/ is not kept with the repository, models/ is.

    python -m benchmarks.ship_base text_kjv       # runs/text_kjv(_spec) → models/text_kjv(_spec)
    python -m benchmarks.ship_base dna_ecoli_v2   # runs/dna_ecoli_v2(_spec) → models/dna_ecoli(_spec)
    python -m benchmarks.ship_base fashion_mnist14   # runs/fashion_mnist14 → models/fashion_mnist14

Each run must have finished its schedule (steps decide; the card says how many). The card leads with how the model
was trained, its validation NELBO in the trainer's protocol, and a "Measured" section (figures, command, page);
below it, the generic card that ``scmdm export`` writes (architecture, data split, files). A folder over 25 MB is
refused. The QM9 models are built by benchmarks/shipped_models.py, which also samples them.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import ROOT
from scmdm.checkpoint import export_model, load_checkpoint
from scmdm.files import replace_file

MAX_MB = 25


@dataclass(frozen=True)
class Shipment:
    run: str  # under the repository root
    model: str  # under models/
    what: str  # the card's title after the folder name
    trained_with: str  # the command that trains the run
    measured: str  # the card's "Measured" section: the figures, their command and page


SHIPMENTS: dict[str, list[Shipment]] = {
    "text_kjv": [
        Shipment("runs/text_kjv", "text_kjv",
                 "a character-level masked diffusion model of the King James Bible (6 × 256 transformer, 4.8 M "
                 "parameters, 128-character windows)",
                 "scmdm train --config text_kjv --out runs/text_kjv train.max_minutes=0 train.threads=1",
                 "Validation NELBO over all 1,072 validation windows: the 1,024-step run of the same command measured "
                 "2.4269 bits/char in [bases.md](../../docs/results/bases.md). Its samples (100 a row, 3 seeds, "
                 "`python -m benchmarks.samplers_frontier --base models/text_kjv --verifier models/text_kjv_spec "
                 "--num-samples 100 --batch-size 100`): ancestral T = 64 scores 3.684 ± 0.011 and T = 128 "
                 "3.681 ± 0.036 bits/char under the SmolLM2 scorer, unigram entropy 5.17–5.18 bits (real held-out "
                 "text: 1.78 bits/char, entropy 4.67); first-hitting 3.647 ± 0.003 at 128 NFE. Every sampler: "
                 "[samplers.md](../../docs/results/samplers.md); infilling: "
                 "[infill.md](../../docs/results/infill.md)."),
        Shipment("runs/text_kjv_spec", "text_kjv_spec",
                 "the KJV text base with a causal verifier layer trained on its frozen trunk",
                 "scmdm posttrain --from models/text_kjv --out runs/text_kjv_spec --speculative train.threads=1",
                 "Speculative sampling (100 samples a row, 3 seeds, the command in "
                 "[samplers.md](../../docs/results/samplers.md)): cosine windows W ≤ 8 score 3.685 ± 0.017 scorer "
                 "bits/char at 41.6 equivalent NFE, against 3.684 ± 0.011 for the base's ancestral T = 64 (1.5× "
                 "fewer); W ≤ 4 3.667 ± 0.026 at 56.5 against T = 128's 3.681 ± 0.036 (2.3× fewer); the same unigram "
                 "entropy (5.17–5.19 bits)."),
    ],
    "dna_ecoli_v2": [
        Shipment("runs/dna_ecoli_v2", "dna_ecoli",
                 "a masked diffusion model of the E. coli K-12 MG1655 genome (4 × 192 transformer, 1.8 M parameters, "
                 "128-base windows)",
                 "python -m benchmarks.dna_base --config dna_ecoli_v2 train.threads=1",
                 "`python -m benchmarks.dna_base --config dna_ecoli_v2` ([bases.md](../../docs/results/bases.md), "
                 "section dna_ecoli_v2): validation NELBO over all 4,348 validation windows (K = 16) 1.9193 bits/base "
                 "against 1.9269 for the best Markov chain fitted on the training windows (order 7) and 1.9514 for "
                 "order 3. 1,000 samples at T = 32: 6-mer spectrum JS divergence to the test windows 0.0099 (Markov-3 "
                 "samples 0.0111, real held-out windows 0.0086), 5-mer 0.0031 (0.0035), 4-mer 0.00094 (Markov-3 "
                 "0.00082: closer); GC Wasserstein-1 0.0073 (0.0223); nearest-training-window identity 0.43, as for "
                 "held-out windows (no copies)."),
        Shipment("runs/dna_ecoli_spec", "dna_ecoli_spec",
                 "the E. coli DNA base with a causal verifier layer trained on its frozen trunk",
                 "scmdm posttrain --from models/dna_ecoli --out runs/dna_ecoli_spec --speculative train.threads=1",
                 "Validation NLL of the verifier's target 1.9091 bits/base against 1.9202 for the draft (the trunk's "
                 "any-order NELBO): little to add on a sequence this close to 2 bits/base. Infilling a 32-base gap in "
                 "500 held-out windows (`python -m benchmarks.infill --domain dna --base models/dna_ecoli --verifier "
                 "models/dna_ecoli_spec`, 3 seeds; [infill.md](../../docs/results/infill.md)): cosine W ≤ 8 needs "
                 "5.1 trunk passes (6.4 equivalent NFE) for per-base accuracy 0.265 ± 0.002, against 0.262 ± 0.002 "
                 "for the base's ancestral T = 8; accuracy is flat in NFE for every sampler (0.262–0.267; chance "
                 "0.25)."),
    ],
    "fashion_mnist14": [
        Shipment("runs/fashion_mnist14", "fashion_mnist14",
                 "a masked diffusion model of Fashion-MNIST at 14 × 14 pixels and 16 grey levels (6 × 128 "
                 "transformer, 1.19 M parameters, 196-pixel raster canvases)",
                 "python -m benchmarks.image_base --config fashion_mnist14 train.threads=1",
                 "`python -m benchmarks.image_base --config fashion_mnist14` ([bases.md](../../docs/results/bases.md), "
                 "section fashion_mnist14): validation NELBO on 500 validation images (K = 16) 1.3364 bits/pixel "
                 "against 2.6254 for the pixel-independent model. 1,000 samples a row, Fréchet distance in the "
                 "features of scmdm's own CNN (not Inception FID) to the test images: 13.87 at T = 64 and 26.0 at "
                 "T = 32, against 123.2 for pixel-independent samples (8.9× and 4.7× lower) and 0.46 for real "
                 "held-out images; classifier score 4.29 / 4.18 (pixel-independent 1.92, real 6.26)."),
    ],
}


def ship(s: Shipment, root: Path = ROOT) -> Path:
    """Export the newest checkpoint of ``root/s.run`` (EMA weights) to ``root``/models/``s.model`` and put the
    card's head on."""
    run, out = root / s.run, root / "models" / s.model
    if not run.exists():
        raise SystemExit(f"{s.run} does not exist: train it first ({s.trained_with})")
    loaded = load_checkpoint(run)
    if loaded.state.get("step") != loaded.config.train.steps:
        raise SystemExit(f"{s.run} stopped at step {loaded.state.get('step')} of {loaded.config.train.steps}: "
                         f"resume it ({s.trained_with}) before shipping")
    if out.exists():
        shutil.rmtree(out)
    export_model(run, out, command=f"{s.trained_with}; scmdm export {s.run} --out models/{s.model}")
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    if size > MAX_MB:
        shutil.rmtree(out)
        raise SystemExit(f"models/{s.model} would be {size:.1f} MB, over the {MAX_MB} MB a shipped model may take")
    state, generated = loaded.state, (out / "README.md").read_text()
    rest = generated.split("\n", 2)[2] if generated.startswith("# ") else generated
    lines = [f"# {s.model} — {s.what}", "",
             "Shipped with scmdm (`models/`), exported by `python -m benchmarks.ship_base`.", "",
             "| | |", "|---|---|",
             f"| how it was trained | `{s.trained_with}` |",
             f"| training steps | {state.get('step')} × batch {loaded.config.train.batch_size} "
             f"({state.get('tokens_seen', 0):,} canvas tokens) |",
             f"| validation NELBO (trainer protocol, EMA) | {state.get('val_nelbo_bits', float('nan')):.4f} "
             "bits/token |"]
    if "val_draft_bits" in state:
        lines.append(f"| verifier validation (σ-order NLL) | draft {state['val_draft_bits']:.4f}, target "
                     f"{state['val_target_bits']:.4f} bits/token |")
    lines += ["", "## Measured", "", s.measured, "", "---", "", rest]
    replace_file(out, "README.md", "\n".join(lines))  # and its entry in checksums.json
    print(f"models/{s.model}: {size:.1f} MB, step {state.get('step')}, val NELBO "
          f"{state.get('val_nelbo_bits', float('nan')):.4f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(SHIPMENTS), help="which base (and its verifier, if it has one)")
    parser.add_argument("--only", help="ship only this run of the base's list (e.g. runs/text_kjv)")
    args = parser.parse_args(argv)
    for shipment in SHIPMENTS[args.name]:
        if args.only is None or shipment.run == args.only.rstrip("/"):
            ship(shipment)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
