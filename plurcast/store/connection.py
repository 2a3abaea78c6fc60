"""The one way to open a SQLite database: WAL, busy timeout, foreign keys, migrated, 0600.

`SqliteDatabase` is the SQLite side of the store seam (`plurcast.store.base.Database`):
a `sqlite3.Connection` with the seam's few extra methods, so the store's statements run
on it at C speed, untranslated.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plurcast.errors import ConfigError, RuntimeFailure
from plurcast.store.base import SQLITE, Database, DatabaseUnavailable, Watcher
from plurcast.store.migrations import SCHEMA_VERSION, migrate


class SqliteDatabase(sqlite3.Connection):
    """A SQLite connection that is also a `Database`: the host's clock is the database's
    (every process is on this host), BEGIN IMMEDIATE serialises writers, and the daemon
    notices other processes' commits by `PRAGMA data_version`."""

    dialect = SQLITE
    path: Path | None = None

    @contextlib.contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception.

        IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
        instead of failing half-way with SQLITE_BUSY on lock upgrade.
        """
        try:
            self.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except sqlite3.Error as exc:
            raise database_error(exc) from None
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        try:
            self.execute("COMMIT")
        except sqlite3.Error as exc:
            self.execute("ROLLBACK")
            raise database_error(exc) from None

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def notify_work(self) -> None:
        """Nothing to send: every commit changes the other connections' data_version."""

    def lock(self, name: str) -> None:
        """Nothing to take: BEGIN IMMEDIATE already holds the one write lock."""

    def watcher(self, on_change: Any = None) -> Watcher:
        return DataVersionWatcher(self)

    def describe(self) -> str:
        return str(self.path)


