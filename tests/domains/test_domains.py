"""Tests of the domain registry (scmdm.domains): each domain's default canvas (data.max_length=0) and its metrics
table. Every domain end to end through the command line: tests/domains/test_pipelines.py."""

from __future__ import annotations

import pytest

from scmdm.config import Config, load_config
from scmdm.domains import get_domain


@pytest.mark.parametrize(("overrides", "length"), [
    ([], 24), (["data.domain=text"], 24), (["data.domain=dna"], 256), (["data.domain=dna", "data.max_length=100"], 100),
    (["data.domain=image"], 784), (["data.domain=image", "data.source=digits"], 64),
    (["data.domain=image", "data.source=digits", "data.max_length=64"], 64),
])
def test_max_length_zero_is_the_domains_canvas(overrides: list[str], length: int) -> None:
    config = load_config(None, overrides)
    assert config.data.max_length == length
    assert Config.from_dict(config.to_dict()).validate() == config  # resolved once, written as is


def test_dna_and_image_tables_keep_small_values() -> None:
    rows = [("a", {"n_samples": 10, "valid": 1.0, "js_6": 0.0012345, "nfe": 64.0, "seconds": 1.5})]
    dna = get_domain("dna").table(rows)
    assert "0.00123" in dna and "nfe" in dna and "Jensen-Shannon" in dna
    image = get_domain("image").table([("a", {"n_samples": 10, "fd_cnn": 0.012345, "classifier_score": 9.0})])
    assert "0.01235" in image and "not Inception FID" in image
