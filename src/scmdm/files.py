"""Folders written so that a crash never leaves half of one: every file is written into a temporary sibling
folder, fsynced, and the folder is renamed into place (the parent fsynced after). A reader sees the old folder or
the new one, never a mixture; a temporary folder left by a killed write is ignored (and removed by the next save
of a checkpoint)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_dir", "write_folder_atomically"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_folder_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` into a fresh temporary sibling of ``final``, fsync, then rename it to ``final``."""
    root = final.parent
    tmp = root / f".tmp_{final.name}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    for file in tmp.iterdir():
        with file.open("rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(tmp)
    old = None
    if final.exists():  # rewriting a step (e.g. the final save after a resume): move the old one aside first
        old = root / f".old_{final.name}_{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final
