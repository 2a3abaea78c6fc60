"""The store seam: what every backend (SQLite, PostgreSQL) offers the rest of Plurcast.

Every SQL statement lives in `plurcast.store`, written once in the SQL both engines accept
and run through `Database.execute` with `?` or `:name` parameters (the PostgreSQL backend
rewrites them to psycopg's style). The few statements that must differ — a claim that
locks rows, a JSON aggregate, a prefix match — pick their text with `by_dialect`.

A `Database` is also where time comes from (`now_ms`: on PostgreSQL the server's clock,
so that hosts whose clocks disagree still agree on leases and due times), how a write
tells the daemons that work may be due (`notify_work`, in the writer's transaction), how
a daemon hears about it (`watcher`), and how a transaction serialises the few decisions
that read before they write (`lock`). `WAITING`, `UNSENT` and `MAY_STILL_GO` are the delivery
states as every statement writes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from plurcast import models
from plurcast.errors import RuntimeFailure

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


def _sql_set(states: Sequence[models.DeliveryState]) -> str:
    """States as an SQL list, for `state IN …`: "('pending', 'retry')"."""
    return "(" + ", ".join(f"'{state.value}'" for state in states) + ")"


# models.WAITING and models.UNSENT, as every statement of the store writes them.
WAITING = _sql_set(models.WAITING)
UNSENT = _sql_set(models.UNSENT)
MAY_STILL_GO = _sql_set(models.MAY_STILL_GO)

Parameters = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3's and psycopg's both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Watcher(Protocol):
    """Tells a waiting daemon that another process may have made work due.

    `mark()` returns a token; `changed(token)` says whether something happened since.
    A backend that can push (PostgreSQL NOTIFY) also calls `on_change` at once.
    """

    def mark(self) -> object: ...

    def changed(self, token: object) -> bool: ...

    def close(self) -> None: ...


class Database(Protocol):
    """One open connection to the queue's database, of either backend."""

    @property
    def dialect(self) -> str: ...

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Parameters = ..., /) -> Cursor: ...

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Cursor: ...

    def transaction(self, *, immediate: bool = True) -> contextlib.AbstractContextManager[None]:
        """BEGIN … COMMIT, rolled back on any exception (SQLite: BEGIN IMMEDIATE)."""
        ...

    def now_ms(self) -> int:
        """The database's clock, in ms since the epoch."""
        ...

    def notify_work(self) -> None:
        """Inside a write transaction: wake the daemons when it commits (if they need telling)."""
        ...

    def lock(self, name: str) -> None:
        """Inside a transaction: hold the named lock until it ends (SQLite: its write lock
        already serialises every writer)."""
        ...

    def watcher(self, on_change: Any = None) -> Watcher:
        """A way for the daemon to notice other processes' changes."""
        ...

    def describe(self) -> str:
        """Where the data lives, for logs and status lines (never with a password)."""
        ...

    def close(self) -> None: ...


class DatabaseUnavailable(RuntimeFailure):
    """The connection to the database server broke (the next transaction opens a new one),
    or another process holds SQLite's lock past busy_timeout: try again in a while."""


def by_dialect(db: Database, *, sqlite: str, postgresql: str) -> str:
    """The text of a statement that the two engines spell differently."""
    return postgresql if db.dialect == POSTGRESQL else sqlite


def redact(url: str) -> str:
    """A database url without its password (in the authority, or libpq's `password=` query
    parameter), fit for a log line, an error or a file others may read."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.partition("://")[0] + "://…"
    if password is not None:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}@" if parts.username else ""
        parts = parts._replace(netloc=f"{user}{host}")
    query = "&".join(
        item for item in parts.query.split("&") if item.partition("=")[0].lower() != "password"
    )
    if password is None and query == parts.query:
        return url
    return urlunsplit(parts._replace(query=query))


def has_password(url: str) -> bool:
    """Whether a database url carries a password."""
    return redact(url) != url
