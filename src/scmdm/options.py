"""How a config option is declared: a dataclass field with its default and the help text ``--help`` prints.

Every section of ``scmdm.config.Config`` (and each domain's own section, ``scmdm.domains.<domain>.settings``)
declares its fields with ``option``; unknown keys and wrongly typed values are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from scmdm.errors import ConfigError

__all__ = ["option", "check_seed", "check_finite", "MAX_SEED"]

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


def check_finite(section: str, settings: Any) -> None:
    """ConfigError naming the key of the first float field of the dataclass ``settings`` that is NaN or ±inf (NaN
    slips through every comparison of a range check, inf through every ``> 0``)."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{f.name} must be a finite number, got {value}")
