"""The DNA and image domains end to end: tiny models trained on real E. coli windows and real sklearn digits,
sampled and evaluated through the CLI; self-conditioned and speculative post-training on DNA through the same
code path as every other domain; the sample files (FASTA, raw PGM) by hand; the data.* settings and their errors."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from scmdm.checkpoint import load_checkpoint
from scmdm.cli import main
from scmdm.config import Config, load_config
from scmdm.domains import get_domain, prepare_data
from scmdm.domains.dna.data import INSTALL_HINT, format_fasta, genome_files, parse_fasta, read_fasta, reverse_complement
from scmdm.domains.image.data import format_pgm, parse_pgm, read_pgm, write_pgm
from scmdm.domains.image.tokenizer import ImageTokenizer

MODEL = ["model.depth=1", "model.width=32", "model.heads=2", "train.batch_size=32", "train.steps=6",
         "train.warmup_steps=2", "train.eval_every=0", "train.save_every=0", "train.val_sequences=32",
         "train.val_num_t=2", "train.log_every=1", "train.ema_decay=0.9"]
#: 512 real 64-base windows of E. coli MG1655 (the end of the genome held out), a 1-layer width-32 model
TINY_DNA = ["data.domain=dna", "data.max_length=64", "data.subset=512", *MODEL]
#: 512 real sklearn digits at 4 grey levels (8×8: the canvas, 64, is derived), the same model
TINY_DIGITS = ["data.domain=image", "data.source=digits", "image.levels=4", "data.subset=512", *MODEL]
ECOLI = "E.Coli/MG1655-K12"


def _have_genomes() -> bool:
    try:
        return bool(genome_files())
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def dna_run(tmp_path_factory, single_thread):
    if not _have_genomes():
        pytest.skip(f"the bacterial genomes are not installed: {INSTALL_HINT}")
    run = tmp_path_factory.mktemp("dna") / "run"
    assert main(["train", "--domain", "dna", "--out", str(run), "--no-progress", *TINY_DNA[1:]]) == 0
    return run


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, single_thread):
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("the digits need scikit-learn: pip install scikit-learn (`make test` installs it)")
    run = tmp_path_factory.mktemp("digits") / "run"
    assert main(["train", "--domain", "image", "--out", str(run), "--no-progress", *TINY_DIGITS[1:]]) == 0
    return run


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    """The image evaluator's CNN is trained on first use and cached: keep it in a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCMDM_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


# ---- DNA --------------------------------------------------------------------------------------------------------
def test_dna_model_trains_samples_and_evaluates_through_the_cli(dna_run, tmp_path, capsys) -> None:
    loaded = load_checkpoint(dna_run)
    assert loaded.config.data.domain == "dna" and loaded.tokenizer.kind == "dna"
    assert loaded.config.data.max_length == 64 and loaded.split_info["genomes"] == [ECOLI]
    assert loaded.split_info["holdout"] == "region" and loaded.split_info["window"] == 64
    out = tmp_path / "samples.fa"
    assert main(["sample", str(dna_run), "--domain", "dna", "--out", str(out), "--no-progress",
                 "sample.num_samples=6", "sample.steps=8"]) == 0
    records = read_fasta(out)
    assert [h for h, _ in records] == [f"sample_{i}" for i in range(1, 7)]
    assert all(len(s) == 64 and not s.strip("ACGTN") for _, s in records)
    capsys.readouterr()
    assert main(["sample", str(dna_run), "--no-progress", "sample.num_samples=3", "sample.steps=4"]) == 0
    assert len(parse_fasta(capsys.readouterr().out)) == 3  # FASTA on stdout without --out
    assert main(["sample", str(dna_run), "--domain", "image"]) == 2
    assert "is a dna model" in capsys.readouterr().err

    metrics = tmp_path / "m.json"
    assert main(["eval", str(dna_run), "--samples", str(out), "--baselines", "--json", str(metrics)]) == 0
    table = capsys.readouterr().out
    for text in ("real held-out windows (n=6)", "shuffled held-out windows", "uniform random bases",
                 "markov3 chain fit on train", "samples.fa", "js_6", "nearest_identity", "Jensen-Shannon"):
        assert text in table
    data = json.loads(metrics.read_text())
    assert data["model"]["n_samples"] == 6 and data["reference"]["valid"] == 1.0
    assert set(data["baselines"]) == {"shuffled held-out windows", "uniform random bases",
                                      "markov3 chain fit on train"}
    assert main(["eval", str(dna_run), "--no-progress", "--json", str(metrics), "sample.num_samples=5",
                 "sample.steps=4"]) == 0
    assert "ancestral T=4" in capsys.readouterr().out
    assert json.loads(metrics.read_text())["model"]["nfe"] == 4

    # memorisation is seen through the CLI: training windows are their own nearest training window
    data = prepare_data(loaded.config, tokenizer=loaded.tokenizer, quiet=True)
    trained = tmp_path / "trained.fa"
    trained.write_text(format_fasta(loaded.tokenizer.decode_batch(data.train[:8])))
    assert main(["eval", str(dna_run), "--samples", str(trained), "--json", str(metrics)]) == 0
    model = json.loads(metrics.read_text())["model"]
    assert model["valid"] == 1.0 and model["nearest_identity"] == 1.0 and model["near_copies"] == 1.0


