"""The registry of data domains: ``data.domain`` → its ``Domain`` entry (``scmdm.domains.base``), one package per
domain — ``molecule``, ``text``, ``dna``, ``image`` — holding its tokenizer, data preparation, evaluator and config
section. Wiring a new domain is writing its package and adding its ``DOMAIN`` here."""

from __future__ import annotations

from typing import Any

from scmdm.data import PreparedData
from scmdm.domains import dna, image, molecule, text
from scmdm.domains.base import Domain

__all__ = ["Domain", "DOMAINS", "DOMAIN_NAMES", "get_domain", "prepare_data"]

DOMAINS: dict[str, Domain] = {entry.name: entry for entry in (molecule.DOMAIN, text.DOMAIN, dna.DOMAIN, image.DOMAIN)}
DOMAIN_NAMES = tuple(DOMAINS)


def get_domain(name: str) -> Domain:
    """The registry entry of ``name``; a clear error for an unknown one."""
    if name not in DOMAINS:
        raise ValueError(f"data.domain must be one of {', '.join(DOMAINS)}, got {name!r}")
    return DOMAINS[name]


def prepare_data(config: Any, tokenizer: Any = None, *, quiet: bool = False) -> PreparedData:
    """Load, split and tokenize the data of a run's ``config`` (its ``data.domain``); with ``tokenizer`` (e.g. from
    a checkpoint) the data must fit it, otherwise it is built from the data. ``data.max_length=auto`` is resolved
    here: the canvas the domain chose from the training items is written into ``config``."""
    data = get_domain(config.data.domain).prepare(config, tokenizer, quiet=quiet)
    if config.data.max_length == "auto":
        config.data.max_length = int(data.train.shape[1])
    return data
