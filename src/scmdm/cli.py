"""``scmdm`` command line: train, sample, eval, demo.

Every command takes ``section.key=value`` overrides after its options; ``scmdm <command> --help``
lists every option with its default and meaning.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scmdm.config import ConfigError, apply_overrides, describe_config, load_config

EXAMPLES = {
    "train": "scmdm train --config qm9_base --out runs/qm9_base train.steps=3000 model.depth=6",
    "sample": "scmdm sample runs/qm9_base --out samples.smi sample.sampler=cached sample.steps=128",
    "eval": "scmdm eval runs/qm9_base sample.steps=64   |   scmdm eval runs/qm9_base --samples samples.smi",
    "demo": "scmdm demo --out runs/demo",
}


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="scmdm", description="Masked diffusion models: train, sample, evaluate.",
                                     formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, sections: tuple[str, ...]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter,
                           epilog=f"example:\n  {EXAMPLES[name]}\n\noverrides (section.key=value):\n"
                                  + describe_config(sections))
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return p

    train = command("train", "Train a masked diffusion model (resumes if --out already holds a checkpoint).",
                    ("data", "model", "diffusion", "train"))
    train.add_argument("--config", help="YAML config file, or the name of one in configs/ (e.g. qm9_base)")
    train.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss_curve.png")
    train.add_argument("--no-resume", action="store_true", help="refuse to start if --out has a checkpoint")

    sample = command("sample", "Sample sequences from a checkpoint.", ("sample",))
    sample.add_argument("checkpoint", help="run folder (newest checkpoint) or checkpoint folder")
    sample.add_argument("--out", help="write samples here, one per line (default: print them)")
    sample.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")

    evaluate = command("eval", "Evaluate samples of a checkpoint (validity, uniqueness, novelty, FCD, QED, SA) "
                               "next to real held-out molecules.", ("sample",))
    evaluate.add_argument("checkpoint", help="run folder (newest checkpoint) or checkpoint folder")
    evaluate.add_argument("--samples", help="evaluate this SMILES file instead of sampling")
    evaluate.add_argument("--json", help="also write the metrics as JSON here")
    evaluate.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")

    demo = command("demo", "Train a small model on QM9, sample 1,000 molecules and print the metrics table.",
                   ("data", "model", "diffusion", "train", "sample"))
    demo.add_argument("--out", default="runs/demo", help="run folder")
    demo.add_argument("--config", default="qm9_demo", help="config name or YAML path")
    for p in (train, sample, evaluate, demo):  # last, so that positional checkpoints come first
        p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides (listed below)")
    return parser


def _sample_config(loaded_config, overrides: list[str]):
    config = apply_overrides(loaded_config, overrides)
    config.sample.validate()
    return config.sample


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = [*args.overrides, *extra]  # overrides may also come after options
    try:
        return _run(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"scmdm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scmdm {args.command}: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from scmdm.checkpoint import CheckpointError

    try:
        if args.command == "train":
            return _train(args)
        if args.command == "demo":
            from scmdm.workflows import run_demo

            run_demo(args.out, args.config, args.overrides, show_progress=not args.no_progress)
            return 0
        if args.command == "sample":
            return _sample(args)
        return _eval(args)
    except CheckpointError as err:
        print(f"scmdm {args.command}: error: {err}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from scmdm.training import Trainer
    from scmdm.workflows import resolve_config_path

    config = load_config(resolve_config_path(args.config), args.overrides)
    out = Path(args.out)
    if args.no_resume and any((out / "checkpoints").glob("step_*")):
        raise ValueError(f"{out} already holds checkpoints and --no-resume was given")
    result = Trainer(config, out, show_progress=not args.no_progress).fit()
    print(f"trained to step {result.step} in {result.seconds / 60:.1f} min; validation NELBO "
          f"{result.val_nelbo_bits:.4f} bits/token; checkpoint {result.checkpoint}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from scmdm.checkpoint import load_checkpoint
    from scmdm.workflows import sample_checkpoint

    probe = load_checkpoint(args.checkpoint, device=args.device)
    sample = _sample_config(probe.config, args.overrides)
    loaded = probe if sample.use_ema else load_checkpoint(args.checkpoint, use_ema=False, device=args.device)
    smiles, result = sample_checkpoint(loaded, sample, device=args.device, show_progress=not args.no_progress)
    text = "\n".join(smiles) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(smiles)} samples to {args.out} (NFE {result.nfe:.1f}, {result.seconds:.1f} s)",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from scmdm.checkpoint import load_checkpoint
    from scmdm.evaluation import format_table
    from scmdm.workflows import TABLE_COLUMNS, evaluator_for, sample_and_evaluate

    probe = load_checkpoint(args.checkpoint, device=args.device)
    sample = _sample_config(probe.config, args.overrides)
    loaded = probe if sample.use_ema else load_checkpoint(args.checkpoint, use_ema=False, device=args.device)
    evaluator = evaluator_for(loaded.config, loaded.split_info)
    if args.samples:
        path = Path(args.samples)
        if not path.exists():
            raise FileNotFoundError(f"samples file {path} does not exist")
        smiles = path.read_text(encoding="utf-8").splitlines()
        name, metrics = path.name, evaluator.evaluate(smiles).as_dict()
    else:
        evaluation = sample_and_evaluate(loaded, evaluator, sample, device=args.device,
                                         show_progress=not args.no_progress)
        name, metrics = evaluation.name, evaluation.metrics
    n = metrics["n_samples"]
    reference = evaluator.reference_row(n=min(n, 1000)).as_dict()
    print(format_table([(f"real held-out molecules (n={min(n, 1000)})", reference), (name, metrics)],
                       columns=TABLE_COLUMNS))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": metrics, "reference": reference}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
