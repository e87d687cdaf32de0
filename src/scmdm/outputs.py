"""Output files of the commands (samples, metrics JSON): checked before any work starts, written whole or not at all.

``check_output_file`` runs before a command samples or evaluates anything, so a path that cannot be written is one
clear error in the first second, not after an hour of work: the path must not be a folder, must not exist unless
``force`` (an existing samples file is never overwritten silently), and the nearest folder above it that exists must
be a folder we may write to (missing folders in between are created when the file is written). ``writing`` wraps the
write itself: the missing folders are created, and if the write fails (a full disk) the half-written files and the
folders it created are removed again, so a failed command leaves what was there before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from scmdm.files import naming

__all__ = ["check_output_file", "writing"]


def _nearest_existing(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_output_file(path: str | Path, *, force: bool = False, option: str = "--out") -> Path:
    """``path`` as a Path if a command may write it; ``FileExistsError`` / ``ValueError`` naming ``option`` and the
    path otherwise (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not force:
        raise FileExistsError(f"{option} {path} already exists; give --force to overwrite it, or another file name")
    folder = _nearest_existing(path)
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the folder {folder} is not writable")
    return path


@contextmanager
def writing(*paths: str | Path) -> Iterator[None]:
    """Create the missing folders of ``paths``; if the body raises, remove the files among ``paths`` that it wrote
    and the folders created here, then raise again."""
    paths = tuple(Path(p) for p in paths)
    created: list[Path] = []
    for path in paths:
        missing, folder = [], path.parent
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
    before = {path: path.stat().st_mtime_ns if path.exists() else None for path in paths}
    try:
        with naming(paths[0]):
            yield
    except BaseException:
        for path in paths:
            if path.exists() and (before[path] is None or path.stat().st_mtime_ns != before[path]):
                path.unlink()
        for folder in reversed(created):
            with suppress(OSError):
                folder.rmdir()
        raise