def test_self_conditioning_and_speculative_post_training_on_dna(dna_run, tmp_path) -> None:
    """The same Trainer, loss and samplers as for every domain: nothing here is DNA-specific."""
    post = ["train.steps=2", "train.eval_every=0", "train.save_every=0", "train.batch_size=32",
            "train.val_sequences=32", "train.val_num_t=2", "train.warmup_steps=1"]
    sc = tmp_path / "sc"
    assert main(["posttrain", "--from", str(dna_run), "--out", str(sc), "--no-progress", *post]) == 0
    loaded = load_checkpoint(sc)
    assert loaded.config.selfcond.injection != "none" and loaded.model.self_conditioned
    assert loaded.state["val_nelbo_sc_bits"] > 0 and loaded.tokenizer == load_checkpoint(dna_run).tokenizer
    assert main(["sample", str(sc), "--out", str(tmp_path / "sc.fa"), "--no-progress", "sample.num_samples=4",
                 "sample.steps=6"]) == 0
    assert [len(s) for _, s in read_fasta(tmp_path / "sc.fa")] == [64] * 4
    spec = tmp_path / "spec"
    assert main(["posttrain", "--from", str(dna_run), "--out", str(spec), "--speculative", "--no-progress",
                 *post]) == 0
    assert load_checkpoint(spec).config.speculative.causal_layers == 1
    out = tmp_path / "spec.fa"
    assert main(["sample", str(spec), "--out", str(out), "--no-progress", "sample.sampler=speculative",
                 "sample.window=4", "sample.num_samples=4"]) == 0
    assert [len(s) for _, s in read_fasta(out)] == [64] * 4


def test_dna_settings_reach_the_split(single_thread) -> None:
    if not _have_genomes():
        pytest.skip(f"the bacterial genomes are not installed: {INSTALL_HINT}")
    base = load_config(None, ["data.domain=dna", "data.max_length=128", "data.valid_fraction=0.02",
                              "data.test_fraction=0.02"])
    plain = prepare_data(base, quiet=True)
    n = len(plain.train)
    both = load_config(None, ["data.domain=dna", "data.max_length=128", "data.valid_fraction=0.02",
                              "data.test_fraction=0.02", "dna.reverse_complement=true", "dna.stride=64"])
    augmented = prepare_data(both, quiet=True)
    # stride 64 nearly doubles the windows of every split, the reverse complements double the training ones again
    assert 3.9 * n < len(augmented.train) < 4.1 * n and 1.9 * len(plain.valid) < len(augmented.valid)
    assert augmented.split.info()["reverse_complement_train"] and augmented.split.info()["stride"] == 64
    windows = set(augmented.split.train)
    assert all(reverse_complement(w) in windows for w in augmented.split.train[:20])
    strain = load_config(None, ["data.domain=dna", "data.max_length=128", "dna.holdout=strain",
                                "dna.test_genomes=E.Coli/DH1", "data.subset=100"])
    held = prepare_data(strain, quiet=True)
    assert held.split.settings["test_genomes"] == ["E.Coli/DH1"] and len(held.train) == 100
    assert len(held.test) > 30000  # every window of DH1 (4.6 Mbp)
    assert held.train.shape[1] == 128 and int(held.train.max()) <= 5  # bases only: ids 2..5
    with pytest.raises(ValueError, match="data.source='E.Coli', dna.test_genomes='DH1': genomes .* both in training"):
        prepare_data(load_config(None, ["data.domain=dna", "data.source=E.Coli", "dna.holdout=strain",
                                        "dna.test_genomes=DH1"]), quiet=True)


