"""The ``image`` config section: the grey levels of the image domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scmdm.domains.image.data import LEVELS, SHAPES, SOURCES
from scmdm.errors import ConfigError
from scmdm.options import option

__all__ = ["ImageSettings", "image_shape"]


def image_shape(data: Any) -> tuple[int, int]:
    """(H, W) of ``data.source``; a ConfigError for a source that is not an image set."""
    source = data.resolved_source
    if source not in SHAPES:
        raise ConfigError(f"data.source must be one of {', '.join(SHAPES)} for images, got {source!r}")
    return SHAPES[source]


@dataclass
class ImageSettings:
    levels: int = option(16, "grey levels K the images are quantised to: 2 | 4 | 16 | 256 (digits: at most 16)")

    def validate(self, data: Any) -> None:
        height, width = image_shape(data)
        source = data.resolved_source
        allowed = [k for k in LEVELS if k <= SOURCES[source]]
        if self.levels not in allowed:
            raise ConfigError(f"image.levels must be one of {', '.join(map(str, allowed))} for data.source={source}, "
                              f"got {self.levels}")
        if data.max_length != height * width:
            raise ConfigError(f"data.max_length must be H·W = {height}·{width} = {height * width} for data.source="
                              f"{source} (an image fills its canvas in raster order), got {data.max_length}; leave it "
                              "at 0 to derive it")
