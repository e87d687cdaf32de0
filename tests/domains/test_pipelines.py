"""Every domain end to end through the command line, in one test parametrized over the domains: a tiny model trained
on real data (QM9 molecules, KJV text, E. coli windows, scikit-learn's digits); its samples written to a file and read
back, printed (or refused where they cannot be), refused for another domain; the model exported and sampled from the
export; self-conditioned and speculative post-training on it, through the same Trainer, losses and samplers as every
other domain; and the evaluation table, of the model's own samples and of a samples file. What differs between the
domains is a ``Pipeline``; what only one domain has is its ``check``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scmdm.checkpoint import LoadedCheckpoint, load_checkpoint
from scmdm.cli import main
from scmdm.domains import get_domain, prepare_data
from scmdm.domains.dna.data import format_fasta, read_fasta
from scmdm.domains.image.data import read_pgm, write_pgm
from scmdm.domains.image.tokenizer import ImageTokenizer
from scmdm.domains.text.scorer import SCORER_NAME
from tests.conftest import DIGITS_MISSING, ECOLI, TINY, TINY_TEXT, have_genomes, have_qm9, have_sklearn

#: the model and run of the DNA and image pipelines: 1 layer, width 32, 6 steps
MODEL = ["model.depth=1", "model.width=32", "model.heads=2", "train.batch_size=32", "train.steps=6",
         "train.warmup_steps=2", "train.eval_every=0", "train.save_every=0", "train.val_sequences=32",
         "train.val_num_t=2", "train.log_every=1", "train.ema_decay=0.9"]
#: 512 real 64-base windows of E. coli MG1655 (the end of the genome held out)
TINY_DNA = ["data.max_length=64", "data.subset=512", *MODEL]
#: 512 real sklearn digits at 4 grey levels (8×8: the canvas, 64, is derived)
TINY_DIGITS = ["data.source=digits", "image.levels=4", "data.subset=512", *MODEL]
#: self-conditioned and speculative post-training: 2 steps
POST = ["train.steps=2", "train.eval_every=0", "train.save_every=0", "train.batch_size=32", "train.val_sequences=32",
        "train.val_num_t=2", "train.warmup_steps=1"]


@dataclass
class Outcome:
    """What the shared flow leaves for a domain's own checks."""

    run: Path
    loaded: LoadedCheckpoint
    samples_file: Path
    sampled: dict  # the JSON of `scmdm eval RUN` (the model's own samples)
    from_file: dict  # the JSON of `scmdm eval RUN --samples FILE`
    tmp_path: Path
    capsys: pytest.CaptureFixture


@dataclass(frozen=True)
class Pipeline:
    name: str
    domain: str  # data.domain
    train: list[str]  # the overrides of `scmdm train --domain DOMAIN`
    checkpoint: dict[str, Any]  # what the trained checkpoint holds: "attribute.attribute.key" -> value
    num_samples: int  # written by `scmdm sample --out FILE`
    valid_sample: Callable[[Any], bool]  # each sample read back from a file
    wrong_domain: str  # `scmdm sample RUN --domain WRONG_DOMAIN` is refused
    table: tuple[str, ...]  # in every table `scmdm eval` prints
    baselines: tuple[str, ...] = ()  # the evaluator's baseline rows (none: no --baselines)
    printable: bool = True  # samples can be printed on stdout
    requires: Callable[[pytest.FixtureRequest], None] = lambda request: None  # skips when its data is missing
    before_eval: Callable[[pytest.FixtureRequest, pytest.MonkeyPatch, Path], None] = lambda *_: None
    check: Callable[[Outcome], None] = lambda outcome: None  # the domain's own checks, at the end
    marks: tuple = field(default_factory=tuple)


def _require(available: Callable[[], bool], reason: str) -> Callable[[pytest.FixtureRequest], None]:
    def require(request: pytest.FixtureRequest) -> None:
        if not available():
            pytest.skip(reason)

    return require


def _genomes_missing() -> str:
    from scmdm.domains.dna.data import INSTALL_HINT

    return f"the bacterial genomes are not installed: {INSTALL_HINT}"


# ---- what only one domain has ---------------------------------------------------------------------------------
def _molecule_check(o: Outcome) -> None:
    assert o.from_file["reference"]["validity"] == 1.0


