"""A real PostgreSQL for the tests: one throwaway cluster per session, a fresh database per test.

The Debian package `postgresql` (15 here) provides the server binaries in
/usr/lib/postgresql/*/bin. `initdb` and `postgres` refuse to run as root, so as root they run as
the `postgres` user (via runuser); as anyone else, as that user. The cluster lives in a temp dir
owned by whoever runs it, listens on 127.0.0.1 and a free port, trusts local connections and skips
fsync (a test cluster: nothing in it has to survive a power cut). The server runs in the
foreground under `dies_with_parent` with SIGINT (fast shutdown: it cuts its clients off rather
than wait for them), so a killed pytest leaves no postmaster behind.

Each test gets a database of its own that holds the migrated schema and no rows. Making one
(`CREATE DATABASE … TEMPLATE`) and dropping it costs a checkpoint each — 0.5–1 s on a busy
machine, the biggest part of a PostgreSQL test's cost — so a database a test is done with is
emptied instead (its connections cut, every table truncated, identities restarted: ≈20 ms) and
handed to the next test, unless its schema is no longer the template's (a migration test
changed it): that one is dropped. `empty=True` gives a database without the schema, made and
dropped for that test.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import pytest

from tests.peers.nostr import free_port
from tests.peers.process import Peer, dies_with_parent

__all__ = ["Backend", "PostgresCluster", "backend", "pg_bin_dir", "postgres_cluster"]

START_TIMEOUT = 30.0
SUPERUSER = "postgres"
OWNER = "plur"  # the role the tests' databases belong to, as an operator would set it up
PASSWORD_USER, PASSWORD = "plur_pw", "right-password"
TEMPLATE = "plur_template"
EMPTY_TEMPLATE = "plur_empty"
# Settings for a cluster that exists for one test session.
_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
}


# What must be as the template left it for an emptied database to be handed on: the schema
# version, every column and index, and the database's own settings.
_SCHEMA_PRINT = """
SELECT md5(concat_ws('|',
    (SELECT string_agg(version::text, ',' ORDER BY version) FROM plurcast_schema),
    (SELECT string_agg(concat_ws(':', table_name, column_name, data_type, column_default,
                                 is_nullable), ',' ORDER BY table_name, ordinal_position)
     FROM information_schema.columns WHERE table_schema = 'public'),
    (SELECT string_agg(indexdef, ',' ORDER BY indexname) FROM pg_indexes
     WHERE schemaname = 'public'),
    (SELECT string_agg(array_to_string(setconfig, ','), ';') FROM pg_db_role_setting s
     JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database())))
