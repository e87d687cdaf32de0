"""Output files (scmdm.outputs): checked before the work, written whole or not at all."""

from __future__ import annotations

import os

import pytest

from scmdm.outputs import check_output_file, writing


def test_checks_before_the_work(tmp_path) -> None:
    assert check_output_file(tmp_path / "a" / "b" / "s.smi") == tmp_path / "a" / "b" / "s.smi"  # folders made later
    with pytest.raises(ValueError, match="--out .* is a folder; give a file name"):
        check_output_file(tmp_path)
    (tmp_path / "s.smi").write_text("C\n")
    with pytest.raises(FileExistsError, match=r"--json .*s.smi already exists; give --force to overwrite it"):
        check_output_file(tmp_path / "s.smi", option="--json")
    assert check_output_file(tmp_path / "s.smi", force=True).exists()
    with pytest.raises(ValueError, match=r"s.smi is a file, not a folder"):
        check_output_file(tmp_path / "s.smi" / "x.smi")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_folder_we_may_not_write_is_found_first(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="is not writable"):
        check_output_file(locked / "s.smi")


def test_a_failed_write_removes_what_it_wrote_and_the_folders_it_made(tmp_path) -> None:
    out = tmp_path / "new" / "s.smi"
    with pytest.raises(OSError), writing(out):
        out.write_text("half")
        raise OSError(28, "No space left on device")
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept.smi"
    kept.write_text("old")
    with pytest.raises(RuntimeError), writing(kept):
        raise RuntimeError("before anything was written")
    assert kept.read_text() == "old"  # a file the failed command never touched stays
    with writing(out):
        out.write_text("whole")
    assert out.read_text() == "whole"
