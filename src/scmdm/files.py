"""Folders written so that a crash never leaves half of one, and so that damage is found when they are read.

Atomic: every file is written into a temporary sibling folder ``.tmp_<name>_<pid>``, fsynced, and the folder is
renamed into place (the parent fsynced after). A reader sees the old folder or the new one, never a mixture; a
temporary folder left by a killed write is ignored, and removed by the next write of the same folder (or the next
save of a checkpoint) once its process is gone. A write that fails (a full disk, a
permission problem) removes its temporary folder and the parent folders it created, and leaves a folder it was to
replace as it was.

Checksummed: the last file written is ``checksums.json``, the size and SHA-256 of every other file of the folder::

    {"format": "scmdm-checksums", "version": 1, "algorithm": "sha256",
     "files": {"config.json": {"size": 1234, "sha256": "9f86d0…"}, ...}}

:func:`read_verified` reads a file of such a folder and checks it against that record, so a flipped byte, a
truncation or a file swapped for another is an error naming the file, not silently different data. A folder
without ``checksums.json`` (written before scmdm recorded them) is read unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from scmdm.errors import CheckpointError

__all__ = ["MANIFEST", "fsync_dir", "naming", "write_file", "write_folder_atomically", "file_digest", "read_manifest",
           "read_verified", "verify_folder", "replace_file"]

MANIFEST = "checksums.json"
_FORMAT = "scmdm-checksums"
_CHUNK = 1 << 20
_EDITED = f"if you changed it on purpose, delete {MANIFEST} to read the folder unverified"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An ``OSError`` raised inside names ``path`` (a full disk reported by ``write`` or ``fsync`` carries no file
    name; the message should say which file could not be written)."""
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None


def write_file(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` and fsync it: every file of a checkpoint or model folder is written
    here, so an error of the disk (``OSError``, e.g. ENOSPC) surfaces as itself, naming the file."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with naming(path), open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of a file, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist, nearest the root first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale(root: Path, name: str) -> None:
    """Temporary folders of ``name`` left by writes whose process was killed."""
    for path in root.glob(f".tmp_{name}_*"):
        pid = path.name.rsplit("_", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def write_folder_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` into a fresh temporary sibling of ``final``, record the checksums, fsync, then rename it to
    ``final`` (replacing a folder of that name). On any error the temporary folder and the parent folders created
    for it are removed, a replaced folder is left as it was, and the error is raised again."""
    final = Path(final)
    root = final.parent
    created = _missing_parents(root)
    tmp = root / f".tmp_{final.name}_{os.getpid()}"
    old = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root, final.name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        files = {}
        for file in sorted(tmp.iterdir()):
            if file.name == MANIFEST:
                continue
            size, sha256 = file_digest(file)
            files[file.name] = {"size": size, "sha256": sha256}
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        write_file(tmp / MANIFEST, json.dumps({"format": _FORMAT, "version": 1, "algorithm": "sha256",
                                               "files": files}, indent=1))
        fsync_dir(tmp)
        if final.exists():  # rewriting a step (e.g. the final save after a resume): move the old one aside first
            old = root / f".old_{final.name}_{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not final.exists():
            os.replace(old, final)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def replace_file(folder: Path, name: str, data: bytes | str) -> None:
    """Rewrite one file of a checksummed folder (e.g. a model card filled in after its model was measured) and its
    entry in ``checksums.json``: the file first, then the record, each written to a temporary name and renamed, so
    a crash between the two leaves the record naming the file as changed, never a file that silently differs. A
    folder without the record gets only the file."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if isinstance(data, str):
        data = data.encode("utf-8")
    for target, content in ((folder / name, data), (folder / MANIFEST, None)):
        if content is None:
            if manifest is None:
                break
            manifest[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            content = json.dumps({"format": _FORMAT, "version": 1, "algorithm": "sha256", "files": manifest},
                                 indent=1)
        tmp = target.with_name(f".tmp_{target.name}_{os.getpid()}")
        try:
            write_file(tmp, content)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    fsync_dir(folder)


def read_manifest(folder: Path) -> dict[str, dict] | None:
    """The ``files`` record of ``folder/checksums.json``; None if the folder has none; CheckpointError if it is
    damaged."""
    path = Path(folder) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
        files = data["files"]
        ok = (data.get("format") == _FORMAT and data.get("algorithm") == "sha256" and isinstance(files, dict)
              and all(isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
                      for v in files.values()))
    except (ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path} is damaged (not the checksum record scmdm writes), so the folder's files "
                              f"cannot be verified; {_EDITED}")
    return files


def _check(path: Path, entry: dict | None, size: int, sha256: str) -> None:
    if entry is None:
        raise CheckpointError(f"{path} is not listed in {path.parent / MANIFEST} (added or renamed after the folder "
                              f"was written?); {_EDITED}")
    if size != entry["size"]:
        raise CheckpointError(f"{path} is damaged: it has {size} bytes, {MANIFEST} recorded {entry['size']} when it "
                              f"was written (truncated, or overwritten?); {_EDITED}")
    if sha256 != entry["sha256"]:
        raise CheckpointError(f"{path} is damaged: its SHA-256 differs from the one {MANIFEST} recorded when it was "
                              f"written (changed bytes); {_EDITED}")


def read_verified(path: Path) -> bytes:
    """The bytes of ``path``, checked against its folder's ``checksums.json`` when there is one (CheckpointError
    naming the file otherwise). A missing file raises FileNotFoundError, a file that cannot be read OSError."""
    path = Path(path)
    manifest = read_manifest(path.parent)
    data = path.read_bytes()
    if manifest is not None:
        _check(path, manifest.get(path.name), len(data), hashlib.sha256(data).hexdigest())
    return data


def verify_folder(folder: Path) -> list[str]:
    """The problems of ``folder`` against its ``checksums.json`` (every listed file present, of its size and
    SHA-256), one line each; ``[]`` when it is intact. A folder without the record has the one problem of being
    unverifiable."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except CheckpointError as err:
        return [str(err)]
    if manifest is None:
        return [f"{folder} has no {MANIFEST} (written before scmdm recorded checksums): it cannot be verified"]
    problems = []
    for name, entry in sorted(manifest.items()):
        path = folder / name
        try:
            size, sha256 = file_digest(path)
            _check(path, entry, size, sha256)
        except FileNotFoundError:
            problems.append(f"{path} is missing")
        except (OSError, CheckpointError) as err:
            problems.append(str(err))
    return problems
