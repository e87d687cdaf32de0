"""Train a base image model (raster-scan grey levels) and measure it next to the rows of the same evaluator that
tell good from bad: real held-out images (the validation split) and pixel-independent samples (every pixel drawn
from its own marginal over the training images). Writes runs/<config>/ (the checkpoint post-training starts
from), benchmarks/results/<config>.json, and in docs/results/: <config>_loss_curve.png, sample grids
<config>_samples_<sampler>_T<T>.png (the model) and <config>_real.png (held-out images), and the section ``<config>`` of
bases.md.

    python -m benchmarks.image_base                   # config fashion_mnist_k16: train ≤ 55 min, evaluate
    python -m benchmarks.image_base --skip-train      # re-evaluate an existing run
    python -m benchmarks.image_base --config fashion_mnist14   # the 14×14 set (runs/fashion_mnist14)
    python -m benchmarks.image_base --root /tmp/trial --out /tmp/trial/run data.source=digits data.max_length=64 \
        train.steps=2 model.width=32 model.depth=1 model.heads=2 --num-samples 50 --steps 4   # a trial run

Training resumes if the run folder already holds a checkpoint. Metrics (scmdm.domains.image.evaluator): the Fréchet
distance in the features of scmdm's own small CNN, trained on the training images (**not Inception FID**: its
numbers compare only within one table), and the classifier score of the same CNN. Likelihood: the model's
validation NELBO in bits per pixel, next to the cross-entropy of the pixel-independent model.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from benchmarks.common import (
    base_parser,
    benchmark_config,
    machine,
    model_rows,
    parse_args,
    row_line,
    save_run_files,
    train_and_load,
    validation_bits,
    write_results_section,
)
from scmdm.domains import get_domain
from scmdm.domains.image.evaluator import save_image_grid
from scmdm.workflows import evaluator_for


def independent_bits_per_pixel(train: np.ndarray, valid: np.ndarray, levels: int) -> float:
    """Cross-entropy in bits per pixel, on ``valid`` ((N, H, W) levels), of the model that draws every pixel
    independently from its own marginal over ``train`` (add-one smoothing): ``−mean log2 p_j(x_j)``,
    ``p_j(ℓ) = (count_j(ℓ) + 1) / (N_train + K)`` — the likelihood of the pixel-independent baseline row."""
    flat = train.reshape(len(train), -1).astype(np.int64)
    counts = np.stack([np.bincount(flat[:, j], minlength=levels) for j in range(flat.shape[1])]) + 1.0  # [H·W, K]
    log_p = np.log2(counts / counts.sum(axis=1, keepdims=True))
    held = valid.reshape(len(valid), -1).astype(np.int64)
    return float(-log_p[np.arange(held.shape[1])[None, :], held].mean())


def main() -> int:
    parser = base_parser(__doc__, "fashion_mnist_k16")
    parser.add_argument("--valid-images", type=int, default=500,
                        help="validation NELBO on the first N validation images (0 = all; K = 16 passes over each)")
    args = parse_args(parser)
    name, config, out, root = benchmark_config(parser, args, "image")
    steps = args.steps or sorted({config.sample.steps // 2, config.sample.steps})
    t0 = time.perf_counter()
    loaded = train_and_load(config, out, args.skip_train)
    bits, valid = validation_bits(loaded, limit=args.valid_images)
    print(f"validation NELBO ({len(valid)} images, K=16): {bits:.4f} bits/pixel")
    domain = get_domain("image")
    evaluator = evaluator_for(loaded.config, loaded.split_info, tokenizer=loaded.tokenizer, show_progress=True)
    levels = loaded.tokenizer.levels
    independent = independent_bits_per_pixel(evaluator.train_images,
                                             np.asarray(loaded.tokenizer.decode_batch(valid)), levels)
    print(f"pixel-independent model on the validation images: {independent:.4f} bits/pixel; classifier test "
          f"accuracy {evaluator.test_accuracy:.4f}")

    reference = evaluator.reference_row(n=args.num_samples or config.sample.num_samples)
    n = reference.n_samples  # every row is measured on this many images
    table_rows = [(f"real held-out images (validation split; n={n})", reference.as_dict())]
    table_rows += [(label, m.as_dict()) for label, m in evaluator.baseline_rows(n=n)]
    for label, metrics in table_rows:
        print(row_line(domain, label, metrics, evaluator), flush=True)

    def show(label: str, metrics: dict) -> None:
        table_rows.append((label, metrics))
        print(row_line(domain, label, metrics, evaluator), flush=True)

    evaluations = model_rows(loaded, evaluator, args.samplers, steps, n, config.sample.batch_size, show)
    table = domain.table(table_rows, evaluator)
    print(table)

    state, c = loaded.state, loaded.config
    split = loaded.split_info
    figures = root / "docs" / "results"
    figures.mkdir(parents=True, exist_ok=True)
    grids = []
    for ev in evaluations:
        file = f"{name}_samples_{ev.metrics['sampler']}_T{ev.metrics['steps']}.png"
        save_image_grid(ev.samples[:100], figures / file, levels, columns=10)
        grids.append((ev.name, file))
    real_file = f"{name}_real.png"
    save_image_grid(evaluator.holdout_images[:100], figures / real_file, levels, columns=10)
    payload = {"val_nelbo_bits_per_pixel": bits, "independent_bits_per_pixel": independent,
               "classifier_test_accuracy": evaluator.test_accuracy, "train_state": state, "config": c.to_dict(),
               "split": split, "rows": [ev.metrics for ev in evaluations], "reference_rows": dict(table_rows[:2]),
               "grids": dict(grids), "machine": machine()}
    payload["split"].pop("sha256", None)
    curve = save_run_files(root, name, payload, out)
    seconds = {ev.name: ev.metrics["seconds"] for ev in evaluations}
    height, width = split["shape"]
    pictures = " ".join(f"![{label}]({file})" for label, file in grids)
    markdown = f"""## Image base model ({name})

