"""``scmdm`` command line: train, posttrain, sample, eval, export, demo — for every data domain
(``--domain molecule|text|...`` or ``data.domain`` in the config; sample and eval read it from the checkpoint).

Every command takes ``section.key=value`` overrides after its options; ``scmdm <command> --help``
lists every option with its default and meaning. Errors in the input (config values, data files,
checkpoints, output paths) print one line ``scmdm <command>: error: ...`` and exit with status 2 — found before
any training, sampling or evaluation starts; a run stopped by a non-finite loss, or an operating-system error
(disk full, permissions), prints one line and exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scmdm import __version__
from scmdm.config import ConfigError, apply_overrides, bundled_configs, describe_config, load_config
from scmdm.domains import DOMAIN_NAMES
from scmdm.outputs import check_output_file, writing

EXAMPLES = {
    "train": "scmdm train --config qm9_base --out runs/qm9_base train.steps=3000 model.depth=6\n  "
             "torchrun --standalone --nproc_per_node=4 -m scmdm train --config qm9_base --out runs/qm9_base   "
             "(distributed: README, Distributed training)\n  "
             "scmdm train --domain text --out runs/kjv data.source=kjv text.tokenizer=bpe data.max_length=64\n  "
             "scmdm train --domain dna --out runs/ecoli data.source=E.Coli/MG1655-K12 data.max_length=256\n  "
             "scmdm train --domain image --out runs/fmnist data.source=fashion_mnist image.levels=16",
    "sample": "scmdm sample runs/qm9_base --out samples.smi sample.sampler=cached sample.steps=128   (text: "
              "samples.txt, one sample after another, each followed by a line holding only %; dna: samples.fa "
              "(FASTA); images: samples.pgm (raw PGM, every sample) and samples.png (a grid of the first 100))",
    "eval": "scmdm eval runs/qm9_base sample.steps=64   |   scmdm eval runs/qm9_base --samples samples.smi\n  "
            "scmdm eval runs/kjv sample.num_samples=200 --baselines   |   scmdm eval runs/fmnist --samples "
            "samples.pgm --baselines",
    "demo": "scmdm demo --out runs/demo   (make demo)   |   scmdm demo train.steps=300 sample.num_samples=2000",
    "posttrain": "scmdm posttrain --from runs/qm9_base --out runs/qm9_sc selfcond.injection=projection "
                 "selfcond.rate=1   (selfcond.injection=none: the compute-matched vanilla continuation)\n  "
                 "scmdm posttrain --from runs/qm9_base --out runs/qm9_spec --speculative   (then: scmdm eval "
                 "runs/qm9_spec sample.sampler=speculative sample.window=6)",
    "export": "scmdm export runs/qm9_base --out models/qm9_base   (then: scmdm sample models/qm9_base, "
              "or scmdm.load('models/qm9_base') in Python)\n  "
              "scmdm export runs/owt_sc --format mdlm --out exported/owt_sc   (MDLM's Hugging Face layout)",
    "import": "scmdm import mdlm-owt/ --tokenizer gpt2/ --out models/mdlm_owt   (a folder in MDLM's Hugging Face "
              "layout: config.json + model.safetensors; the tokenizer: tokenizer.json or vocab.json + merges.txt)",
}


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="scmdm", description="Masked diffusion models: train, sample, evaluate.",
                                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"scmdm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, sections: tuple[str, ...], **defaults) -> argparse.ArgumentParser:
        """``defaults``: where the command's defaults come from (``describe_config``), so --help shows its own."""
        overrides = (f"\n\noverrides (section.key=value; the default shown is this command's):\n"
                     f"{describe_config(sections, **defaults)}" if sections else "")
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter,
                           epilog=f"example:\n  {EXAMPLES[name]}{overrides}")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return p

    train = command("train", "Train a masked diffusion model (resumes if --out already holds a checkpoint).",
                    ("data", *DOMAIN_NAMES, "model", "diffusion", "train", "selfcond", "speculative"))
    train.add_argument("--config", help="YAML config file, or the name of a bundled one (e.g. qm9_base; "
                                        f"bundled: {', '.join(sorted(bundled_configs()))})")
    train.add_argument("--domain", choices=DOMAIN_NAMES, help="the data domain (= data.domain=...)")
    train.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss_curve.png")
    train.add_argument("--no-resume", action="store_true", help="refuse to start if --out has a checkpoint")
    train.add_argument("--init-from", metavar="MODEL",
                       help="start from this model's weights and tokenizer (an exported folder, checkpoint or run "
                            "folder; its config is the base that --config and the overrides change)")

    posttrain = command("posttrain", "Post-train a trained model. Self-conditioning (default): two passes at the "
                                     "same x_t, stop-gradient on the first, NELBO on the second (scmdm.selfcond). "
                                     "--speculative: add a causal verifier layer and train only it, the trunk "
                                     "frozen (scmdm.objectives.speculative).",
                        ("selfcond", "speculative", "train"), config_file="selfcond",
                        alternative=("--speculative", "speculative"), base="the model's")
    posttrain.add_argument("--from", dest="init_from", required=True, metavar="MODEL",
                           help="the model to start from: a run folder, checkpoint folder or exported model folder "
                                "(its config is the base that --config and the overrides change)")
    posttrain.add_argument("--out", required=True, help="run folder of the post-trained model")
    posttrain.add_argument("--config", default=None,
                           help="YAML applied on top of the model's config, or the name of a bundled one (default: "
                                "selfcond, or speculative with --speculative)")
    posttrain.add_argument("--speculative", action="store_true",
                           help="self-speculative post-training: a causal verifier on the frozen trunk "
                                "(src/scmdm/configs/speculative.yaml); sample it with sample.sampler=speculative")
    posttrain.add_argument("--no-resume", action="store_true", help="refuse to start if --out has a checkpoint")

    sample = command("sample", "Sample sequences from a checkpoint.", ("sample",), base="the checkpoint's")
    sample.add_argument("checkpoint", help="run folder (newest checkpoint) or checkpoint folder")
    sample.add_argument("--out", help="write samples to this file, in the domain's format: .smi, .txt, .fa, .pgm "
                                      "(default: print them; images need --out)")
    sample.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    sample.add_argument("--domain", choices=DOMAIN_NAMES, help="check that the checkpoint is of this domain")
    given = sample.add_argument_group("conditional generation (docs/GUIDE.md, Conditional generation)")
    given.add_argument("--prompt", metavar="TEXT",
                       help="text, molecules, DNA: the beginning of every sample (a SMILES fragment, a text prefix, "
                            "bases); gaps [MASK] / [MASK:n] (DNA: N runs) are filled too; sample.num_samples samples")
    given.add_argument("--infill", metavar="FILE",
                       help="a file of templates, one per line (DNA: FASTA records), with gaps [MASK] / [MASK:n] "
                            "(DNA: N runs); --per-template samples of each")
    given.add_argument("--inpaint", metavar="PGM",
                       help="images: a raw PGM file of images to inpaint, with --region or --mask-image; the PNG "
                            "beside --out shows each given image (the region grey) and its filled sample")
    given.add_argument("--region", metavar="X0,Y0,X1,Y1", help="--inpaint: the rectangle to fill, in pixels (X1, "
                                                               "Y1 excluded)")
    given.add_argument("--mask-image", metavar="PGM", help="--inpaint: fill the nonzero pixels of this image")
    given.add_argument("--per-template", type=int, default=1, metavar="N",
                       help="--infill / --inpaint: samples of each template (default 1)")

    evaluate = command("eval", "Evaluate samples of a checkpoint next to real held-out data, with its domain's "
                               "evaluator: molecules — validity, uniqueness, novelty, FCD, QED, SA; text — "
                               "generative perplexity under SmolLM2-135M, unigram entropy, NELBO in bits/char; "
                               "dna — k-mer spectrum JS divergence (k = 3..6), GC content, nearest-training-window "
                               "identity; images — Fréchet distance in scmdm's own CNN features (not Inception "
                               "FID), classifier score.",
                       ("sample", "eval"), base="the checkpoint's")
    evaluate.add_argument("checkpoint", help="run folder (newest checkpoint) or checkpoint folder")
    evaluate.add_argument("--samples", help="evaluate this samples file (as `scmdm sample --out` writes it) instead "
                                            "of sampling")
    evaluate.add_argument("--baselines", action="store_true",
                          help="also evaluate the domain's trivial baselines (text: unigram and bigram samples; dna: "
                               "shuffled held-out windows, uniform bases, a 3rd-order Markov chain; images: "
                               "pixel-independent samples)")
    evaluate.add_argument("--domain", choices=DOMAIN_NAMES, help="check that the checkpoint is of this domain")
    evaluate.add_argument("--json", help="also write the metrics as JSON here")
    evaluate.add_argument("--out", help="also write the samples it drew and scored to this file (the format of "
                                        "`scmdm sample --out`)")
    evaluate.add_argument("--reference", metavar="FILE",
                          help="evaluate against this held-out file instead of the run's test split: SMILES, text, "
                               "FASTA or PGM items; for molecules also precomputed FCD statistics (.npz or "
                               ".safetensors of mu and sigma, or MOSES's test_stats.npz, read without unpickling). "
                               "FCD and the real held-out row are against it; novelty stays against the training data")
    evaluate.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")

    export = command("export", "Write a portable model folder (config.json, model.safetensors, tokenizer.json, "
                               "split.json, README.md) that scmdm.load() and scmdm sample/eval read.", ())
    export.add_argument("checkpoint", help="run folder (newest checkpoint) or checkpoint folder")
    export.add_argument("--out", required=True, help="the folder to create (must not exist, or be empty)")
    export.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA weights")
    export.add_argument("--format", choices=("scmdm", "mdlm"), default="scmdm",
                        help="scmdm (default): scmdm's model folder; mdlm: MDLM's Hugging Face layout (config.json + "
                             "model.safetensors with backbone.* keys), for a model with adaln blocks")

    imported = command("import", "Import a model in MDLM's Hugging Face layout (kuleshov-group/mdlm-owt or any model "
                                 "trained with MDLM's code) as an scmdm model folder. sample, eval and posttrain "
                                 "--from also read such folders directly.", ())
    imported.add_argument("checkpoint", help="folder with config.json (model_type mdlm) and model.safetensors")
    imported.add_argument("--out", required=True, help="the scmdm model folder to create (must not exist, or be empty)")

    demo = command("demo", "Both methods on the shipped QM9 model, side by side: post-train the compute-matched "
                           "control and the self-conditioned model for the same steps, sample 1,000 molecules from "
                           "the base, both of them and speculatively with the shipped verifier, print one table "
                           "(src/scmdm/configs/demo.yaml).", ("train", "sample", "selfcond"), config_file="demo",
                   base="the base model's")
    demo.add_argument("--out", default="runs/demo", help="folder of the post-trained runs and the samples")
    demo.add_argument("--base", default="models/qm9_base", help="the base model (default: the shipped QM9 model)")
    demo.add_argument("--verifier", default="models/qm9_base_spec",
                      help="the base model with a causal verifier (default: the shipped one)")
    for p in (posttrain, sample, evaluate, export, imported):
        p.add_argument("--tokenizer", metavar="PATH",
                       help="for a model folder in MDLM's layout without a tokenizer: a tokenizer.json, or a folder "
                            "with one or with GPT-2's vocab.json + merges.txt (MASK is appended as MDLM does)")
    for p in (train, posttrain):
        p.add_argument("--from-checkpoint", metavar="STEP",
                       help="resume from this checkpoint of --out (step_N, or N) instead of the newest, e.g. when the "
                            "newest is damaged; newer ones are moved aside to checkpoints/superseded_step_M")
    for p in (sample, evaluate):
        p.add_argument("--force", action="store_true", help="overwrite an existing --out (or --json) file")
    for p in (train, posttrain, sample, evaluate, demo):  # last, so that positional checkpoints come first
        p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides (listed below)")
    return parser