"""
_TABLES = (
    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' "
    "AND tablename <> 'plurcast_schema' ORDER BY tablename"
)


_SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def pg_bin_dir() -> Path | None:
    """The newest installed server's bin directory, or None when PostgreSQL is not installed."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
    )
    found = [p for p in candidates if (p / "initdb").is_file() and (p / "postgres").is_file()]
    return found[-1] if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """`cmd` as the postgres user when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return cmd
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", SUPERUSER, "--", *cmd]


class PostgresCluster(Peer):
    """A PostgreSQL server of our own in a temp dir; `database()` makes a fresh test database."""

    def __init__(self) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) — "
                "apt-get install postgresql (.ci/run installs it)"
            )
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="plurcast-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._names = itertools.count(1)
        self._spare: list[str] = []  # emptied databases, for the next tests
        self._schema_print: Any = None

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    def url(self, database: str = "postgres", user: str = OWNER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> Self:
        if self.process is not None:
            return self
        if os.geteuid() == 0:
            shutil.chown(self.base, SUPERUSER)
        self.base.chmod(0o700)
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # One role logs in with a password (to test a wrong one); every other one is trusted.
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        settings = [f"--{key}={value}" for key, value in _SERVER_SETTINGS.items()]
        self._log = self.log_path.open("wb")
        cmd = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.base),
            "--listen_addresses=127.0.0.1",
            *settings,
        ]
        # Not through runuser, which would not pass our signals on: as root, Popen switches to
        # the postgres user itself, and the launcher runs on a Python that user can execute.
        root = os.geteuid() == 0
        self.process = subprocess.Popen(
            dies_with_parent(
                cmd, python=_SYSTEM_PYTHON if root else sys.executable, signal=signal.SIGINT
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            user=SUPERUSER if root else None,
            cwd=self.base,
        )
        self._wait_ready()
        self.admin(
            f"CREATE ROLE {OWNER} LOGIN",
            f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'",
            f"CREATE DATABASE {EMPTY_TEMPLATE} OWNER {OWNER}",
            f"CREATE DATABASE {TEMPLATE} OWNER {OWNER}",
        )
        self._migrate_template()
        import psycopg

        with psycopg.connect(self.url(TEMPLATE, user=SUPERUSER), autocommit=True) as conn:
            self._schema_print = conn.execute(_SCHEMA_PRINT).fetchone()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                psycopg.connect(self.url(user=SUPERUSER), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.close()
                    raise RuntimeError(f"PostgreSQL did not start:\n{tail}") from None
                time.sleep(0.05)

    def _migrate_template(self) -> None:
        from plurcast.store import connect_url

        connect_url(self.url(TEMPLATE)).close()

    def admin(self, *statements: str) -> list[Any]:
        """Run statements as the superuser, outside any transaction (CREATE DATABASE needs that);
        the rows of the last one, if it returns any."""
        import psycopg

        rows: list[Any] = []
        with psycopg.connect(self.url(user=SUPERUSER), autocommit=True) as conn:
            for sql in statements:
                cur = conn.execute(sql)
                rows = cur.fetchall() if cur.description else []
        return rows

    @contextlib.contextmanager
    def database(self, *, empty: bool = False) -> Iterator[str]:
        """A database of its own for one test (migrated and without rows, unless `empty`:
        then without the schema); its url."""
        if empty:
            name = self._create(EMPTY_TEMPLATE)
            try:
                yield self.url(name)
            finally:
                self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        name = self._spare.pop() if self._spare else self._create(TEMPLATE)
        try:
            yield self.url(name)
        finally:
            self._recycle(name)

    def _create(self, template: str) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template} OWNER {OWNER} STRATEGY FILE_COPY")
        return name

    def _recycle(self, name: str) -> None:
        """Empty a test's database for the next test, under a new name — a process the test
        left behind that connects again finds no database — or drop it when that fails or
        its schema is not the template's any more."""
        import psycopg

        fresh = f"t{os.getpid()}_{next(self._names)}"
        try:
            self.admin(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                f"WHERE datname = '{name}'",
                f"ALTER DATABASE {name} RENAME TO {fresh}",
            )
        except psycopg.errors.ObjectInUse:  # connected again meanwhile
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        with psycopg.connect(self.url(fresh, user=SUPERUSER), autocommit=True) as conn:
            try:
                same = conn.execute(_SCHEMA_PRINT).fetchone() == self._schema_print
            except psycopg.Error:  # e.g. plurcast_schema dropped
                same = False
            if same:
                tables = [r[0] for r in conn.execute(_TABLES)]
                conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        if same:
            self._spare.append(fresh)
        else:
            self.admin(f"DROP DATABASE IF EXISTS {fresh} WITH (FORCE)")

    def terminate(self, database: str, *, application_name: str | None = None) -> int:
        """pg_terminate_backend on every connection to `database` (optionally only one
        application's): how a network partition looks to the client. The number killed."""
        where = f"datname = '{database}' AND pid <> pg_backend_pid()"
        if application_name is not None:
            where += f" AND application_name = '{application_name}'"
        rows = self.admin(
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where}"
        )
        return int(rows[0][0])

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Backend:
    """The database a test runs on: `sqlite` (the file the isolated XDG dirs point at) or
    `postgresql` (a fresh database on the session's cluster, named by PLURCAST_DATABASE_URL,
    so every tool and subprocess the test starts uses it)."""

    name: str
    url: str | None = None
    cluster: PostgresCluster | None = None

    @property
    def is_postgresql(self) -> bool:
        return self.name == POSTGRESQL_BACKEND

    @property
    def database_name(self) -> str:
        assert self.url is not None
        return self.url.rsplit("/", 1)[1]

    def inspect(self, cfg: Any) -> Any:
        """A connection for the test's own look at the rows (never creating a SQLite file)."""
        if self.url is not None:
            from plurcast.store.postgres import PostgresDatabase

            return PostgresDatabase(self.url, application_name="plurcast-test")
        import sqlite3

        from plurcast.store.connection import SqliteDatabase

        return sqlite3.connect(
            f"file:{cfg.db_path}?mode=rw",
            uri=True,
            timeout=10,
            isolation_level=None,
            factory=SqliteDatabase,
        )


SQLITE_BACKEND = "sqlite"
POSTGRESQL_BACKEND = "postgresql"
BACKENDS = (SQLITE_BACKEND, POSTGRESQL_BACKEND)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One cluster for the whole session, started by the first test that needs it."""
    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    """Runs the test once on SQLite and once on PostgreSQL (the contract suites use it)."""
    if request.param == SQLITE_BACKEND:
        yield Backend(SQLITE_BACKEND)
        return
    cluster = request.getfixturevalue("postgres_cluster")
    with cluster.database() as url:
        monkeypatch.setenv("PLURCAST_DATABASE_URL", url)
        yield Backend(POSTGRESQL_BACKEND, url, cluster)


def run_sql(db_path: Path, statement: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement on the test's database — the PostgreSQL one PLURCAST_DATABASE_URL
    names, else the SQLite file at `db_path` — committed; its rows as tuples."""
    url = os.environ.get("PLURCAST_DATABASE_URL")
    if url:
        from plurcast.store.postgres import PostgresDatabase

        db = PostgresDatabase(url, application_name="plurcast-test")
        try:
            cur = db.execute(statement, params)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []  # type: ignore[attr-defined]
        finally:
            db.close()
    import sqlite3

    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        return [tuple(r) for r in conn.execute(statement, params).fetchall()]


def open_test_db(db_path: Path) -> Any:
    """The test's database through the store's own factory (migrated): PostgreSQL when
    PLURCAST_DATABASE_URL names it, else the SQLite file at `db_path`."""
    from plurcast.store import connect, connect_url

    url = os.environ.get("PLURCAST_DATABASE_URL")
    return connect_url(url) if url else connect(db_path)
