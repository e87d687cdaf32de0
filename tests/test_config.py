"""Tests of scmdm.config: defaults, YAML files, ``section.key=value`` overrides and validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scmdm.categorical import PRECISIONS
from scmdm.config import Config, ConfigError, apply_overrides, describe_config, load_config
from scmdm.model import BLOCK_TYPES
from scmdm.sampling import SAMPLER_NAMES as SAMPLERS
from scmdm.schedules import SCHEDULES


def test_defaults_validate() -> None:
    config = load_config()
    assert isinstance(config, Config)
    assert Config().data.max_length == "auto" and config.data.max_length == 24  # QM9: the domain's canvas, resolved
    assert config == Config().validate()
    assert config.validate() is config
    assert Config.sections() == ("data", "molecule", "text", "dna", "image", "model", "diffusion", "train",
                                 "sample", "selfcond", "speculative", "eval")
    # a few defaults the rest of the code relies on
    assert config.diffusion.schedule in SCHEDULES
    assert config.model.block_type in BLOCK_TYPES
    assert config.sample.sampler in SAMPLERS
    assert config.sample.precision in PRECISIONS


def test_list_defaults_are_not_shared_between_instances() -> None:
    a, b = Config(), Config()
    a.train.betas[0] = 0.5
    assert b.train.betas == [0.9, 0.99]


@pytest.mark.parametrize(("override", "section", "key", "expected", "kind"), [
    ("train.lr=0.002", "train", "lr", 0.002, float),
    ("train.lr=1e-3", "train", "lr", 1e-3, float),  # YAML 1.1 reads '1e-3' as a string
    ("train.lr=3", "train", "lr", 3.0, float),  # an int is accepted for a float field
    ("train.steps=10", "train", "steps", 10, int),
    ("train.steps=10.0", "train", "steps", 10, int),  # an integral float is accepted for an int field
    ("model.time_conditioning=true", "model", "time_conditioning", True, bool),
    ("sample.use_ema=false", "sample", "use_ema", False, bool),
    ("model.block_type=adaln", "model", "block_type", "adaln", str),
    ("train.betas=[0.8, 0.95]", "train", "betas", [0.8, 0.95], list),
    ("train.device= cpu", "train", "device", "cpu", str),
])
def test_overrides_parse_types(override: str, section: str, key: str, expected: object, kind: type) -> None:
    config = apply_overrides(Config(), [override])
    value = getattr(getattr(config, section), key)
    assert type(value) is kind
    assert value == expected
    # and load_config applies the same parsing, then validates
    assert getattr(getattr(load_config(overrides=[override]), section), key) == expected


def test_later_overrides_win() -> None:
    config = load_config(overrides=["train.steps=10", "train.steps=20"])
    assert config.train.steps == 20


def test_unknown_section_names_it_and_lists_sections() -> None:
    with pytest.raises(ConfigError, match="'optim'") as info:
        apply_overrides(Config(), ["optim.lr=0.1"])
    for section in Config.sections():
        assert section in str(info.value)


def test_unknown_key_names_it_and_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match="'train.learning_rate'") as info:
        apply_overrides(Config(), ["train.learning_rate=0.1"])
    for f in dataclasses.fields(Config().train):
        assert f.name in str(info.value)


@pytest.mark.parametrize("override", ["train.steps=abc", "train.steps=1.5", "train.steps=true",
                                      "train.lr=fast", "model.time_conditioning=1", "train.betas=0.9",
                                      "model.block_type=[1, 2]"])
def test_wrong_type_raises_naming_the_key(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize("override", ["train.betas=[a, b]", "train.betas=[0.9, true]"])
def test_betas_with_non_numbers_raise_config_error(override: str) -> None:
    # a list field is only checked to be a list; its elements must still give a ConfigError naming the key
    with pytest.raises(ConfigError, match=r"train\.betas"):
        load_config(overrides=[override])


@pytest.mark.parametrize("override", ["train.steps", "steps=3", "a.b.c=1"])
def test_malformed_overrides_raise(override: str) -> None:
    with pytest.raises(ConfigError):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize(("overrides", "pattern"), [
    (["train.steps=-1"], "train.steps must be positive"),
    (["train.steps=0"], "train.steps must be positive"),
    (["train.warmup_steps=-1"], "train.warmup_steps"),
    (["train.ema_decay=1.0"], "train.ema_decay"),
    (["train.precision=float16"], "train.precision"),
    (["sample.sampler=foo"], "sample.sampler must be one of ancestral, cached, topk, first_hitting, remdm, blocks, "
                             "threshold, speculative, got 'foo'"),
    (["sample.precision=float16"], "sample.precision must be one of float64, float32"),
    (["diffusion.schedule=foo"], "diffusion.schedule must be one of loglinear, cosine, linear"),
    (["diffusion.time_epsilon=0"], "diffusion.time_epsilon"),
    (["sample.temperature=0"], "sample.temperature must be positive"),
    (["sample.top_p=1.5"], r"sample.top_p must be in \(0, 1\]"),
    (["sample.top_p=0"], "sample.top_p"),
    (["model.width=100", "model.heads=6"], r"model.width \(100\) / model.heads \(6\)"),
    (["model.width=18", "model.heads=6"], r"model.width \(18\)"),  # head dim 3 is odd
    (["model.block_type=dit"], "model.block_type must be one of prenorm, adaln"),
    (["model.dropout=1"], "model.dropout"),
    (["data.domain=protein"], "data.domain must be one of molecule, text, dna, image, got 'protein'"),
    (["data.domain=dna", "dna.holdout=species"], "dna.holdout must be one of region, strain, got 'species'"),
    (["data.domain=dna", "dna.holdout=strain"], "dna.holdout=strain needs dna.test_genomes"),
    (["data.domain=dna", "dna.test_genomes=E.Coli/DH1"], "dna.test_genomes='E.Coli/DH1' is only used with "
                                                         "dna.holdout=strain"),
    (["data.domain=dna", "dna.stride=-1"], "dna.stride must be >= 0"),
    (["data.domain=image", "data.source=cifar10"], "data.source must be one of fashion_mnist, fashion_mnist_14, "
                                                    "digits for images, got 'cifar10'"),
    (["data.domain=image", "image.levels=8"], "image.levels must be one of 2, 4, 16, 256 for "
                                              "data.source=fashion_mnist, got 8"),
    (["data.domain=image", "data.source=digits", "image.levels=256"], "image.levels must be one of 2, 4, 16 for "
                                                                      "data.source=digits, got 256"),
    (["data.domain=image", "data.max_length=100"], "data.max_length must be H·W = 28·28 = 784 for "
                                                   "data.source=fashion_mnist"),
    (["data.domain=image", "data.source=digits", "data.max_length=784"], "data.max_length must be H·W = 8·8 = 64"),
    (["data.domain=image", "data.source=fashion_mnist_14", "data.max_length=784"], "data.max_length must be H·W = "
                                                                                  "14·14 = 196"),
    (["data.domain=text", "text.tokenizer=words"], "text.tokenizer must be one of char, bpe"),
    (["data.domain=text", "text.tokenizer=bpe", "text.vocab_size=100"], "text.vocab_size must be at least 259"),
    (["data.domain=text", "data.tokenizer=words"], "text.tokenizer must be one of char, bpe"),  # the old spelling
    (["data.max_length=1"], "data.max_length"),
    (["data.max_length=-3"], r"data.max_length must be at least 2 \(or 0: the domain's default\), got -3"),
])
def test_invalid_values_raise(overrides: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(overrides=overrides)


def test_valid_non_default_values_pass() -> None:
    config = load_config(overrides=["model.width=96", "model.heads=4", "sample.sampler=topk",
                                    "sample.precision=float32", "diffusion.schedule=cosine",
                                    "sample.top_p=0.9"])
    assert (config.model.width, config.model.heads, config.sample.sampler) == (96, 4, "topk")


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 5\n  lr: 0.002\n"
                    "model:\n  block_type: adaln\n  time_conditioning: true\n", encoding="utf-8")
    config = load_config(path, ["train.steps=7", "sample.steps=3"])
    assert config.train.steps == 7  # override applied after the file
    assert config.train.lr == 0.002  # from the file
    assert config.model.block_type == "adaln" and config.model.time_conditioning is True
    assert config.sample.steps == 3
    assert config.train.batch_size == Config().train.batch_size  # untouched default


def test_yaml_file_exponent_float(tmp_path: Path) -> None:
    # 'lr: 1e-3' is how people write learning rates; PyYAML (YAML 1.1) loads it as the string '1e-3'.
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 1e-3\n", encoding="utf-8")
    assert load_config(path).train.lr == 1e-3


def test_yaml_file_values_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("sample:\n  top_p: 1.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sample.top_p"):
        load_config(path)
    # ... but an override can repair it, since validation runs after the overrides
    assert load_config(path, ["sample.top_p=0.5"]).sample.top_p == 0.5


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_config(path) == Config().validate()


@pytest.mark.parametrize(("text", "pattern"), [
    ("- train\n- model\n", "must hold a mapping"),
    ("just a string\n", "must hold a mapping"),
    ("train: 5\n", "section 'train' must be a mapping"),
    ("optim:\n  lr: 0.1\n", "unknown section 'optim'"),
    ("train:\n  learning_rate: 0.1\n", "unknown key 'train.learning_rate'"),
    ("train: [unclosed\n", "not valid YAML"),
    ("train:\n  steps: 10\n  lr: 0.1\n  steps: 20\n", r"not valid YAML: duplicate key 'steps' \(first on line 2"),
    ("train:\n  steps: 10\nmodel:\n  depth: 2\ntrain:\n  lr: 0.1\n", "duplicate key 'train' \\(first on line 1"),
])
def test_bad_yaml_files_raise(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_missing_yaml_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_to_dict_from_dict_round_trip() -> None:
    config = load_config(overrides=["train.steps=11", "train.betas=[0.5, 0.6]", "model.block_type=adaln",
                                    "sample.temperature=0.7", "data.subset=100"])
    data = config.to_dict()
    assert set(data) == set(Config.sections())
    assert data["train"]["steps"] == 11 and data["model"]["block_type"] == "adaln"
    restored = Config.from_dict(data)
    assert restored == config
    assert Config.from_dict(data).validate() == config
    # a default config survives the round trip too
    assert Config.from_dict(Config().to_dict()) == Config()


def test_from_dict_rejects_unknown_section_and_key() -> None:
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        Config.from_dict({"optim": {}})
    with pytest.raises(ConfigError, match="'model.size'"):
        Config.from_dict({"model": {"size": 3}})


def test_describe_config_mentions_every_field() -> None:
    text = describe_config()
    defaults = Config()
    for section in Config.sections():
        assert f"{section}:" in text
        obj = getattr(defaults, section)
        for f in dataclasses.fields(obj):
            assert f"{section}.{f.name} = {getattr(obj, f.name)!r}" in text
            assert f.metadata["help"] and f.metadata["help"] in text
    only_train = describe_config(("train",))
    assert "train.steps" in only_train and "model.width" not in only_train


@settings(max_examples=60, deadline=None)
@given(train_steps=st.integers(min_value=1, max_value=10**12),
       sample_steps=st.integers(min_value=1, max_value=10**12))
def test_integer_overrides_round_trip_exactly(train_steps: int, sample_steps: int) -> None:
    config = load_config(overrides=[f"train.steps={train_steps}", f"sample.steps={sample_steps}"])
    assert type(config.train.steps) is int and config.train.steps == train_steps
    assert type(config.sample.steps) is int and config.sample.steps == sample_steps


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(max_value=0))
def test_non_positive_step_overrides_are_rejected(steps: int) -> None:
    with pytest.raises(ConfigError, match="train.steps"):
        load_config(overrides=[f"train.steps={steps}"])


# ---- the self-conditioning and speculative sections ------------------------------------------------------
@pytest.mark.parametrize(("override", "message"), [
    ("selfcond.rate=1.5", "selfcond.rate must be in [0, 1], got 1.5"),
    ("selfcond.rate=-0.1", "selfcond.rate must be in [0, 1]"),
    ("selfcond.injection=film", "selfcond.injection must be one of none, mask_add, projection, gated, got 'film'"),
    ("selfcond.carry=argmax", "selfcond.carry must be one of distribution, sharpened, token"),
    ("selfcond.hint_dropout=2", "selfcond.hint_dropout must be in [0, 1]"),
    ("selfcond.hint_noise=-1", "selfcond.hint_noise must be >= 0"),
    ("selfcond.hint_lag=1.5", "selfcond.hint_lag must be in [0, 1]"),
    ("selfcond.hint_lag=0.1 speculative.causal_layers=1", "selfcond.hint_lag is for the NELBO loss"),
])
def test_bad_selfcond_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, override.split())


@pytest.mark.parametrize(("override", "message"), [
    ("speculative.causal_layers=-1", "speculative.causal_layers must be >= 0, got -1"),
    ("speculative.head=tied", "speculative.head must be one of shared, separate, got 'tied'"),
    ("speculative.freeze_trunk=true", "speculative.freeze_trunk needs a verifier to train"),
    ("sample.window=0", "sample.window and sample.min_window must be positive"),
    ("sample.window_schedule=exp", "sample.window_schedule must be one of constant, linear, cosine"),
    ("sample.verify_loops=-2", "sample.verify_loops must be >= 0"),
])
def test_bad_speculative_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [override])


def test_min_window_above_window_is_named() -> None:
    with pytest.raises(ConfigError, match="must not exceed sample.window"):
        load_config(None, ["sample.window=2", "sample.min_window=3", "sample.window_schedule=cosine"])


# ---- config.json written by older versions ----------------------------------------------------------------
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


@pytest.mark.parametrize("section", ["data", "model", "diffusion", "train", "sample", "selfcond"])
def test_every_section_refuses_non_finite_numbers_on_its_own(section: str) -> None:
    """Each section's own validate() (what sample and eval call on the sample section) refuses NaN and inf in every
    float field, not only Config.validate()."""
    import dataclasses
    import math

    config = Config()
    obj = getattr(config, section)
    floats = [f.name for f in dataclasses.fields(obj) if isinstance(getattr(obj, f.name), float)]
    assert floats, section
    for name in floats:
        for bad in (math.nan, math.inf, -math.inf):
            fresh = getattr(Config(), section)
            setattr(fresh, name, bad)
            with pytest.raises(ConfigError, match=f"{section}.{name} must be a finite number"):
                fresh.validate()
