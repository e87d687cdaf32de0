"""Tests of scmdm.domains.text.settings: the text.* options and the text domain's data defaults."""

from __future__ import annotations

import pytest

from scmdm.config import ConfigError, load_config


def test_config_for_text() -> None:
    config = load_config(None, ["data.domain=text"])
    assert config.data.resolved_source == "kjv" and load_config(None).data.resolved_source == "qm9"
    with pytest.raises(ConfigError, match="text.tokenizer must be one of char, bpe"):
        load_config(None, ["data.domain=text", "text.tokenizer=word"])
