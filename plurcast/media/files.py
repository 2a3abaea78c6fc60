"""The media store: a queued post's images, kept by their sha256 in `<data dir>/media/`.

An image is copied here when the post is written (after its metadata is removed), so a
post queued for next week does not depend on the file it was made from still being
there, unchanged. Files are named by the sha256 of their bytes: the same picture in ten
posts is kept once, and a file is checked against its name whenever it is read.

The directory is 0700 and every file 0600 — like the database, a queued post is private
until it is published. A file is removed when no post that may still be sent (waiting,
sending, or failed and retryable) and no live recurring schedule needs it: `collect`
runs after a cancel, a delete and a finished delivery, under the database's write lock,
and files are stored inside the write transaction of the post that needs them
(`plurcast.media.store`), so a file is never taken from a post being written.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from plurcast.errors import RuntimeFailure

_NAME = re.compile(r"[0-9a-f]{64}")


def media_dir(db_path: Path) -> Path:
    """`<data dir>/media`, beside the database."""
    return db_path.expanduser().parent / "media"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(directory: Path, data: bytes) -> str:
    """Store `data` (atomically, 0600) and return its sha256; a file already there is kept."""
    digest = sha256(data)
    path = directory / digest
    try:
        _make_private_dir(directory)
        if path.exists():
            return digest
        tmp = directory / f".{digest}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot store the image in {directory}: {exc.strerror}",
            "check that the data directory is writable and the disk not full",
        ) from None
    return digest


def read(directory: Path, digest: str) -> bytes:
    """The stored bytes of `digest`; a missing or altered file is a RuntimeFailure."""
    if not _NAME.fullmatch(digest):
        raise RuntimeFailure(f"{digest!r} is not the name of a stored image")
    path = directory / digest
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuntimeFailure(
            f"the stored image {path} cannot be read: {exc.strerror}",
            "the post's image is gone from the media store; cancel the post and write it again",
        ) from None
    if sha256(data) != digest:
        raise RuntimeFailure(
            f"the stored image {path} is damaged (its content does not match its name)",
            "cancel the post and write it again",
        )
    return data


def collect(directory: Path, needed: Iterable[str]) -> list[str]:
    """Remove the stored images that are not `needed`; the names removed. (Other files,
    such as a half-written `.tmp`, are left alone.)"""
    keep = set(needed)
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not _NAME.fullmatch(entry.name) or entry.name in keep:
            continue
        try:
            Path(entry.path).unlink()
        except FileNotFoundError:
            continue
        removed.append(entry.name)
    return removed


def _make_private_dir(directory: Path) -> None:
    for missing in reversed([d for d in (directory, *directory.parents) if not d.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)
