"""The PostgreSQL side of the store seam: one queue shared by processes on many hosts.

Imported only when the configured url names PostgreSQL (psycopg costs ~230 ms to import;
SQLite users never pay it). What differs from SQLite, and why:

- **time** is the server's (`clock_timestamp()`): leases, due checks, rate windows and
  heartbeats must agree across hosts whose clocks do not;
- **transactions** are READ COMMITTED; the statements that decide who gets what lock rows
  (`FOR UPDATE SKIP LOCKED`) or take a transaction-scoped advisory lock (`lock`);
- **wake-ups**: a write that makes work due sends `NOTIFY plurcast_work` in its own
  transaction; the daemon LISTENs on a connection of its own (`ListenWatcher`);
- **connections** keep TCP keepalives, so a dead peer or a cut link is found within a
  minute, and one that broke is opened again at the next transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import select
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from plurcast.errors import ConfigError, RuntimeFailure
from plurcast.store.base import (
    POSTGRESQL,
    Cursor,
    DatabaseUnavailable,
    Parameters,
    Watcher,
    redact,
)
from plurcast.store.migrations_postgres import migrate

log = logging.getLogger("plurcast.store")

CHANNEL = "plurcast_work"
IDLE_IN_TRANSACTION_MS = 60_000
CONNECT_TIMEOUT_SECONDS = 10
# Keepalives: a silent peer (host down, link cut) is noticed after about 30 + 3 × 10 s.
_CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
_NOW = "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:([A-Za-z_]\w*)|%")


@lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """The store's `?` and `:name` parameters in psycopg's `%s` / `%(name)s` style.

    Quoted text and `::` casts are left alone; a literal `%` is doubled, because psycopg
    reads `%` everywhere in a statement that has parameters.
    """

    def swap(m: re.Match[str]) -> str:
        token = m.group(0)
        if token[0] in "'\"":
            return token.replace("%", "%%")
        if token == "::":
            return token
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return f"%({m.group(1)})s"

    return _PLACEHOLDER.sub(swap, sql)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name` (the same on every host)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def open_connection(url: str, *, application_name: str = "plurcast") -> psycopg.Connection[Any]:
    """An autocommit connection (transactions are explicit), or a one-line error."""
    try:
        return psycopg.connect(
            url, autocommit=True, application_name=application_name, **_CONNECT_OPTIONS
        )
    except psycopg.Error as exc:
        raise connect_error(exc, url) from None


def connect_error(exc: psycopg.Error, url: str) -> ConfigError | RuntimeFailure:
    """Why a connection could not be made, as a user can act on it: a wrong password or
    an unknown database is configuration (exit 2); a server that does not answer is a
    runtime failure (exit 1), it may be back in a moment."""
    where = redact(url)
    text = _first_line(exc)
    if isinstance(exc, pg_errors.InvalidPassword) or "password authentication failed" in text:
        return ConfigError(
            f"PostgreSQL refused the password for {where}",
            "check the password in [database] url, PGPASSWORD or ~/.pgpass",
        )
    if "does not exist" in text and ("database" in text or "role" in text):
        return ConfigError(
            f"PostgreSQL at {where}: {text}",
            "create it (createdb / createuser) or fix [database] url",
        )
    if "no password supplied" in text or "authentication" in text:
        return ConfigError(
            f"PostgreSQL at {where} wants a password ({text})",
            "put it in ~/.pgpass, PGPASSWORD or [database] url",
        )
    if "invalid" in text and ("dsn" in text or "connection option" in text or "URI" in text):
        return ConfigError(f"[database] url {where} is not a valid PostgreSQL url ({text})")
    return RuntimeFailure(
        f"cannot reach the PostgreSQL server at {where} ({text})",
        "check that it runs and that [database] url names it",
    )


def _first_line(exc: BaseException) -> str:
    """The server's own one-line message, else the first line of the driver's."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