def _text_check(o: Outcome) -> None:
    # a 6-step model writes near-gibberish: worse per character than real text (per scorer token it need not be,
    # and 32-character windows that start mid-word give even real text a perplexity in the thousands)
    model, reference = o.sampled["model"], o.sampled["reference"]
    assert model["scorer_bpc"] > reference["scorer_bpc"] > 0
    assert model["nelbo_bpc"] == pytest.approx(o.loaded.state["val_nelbo_bits"])  # 1 char = 1 token
    samples, metrics = o.tmp_path / "s.txt", o.tmp_path / "m.json"
    samples.write_text("In the beginning\n%\nGod created\n%\n")
    assert main(["eval", str(o.run), "--samples", str(samples), "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["model"]["n_samples"] == 2


def _dna_check(o: Outcome) -> None:
    assert [h for h, _ in read_fasta(o.samples_file)] == [f"sample_{i}" for i in range(1, 7)]
    assert o.from_file["reference"]["valid"] == 1.0
    # memorisation is seen through the CLI: training windows are their own nearest training window
    data = prepare_data(o.loaded.config, tokenizer=o.loaded.tokenizer, quiet=True)
    trained, metrics = o.tmp_path / "trained.fa", o.tmp_path / "m.json"
    trained.write_text(format_fasta(o.loaded.tokenizer.decode_batch(data.train[:8])))
    assert main(["eval", str(o.run), "--samples", str(trained), "--json", str(metrics)]) == 0
    model = json.loads(metrics.read_text())["model"]
    assert model["valid"] == 1.0 and model["nearest_identity"] == 1.0 and model["near_copies"] == 1.0
    protein = o.tmp_path / "protein.fa"  # a FASTA, but not of bases: evaluated, with a warning that says so
    protein.write_text(">p1\n" + "MKVLAAGIVQQ" * 6 + "\n")
    o.capsys.readouterr()
    assert main(["eval", str(o.run), "--samples", str(protein)]) == 0
    assert f"warning: none of the 1 samples in {protein} is a valid DNA window" in o.capsys.readouterr().err


def _digits_cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The image evaluator's CNN is trained on first use and cached: keep it in a temporary folder."""
    monkeypatch.setenv("SCMDM_CACHE", str(tmp_path / "cache"))


def _digits_check(o: Outcome) -> None:
    from PIL import Image

    _, maxval = read_pgm(o.samples_file)
    assert maxval == 3
    assert Image.open(o.samples_file.with_suffix(".png")).size == (10 * 25 + 1, 2 * 25 + 1)  # 10 columns of 8·3 + 1
    o.capsys.readouterr()
    assert main(["sample", str(o.run), "--out", str(o.tmp_path / "s.png"), "--no-progress",
                 "sample.num_samples=2"]) == 2
    assert "give --out" in o.capsys.readouterr().err
    assert o.from_file["reference"]["fd_cnn"] < o.from_file["model"]["fd_cnn"]
    wrong = o.tmp_path / "k16.pgm"
    write_pgm([np.full((8, 8), 15, np.uint8)] * 3, wrong, 16)
    assert main(["eval", str(o.run), "--samples", str(wrong)]) == 2
    assert "16 grey levels (PGM maxval 15) but the model has 4" in o.capsys.readouterr().err


PIPELINES = [
    Pipeline(
        name="molecule", domain="molecule", train=TINY,
        checkpoint={"tokenizer.kind": "smiles", "config.data.max_length": 24, "split_info.source": "qm9"},
        num_samples=6, valid_sample=lambda smiles: "?" not in smiles,  # no MASK left
        wrong_domain="text", table=("validity",),
        requires=_require(have_qm9, "QM9 needs qm9pack and rdkit (`make test` installs them)"), check=_molecule_check),
    Pipeline(
        name="text", domain="text", train=TINY_TEXT[1:],
        checkpoint={"tokenizer.kind": "char", "split_info.titles.test": ["Job", "Acts"]},
        num_samples=6, valid_sample=lambda text: 0 < len(text) <= 32, wrong_domain="molecule",
        table=("gen_ppl", SCORER_NAME, "compare only with the real held-out text row"),
        baselines=("unigram samples (char tokens, fitted on train)", "bigram samples (char tokens, fitted on train)"),
        requires=lambda request: request.getfixturevalue("kjv"),
        before_eval=lambda request, *_: request.getfixturevalue("text_scorer"),  # ~20-30 s: hence slow
        check=_text_check, marks=(pytest.mark.slow,)),
    Pipeline(
        name="dna", domain="dna", train=TINY_DNA,
        checkpoint={"tokenizer.kind": "dna", "config.data.max_length": 64, "split_info.genomes": [ECOLI],
                    "split_info.holdout": "region", "split_info.window": 64},
        num_samples=6, valid_sample=lambda bases: len(bases) == 64 and not bases.strip("ACGTN"), wrong_domain="image",
        table=("js_6", "nearest_identity", "Jensen-Shannon"),
        baselines=("shuffled held-out windows", "uniform random bases", "markov3 chain fit on train"),
        requires=_require(have_genomes, _genomes_missing()), check=_dna_check),
    Pipeline(
        name="digits", domain="image", train=TINY_DIGITS,
        checkpoint={"tokenizer": ImageTokenizer(4, 8, 8), "config.data.max_length": 64,  # derived: 8·8
                    "split_info.source": "digits"},
        num_samples=12, valid_sample=lambda image: image.shape == (8, 8) and image.max() <= 3, printable=False,
        wrong_domain="dna", table=("fd_cnn", "not Inception FID", "classifier test accuracy"),
        baselines=("pixel-independent samples",), requires=_require(have_sklearn, DIGITS_MISSING),
        before_eval=_digits_cache, check=_digits_check),
]


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


@pytest.fixture(scope="module", params=[pytest.param(p, id=p.name, marks=p.marks) for p in PIPELINES])
def trained(request, tmp_path_factory, single_thread) -> tuple[Pipeline, Path]:
    """The domain's tiny model, trained through `scmdm train --domain DOMAIN` once per module."""
    pipeline = request.param
    pipeline.requires(request)
    run = tmp_path_factory.mktemp(pipeline.name) / "run"
    assert main(["train", "--domain", pipeline.domain, "--out", str(run), "--no-progress", *pipeline.train]) == 0
    return pipeline, run


def test_domain_end_to_end_through_the_cli(trained, request, tmp_path, capsys, monkeypatch) -> None:
    pipeline, run = trained
    domain = get_domain(pipeline.domain)
    loaded = load_checkpoint(run)
    assert loaded.config.data.domain == pipeline.domain
    for path, value in pipeline.checkpoint.items():
        assert _lookup(loaded, path) == value, path

    def read_back(path: Path, count: int) -> list:
        samples = domain.read_samples(path, loaded.tokenizer)
        assert len(samples) == count and all(pipeline.valid_sample(s) for s in samples), path
        return samples

    # ---- samples: to a file and back, on stdout (or refused), refused for another domain
    out = tmp_path / f"samples{domain.sample_suffix}"
    assert main(["sample", str(run), "--domain", pipeline.domain, "--out", str(out), "--no-progress",
                 f"sample.num_samples={pipeline.num_samples}", "sample.steps=8"]) == 0
    read_back(out, pipeline.num_samples)
    capsys.readouterr()
    printed = main(["sample", str(run), "--no-progress", "sample.num_samples=3", "sample.steps=4"])
    if pipeline.printable:
        assert printed == 0 and len(domain.parse_samples(capsys.readouterr().out)) == 3
    else:
        assert printed == 2 and "cannot be printed" in capsys.readouterr().err
    assert main(["sample", str(run), "--domain", pipeline.wrong_domain]) == 2
    assert f"is a {pipeline.domain} model" in capsys.readouterr().err

    # ---- export: a portable model folder that loads and samples like the run
    exported = tmp_path / "model"
    assert main(["export", str(run), "--out", str(exported)]) == 0
    assert load_checkpoint(exported).tokenizer == loaded.tokenizer
    assert main(["sample", str(exported), "--out", str(tmp_path / f"exported{domain.sample_suffix}"),
                 "--no-progress", "sample.num_samples=4", "sample.steps=4"]) == 0
    read_back(tmp_path / f"exported{domain.sample_suffix}", 4)

    # ---- post-training: the same Trainer, losses and samplers as every domain; nothing here is domain-specific
    sc = tmp_path / "sc"
    assert main(["posttrain", "--from", str(run), "--out", str(sc), "--no-progress", *POST]) == 0
    post = load_checkpoint(sc)
    assert post.config.selfcond.injection != "none" and post.model.self_conditioned
    assert post.state["val_nelbo_sc_bits"] > 0 and post.tokenizer == loaded.tokenizer
    assert main(["sample", str(sc), "--out", str(tmp_path / f"sc{domain.sample_suffix}"), "--no-progress",
                 "sample.num_samples=4", "sample.steps=6"]) == 0
    read_back(tmp_path / f"sc{domain.sample_suffix}", 4)
    spec = tmp_path / "spec"
    assert main(["posttrain", "--from", str(run), "--out", str(spec), "--speculative", "--no-progress", *POST]) == 0
    assert load_checkpoint(spec).config.speculative.causal_layers == 1
    assert main(["sample", str(spec), "--out", str(tmp_path / f"spec{domain.sample_suffix}"), "--no-progress",
                 "sample.sampler=speculative", "sample.window=4", "sample.num_samples=4"]) == 0
    read_back(tmp_path / f"spec{domain.sample_suffix}", 4)

    # ---- evaluation: of the model's own samples, then of the samples file, beside real held-out data
    pipeline.before_eval(request, monkeypatch, tmp_path)
    metrics = tmp_path / "metrics.json"
    baselines = ["--baselines"] if pipeline.baselines else []
    capsys.readouterr()
    assert main(["eval", str(run), "--no-progress", "--json", str(metrics), *baselines, "sample.num_samples=6",
                 "sample.steps=4"]) == 0
    table = capsys.readouterr().out
    for text in (f"{domain.reference_label} (n=6)", "ancestral T=4", *pipeline.table, *pipeline.baselines):
        assert text in table, text
    sampled = json.loads(metrics.read_text())
    assert sampled["model"]["n_samples"] == 6 and sampled["model"]["nfe"] == 4
    assert set(sampled.get("baselines", ())) == set(pipeline.baselines)
    assert main(["eval", str(run), "--samples", str(out), "--json", str(metrics), "--force", *baselines]) == 0
    table = capsys.readouterr().out
    for text in (f"{domain.reference_label} (n={pipeline.num_samples})", out.name, *pipeline.table,
                 *pipeline.baselines):
        assert text in table, text
    from_file = json.loads(metrics.read_text())
    assert from_file["model"]["n_samples"] == pipeline.num_samples
    assert set(from_file.get("baselines", ())) == set(pipeline.baselines)

    pipeline.check(Outcome(run, loaded, out, sampled, from_file, tmp_path, capsys))
