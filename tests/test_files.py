"""Atomic, checksummed folders (scmdm.files): what checksums.json records, what reading checks, and what a failed
write leaves (nothing) — on folders small enough to check by hand."""

from __future__ import annotations

import errno
import hashlib
import json
import os

import pytest

from scmdm import files
from scmdm.errors import CheckpointError
from scmdm.files import MANIFEST, read_manifest, read_verified, verify_folder, write_folder_atomically

#: SHA-256 of b"abc" (FIPS 180-2, appendix B.1)
ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _write_two(tmp):
    files.write_file(tmp / "a.bin", b"abc")
    files.write_file(tmp / "b.json", "{}")


def test_checksums_json_records_the_size_and_sha256_of_every_file(tmp_path) -> None:
    folder = write_folder_atomically(tmp_path / "out", _write_two)
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin", "b.json", MANIFEST]
    record = json.loads((folder / MANIFEST).read_text())
    assert record == {"format": "scmdm-checksums", "version": 1, "algorithm": "sha256",
                      "files": {"a.bin": {"size": 3, "sha256": ABC},
                                "b.json": {"size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()}}}
    assert read_verified(folder / "a.bin") == b"abc" and verify_folder(folder) == []
    assert not list(tmp_path.glob(".tmp_*"))


def test_reading_finds_every_kind_of_damage_and_names_the_file(tmp_path) -> None:
    folder = write_folder_atomically(tmp_path / "out", _write_two)
    (folder / "a.bin").write_bytes(b"abd")  # one changed byte
    with pytest.raises(CheckpointError, match=r"out/a.bin is damaged: its SHA-256 differs .* delete checksums.json"):
        read_verified(folder / "a.bin")
    (folder / "a.bin").write_bytes(b"ab")  # truncated
    with pytest.raises(CheckpointError, match=r"a.bin is damaged: it has 2 bytes, checksums.json recorded 3"):
        read_verified(folder / "a.bin")
    (folder / "c.bin").write_bytes(b"new")  # a file nobody recorded
    with pytest.raises(CheckpointError, match=r"c.bin is not listed in .*checksums.json"):
        read_verified(folder / "c.bin")
    assert verify_folder(folder) == [f"{folder / 'a.bin'} is damaged: it has 2 bytes, checksums.json recorded 3 when "
                                     "it was written (truncated, or overwritten?); if you changed it on purpose, "
                                     "delete checksums.json to read the folder unverified"]
    (folder / "b.json").unlink()
    assert verify_folder(folder)[-1] == f"{folder / 'b.json'} is missing"
    (folder / MANIFEST).write_text('{"format": "scmdm-checksums", "files": [1]}')
    with pytest.raises(CheckpointError, match=r"checksums.json is damaged \(not the checksum record scmdm writes\)"):
        read_manifest(folder)


def test_a_folder_without_checksums_is_read_unverified(tmp_path) -> None:
    (tmp_path / "x.bin").write_bytes(b"abc")
    assert read_manifest(tmp_path) is None and read_verified(tmp_path / "x.bin") == b"abc"
    assert "cannot be verified" in verify_folder(tmp_path)[0]


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_a_failed_write_leaves_what_was_there(tmp_path, monkeypatch, fail_at) -> None:
    """ENOSPC at the 1st or 2nd file, or at checksums.json: the error comes through, no temporary folder is left, the
    parent folders made for the write are gone, and a folder being replaced is untouched."""
    real, calls = files.write_file, []

    def full_disk(path, data):
        calls.append(path.name)
        if len(calls) == fail_at + 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    existing = write_folder_atomically(tmp_path / "out", lambda tmp: files.write_file(tmp / "old.txt", "old"))
    monkeypatch.setattr(files, "write_file", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        write_folder_atomically(tmp_path / "new" / "deeper" / "out", _write_two)
    assert not (tmp_path / "new").exists()
    calls.clear()
    with pytest.raises(OSError, match="No space left on device"):
        write_folder_atomically(existing, _write_two)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .tmp_ / .old_ folder
    assert (existing / "old.txt").read_text() == "old" and verify_folder(existing) == []


def test_a_temporary_folder_of_a_killed_write_is_removed_by_the_next_write(tmp_path) -> None:
    dead = tmp_path / ".tmp_out_999999999"  # no process has this id
    dead.mkdir()
    alive = tmp_path / f".tmp_out_{os.getppid()}"  # a running process's: it may still be writing
    alive.mkdir()
    write_folder_atomically(tmp_path / "out", _write_two)
    assert not dead.exists() and alive.exists()


def test_replacing_a_file_updates_its_checksum(tmp_path) -> None:
    folder = write_folder_atomically(tmp_path / "out", _write_two)
    (folder / "b.json").write_text('{"edited": 1}')  # edited by hand: the record names it
    assert any("b.json" in problem for problem in verify_folder(folder))
    files.replace_file(folder, "b.json", '{"card": 2}')
    assert verify_folder(folder) == [] and read_verified(folder / "b.json") == b'{"card": 2}'
    record = json.loads((folder / MANIFEST).read_text())["files"]
    assert record["a.bin"] == {"size": 3, "sha256": ABC}
    assert record["b.json"] == {"size": 11, "sha256": hashlib.sha256(b'{"card": 2}').hexdigest()}
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin", "b.json", MANIFEST]
