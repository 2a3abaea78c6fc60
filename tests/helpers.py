"""What many test modules need, in one place, so that no test module imports another.

- `NOW`, `T0`: the tests' fixed instant (a Sunday morning; Europe/Berlin is on CET), as an aware
  datetime and as epoch seconds. `BASE_CONFIG`: the usual config (the `configured` fixture).
- `Clock`: time stepped by the test, never by the machine. The code under test reads it as
  `clock()` (epoch seconds: `Engine`, `Daemon`, `SystemdNotifier` take a clock) or `clock.now`
  (an aware datetime: the `clock` fixture patches the CLIs' `clikit.now` with it).
- `free_port()`, `silent_port()`: a port nothing listens on; one that accepts and never answers.
- `secret_file(path, text)`: a key or token file only its owner can read (mode 600).
- `write_file(folder, name, content)`: a file of text or bytes (a plan to import, an image);
  its path as a command line takes it.
- `add_post(conn, cfg, text, at)`: a post written through the queue code that plur-post uses.
- `deliver(engine, claims)`, `row(conn, post_id)`: run the engine on claims; read a delivery.
- `wait_until(check, what)`: poll until something happens; only a hang reaches its patience.
- `PATIENCE`, `ANSWER_TIMEOUT`, `DOWN_TIMEOUT`: how long before a wait is a hang; a timeout
  for servers that are up; one for servers that are not there.
- `assert_verified_and_hardened(unit, tmp_path)`: systemd-analyze's verdict on a unit file.
- `clock_ahead(env, tmp, seconds)`: the environment of a subprocess whose host clock is wrong.
- `Daemons(logs)`: the plur-send processes a test starts (`start(*args, host=…, ahead=…,
  env=…)`), their logs (`output()`, `log(proc)`), each killed at the end (`stop_all()`; the
  `daemons` fixture) or when the test run dies.
- `scalar(cfg, sql, *params)`: one number from the test's database.
- `FileMedia(directory)`: the file media store without a database (put, read), for tests of
  what uploads images; `stored_images(tmp_path, *alts)` stores test photos there.
- `many_posts(db_path, count, text)`: a long queue, written straight into the store.
- `run_with_reader_gone(command, *args)`: a plur-* command whose stdout's reader is gone
  (`| true`).
- `rows_in(db_path, table)`: how many rows a table of the test's database holds (0 when the
  SQLite file was never made — asking would make it).
- `media_stored(db_path)`: what the test's media store holds (sha256 → bytes), on either
  backend: the `media` rows on PostgreSQL, the files beside the SQLite database otherwise.

No bound on elapsed time lives here or in any test: on-time behaviour is tested by stepping a
`Clock`, and speed is measured by `make bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from click.testing import Result

from plurcast import config as config_module
from plurcast import writing
from plurcast.engine import Engine
from plurcast.media import files
from plurcast.record import Delivered
from plurcast.store.claiming import Claimed
from plurcast.thread.plan import Compose
from tests.peers.postgres import run_sql
from tests.peers.process import dies_with_parent, free_port

__all__ = [
    "ANSWER_TIMEOUT",
    "BASE_CONFIG",
    "BIN",
    "DOWN_TIMEOUT",
    "NOW",
    "PATIENCE",
    "T0",
    "AnotherDatabase",
    "Clock",
    "Daemons",
    "FileMedia",
    "Row",
    "Run",
    "add_post",
    "assert_verified_and_hardened",
    "clock_ahead",
    "deliver",
    "free_port",
    "iso",
    "many_posts",
    "media_stored",
    "row",
    "rows_in",
    "run_with_reader_gone",
    "scalar",
    "secret_file",
    "silent_port",
    "stored_images",
    "wait_until",
    "write_file",
]

NOW = datetime(2026, 11, 22, 10, 4, 43, tzinfo=UTC)
T0 = NOW.timestamp()

BASE_CONFIG = """\
timezone = "Europe/Berlin"

[nostr]
keys_file = "~/.config/plurcast/nostr.keys"
relays = ["ws://127.0.0.1:1"]

[mastodon]
instance = "mastodon.example"
token_file = "~/.config/plurcast/mastodon.token"

[bluesky]
handle = "alice.test"
app_password_file = "~/.config/plurcast/bluesky.password"

[accounts.nostr.test]
keys_file = "~/.config/plurcast/nostr-test.keys"

[defaults]
platforms = ["nostr", "mastodon"]
"""

# How long a test waits for something that must happen before it calls it a hang. It decides
# nothing on a machine that is merely busy: what is promised is asserted on what happened.
PATIENCE = 120.0
# The timeout a test gives a server that is up and answers: long enough that a busy machine
# never turns a slow answer into a timeout. Where a timeout is the point, tests set their own.
ANSWER_TIMEOUT = 30.0
# The timeout a test gives a server that is not there (nothing listens on its port): nothing
# can answer it, so a short one changes no outcome, and the attempt waits only that long.
DOWN_TIMEOUT = 0.5

Run = Callable[..., Result]
"""The `run` fixture: `run(cli, *args, input=None)` invokes a click command in-process."""

AnotherDatabase = Callable[[], contextlib.AbstractContextManager[Path]]
"""The `another_database` fixture: `with another_database() as copy:` an empty database of the
test's kind, which every tool uses from then on (where an export is imported into a copy)."""


