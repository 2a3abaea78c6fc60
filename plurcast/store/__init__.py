"""Storage: the connection factories, the migrations and every SQL statement.

`open_db` is the one way in: a SQLite file (the default) or, when the url names
PostgreSQL, a shared server. Everything above this package sees only the `Database`
seam of `plurcast.store.base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from plurcast.store.base import Database
from plurcast.store.connection import connect

if TYPE_CHECKING:
    from plurcast.config import Config

__all__ = ["Database", "connect", "connect_url", "is_postgresql_url", "open_db"]

POSTGRESQL_SCHEMES = ("postgresql", "postgres")


def open_db(cfg: Config, *, create: bool = True) -> Database:
    """The queue's database: the SQLite file, or the PostgreSQL server of [database] url.
    Commands that only read — or change posts that must already be there — pass
    `create=False`: a missing SQLite database then reads as an empty queue and nothing is
    made on disk (connection.connect). Here, not in `plurcast.queue`, so that the daemon
    opens it without importing what writing posts needs (~13 ms)."""
    if cfg.database_url is not None:
        return connect_url(cfg.database_url, busy_timeout=cfg.busy_timeout)
    return connect(cfg.db_path, busy_timeout=cfg.busy_timeout, create=create)


def is_postgresql_url(url: str) -> bool:
    return url.partition("://")[0].lower() in POSTGRESQL_SCHEMES


def connect_url(
    url: str, *, busy_timeout: float = 5.0, application_name: str = "plurcast"
) -> Database:
    """`postgresql://…` (psycopg is imported only here), else a SQLite path or `sqlite:///path`."""
    if is_postgresql_url(url):
        try:
            from plurcast.store import postgres
        except ImportError as exc:
            if exc.name not in ("psycopg", "psycopg_binary"):
                raise
            from plurcast.errors import ConfigError

            raise ConfigError(
                "[database] url names PostgreSQL, but psycopg is not installed",
                "pip install 'plurcast[postgres]'",
            ) from None
        return postgres.connect(url, application_name=application_name, busy_timeout=busy_timeout)
    path = url.removeprefix("sqlite://") if url.startswith("sqlite://") else url
    return connect(Path(path), busy_timeout=busy_timeout)