Command: `python -m benchmarks.image_base --config {name}` (config `src/scmdm/configs/{name}.yaml`; checkpoint in
`runs/{name}/checkpoints/`, rebuilt by the same command; `--skip-train` re-evaluates it).

Data: {split['source']}, {height}×{width} pixels quantised to K = {levels} grey levels, raster-scan canvases of
{height * width} tokens; {split['sizes']['train']:,} training, {split['sizes']['valid']:,} validation and
{split['sizes']['test']:,} test images. Model: {c.model.depth} layers, width {c.model.width},
{state.get('num_parameters', 0) / 1e6:.2f} M parameters; trained {state['step']} steps × {c.train.batch_size} images
in {state['elapsed'] / 60:.1f} min on {torch.get_num_threads()} CPU threads ({c.train.precision} autocast). Every
network evaluation sees all {height * width} tokens, and attention is quadratic in them: the model is kept small
and T short so that sampling {n:,} images takes minutes on a CPU
({', '.join(f'{k}: {v / 60:.1f} min' for k, v in seconds.items())}).

Validation NELBO (EMA weights, the first {len(valid):,} validation images, K = 16 midpoint times, seed 0):
**{bits:.4f} bits per pixel**; the pixel-independent model (each pixel's marginal over the training images,
add-one smoothing) scores {independent:.4f} bits per pixel on the same images, uniform levels
{np.log2(levels):.0f}.

{n:,} images per row (all rows the same n), seed 0, float64 draws, temperature 1. `fd_cnn` is the Fréchet distance
to the {split['sizes']['test']:,} test images in the 128-d features of scmdm's own CNN (trained on the training
images, test accuracy {evaluator.test_accuracy:.4f}) — **not Inception FID**, comparable only within this table;
`classifier_score` is exp E[KL(p(y|x) ‖ p(y))] with the same CNN (10 = confident and balanced over the 10
classes). `nfe` is network evaluations per image, `seconds` the wall clock for all of them.

{table}

Samples (the first 100 of each row; real held-out images first): ![real held-out images]({real_file}) {pictures}

![loss curve]({curve})
"""
    write_results_section(name, markdown, page=root / "docs" / "results" / "bases.md")
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