class Clock:
    """Time as the code under test sees it, moved only by the test."""

    def __init__(self, start: float | datetime = NOW) -> None:
        self.t = start.timestamp() if isinstance(start, datetime) else float(start)

    def __call__(self) -> float:
        return self.t

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    @now.setter
    def now(self, when: datetime) -> None:
        self.t = when.timestamp()

    def advance(self, seconds: float = 0.0, **units: float) -> None:
        """`clock.advance(200)`, `clock.advance(minutes=20)`."""
        self.t += seconds + timedelta(**units).total_seconds()


def iso(epoch_s: float) -> str:
    """An instant as `--schedule` takes it: `2026-11-22T10:04:43Z`."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port that completes TCP handshakes (the kernel's backlog) but never answers a byte:
    a server that hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    """`text` and a newline in `path` (parents made), readable by its owner only by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def write_file(folder: Path, name: str, content: str | bytes) -> str:
    """`content` in `folder / name`; that path, as a string for a command line."""
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


def add_post(
    conn: sqlite3.Connection,
    cfg: config_module.Config,
    text: str,
    at: float | None = None,
    *,
    platforms: Sequence[str] = ("nostr",),
    account: str | None = None,
    now: float | None = None,
) -> str:
    """A post written through the queue code that plur-post uses; its id.

    Due at `at` (epoch seconds), or now when `at` is None. Written at `now`; by default T0 for a
    post with a time (tests that step a `Clock` from T0) and the real time for one due now
    (tests where a real daemon runs).
    """
    if now is None:
        now = T0 if at is not None else time.time()
    created = writing.create_post(
        conn,
        cfg,
        text,
        schedule="now" if at is None else iso(at),
        draft=False,
        platforms=list(platforms),
        account=account,
        tz=cfg.timezone,
        now=datetime.fromtimestamp(now, UTC),
    )
    return created.post_id


def add_thread(
    conn: sqlite3.Connection,
    cfg: config_module.Config,
    parts: Sequence[str],
    at: float,
    *,
    platforms: Sequence[str] = ("nostr",),
    reply_to: str | None = None,
) -> list[str]:
    """A thread of these parts (`--thread`), all due at `at`, written at T0; its post ids."""
    created = writing.create_post(
        conn,
        cfg,
        "\n---\n".join(parts),
        schedule=iso(at),
        draft=False,
        platforms=list(platforms),
        account=None,
        tz=cfg.timezone,
        now=datetime.fromtimestamp(T0, UTC),
        compose=Compose(thread=True),
        reply_to=reply_to,
    )
    return created.post_ids


def deliver(engine: Engine, claims: list[Claimed], concurrency: int = 4) -> list[Delivered]:
    """Publish `claims` through the engine, at most `concurrency` on the wire at once, then
    close its clients."""

    async def run() -> list[Delivered]:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(claim: Claimed) -> Delivered:
            async with gate:
                return await engine.deliver(claim)

        try:
            return list(await asyncio.gather(*(one(c) for c in claims)))
        finally:
            await engine.pool.close()

    return asyncio.run(run())


class Row(NamedTuple):
    state: str
    attempts: int
    due_at_ms: int
    last_error: str | None
    error_kind: str | None
    remote_id: str | None
    payload: str | None


def row(conn: sqlite3.Connection, post_id: str) -> Row:
    """The (only) delivery of a post."""
    return Row(
        *conn.execute(
            "SELECT state, attempts, due_at_ms, last_error, error_kind, remote_id, payload "
            "FROM deliveries WHERE post_id = ?",
            (post_id,),
        ).fetchone()
    )


def wait_until(check: Callable[[], bool], what: str, *, patience: float = PATIENCE) -> None:
    """Poll `check` until it holds; past `patience` seconds the test fails as hung."""
    deadline = time.monotonic() + patience
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {patience:g} s: a hang")
        time.sleep(0.02)


MAX_EXPOSURE = 2.5  # systemd-analyze security's score for a hardened unit


