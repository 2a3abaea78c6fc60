"""The media store: images by sha256 under the data dir, private, checked, collected."""

from __future__ import annotations

from pathlib import Path

import pytest

from plurcast.errors import RuntimeFailure
from plurcast.media import files


def test_an_image_is_stored_once_by_its_sha256_and_privately(tmp_path: Path) -> None:
    directory = files.media_dir(tmp_path / "data" / "posts.db")
    assert directory == tmp_path / "data" / "media"
    digest = files.put(directory, b"picture")
    assert digest == files.sha256(b"picture")
    assert files.put(directory, b"picture") == digest
    assert [p.name for p in directory.iterdir()] == [digest]
    assert (directory / digest).stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert files.read(directory, digest) == b"picture"


def test_a_missing_or_altered_file_is_an_error(tmp_path: Path) -> None:
    digest = files.put(tmp_path, b"picture")
    (tmp_path / digest).write_bytes(b"something else")
    with pytest.raises(RuntimeFailure, match="damaged"):
        files.read(tmp_path, digest)
    (tmp_path / digest).unlink()
    with pytest.raises(RuntimeFailure, match="cannot be read"):
        files.read(tmp_path, digest)
    with pytest.raises(RuntimeFailure, match="not the name"):
        files.read(tmp_path, "../posts.db")


def test_collect_removes_only_the_images_nothing_needs(tmp_path: Path) -> None:
    tmp_path = tmp_path / "media"
    needed = files.put(tmp_path, b"needed")
    unneeded = files.put(tmp_path, b"unneeded")
    (tmp_path / "notes.txt").write_text("not ours")
    assert files.collect(tmp_path, [needed]) == [unneeded]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([needed, "notes.txt"])
    assert files.collect(tmp_path / "never-made", []) == []


def test_an_unwritable_store_is_a_runtime_failure(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")
    with pytest.raises(RuntimeFailure, match="cannot store"):
        files.put(tmp_path / "data" / "media", b"x")
