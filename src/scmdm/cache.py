"""Where derived data is cached (every domain): ``$SCMDM_CACHE`` or ``~/.cache/scmdm``.

Things kept there are pure functions of installed sources (canonical QM9, extracted KJV and Austen text, a
BPE tokenizer trained on a split, FCD reference statistics, ...), each named by its version or by a hash of its
input, so deleting the folder only costs the time to rebuild them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """The cache folder (created if needed): ``$SCMDM_CACHE`` or ``~/.cache/scmdm``."""
    path = Path(os.environ.get("SCMDM_CACHE", Path.home() / ".cache" / "scmdm"))
    path.mkdir(parents=True, exist_ok=True)
    return path