class DataVersionWatcher:
    """`PRAGMA data_version` changes whenever another connection commits (ours leave it
    alone); the daemon compares it to a mark every quarter second."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def mark(self) -> object:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self, token: object) -> bool:
        return self.mark() != token

    def close(self) -> None:
        """The daemon's own connection stays open; nothing of the watcher's to close."""


def connect(path: Path, *, busy_timeout: float = 5.0, create: bool = True) -> SqliteDatabase:
    """Open the database at `path` and bring its schema up to date.

    With `create` it is made (0600, in 0700 directories) when it does not exist yet;
    without, a missing database reads as an empty queue: an in-memory one with the same
    schema, so that a command that only reads — or fails — leaves nothing behind.
    A SQLite file that is not ours (no schema version, tables of its own) is refused.

    Autocommit mode: every write goes through `transaction()`, so when a transaction
    starts and ends is always explicit (the engine's claims need BEGIN IMMEDIATE).
    """
    if create:
        _create_private(path)
    target: Path | str = path if create or path.exists() else ":memory:"
    try:
        conn = sqlite3.connect(
            target, timeout=busy_timeout, isolation_level=None, factory=SqliteDatabase
        )
        conn.path = path
    except sqlite3.Error as exc:
        raise RuntimeFailure(
            f"cannot open the database {path}: {exc}",
            "check the file and its directory, or set PLURCAST_DB_PATH to another file",
        ) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            _refuse_newer(path, version)
        if version == 0:
            _refuse_foreign(conn, path)
        if target != ":memory:":
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            # Every commit is on disk before the command says it happened, or the daemon
            # sends what it stored: with NORMAL, a WAL commit reaches the disk only at a
            # checkpoint, and one lost with the power (a queued post, a cancel, a signed
            # event about to go out) would be lost, or undone and sent again re-signed.
            # One fdatasync of the WAL a commit: ~3 % of a 400-post plur-send burst here.
            conn.execute("PRAGMA synchronous = FULL")
        if version < SCHEMA_VERSION:
            migrate(conn)
        if target == ":memory:":  # a write meant for the real database must fail, not vanish
            conn.execute("PRAGMA query_only = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if not create and exc.sqlite_errorcode & 0xFF in _NOT_WRITABLE and path.is_file():
            return _read_only(path, busy_timeout)
        raise database_error(exc, path) from None
    except BaseException:
        conn.close()
        raise
    return conn


# What opening a WAL database answers when no -wal or -shm file can be made beside it.
_NOT_WRITABLE = (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY)


def _read_only(path: Path, busy_timeout: float) -> SqliteDatabase:
    """The database opened to be read only, for a command that may find it unmade (`create`
    false: the listings, and changes that must find their posts): its folder, or its disk,
    lets no -wal or -shm file be made, which SQLite needs to read a WAL database in the usual
    way. Then with the -wal and -shm files that are there, else, when there is no -wal file
    (every commit is in the database file itself), as the file is (`immutable`). A write
    fails as any write to a read-only file does: "cannot write the database"."""
    from urllib.parse import quote

    wal = path.with_name(f"{path.name}-wal")
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        conn, version = _opened(uri, path, busy_timeout)
    except sqlite3.DatabaseError as exc:
        if not wal.exists():
            try:
                conn, version = _opened(f"{uri}&immutable=1", path, busy_timeout)
            except sqlite3.DatabaseError as again:
                raise database_error(again, path) from None
        elif exc.sqlite_errorcode & 0xFF in _NOT_WRITABLE:
            raise RuntimeFailure(
                f"cannot read the database {path}: its folder is read-only here, and the "
                f"commits waiting in {wal.name} cannot be read without writing beside it",
                "read it where its folder can be written, or copy it with its -wal file",
            ) from None
        else:
            raise database_error(exc, path) from None
    try:
        if version > SCHEMA_VERSION:
            _refuse_newer(path, version)
        if version == 0:
            _refuse_foreign(conn, path)
        elif version < SCHEMA_VERSION:
            raise RuntimeFailure(
                f"the database {path} needs an upgrade, which cannot be written here: "
                "its folder is read-only",
                "run any plurcast command once where the folder can be written",
            )
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _opened(uri: str, path: Path, busy_timeout: float) -> tuple[SqliteDatabase, int]:
    """A connection to `uri` and the schema version read through it (which opens the file)."""
    conn = sqlite3.connect(
        uri, uri=True, timeout=busy_timeout, isolation_level=None, factory=SqliteDatabase
    )
    conn.path = path
    try:
        return conn, int(conn.execute("PRAGMA user_version").fetchone()[0])
    except BaseException:
        conn.close()
        raise


def on_disk(conn: Database) -> bool:
    """False for the empty stand-in of a SQLite database that does not exist yet (a
    PostgreSQL database always exists: the operator made it)."""
    if conn.dialect != SQLITE:
        return True
    return bool(conn.execute("PRAGMA database_list").fetchone()[2])


def rehearse_on(conn: Database) -> None:
    """Let the empty stand-in of a missing database take writes that the caller rolls back
    (plur-import --dry-run runs its real transaction, then undoes it; no file is made)."""
    if not on_disk(conn):
        conn.execute("PRAGMA query_only = OFF")


def _refuse_newer(path: Path, version: int) -> None:
    raise ConfigError(
        f"the database {path} has schema version {version}, newer than this "
        f"Plurcast understands ({SCHEMA_VERSION})",
        "upgrade plurcast",
    )


def _refuse_foreign(conn: sqlite3.Connection, path: Path) -> None:
    """A database without our schema version must be empty: migrating someone else's file
    would add our tables to it."""
    theirs = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 4"
        )
    ]
    if theirs:
        shown = ", ".join(theirs[:3]) + (", …" if len(theirs) > 3 else "")
        raise ConfigError(
            f"{path} is not a Plurcast database (it holds {shown})",
            "set PLURCAST_DB_PATH or [database] path to a new file",
        )


def database_error(exc: sqlite3.Error, path: Path | None = None) -> RuntimeFailure:
    """Turn SQLite's failures into one-line errors a user can act on."""
    text = str(exc)
    where = f" {path}" if path else ""
    if "locked" in text or "busy" in text:
        # Unavailable for now, as a PostgreSQL server that went away: the daemon pauses and
        # tries again (it exited 1 when a `sqlite3` shell held the lock past busy_timeout).
        return DatabaseUnavailable(
            f"the database{where} is locked by another process",
            "try again in a moment, or raise [database] busy_timeout",
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return RuntimeFailure(
            f"the database{where} is damaged or not a Plurcast database ({text})",
            "move it aside, or point PLURCAST_DB_PATH at another file",
        )
    if "readonly" in text or "unable to open" in text:
        return RuntimeFailure(
            f"cannot write the database{where} ({text})",
            "check the permissions of the file and of its folder",
        )
    if "full" in text:  # SQLITE_FULL: the disk (or a quota) has no room for what was written
        return RuntimeFailure(
            f"the database{where} has no room to grow ({text})",
            "free some space on its disk, then try again",
        )
    if "disk I/O error" in text:  # a device such as /dev/null, or a failing disk
        return RuntimeFailure(
            f"cannot read or write the database{where} ({text})",
            "check that it is a regular file on a working disk, or set PLURCAST_DB_PATH",
        )
    return RuntimeFailure(f"database error{where}: {text}")


def transaction(
    conn: Database, *, immediate: bool = True
) -> contextlib.AbstractContextManager[None]:
    """The database's own transaction: BEGIN (IMMEDIATE on SQLite) … COMMIT, or ROLLBACK."""
    return conn.transaction(immediate=immediate)


def _create_private(path: Path) -> None:
    """Create the file 0600 (its directory 0700) before SQLite does, whatever the umask.

    Posts waiting in the queue are private until published. SQLite gives the
    -wal and -shm files the database file's mode.
    """
    if path.exists():
        return
    try:
        # mkdir(parents=True) gives ancestors the umask's mode; create each one 0700.
        for missing in reversed([d for d in (path.parent, *path.parent.parents) if not d.exists()]):
            missing.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot create the database {path}: {exc.strerror}",
            "set PLURCAST_DB_PATH or [database] path to a writable location",
        ) from None
    os.close(fd)