# ---- images -----------------------------------------------------------------------------------------------------
def test_digits_model_trains_samples_and_evaluates_through_the_cli(digits_run, classifier_cache, tmp_path,
                                                                   capsys) -> None:
    loaded = load_checkpoint(digits_run)
    assert loaded.config.data.max_length == 64  # derived: 8·8
    assert loaded.tokenizer == ImageTokenizer(4, 8, 8) and loaded.split_info["source"] == "digits"
    out = tmp_path / "samples.pgm"
    assert main(["sample", str(digits_run), "--out", str(out), "--no-progress", "sample.num_samples=12",
                 "sample.steps=8"]) == 0
    images, maxval = read_pgm(out)
    assert maxval == 3 and len(images) == 12 and all(im.shape == (8, 8) and im.max() <= 3 for im in images)
    from PIL import Image

    assert Image.open(out.with_suffix(".png")).size == (10 * 25 + 1, 2 * 25 + 1)  # 10 columns of 8·3 + 1 px
    capsys.readouterr()
    assert main(["sample", str(digits_run), "--out", str(tmp_path / "s.png"), "--no-progress",
                 "sample.num_samples=2"]) == 2
    assert "give --out" in capsys.readouterr().err
    assert main(["sample", str(digits_run), "--no-progress", "sample.num_samples=2"]) == 2
    assert "cannot be printed" in capsys.readouterr().err

    metrics = tmp_path / "m.json"
    assert main(["eval", str(digits_run), "--samples", str(out), "--baselines", "--json", str(metrics)]) == 0
    table = capsys.readouterr().out
    for text in ("real held-out images (n=12)", "pixel-independent samples", "fd_cnn", "not Inception FID",
                 "classifier test accuracy"):
        assert text in table
    data = json.loads(metrics.read_text())
    assert data["model"]["n_samples"] == 12 and data["reference"]["fd_cnn"] < data["model"]["fd_cnn"]
    assert main(["eval", str(digits_run), "--no-progress", "--json", str(metrics), "sample.num_samples=10",
                 "sample.steps=4"]) == 0
    assert "ancestral T=4" in capsys.readouterr().out and json.loads(metrics.read_text())["model"]["nfe"] == 4

    wrong = tmp_path / "k16.pgm"
    write_pgm([np.full((8, 8), 15, np.uint8)] * 3, wrong, 16)
    assert main(["eval", str(digits_run), "--samples", str(wrong)]) == 2
    assert "16 grey levels (PGM maxval 15) but the model has 4" in capsys.readouterr().err


def test_image_settings_reach_the_split() -> None:
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("the digits need scikit-learn (`make test` installs it)")
    config = load_config(None, ["data.domain=image", "data.source=digits", "image.levels=2", "data.subset=100"])
    data = prepare_data(config, quiet=True)
    assert data.tokenizer == ImageTokenizer(2, 8, 8) and data.train.shape == (100, 64)
    assert set(data.train.unique().tolist()) == {2, 3}  # two grey levels: ids 2 and 3
    assert len(data.valid) == len(data.test) == 90  # ⌈1797 · 0.05⌉
    with pytest.raises(ValueError, match=r"data.source='digits' with image.levels=2 needs ImageTokenizer\(levels=2"):
        prepare_data(config, tokenizer=ImageTokenizer(16, 8, 8), quiet=True)


