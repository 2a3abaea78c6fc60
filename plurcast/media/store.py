"""The media store: where a queued post's images wait until every delivery has them.

One interface, `MediaStore`, whatever keeps the bytes: `put` an image (its sha256 comes
back), `read` it by sha256 (checked against the name), `collect` what nothing needs any
more. The adapters never open a file themselves: the engine hands each delivery the store
of the queue it was claimed from (`Work.media`), so the bytes come from wherever the queue
lives. `put` is called inside the write transaction of the post that needs the image.

- SQLite (`FileStore`): the bytes are files, `<data dir>/media/<sha256>`
  (`plurcast.media.files`). `collect` runs under the database's write lock, and a writer
  stores (or touches) its files inside its own write transaction, so no post is ever
  committed pointing at a file that is gone.
- PostgreSQL (`TableStore`): the bytes are rows of `media`, written in the post's own
  transaction — a daemon on another host, with another data directory, reads them from the
  shared database. Writers and `collect` take the same transaction lock (MEDIA_LOCK), as
  SQLite's write lock serialises them there: a collect never sees a post half written.

What still needs an image is recorded beside the posts in both (`plurcast.store.media`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from plurcast.errors import RuntimeFailure
from plurcast.media import files
from plurcast.store.base import POSTGRESQL, Database

# Held by a transaction that stores images and by a collect (PostgreSQL; SQLite's write lock
# does the same there).
MEDIA_LOCK = "plurcast:media"


class MediaReader(Protocol):
    """What a delivery needs: the bytes of an image by its sha256 (RuntimeFailure if gone)."""

    def read(self, digest: str) -> bytes: ...


class MediaStore(MediaReader, Protocol):
    def put(self, data: bytes) -> str:
        """Keep `data`; its sha256. Idempotent: the same bytes are kept once."""
        ...

    def collect(self) -> list[str]:
        """Remove the images no post or schedule needs; the sha256 of those removed."""
        ...


class FileStore:
    """Images as files in one directory beside the SQLite database (0700, files 0600)."""

    def __init__(self, directory: Path, conn: Database) -> None:
        self.directory = directory
        self.conn = conn

    def put(self, data: bytes) -> str:
        return files.put(self.directory, data)

    def read(self, digest: str) -> bytes:
        return files.read(self.directory, digest)

    def collect(self) -> list[str]:
        from plurcast.store import media as media_sql

        if not self.directory.exists():
            return []
        with self.conn.transaction():  # the write lock: no post is being written meanwhile
            return files.collect(self.directory, media_sql.needed(self.conn))


class TableStore:
    """Images as rows of the shared database (PostgreSQL), for daemons on every host."""

    def __init__(self, conn: Database) -> None:
        self.conn = conn

    def put(self, data: bytes) -> str:
        from plurcast.store import media as media_sql

        digest = hashlib.sha256(data).hexdigest()
        self.conn.lock(MEDIA_LOCK)
        media_sql.put_blob(self.conn, digest, data, self.conn.now_ms())
        return digest

    def read(self, digest: str) -> bytes:
        from plurcast.store import media as media_sql

        data = media_sql.get_blob(self.conn, digest)
        where = f"the stored image {digest[:12]}… ({self.conn.describe()})"
        if data is None:
            raise RuntimeFailure(
                f"{where} is gone from the media store",
                "cancel the post and write it again",
            )
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeFailure(f"{where} is damaged", "cancel the post and write it again")
        return data

    def collect(self) -> list[str]:
        from plurcast.store import media as media_sql

        with self.conn.transaction():
            self.conn.lock(MEDIA_LOCK)
            return media_sql.delete_unneeded(self.conn)


class Rehearsal:
    """A store that keeps nothing, for a dry run (plur-import --dry-run): each image gets
    its sha256, and no file or row is made."""

    def put(self, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def read(self, digest: str) -> bytes:
        raise RuntimeFailure(f"a dry run keeps no image ({digest[:12]}…)")

    def collect(self) -> list[str]:
        return []


def for_database(conn: Database) -> MediaStore:
    """The media store of the queue `conn` is open on: rows of the shared PostgreSQL
    database, else files beside the SQLite file."""
    if conn.dialect == POSTGRESQL:
        return TableStore(conn)
    path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    if not path:
        raise RuntimeFailure("a database in memory has no media store for images")
    return FileStore(files.media_dir(Path(path)), conn)


def collect_after(conn: Database, metadata: Iterable[dict[str, Any]]) -> list[str]:
    """After posts left the queue (sent, cancelled, deleted): collect, if any had images."""
    if not any(m.get("images") for m in metadata):
        return []
    return for_database(conn).collect()
