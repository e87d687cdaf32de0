"""Property tests (hypothesis): tokenizer round trips and robustness, config parsing that either gives a
valid config or a ConfigError — never another exception."""

from __future__ import annotations

import dataclasses
import math
import types
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scmdm.checkpoint import CheckpointError, read_tokenizer
from scmdm.config import Config, ConfigError, load_config
from scmdm.domains.molecule.tokenizer import SmilesTokenizer
from scmdm.errors import TokenizerError
from scmdm.tokenizer import EOS, MASK, PAD

# every kind of token the SMILES expression produces
VOCAB = ["C", "N", "O", "S", "P", "F", "I", "B", "Br", "Cl", "b", "c", "n", "o", "s", "p", "(", ")", ".", "=", "#",
         "-", "+", "\\", "/", ":", "~", "@", "?", ">", "*", "$", "%10", "%99", "1", "2", "9", "[nH]", "[NH3+]",
         "[C@@H]", "[O-]", "[2H]", "[Si]"]
TOKENIZER = SmilesTokenizer(VOCAB)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

token_lists = st.lists(st.sampled_from(VOCAB), max_size=40)


@SETTINGS
@given(token_lists)
def test_strings_of_vocabulary_tokens_round_trip(tokens: list[str]) -> None:
    text = "".join(tokens)
    assert SmilesTokenizer.split(text) == tokens
    ids = TOKENIZER.encode(text, length=len(tokens) + 3)
    assert len(ids) == len(tokens) + 3 and ids[len(tokens)] == TOKENIZER.eos_id
    assert TOKENIZER.decode(ids) == text
    encoded, report = TOKENIZER.encode_many([text], len(tokens) + 1)
    assert report.too_long == 0 and TOKENIZER.decode_batch(encoded) == [text]


@SETTINGS
@given(st.lists(token_lists, min_size=1, max_size=8))
def test_a_tokenizer_built_from_a_corpus_encodes_it_and_survives_saving(corpus: list[list[str]]) -> None:
    texts = ["".join(t) for t in corpus]
    tokenizer = SmilesTokenizer.build(texts)
    assert tokenizer.itos[:2] == [PAD, EOS] and tokenizer.itos[-1] == MASK
    length = max(len(t) for t in corpus) + 1
    encoded, _ = tokenizer.encode_many(texts, length)
    assert tokenizer.decode_batch(encoded) == texts
    assert SmilesTokenizer.from_dict(tokenizer.to_dict()) == tokenizer


@SETTINGS
@given(st.text(max_size=60), st.integers(min_value=1, max_value=30))
def test_arbitrary_text_raises_only_tokenizer_error(text: str, length: int) -> None:
    for call in (lambda: SmilesTokenizer.split(text), lambda: TOKENIZER.encode(text),
                 lambda: TOKENIZER.encode(text, length), lambda: SmilesTokenizer.build([text]),
                 lambda: TOKENIZER.encode_many([text, "CC"], length),
                 lambda: TOKENIZER.encode_many([text], length, too_long="truncate")):
        try:
            call()
        except TokenizerError as err:
            assert str(err)  # a message, never empty


@SETTINGS
@given(st.lists(st.integers(min_value=0, max_value=TOKENIZER.vocab_size - 1), max_size=40))
def test_decoding_any_ids_gives_text(ids: list[int]) -> None:
    text = TOKENIZER.decode(ids)
    assert isinstance(text, str)
    # decoding stops at the first EOS / PAD; what comes before it (MASK shown as '?') is all there is
    stop = next((i for i, x in enumerate(ids) if x in (TOKENIZER.eos_id, TOKENIZER.pad_id)), len(ids))
    assert text == "".join("?" if x == TOKENIZER.mask_id else TOKENIZER.itos[x] for x in ids[:stop])


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=4), max_leaves=10)


@SETTINGS
@given(st.one_of(json_values, st.fixed_dictionaries({"kind": st.just("smiles"), "itos": json_values}),
                 st.fixed_dictionaries({"kind": st.just("smiles"), "itos": st.lists(st.text(max_size=4))})))
def test_a_broken_tokenizer_file_is_a_checkpoint_error(tmp_path_factory, data) -> None:
    import json

    path = tmp_path_factory.getbasetemp() / "tokenizer.json"
    path.write_text(json.dumps(data))
    try:
        tokenizer = read_tokenizer(path, Config())
    except CheckpointError as err:
        assert str(path) in str(err)
    else:
        assert tokenizer.itos[:2] == [PAD, EOS] and tokenizer.itos[-1] == MASK


# ---- config -----------------------------------------------------------------------------------------
KEYS = [f"{section}.{f.name}" for section in Config.sections() for f in dataclasses.fields(getattr(Config(), section))]
TRICKY = ["", " ", "~", "null", ".nan", "-.inf", ".inf", "1e400", "-0", "0x10", "0o7", "1_000", "1e-3", "[1, 2]",
          "[0.9, 0.99]", "[]", "{a: 1}", "2020-01-01", "2020-13-45", "12:30:00", "yes", "no", "on", "true",
          "'quoted'", "\"dq\"", "'unterminated", "[unclosed", "&anchor x", "*alias", "!!python/object:os.system",
          "!!binary aGk=", "- a", "a: b", "%YAML 1.1", "|", ">", "@", "`", "[[[[[[[[]]]]]]]]", "\x00", "\u2028",
          "ancestral", "cached", "topk", "loglinear", "cosine", "adaln", "prenorm", "float32", "bfloat16",
          "cpu", "cuda:0", "auto", "skip", "truncate", "qm9"]
values = st.one_of(st.sampled_from(TRICKY), st.integers(min_value=-10**6, max_value=10**6).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.booleans().map(str),
                   st.text(max_size=12))
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k.upper()),
                 st.text(max_size=12), st.sampled_from(["train", "train.", ".steps", "a.b.c", "model.size"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(keys, values), min_size=1, max_size=4), st.booleans())
def test_overrides_give_a_valid_config_or_a_config_error(pairs: list[tuple[str, str]], no_equals: bool) -> None:
    overrides = [f"{k}{'' if no_equals and i == 0 else '='}{v}" for i, (k, v) in enumerate(pairs)]
    try:
        config = load_config(overrides=overrides)
    except ConfigError as err:
        assert str(err)
        return
    assert config.validate() is config
    for section in Config.sections():  # every field has its declared type and every float is finite
        obj = getattr(config, section)
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            declared = (typing.get_args(hints[f.name]) if isinstance(hints[f.name], types.UnionType)
                        else (type(getattr(getattr(Config(), section), f.name)),))  # int | str: either
            assert type(value) in declared, (section, f.name, value)
            assert not isinstance(value, float) or math.isfinite(value)
    assert Config.from_dict(config.to_dict()).validate() == config


@SETTINGS
@given(st.dictionaries(st.sampled_from([*Config.sections(), "optim"]),
                       st.one_of(json_values, st.dictionaries(st.sampled_from(["steps", "lr", "width", "sampler",
                                                                               "domain", "bogus"]), json_values)),
                       max_size=3))
def test_config_files_as_dicts_give_a_config_or_a_config_error(data: dict) -> None:
    try:
        config = Config.from_dict(data).validate()
    except ConfigError as err:
        assert str(err)
    else:
        assert Config.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("override", ["train.steps=2020-13-45", "train.lr=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["])
def test_yaml_oddities_are_config_errors(override: str) -> None:
    with pytest.raises(ConfigError, match="train"):
        load_config(overrides=[override])