# ---- sample files by hand ---------------------------------------------------------------------------------------
def test_pgm_samples_file_by_hand() -> None:
    image = np.array([[0, 1, 2], [3, 3, 0]], dtype=np.uint8)  # 2 rows, 3 columns, K = 4
    data = format_pgm([image, image[::-1]], 4)
    assert data == b"P5\n3 2\n3\n\x00\x01\x02\x03\x03\x00" + b"P5\n3 2\n3\n\x03\x03\x00\x00\x01\x02"
    images, maxval = parse_pgm(data)
    assert maxval == 3 and [im.tolist() for im in images] == [image.tolist(), image[::-1].tolist()]
    commented = b"P5 # made by hand\n3 2\n# levels\n3\n" + bytes([0, 1, 2, 3, 3, 0])
    assert parse_pgm(commented)[0][0].tolist() == image.tolist()
    with pytest.raises(ValueError, match="truncated"):
        parse_pgm(data[:-1])
    with pytest.raises(ValueError, match="raw PGM magic P5"):
        parse_pgm(b"P2\n3 2\n3\n0 1 2 3 3 0\n")
    with pytest.raises(ValueError, match="different maxvals"):
        parse_pgm(data + format_pgm([image], 16))
    with pytest.raises(ValueError, match="outside 0..3"):
        format_pgm([image + 1], 4)


def test_fasta_samples_file_by_hand() -> None:
    text = format_fasta(["ACGT", "NNAC"])
    assert text == ">sample_1\nACGT\n>sample_2\nNNAC\n"
    assert get_domain("dna").parse_samples(text) == ["ACGT", "NNAC"]
    assert get_domain("dna").parse_samples(">a\nac\ngt\n>b\nTT") == ["ACGT", "TT"]  # wrapped lines, lower case
    with pytest.raises(ValueError, match="no FASTA records"):
        get_domain("dna").parse_samples("ACGT\n")


def test_dna_and_image_tables_keep_small_values() -> None:
    rows = [("a", {"n_samples": 10, "valid": 1.0, "js_6": 0.0012345, "nfe": 64.0, "seconds": 1.5})]
    dna = get_domain("dna").table(rows)
    assert "0.00123" in dna and "nfe" in dna and "Jensen-Shannon" in dna
    image = get_domain("image").table([("a", {"n_samples": 10, "fd_cnn": 0.012345, "classifier_score": 9.0})])
    assert "0.01235" in image and "not Inception FID" in image


# ---- config -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "length"), [
    ([], 24), (["data.domain=text"], 24), (["data.domain=dna"], 256), (["data.domain=dna", "data.max_length=100"], 100),
    (["data.domain=image"], 784), (["data.domain=image", "data.source=digits"], 64),
    (["data.domain=image", "data.source=digits", "data.max_length=64"], 64),
])
def test_max_length_zero_is_the_domains_canvas(overrides: list[str], length: int) -> None:
    config = load_config(None, overrides)
    assert config.data.max_length == length
    assert Config.from_dict(config.to_dict()).validate() == config  # resolved once, written as is


def test_config_json_written_before_these_fields_still_loads() -> None:
    old = {"data": {"domain": "molecule", "source": "auto", "max_length": 24, "split_seed": 0, "valid_fraction": 0.05,
                    "test_fraction": 0.05, "subset": 0, "too_long": "error", "tokenizer": "char", "vocab_size": 1024,
                    "valid_books": "auto", "test_books": "auto"},
           "model": {"depth": 2, "width": 64, "heads": 2}}
    config = Config.from_dict(old).validate()
    assert config.data.max_length == 24 and config.model.width == 64
    assert (config.dna.stride, config.dna.holdout, config.image.levels) == (0, "region", 16)
    assert (config.molecule.too_long, config.text.tokenizer, config.text.vocab_size) == ("error", "char", 1024)
    text_run = Config.from_dict({"data": {"domain": "text", "max_length": 32}}).validate()
    assert text_run.data.max_length == 32


def test_dna_genome_names_are_checked_when_installed() -> None:
    if not _have_genomes():
        pytest.skip(f"the bacterial genomes are not installed: {INSTALL_HINT}")
    from scmdm.config import ConfigError

    with pytest.raises(ConfigError, match="data.source: unknown genome 'E.Colli'; available: E.Coli/DH1"):
        load_config(None, ["data.domain=dna", "data.source=E.Colli"])
    with pytest.raises(ConfigError, match="dna.test_genomes: unknown genome 'DH2'"):
        load_config(None, ["data.domain=dna", "dna.holdout=strain", "dna.test_genomes=DH2"])
    assert load_config(None, ["data.domain=dna", "data.source=E.Coli,S.Aureus"]).data.source == "E.Coli,S.Aureus"

