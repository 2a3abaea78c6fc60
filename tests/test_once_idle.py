"""`plur-send --once` that finds nothing due writes nothing (issue #16), on both backends.

Run from cron every minute, such a run only reads: no heartbeat beaten and forgotten, no
empty give-back, no commit at all — so no fsync and no WAL growth. What the loop's first
pass writes it still writes when there is something to write: the leases of a dead
process are recovered and sent, and heartbeats silent for a day are forgotten.

A write is seen wherever it lands: on SQLite in `PRAGMA data_version` (it changes for
every other connection's commit), the file's bytes and its WAL; on PostgreSQL by a
statement-level trigger on every table, which fires even for a statement that changes no
row (an UPDATE that gives back no lease).
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import process
from plurcast.daemon import FORGET_HEARTBEAT_MS
from tests.helpers import BIN, PATIENCE, scalar
from tests.peers.nostr import InProcessRelay
from tests.peers.postgres import Backend, open_test_db, run_sql

pytestmark = pytest.mark.usefixtures("backend")

# Every statement that writes to any of our tables, whether or not it changes a row.
_NOTE_WRITES = """
CREATE TABLE written (name TEXT, op TEXT);
CREATE FUNCTION note_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO written VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NULL;
END $$;
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT table_name FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> 'written'
    LOOP
        EXECUTE format('CREATE TRIGGER note_write AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
                       'ON %I FOR EACH STATEMENT EXECUTE FUNCTION note_write()', t.table_name);
    END LOOP;
END $$;
"""


@pytest.fixture
def queued(one_post_in_an_hour: Callable[[str], None]) -> config_module.Config:
    """A queue as cron finds it most minutes: a post due in an hour, and the heartbeat of a
    daemon that stopped answering ten minutes ago (stale, not yet a day old)."""
    one_post_in_an_hour("")
    cfg = config_module.load()
    beat(cfg, "other-host:4242:1", int(time.time() * 1000) - 600_000)
    return cfg


def beat(cfg: config_module.Config, owner: str, at_ms: int) -> None:
    host, pid, _ = owner.split(":")
    run_sql(
        cfg.db_path,
        "INSERT INTO heartbeats (owner, host, pid, started_at_ms, beat_at_ms, version) "
        "VALUES (?, ?, ?, ?, ?, '0.1.0')",
        owner,
        host,
        int(pid),
        at_ms,
        at_ms,
    )


def once() -> str:
    """`plur-send --once` as cron runs it; its log (it must exit 0)."""
    done = subprocess.run(
        [str(BIN / "plur-send"), "--once"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.fixture
def writes(queued: config_module.Config, backend: Backend) -> Iterator[Callable[[], list[str]]]:
    """What was written from here on: `table op` of each statement on PostgreSQL; on
    SQLite, whether another connection committed, the file's bytes changed or its WAL
    grew."""
    if backend.name == "postgresql":
        db = open_test_db(queued.db_path)
        db.run_script(_NOTE_WRITES)
        db.close()
        yield lambda: [f"{n} {op}" for n, op in run_sql(queued.db_path, "SELECT * FROM written")]
        return
    with closing(sqlite3.connect(queued.db_path)) as watcher:

        def version() -> int:
            return int(watcher.execute("PRAGMA data_version").fetchone()[0])

        def digest() -> str:
            return hashlib.sha256(queued.db_path.read_bytes()).hexdigest()

        def wal() -> int:  # kept while the watcher is open, as a running daemon keeps it
            return wal_path.stat().st_size if wal_path.exists() else 0

        wal_path = Path(f"{queued.db_path}-wal")
        before = (version(), digest(), wal())

        def seen() -> list[str]:
            now = (version(), digest(), wal())
            kinds = ("a commit", "the file", "the WAL")
            return [what for what, b, n in zip(kinds, before, now, strict=True) if b != n]

        yield seen


def test_an_idle_once_writes_nothing(
    writes: Callable[[], list[str]], queued: config_module.Config
) -> None:
    for _minute in range(3):
        log = once()
        assert "plur-send stopped: 0 sent, 0 to retry, 0 given up" in log
    assert writes() == []
    assert scalar(queued, "SELECT count(*) FROM heartbeats") == 1  # the other daemon's, kept
    assert scalar(queued, "SELECT count(*) FROM deliveries WHERE state = 'pending'") == 1


def test_the_guard_sees_a_write(
    writes: Callable[[], list[str]], queued: config_module.Config
) -> None:
    """The write detector can fail: a heartbeat written by another process shows."""
    beat(queued, "other-host:4343:1", int(time.time() * 1000))
    assert writes() != []


def test_a_day_old_heartbeat_is_still_forgotten(queued: config_module.Config) -> None:
    now_ms = int(time.time() * 1000)
    beat(queued, "gone-host:1:1", now_ms - FORGET_HEARTBEAT_MS - 60_000)
    once()
    owners = run_sql(queued.db_path, "SELECT owner FROM heartbeats")
    assert owners == [("other-host:4242:1",)]


def test_a_dead_process_lease_is_recovered_and_sent_by_an_idle_looking_once(
    queued: config_module.Config, inprocess_relay: InProcessRelay
) -> None:
    """Nothing is due, but a process that ended holds a lease running for ten more
    minutes: the run recovers it and sends the post at once, as the loop would."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = process.owner_id(child.pid)
    child.kill()
    child.wait()
    later = int(time.time() * 1000) + 600_000
    run_sql(
        queued.db_path,
        "UPDATE deliveries SET state = 'sending', lease_owner = ?, lease_expires_at_ms = ?",
        owner,
        later,
    )
    log = once()
    assert "recovered 1 deliveries from 1 dead process(es)" in log
    assert "plur-send stopped: 1 sent, 0 to retry, 0 given up" in log
    assert scalar(queued, "SELECT count(*) FROM deliveries WHERE state = 'sent'") == 1
    assert inprocess_relay.count_by_content("in an hour") == 1
    assert scalar(queued, "SELECT count(*) FROM heartbeats") == 1  # its own forgotten again