def assert_verified_and_hardened(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze --user verify` says nothing, and the exposure is at most 2.5."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    verify = subprocess.run(
        [analyze, "--user", "verify", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (verify.returncode, verify.stderr) == (0, ""), verify.stderr
    security = subprocess.run(
        [analyze, "--user", "security", "--offline=yes", "--no-pager", str(unit)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, security.stdout


# A sitecustomize that moves a process's clock ahead (time.time and datetime.now both): the
# host's clock is wrong. Monotonic time is left alone, as a real clock step leaves it.
_CLOCK_AHEAD = """\
import datetime as _datetime, os, time
_ahead = float(os.environ.get("PLURCAST_TEST_CLOCK_AHEAD", "0"))
if _ahead:
    _real = time.time
    time.time = lambda: _real() + _ahead

    class _Ahead(_datetime.datetime):
        __slots__ = ()  # the C type's size: extension modules check it

        @classmethod
        def now(cls, tz=None):
            return _datetime.datetime.fromtimestamp(time.time(), tz)

    _datetime.datetime = _Ahead
"""


def clock_ahead(env: dict[str, str], tmp: Path, seconds: float) -> dict[str, str]:
    """`env` for a subprocess whose host clock is `seconds` ahead (behind, when negative)."""
    site = tmp / "clock-ahead"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_CLOCK_AHEAD)
    path = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return {**env, "PLURCAST_TEST_CLOCK_AHEAD": str(seconds), "PYTHONPATH": path}


BIN = Path(sys.executable).parent  # the venv's console scripts


def many_posts(db_path: Path, count: int, text: str) -> None:
    """`count` posts due a minute apart from T0 on, each `post {i} {text}`, in one
    transaction straight into the store (a long listing, faster than plur-post can)."""
    from plurcast.store import connect
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    conn = connect(db_path)
    with transaction(conn):
        for i in range(count):
            insert_post(
                conn,
                NewPost(
                    id=f"{i:08d}-0000-4000-8000-000000000000",
                    content=f"post {i} {text}",
                    created_at_ms=int(T0 * 1000),
                    scheduled_at_ms=int(T0 * 1000) + (i + 1) * 60_000,
                    timezone="Europe/Berlin",
                    targets=[("nostr", "default"), ("mastodon", "default")],
                ),
            )
    conn.close()


def run_with_reader_gone(command: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """One of the venv's commands, its stdout's reader gone before the first byte (`| true`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [str(BIN / command), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=PATIENCE,
            check=False,
        )
    finally:
        os.close(write_end)


class Daemons:
    """plur-send processes started by a test, each logging to `logs`; whatever is left is
    killed at the end (`stop_all`), and each is SIGKILLed by Linux if the test run itself dies
    (`dies_with_parent`): a killed pytest leaves no daemon holding the session's PostgreSQL."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def start(
        self,
        *args: str,
        host: str | None = None,
        ahead: float = 0,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """`plur-send ARGS`; as if on `host` (PLURCAST_HOST), its clock `ahead` seconds, with
        `env`'s variables besides the test's."""
        env = {**os.environ, **(env or {})}
        if host is not None:
            env["PLURCAST_HOST"] = host
        if ahead:
            env = clock_ahead(env, self.logs, ahead)
        name = host if host is not None else str(len(self.procs))
        path = self.logs / f"plur-send-{name}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                dies_with_parent([str(BIN / "plur-send"), *args], signal=signal.SIGKILL),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.procs.append(proc)
        self._logs[proc.pid] = path
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        """What one of them has written so far."""
        return self._logs[proc.pid].read_text()

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("plur-send-*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def scalar(cfg: config_module.Config, sql: str, *params: object) -> int:
    """One number from the test's database (0 for NULL)."""
    return int(run_sql(cfg.db_path, sql, *params)[0][0] or 0)


class FileMedia:
    """The media store's files (plurcast.media.files) in `directory`, without a database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, data: bytes) -> str:
        return files.put(self.directory, data)

    def read(self, digest: str) -> bytes:
        return files.read(self.directory, digest)

    def collect(self) -> list[str]:
        return []


def stored_images(
    media: FileMedia, *alts: str, fmt: str = "JPEG", size: tuple[int, int] = (80, 60)
) -> list[dict[str, Any]]:
    """Test photos (with GPS and a maker note) checked, cleaned and stored in `media`, as
    plur-post stores them; their metadata entries, one per alt text."""
    from plurcast.media import attach
    from plurcast.platforms.registry import Limits
    from tests.images import photo

    specs = []
    for number, alt in enumerate(alts):
        path = media.directory.parent / f"photo{number}.{fmt.lower()}"
        path.write_bytes(photo(fmt, (size[0] + number, size[1])))
        specs.append(attach.ImageSpec(str(path), alt))
    limits = [Limits("any", "default", (), 4, None, 5000)]
    ready = attach.prepare(
        specs, limits, fit=False, keep_metadata=False, require_alt=False, warn=lambda _: None
    )
    return attach.store(media, ready)


def rows_in(db_path: Path, table: str) -> int:
    """The rows of `table` in the PostgreSQL database PLURCAST_DATABASE_URL names, else in
    the SQLite file at `db_path` — 0 when that was never made (asking would make it)."""
    if not os.environ.get("PLURCAST_DATABASE_URL") and not db_path.exists():
        return 0
    return int(run_sql(db_path, f"SELECT count(*) FROM {table}")[0][0])


def media_stored(db_path: Path) -> dict[str, bytes]:
    """What the test's media store holds, sha256 → bytes: the `media` rows of the PostgreSQL
    database PLURCAST_DATABASE_URL names, else the files beside the SQLite file at `db_path`."""
    if os.environ.get("PLURCAST_DATABASE_URL"):
        rows = run_sql(db_path, "SELECT sha256, data FROM media ORDER BY sha256")
        return {str(digest): bytes(data) for digest, data in rows}
    directory = files.media_dir(db_path)
    if not directory.exists():
        return {}
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}