class PostgresDatabase:
    """A `Database` on a PostgreSQL server, through one psycopg connection."""

    dialect = POSTGRESQL

    def __init__(
        self, url: str, *, application_name: str = "plurcast", busy_timeout: float = 5.0
    ) -> None:
        self.url = url
        self.application_name = application_name
        self.busy_timeout = busy_timeout
        self._conn = self._open()
        self._notify = False

    def _open(self) -> psycopg.Connection[Any]:
        """A session that waits for a lock at most busy_timeout (as SQLite's does) and is
        cut off if it ever sits idle inside a transaction (a process stopped mid-write
        must not hold rows that other hosts' daemons need)."""
        conn = open_connection(self.url, application_name=self.application_name)
        try:
            conn.execute(f"SET lock_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
        except psycopg.Error as exc:
            conn.close()
            raise connect_error(exc, self.url) from None
        return conn

    # --- statements -----------------------------------------------------------------------

    def execute(self, sql: str, parameters: Parameters = (), /) -> Cursor:
        if not self.in_transaction:
            self._reconnect_if_broken()
        try:
            return self._conn.execute(to_psycopg(sql), parameters)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Cursor:
        cur = self._conn.cursor()
        try:
            cur.executemany(to_psycopg(sql), seq_of_parameters)
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return cur

    def run_script(self, sql: str) -> None:
        """Several statements at once, unparameterised (the migrations' DDL)."""
        try:
            self._conn.execute(sql.encode())
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _lost(self, exc: psycopg.Error) -> bool:
        """The connection is gone (not merely this statement refused): a broken socket, a
        client-side failure without a SQLSTATE, class 08, or the server shutting down or
        terminating the backend (57P01-57P03). A lock timeout or a cancel is not that."""
        if self._conn.broken or self._conn.closed:
            return True
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None:
            return isinstance(exc, psycopg.OperationalError)
        return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")

    def _error(self, exc: psycopg.Error) -> RuntimeFailure:
        if self._lost(exc):
            return DatabaseUnavailable(
                f"lost the connection to PostgreSQL at {self.describe()} ({_first_line(exc)})",
                "it is opened again at the next try; check the server if this repeats",
            )
        if isinstance(exc, pg_errors.LockNotAvailable):
            return RuntimeFailure(
                f"the database {self.describe()} is locked by another process",
                "try again in a moment, or raise [database] busy_timeout",
            )
        return RuntimeFailure(f"database error on {self.describe()}: {_first_line(exc)}")

    def _reconnect_if_broken(self) -> None:
        if self._conn.broken or self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = self._open()
            log.warning("reconnected to PostgreSQL at %s", self.describe())

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    @contextlib.contextmanager
    def transaction(self, *, immediate: bool = True) -> Iterator[None]:
        """BEGIN … COMMIT (READ COMMITTED); NOTIFY goes out with the commit, if asked for."""
        self._reconnect_if_broken()
        self.execute("BEGIN")
        self._notify = False
        try:
            yield
            if self._notify:
                self.execute(f"NOTIFY {CHANNEL}")
        except BaseException:
            self._notify = False
            if not self._conn.broken:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("ROLLBACK")
            raise
        self._notify = False
        self.execute("COMMIT")

    # --- the seam's extras ----------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.execute(_NOW).fetchone()[0])

    def notify_work(self) -> None:
        if self.in_transaction:
            self._notify = True
        else:
            self.execute(f"NOTIFY {CHANNEL}")

    def lock(self, name: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))

    def watcher(self, on_change: Callable[[], None] | None = None) -> Watcher:
        return ListenWatcher(self.url, on_change, application_name=self.application_name)

    def describe(self) -> str:
        return redact(self.url)

    def backend_pid(self) -> int:
        """This connection's server process (what pg_terminate_backend takes)."""
        return int(self._conn.info.backend_pid)

    def close(self) -> None:
        self._conn.close()


class ListenWatcher:
    """LISTEN on a connection of its own, in a thread; `on_change` is called at once for
    every notification, and after every reconnect (what was sent meanwhile is lost, so
    the daemon must look at the queue again).

    The thread waits in select() with a timeout, so `close()` ends it within a second;
    a broken connection is opened again with a growing pause (0.5 s … 10 s).
    """

    def __init__(
        self,
        url: str,
        on_change: Callable[[], None] | None,
        *,
        application_name: str = "plurcast",
    ) -> None:
        self.url = url
        self.application_name = f"{application_name}-listener"
        self.on_change = on_change
        self.count = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._listen()
        self._thread = threading.Thread(target=self._run, name="plurcast-listen", daemon=True)
        self._thread.start()

    def mark(self) -> object:
        return self.count

    def changed(self, token: object) -> bool:
        return self.count != token

    def backend_pid(self) -> int | None:
        conn = self._conn
        return None if conn is None or conn.closed else int(conn.info.backend_pid)

    def _listen(self) -> None:
        conn = open_connection(self.url, application_name=self.application_name)
        conn.execute(f"LISTEN {CHANNEL}")
        self._conn = conn
        self.connected.set()

    def _changed(self) -> None:
        self.count += 1
        if self.on_change is not None:
            self.on_change()

    def _run(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                self.connected.clear()
                try:
                    self._listen()
                except (RuntimeFailure, psycopg.Error) as exc:
                    log.warning("LISTEN connection: %s; trying again in %.1f s", exc, pause)
                    self._stop.wait(pause)
                    pause = min(pause * 2, 10.0)
                    continue
                pause = 0.5
                log.info("LISTEN connection to %s open again", redact(self.url))
                self._changed()
                continue
            try:
                ready, _, _ = select.select([conn.fileno()], [], [], 1.0)
                if not ready:
                    continue
                conn.pgconn.consume_input()
                got = 0
                while conn.pgconn.notifies() is not None:
                    got += 1
                if not got and conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("connection closed by the server")
                if got:
                    self._changed()
            except (psycopg.Error, OSError, ValueError) as exc:
                if self._stop.is_set():
                    return
                log.warning("LISTEN connection lost (%s)", _first_line(exc))
                with contextlib.suppress(psycopg.Error, OSError):
                    conn.close()
                self._conn = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def connect(
    url: str, *, application_name: str = "plurcast", busy_timeout: float = 5.0
) -> PostgresDatabase:
    """Open the PostgreSQL database at `url` and bring its schema up to date."""
    db = PostgresDatabase(url, application_name=application_name, busy_timeout=busy_timeout)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