#: the config sections whose overrides sample and eval read (everything else comes from the checkpoint)
READ_SECTIONS = {"sample": ("sample",), "eval": ("sample", "eval")}


def _check_override_sections(command: str, overrides: list[str]) -> None:
    """sample and eval take overrides of the sections they read; any other would change nothing, so it is an
    error rather than silently ignored."""
    sections = READ_SECTIONS[command]
    for item in overrides:
        section = item.split("=", 1)[0].strip().split(".")[0]
        if section not in sections:
            raise ConfigError(f"{item!r}: scmdm {command} reads only {' and '.join(s + '.*' for s in sections)} "
                              "overrides; the model's other settings come from its checkpoint (train or post-train "
                              "to change them)")


def _load_for_sampling(args: argparse.Namespace):
    """The checkpoint (EMA or raw weights, as ``sample.use_ema`` says) and its sample settings + overrides."""
    from scmdm.checkpoint import load_checkpoint
    from scmdm.distributed import resolve_device

    _check_override_sections(args.command, args.overrides)
    resolve_device(args.device)  # a device that is not there: one clear line
    loaded = load_checkpoint(args.checkpoint, device=args.device, tokenizer=args.tokenizer)
    if args.domain and args.domain != loaded.config.data.domain:
        raise ValueError(f"--domain {args.domain} was given but {loaded.path} is a {loaded.config.data.domain} model")
    config = apply_overrides(loaded.config, args.overrides).validate()  # every section, NaN and inf included
    if not config.sample.use_ema:
        loaded = load_checkpoint(args.checkpoint, use_ema=False, device=args.device, tokenizer=args.tokenizer)
    return loaded, config.sample


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = [*getattr(args, "overrides", []), *extra]  # overrides may also come after options
    try:
        return _run(args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"scmdm {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"scmdm {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, permission denied, ...
        print(f"scmdm {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scmdm {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _run(args: argparse.Namespace) -> int:
    from scmdm.checkpoint import CheckpointError

    try:
        if args.command in ("train", "posttrain"):
            return _train(args)
        if args.command == "demo":
            from scmdm.workflows import run_demo

            run_demo(args.out, base=args.base, verifier=args.verifier, overrides=args.overrides,
                     show_progress=not args.no_progress)
            return 0
        if args.command == "sample":
            return _sample(args)
        if args.command in ("export", "import"):
            return _export(args)
        return _eval(args)
    except CheckpointError as err:
        print(f"scmdm {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from scmdm import distributed
    from scmdm.distributed import resolve_device
    from scmdm.objectives import METRIC_LABELS
    from scmdm.training import Trainer
    from scmdm.workflows import resolve_config_path

    domain = [f"data.domain={args.domain}"] if getattr(args, "domain", None) else []
    init = None
    if args.init_from:
        from scmdm.checkpoint import load_checkpoint
        from scmdm.workflows import post_train_config

        init = load_checkpoint(args.init_from, tokenizer=getattr(args, "tokenizer", None))
        config_name = args.config or ("speculative" if getattr(args, "speculative", False) else "selfcond")
        config = post_train_config(init, [*domain, *args.overrides], config_name)
    else:
        config = load_config(resolve_config_path(args.config), [*domain, *args.overrides])
    out = Path(args.out)
    if args.no_resume and any((out / "checkpoints").glob("step_*")):
        raise ValueError(f"{out} already holds checkpoints and --no-resume was given")
    if args.no_resume and args.from_checkpoint:
        raise ValueError("--from-checkpoint resumes a run; it cannot go with --no-resume")
    resolve_device(config.train.device)  # a device that is not there: one line, before joining a process group
    with distributed.session(config.train.device) as dist:  # under torchrun: one process of the group
        result = Trainer(config, out, show_progress=not args.no_progress, init_from=args.init_from,
                         init_tokenizer=getattr(args, "tokenizer", None), from_checkpoint=args.from_checkpoint).fit()
    if not dist.is_main:
        return 0
    metrics = "; ".join(f"{METRIC_LABELS.get(k, k)} {v:.4f}" for k, v in result.validation.items())
    print(f"trained to step {result.step} in {result.seconds / 60:.1f} min; {metrics} (bits/token); checkpoint "
          f"{result.checkpoint}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from scmdm.domains import get_domain
    from scmdm.workflows import sample_checkpoint

    loaded, sample = _load_for_sampling(args)
    domain = get_domain(loaded.config.data.domain)
    outputs = _output_files(args, domain)  # checked before any sampling starts, like the templates
    template = _templates(args, domain, loaded, sample)  # checked before any sampling starts
    samples, result = sample_checkpoint(loaded, sample, device=args.device, show_progress=not args.no_progress,
                                        template=template)
    if args.out:
        with writing(*outputs):
            domain.write_samples(samples, Path(args.out), loaded.tokenizer)
            if args.inpaint:
                from scmdm.domains.image import save_inpainting_grid

                grid = save_inpainting_grid(template, samples, Path(args.out).with_suffix(".inpaint.png"),
                                            loaded.tokenizer)
                print(f"wrote the given images beside the filled ones to {grid}", file=sys.stderr)
        print(f"wrote {len(samples)} samples to {args.out} (NFE {result.nfe:.1f}, {result.seconds:.1f} s)",
              file=sys.stderr)
    else:
        sys.stdout.write(domain.format_samples(samples))
    return 0


def _output_files(args: argparse.Namespace, domain) -> list[Path]:
    """The files ``--out`` will write (samples; images also the PNG grid beside them, and the inpainting picture),
    each checked to be writable and new (or ``--force``) before any work starts."""
    if not args.out:
        if domain.format_samples is None:
            raise ValueError(f"{domain.name} samples cannot be printed; give --out FILE{domain.sample_suffix}")
        return []
    if domain.name == "image" and Path(args.out).suffix.lower() == ".png":
        raise ValueError(f"image samples are written as raw PGM (every sample, exact levels) with a PNG grid beside "
                         f"it: give --out {Path(args.out).with_suffix('.pgm')}, not {args.out}")
    out = check_output_file(args.out, force=args.force)
    paths = [out]
    if domain.name == "image":
        paths.append(check_output_file(out.with_suffix(".png"), force=args.force, option="--out (its PNG grid)"))
        if getattr(args, "inpaint", None):
            paths.append(check_output_file(out.with_suffix(".inpaint.png"), force=args.force,
                                           option="--out (its inpainting picture)"))
    return paths


def _templates(args: argparse.Namespace, domain, loaded, sample):
    """The template canvases of ``--prompt`` / ``--infill`` / ``--inpaint`` ([N, L]), or None."""
    chosen = [name for name in ("prompt", "infill", "inpaint") if getattr(args, name)]
    if len(chosen) > 1:
        raise ValueError(f"give one of --prompt, --infill, --inpaint, not {' and '.join('--' + c for c in chosen)}")
    if (args.region or args.mask_image) and not args.inpaint:
        raise ValueError("--region and --mask-image go with --inpaint PGM")
    if args.per_template < 1:
        raise ValueError(f"--per-template must be positive, got {args.per_template}")
    if not chosen:
        return None
    length, tokenizer = loaded.config.data.max_length, loaded.tokenizer
    if args.inpaint:
        from scmdm.domains.image import inpainting_templates
        from scmdm.domains.image.data import read_pgm

        if domain.name != "image":
            raise ValueError(f"--inpaint is for image models; this is a {domain.name} model (--prompt / --infill)")
        images = domain.read_samples(Path(args.inpaint), tokenizer)
        region = None
        if args.region:
            try:
                region = tuple(int(v) for v in args.region.split(","))
            except ValueError:
                region = ()
            if len(region) != 4:
                raise ValueError(f"--region must be four integers X0,Y0,X1,Y1, got {args.region!r}")
        mask = read_pgm(Path(args.mask_image))[0][0] if args.mask_image else None
        templates = inpainting_templates(images, tokenizer, region=region, mask=mask)
    elif domain.template is None:
        raise ValueError(f"{domain.name} models take --inpaint, not --prompt / --infill")
    elif args.prompt:
        return domain.template(args.prompt, tokenizer, length).expand(sample.num_samples, -1)
    else:
        templates = domain.read_templates(Path(args.infill), tokenizer, length)
    return templates.repeat_interleave(args.per_template, dim=0)


def _export(args: argparse.Namespace) -> int:
    from scmdm.checkpoint import export_model

    if args.overrides:
        raise ValueError(f"{args.command} takes no overrides, got {' '.join(args.overrides)}")
    importing = args.command == "import"
    options = [*(["--raw"] if getattr(args, "raw", False) else []),
               *([f"--format {args.format}"] if getattr(args, "format", "scmdm") != "scmdm" else []),
               *([f"--tokenizer {args.tokenizer}"] if args.tokenizer else [])]
    command = " ".join(["scmdm", args.command, args.checkpoint, "--out", args.out, *options])
    folder = export_model(args.checkpoint, args.out, use_ema=not getattr(args, "raw", False), command=command,
                          format="scmdm" if importing else args.format, tokenizer=args.tokenizer)
    what = "imported" if importing else f"exported {'raw' if args.raw else 'EMA'} weights"
    print(f"{what} to {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from scmdm.domains import get_domain
    from scmdm.workflows import evaluator_for, sample_and_evaluate

    json_file = check_output_file(args.json, force=args.force, option="--json") if args.json else None
    if args.out and args.samples:
        raise ValueError(f"--out writes the samples eval draws; with --samples they are already in {args.samples}")
    if args.reference and not Path(args.reference).is_file():
        raise FileNotFoundError(f"--reference {args.reference} does not exist (or is not a file)")
    loaded, sample = _load_for_sampling(args)
    domain = get_domain(loaded.config.data.domain)
    outputs = _output_files(args, domain) if args.out else []
    if args.baselines and domain.name not in ("text", "dna", "image"):
        raise ValueError(f"the {domain.name} evaluator has no baseline rows (--baselines is for text, dna, images)")
    samples = domain.read_samples(Path(args.samples), loaded.tokenizer) if args.samples else None  # before the work
    evaluator = evaluator_for(loaded.config, loaded.split_info, tokenizer=loaded.tokenizer, device=args.device,
                              show_progress=not args.no_progress,
                              **({"reference": args.reference} if args.reference else {}))
    if samples is not None:
        name, metrics = Path(args.samples).name, evaluator.evaluate(samples).as_dict()
    else:
        evaluation = sample_and_evaluate(loaded, evaluator, sample, device=args.device,
                                         show_progress=not args.no_progress)
        name, metrics, samples = evaluation.name, evaluation.metrics, evaluation.samples
        if args.out:
            with writing(*outputs):
                domain.write_samples(samples, Path(args.out), loaded.tokenizer)
            print(f"wrote the {len(samples)} samples it scored to {args.out}", file=sys.stderr)
    if domain.validity_metric and metrics.get(domain.validity_metric) == 0:
        source = f"in {args.samples}" if args.samples else "drawn"
        print(f"warning: none of the {metrics['n_samples']} samples {source} is a valid {domain.item_name[:-1]} "
              f"(first: {str(samples[0])[:60]!r}); is this the model's kind of data?", file=sys.stderr)
    n = min(metrics["n_samples"], 1000)
    reference = evaluator.reference_row(n=n).as_dict()
    rows = [(f"{domain.reference_label} (n={reference['n_samples']})", reference)]  # its true size
    baselines = {}
    if args.baselines:
        baselines = {label: m.as_dict() for label, m in evaluator.baseline_rows(n=n)}
        rows += list(baselines.items())
    print(domain.table([*rows, (name, metrics)], evaluator))
    described = getattr(evaluator, "reference_note", None)
    note = described() if callable(described) else (
        f"against {evaluator.reference_name}; the real held-out row comes from the run's validation split"
        if hasattr(evaluator, "reference_name") else "")
    if note:
        print(f"reference: {note}")
    validation = _checkpoint_validation(loaded, args.device)
    if json_file is not None:
        with writing(json_file):
            json_file.write_text(json.dumps({"model": metrics, "reference": reference,
                                             **({"baselines": baselines} if baselines else {}),
                                             "reference_source": note, "validation": validation}, indent=1))
    return 0


def _checkpoint_validation(loaded, device: str) -> dict[str, float]:
    """Print the checkpoint's validation NELBOs (both passes of a self-conditioned model); return them."""
    from scmdm.objectives import METRIC_LABELS
    from scmdm.workflows import checkpoint_validation

    values = checkpoint_validation(loaded, device=device)
    if values:
        c = loaded.config.train
        shown = "; ".join(f"{METRIC_LABELS.get(k, k)} {v:.4f}" for k, v in values.items())
        print(f"checkpoint validation (bits/token, K = {c.val_num_t} midpoint rule, step "
              f"{loaded.state.get('step', '?')}): {shown}")
    return values


if __name__ == "__main__":
    sys.exit(main())
