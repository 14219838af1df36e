"""The one atomic writer: hidden temporary name, fsync, rename; nothing half written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pipeline._atomic as atomic
from pipeline._atomic import StagedFile, publish_dir, staging_dir, write_text


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files and folders flushed to disk, in order."""
    seen: list[str] = []
    fsync = atomic._fsync

    def spy(path: Path) -> None:
        seen.append(Path(path).name)
        fsync(path)

    monkeypatch.setattr(atomic, "_fsync", spy)
    return seen


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_text_replaces_the_file_whole(tmp_path: Path, fsynced: list[str]) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert _hidden(tmp_path) == []
    # The temporary file was flushed before it took the final name.
    assert len(fsynced) == 1 and fsynced[0].startswith(".report.json.")
    assert fsynced[0].endswith(".tmp")


def test_write_text_to_a_special_file_writes_in_place(tmp_path: Path) -> None:
    write_text(os.devnull, "discarded")
    assert Path(os.devnull).exists() and not Path(os.devnull).is_file()
    assert not list(Path(os.devnull).parent.glob(".null.*"))


def test_staged_file_is_renamed_on_success_and_removed_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with StagedFile(target) as staged:
        assert staged.temp.parent == tmp_path and staged.temp.name.startswith(".out.bin.")
        staged.temp.write_bytes(b"complete")
        assert not target.exists()  # the final name appears only at the end
    assert target.read_bytes() == b"complete"

    with pytest.raises(RuntimeError, match="writer failed"), StagedFile(target) as staged:
        staged.temp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"complete"
    assert _hidden(tmp_path) == []


def test_staged_files_publish_together(tmp_path: Path) -> None:
    """Two outputs: both synced before either is renamed; discard leaves the old ones."""
    a, b = StagedFile(tmp_path / "a.bin"), StagedFile(tmp_path / "b.bin")
    assert a.temp != StagedFile(tmp_path / "a.bin").temp  # unique per writer
    for staged in (a, b):
        staged.temp.write_bytes(staged.path.name.encode())
        staged.sync()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []
    for staged in (a, b):
        staged.publish()
    assert (tmp_path / "a.bin").read_bytes() == b"a.bin"
    c = StagedFile(tmp_path / "a.bin")
    c.temp.write_bytes(b"never")
    c.discard()
    assert (tmp_path / "a.bin").read_bytes() == b"a.bin" and _hidden(tmp_path) == []


def test_not_durable_skips_only_the_fsync(tmp_path: Path, fsynced: list[str]) -> None:
    with StagedFile(tmp_path / "cache.arrow", durable=False) as staged:
        staged.temp.write_bytes(b"x")
    assert (tmp_path / "cache.arrow").read_bytes() == b"x" and fsynced == []


def test_publish_dir_syncs_parts_and_folder_then_replaces(
    tmp_path: Path, fsynced: list[str]
) -> None:
    target = tmp_path / "quarantine"
    target.mkdir()
    (target / "part-old.parquet").write_bytes(b"old")
    staging = staging_dir(target)
    assert staging.parent == tmp_path and staging.name.startswith(".quarantine.")
    assert not staging.exists()
    staging.mkdir()
    (staging / "part-0.parquet").write_bytes(b"0")
    (staging / "part-1.parquet").write_bytes(b"1")
    (staging / ".part-2.parquet.123.tmp").write_bytes(b"a retried task's leftover")
    publish_dir(staging, target)
    assert sorted(p.name for p in target.iterdir()) == ["part-0.parquet", "part-1.parquet"]
    # Every part, then the folder last (the order of the parts is the listing's).
    assert sorted(fsynced[:2]) == ["part-0.parquet", "part-1.parquet"]
    assert fsynced[2:] == [staging.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quarantine"]  # old one gone


def test_publish_dir_to_a_new_name(tmp_path: Path) -> None:
    staging = staging_dir(tmp_path / "clean")
    staging.mkdir()
    (staging / "part-0.parquet").write_bytes(b"0")
    publish_dir(staging, tmp_path / "clean")
    assert [p.name for p in tmp_path.iterdir()] == ["clean"]
