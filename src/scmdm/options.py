"""How a config option is declared: a dataclass field with its default and the help text ``--help`` prints.

Every section of ``scmdm.config.Config`` (and each domain's own section, ``scmdm.domains.<domain>.settings``)
declares its fields with ``option``; unknown keys and wrongly typed values are errors that name the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scmdm.errors import ConfigError

__all__ = ["option", "check_seed", "MAX_SEED"]

MAX_SEED = 2**32 - 1


def option(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - 'help' reads best here
    """A dataclass field with ``default`` (copied for lists and dicts) and a help text."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def check_seed(key: str, value: int) -> None:
    """ConfigError unless ``value`` is a valid seed."""
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key} must be in [0, 2**32 - 1], got {value}")
