"""What only the PostgreSQL store has to prove: one schema with SQLite, migrations under an
advisory lock, claims that hold across interleaved connections, time from the server, NOTIFY,
connections that break, and the errors an operator meets. Everything on the real server of
tests/peers/postgres.py; the suites shared with SQLite are in test_store, test_engine, … .
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from plurcast import config as config_module
from plurcast import queue, writing
from plurcast.engine import Engine
from plurcast.errors import EXIT_CONFIG, EXIT_RUNTIME, ConfigError, RuntimeFailure
from plurcast.platforms.base import Outcome, Work
from plurcast.store import claiming, connect, connect_url, migrations, migrations_postgres
from plurcast.store.base import has_password, redact
from plurcast.store.connection import transaction
from plurcast.store.postgres import PostgresDatabase, to_psycopg
from tests.conftest import NOW
from tests.helpers import deliver
from tests.peers.nostr import InProcessRelay
from tests.peers.postgres import PASSWORD, PASSWORD_USER, PostgresCluster

T0 = NOW.timestamp()


@pytest.fixture
def pg(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh migrated database's url."""
    with postgres_cluster.database() as url:
        yield url


@pytest.fixture
def empty_pg(postgres_cluster: PostgresCluster) -> Iterator[str]:
    with postgres_cluster.database(empty=True) as url:
        yield url


def test_a_test_database_is_emptied_for_the_next_test_or_dropped(
    postgres_cluster: PostgresCluster,
) -> None:
    """What tests/peers/postgres.py hands each test: the schema and no rows. A database a test
    wrote to comes back empty, identities restarted, under a new name (a process left behind
    that connects again finds none); one whose schema a test changed is never handed on."""
    post = (
        "INSERT INTO posts (id, content, created_at_ms, timezone, updated_at_ms) "
        "VALUES ('p', 'x', 1, 'UTC', 1)"
    )
    delivery = "INSERT INTO deliveries (post_id, platform, updated_at_ms) VALUES ('p', ?, 1)"
    with postgres_cluster.database() as first:
        db = PostgresDatabase(first)
        db.execute(post)
        db.execute(delivery, ("nostr",))
        db.execute("ALTER TABLE posts ADD COLUMN changed INTEGER")
        db.close()
    with postgres_cluster.database() as second:
        db = PostgresDatabase(second)
        assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == 0
        assert "changed" not in _pg_schema(second)["columns"]["posts"]
        db.execute(post)
        db.execute(delivery, ("nostr",))
        db.close()
    assert second != first
    with postgres_cluster.database() as third:
        db = PostgresDatabase(third)
        assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == 0
        db.execute(post)
        assert [r[0] for r in db.execute(delivery + " RETURNING id", ("mastodon",))] == [1]
        db.close()
    assert third.rsplit("/", 1)[1] not in {
        r[0] for r in postgres_cluster.admin("SELECT datname FROM pg_database")
    }
    with pytest.raises(ConfigError, match="does not exist"):
        connect_url(second)


def test_parameters_are_rewritten_outside_quotes_only() -> None:
    assert to_psycopg("SELECT ? , :name, x::text, '? :no 100%', \"a?\" WHERE y LIKE ? || '%'") == (
        "SELECT %s , %(name)s, x::text, '? :no 100%%', \"a?\" WHERE y LIKE %s || '%%'"
    )


# --- schema and migrations ---------------------------------------------------------------


def _pg_schema(url: str) -> dict[str, Any]:
    db = PostgresDatabase(url)
    try:
        columns: dict[str, list[str]] = {}
        for table, column in db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name <> 'plurcast_schema' "
            "ORDER BY table_name, ordinal_position"
        ):
            columns.setdefault(table, []).append(column)
        indexes = {
            name: definition.split("(", 1)[1].rstrip(")").replace(" ", "").split(",")
            for name, definition in db.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'"
            )
        }
        return {"columns": columns, "indexes": indexes}
    finally:
        db.close()


def _sqlite_schema(path: Path) -> dict[str, Any]:
    db = sqlite_utils.Database(connect(path))
    columns = {t.name: [c.name for c in t.columns] for t in db.tables}
    indexes = {i.name: i.columns for t in db.tables for i in t.indexes if i.origin == "c"}
    return {"columns": columns, "indexes": indexes}


def test_both_backends_have_the_same_tables_columns_and_indexes(pg: str, db_path: Path) -> None:
    assert len(migrations_postgres.MIGRATIONS) == len(migrations.MIGRATIONS)
    assert _pg_schema(pg) == _sqlite_schema(db_path)


def test_ten_processes_starting_at_once_migrate_once(empty_pg: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def open_one() -> None:
        try:
            start.wait()
            connect_url(empty_pg).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    db = PostgresDatabase(empty_pg)
    try:
        versions = [r[0] for r in db.execute("SELECT version FROM plurcast_schema ORDER BY 1")]
    finally:
        db.close()
    assert versions == list(range(1, len(migrations_postgres.MIGRATIONS) + 1))


def test_a_failed_step_keeps_the_previous_version_whole(empty_pg: str) -> None:
    db = PostgresDatabase(empty_pg)
    try:
        steps = migrations_postgres.MIGRATIONS[:1]
        assert migrations_postgres.migrate(db, steps) == 1
        broken = (*steps, "CREATE TABLE half_done (x INTEGER); SELECT 1/0")
        with pytest.raises(RuntimeFailure, match="division by zero"):
            migrations_postgres.migrate(db, broken)
        assert migrations_postgres.schema_version(db) == 1
        assert db.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert migrations_postgres.migrate(db) == len(migrations_postgres.MIGRATIONS) - 1
    finally:
        db.close()


def test_a_newer_schema_is_a_config_error(pg: str) -> None:
    db = PostgresDatabase(pg)
    db.execute("INSERT INTO plurcast_schema (version) VALUES (99)")
    db.close()
    with pytest.raises(ConfigError) as caught:
        connect_url(pg)
    assert caught.value.exit_code == EXIT_CONFIG
    assert "schema version 99" in caught.value.message


def test_a_database_with_someone_elses_posts_table_is_refused(empty_pg: str) -> None:
    db = PostgresDatabase(empty_pg)
    db.execute("CREATE TABLE posts (title TEXT)")
    db.close()
    with pytest.raises(ConfigError, match="not Plurcast's"):
        connect_url(empty_pg)
    db = PostgresDatabase(empty_pg)
    try:  # nothing of ours was left behind
        assert db.execute("SELECT to_regclass('plurcast_schema')").fetchone()[0] is None
    finally:
        db.close()


# --- bad input: one line, the right exit code ------------------------------------------------


def test_unreachable_server_is_a_runtime_failure() -> None:
    from tests.peers.nostr import free_port

    with pytest.raises(RuntimeFailure) as caught:
        connect_url(f"postgresql://plur:secret@127.0.0.1:{free_port()}/plur")
    assert caught.value.exit_code == EXIT_RUNTIME
    assert "cannot reach the PostgreSQL server" in str(caught.value)
    assert "secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_wrong_password_and_unknown_database_are_config_errors(
    postgres_cluster: PostgresCluster,
) -> None:
    port = postgres_cluster.port
    with pytest.raises(ConfigError, match="refused the password") as caught:
        connect_url(f"postgresql://{PASSWORD_USER}:wrong@127.0.0.1:{port}/postgres")
    assert "wrong" not in str(caught.value)
    with pytest.raises(ConfigError, match="does not exist"):
        connect_url(f"postgresql://plur@127.0.0.1:{port}/no_such_db")
    right = PostgresDatabase(f"postgresql://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{port}/postgres")
    assert PASSWORD not in right.describe()
    right.close()


def test_a_url_that_is_neither_is_a_config_error(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config('[database]\nurl = "mysql://root:hunter2@db/plur"\n')
    with pytest.raises(ConfigError) as caught:
        config_module.load()
    assert "names neither PostgreSQL nor SQLite" in caught.value.message
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("PLURCAST_DATABASE_URL", "sqlite:///tmp/elsewhere.db")
    cfg = config_module.load()
    assert (cfg.database_url, cfg.db_path) == (None, Path("/tmp/elsewhere.db"))


def test_a_url_is_redacted_wherever_it_carries_its_password() -> None:
    """In the authority or as libpq's `password=` parameter; a url without one is unchanged."""
    assert redact("postgresql://plur:s3cret@db:5433/q?sslmode=require") == (
        "postgresql://plur@db:5433/q?sslmode=require"
    )
    assert redact("postgresql://db/q?user=plur&Password=s3cret&sslmode=require") == (
        "postgresql://db/q?user=plur&sslmode=require"
    )
    plain = "postgresql://plur@db/q?options=-csearch_path%3Dplurcast"
    assert redact(plain) == plain
    assert (has_password(plain), has_password("postgresql://db/q?password=x")) == (False, True)


# --- claims across connections ----------------------------------------------------------------


@pytest.fixture
def cfg(
    write_config: Callable[[str], Path], nostr_key: Path, pg: str, monkeypatch: pytest.MonkeyPatch
) -> config_module.Config:
    monkeypatch.setenv("PLURCAST_DATABASE_URL", pg)
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["ws://127.0.0.1:1"]\n'
    )
    return config_module.load()


def _enqueue(cfg: config_module.Config, n: int, at: float) -> list[str]:
    db = queue.open_db(cfg)
    try:
        return [
            writing.create_post(
                db,
                cfg,
                f"post {i}",
                schedule=datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                draft=False,
                platforms=["nostr"],
                account=None,
                tz=cfg.timezone,
                now=datetime.fromtimestamp(T0, UTC),
            ).post_id
            for i in range(n)
        ]
    finally:
        db.close()


def test_interleaved_claims_never_take_the_same_delivery(cfg: config_module.Config) -> None:
    """G1 on READ COMMITTED: B claims while A's claim transaction is still open. Without the
    FOR UPDATE SKIP LOCKED of the candidate query B would read A's rows and take them too."""
    _enqueue(cfg, 6, T0 + 60)
    a, b = queue.open_db(cfg), queue.open_db(cfg)
    clock = lambda: T0 + 120  # noqa: E731
    engine_a = Engine(cfg, a, owner="host-a:1:1", clock=clock)
    engine_b = Engine(cfg, b, owner="host-b:1:1", clock=clock)
    lease = engine_a._lease_now()
    with transaction(a):
        held = claiming.lease_due(a, lease, ("nostr",), 4)
        got_b = engine_b.claim_due(10)  # runs and commits while A holds its rows
        got_a = engine_a._settle(held, lease)
    ids_a = {c.delivery_id for c in got_a}
    ids_b = {c.delivery_id for c in got_b}
    assert len(ids_a) == 4 and len(ids_b) == 2
    assert not ids_a & ids_b
    owners = dict(b.execute("SELECT id, lease_owner FROM deliveries").fetchall())
    assert {i for i, o in owners.items() if o == "host-a:1:1"} == ids_a
    a.close()
    b.close()


def test_a_claim_is_one_statement(cfg: config_module.Config) -> None:
    """Issue #14: the candidates are selected, locked and leased by one statement (a CTE
    whose UPDATE leases what its SELECT … FOR UPDATE SKIP LOCKED locked), for due
    deliveries, a post's and a thread part's children alike; oldest first, each once."""
    [first, second] = _enqueue(cfg, 2, T0 + 60)
    db = queue.open_db(cfg)
    statements: list[str] = []
    execute = db.execute

    def counted(sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(sql, params)

    db.execute = counted  # type: ignore[method-assign]
    lease = claiming.Lease("host-a:1:1", int((T0 + 120) * 1000), int((T0 + 180) * 1000))
    with transaction(db):
        statements.clear()
        due = claiming.lease_due(db, lease, ("nostr", "mastodon"), 1)
        assert len(statements) == 1 and statements[0].startswith("WITH c AS (")
        statements.clear()
        post = claiming.lease_post(db, lease, second, ("nostr",))
        assert len(statements) == 1 and "FOR UPDATE OF d SKIP LOCKED" in statements[0]
        statements.clear()
        assert claiming.lease_children(db, lease, due[0][0].delivery_id, [second], None) == []
        assert len(statements) == 1
    assert [(c.post_id, was) for c, was in due + post] == [(first, "pending"), (second, "pending")]
    rows = execute("SELECT state, lease_owner, lease_expires_at_ms FROM deliveries").fetchall()
    assert rows == [("sending", "host-a:1:1", lease.until_ms)] * 2
    db.close()


def test_a_lease_taken_meanwhile_is_not_taken_again(
    cfg: config_module.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence: a claim that read its candidates without locking them (as
    a literal port of the SQLite claim did) waits on B's uncommitted leases, and once B
    commits leases only what is still free — none of them."""
    _enqueue(cfg, 3, T0 + 60)
    a, b = queue.open_db(cfg), queue.open_db(cfg)
    clock = lambda: T0 + 120  # noqa: E731
    engine_a = Engine(cfg, a, owner="host-a:1:1", clock=clock)
    engine_b = Engine(cfg, b, owner="host-b:1:1", clock=clock)
    monkeypatch.setattr(claiming, "_row_lock", lambda conn: "")
    got_a: list[object] = []
    with transaction(b):
        assert len(claiming.lease_due(b, engine_b._lease_now(), ("nostr",), 10)) == 3
        other = threading.Thread(target=lambda: got_a.extend(engine_a.claim_due(10)))
        other.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
        _wait_for(lambda: int(b.execute(waiting).fetchone()[0]) == 1, "A to wait on B's rows")
    other.join(30)
    assert got_a == []
    assert {r[0] for r in b.execute("SELECT lease_owner FROM deliveries")} == {"host-b:1:1"}
    a.close()
    b.close()


def test_a_host_whose_clock_is_10_minutes_ahead_neither_sends_early_nor_takes_a_live_lease(
    cfg: config_module.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = queue.open_db(cfg)
    server_now = db.now_ms() / 1000
    [early] = _enqueue(cfg, 1, server_now + 300)  # due in 5 minutes, server time
    [held] = _enqueue(cfg, 1, server_now - 1)
    db.execute(
        "UPDATE deliveries SET state = 'sending', lease_owner = 'other-host:7:7', "
        "lease_expires_at_ms = ? WHERE post_id = ?",
        (int((server_now + 120) * 1000), held),
    )
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 600)
    engine = Engine(cfg, db, owner="fast-host:1:1")  # no injected clock: the server's
    assert abs(engine.now_ms() / 1000 - server_now) < 60
    assert engine.claim_due(10) == []
    states = dict(db.execute("SELECT post_id, state FROM deliveries").fetchall())
    assert states == {early: "pending", held: "sending"}
    db.close()


def test_rate_window_is_shared_by_interleaved_claims(
    write_config: Callable[[str], Path], nostr_key: Path, pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two claims at once each see the window's count only after the other's commit."""
    monkeypatch.setenv("PLURCAST_DATABASE_URL", pg)
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["ws://127.0.0.1:1"]\n'
        "[scheduling.rate_limits.nostr]\nposts_per_hour = 3\n"
    )
    cfg = config_module.load()
    _enqueue(cfg, 6, T0 + 60)
    a, b = queue.open_db(cfg), queue.open_db(cfg)
    clock = lambda: T0 + 120  # noqa: E731
    engine_a = Engine(cfg, a, owner="host-a:1:1", clock=clock)
    engine_b = Engine(cfg, b, owner="host-b:1:1", clock=clock)
    results: dict[str, int] = {}
    with transaction(a):
        lease = engine_a._lease_now()
        got_a = engine_a._settle(claiming.lease_due(a, lease, ("nostr",), 2), lease)
        other = threading.Thread(target=lambda: results.update(b=len(engine_b.claim_due(10))))
        other.start()  # waits on A's advisory lock for nostr/default
        other.join(0.5)
        assert other.is_alive()
    other.join(30)
    assert len(got_a) + results["b"] == 3
    assert int(a.execute("SELECT count(*) FROM rate_slots").fetchone()[0]) == 3
    a.close()
    b.close()


# --- NOTIFY and broken connections ----------------------------------------------------------


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_write_that_makes_work_due_wakes_the_listener_and_reconnects(
    cfg: config_module.Config, postgres_cluster: PostgresCluster, pg: str
) -> None:
    db = queue.open_db(cfg)
    woken = threading.Event()
    watcher = db.watcher(woken.set)
    try:
        mark = watcher.mark()
        _enqueue(cfg, 1, T0 + 3600)
        _wait_for(woken.is_set, "a NOTIFY after insert")
        assert watcher.changed(mark)
        with transaction(db):
            db.execute("UPDATE posts SET content = 'x'")  # not work: no notification
        time.sleep(0.2)
        woken.clear()
        pid = watcher.backend_pid()  # type: ignore[attr-defined]
        postgres_cluster.admin(f"SELECT pg_terminate_backend({pid})")
        _wait_for(woken.is_set, "the wake-up after re-LISTEN")
        _wait_for(lambda: watcher.backend_pid() not in (None, pid), "a new listener")  # type: ignore[attr-defined]
        woken.clear()
        _enqueue(cfg, 1, T0 + 3600)
        _wait_for(woken.is_set, "a NOTIFY on the new connection")
    finally:
        watcher.close()
        db.close()


class Interrupted:
    """A real Nostr publisher whose publish runs `during` first (a connection killed, another
    daemon taking over), so the cut falls between prepare and record."""

    def __init__(self, inner: Any, during: Callable[[], None]) -> None:
        self.inner, self.during = inner, during
        self.platform, self.account, self.timeout = inner.platform, inner.account, inner.timeout
        self.sent: list[str] = []

    async def prepare(self, work: Work) -> str:
        return str(await self.inner.prepare(work))

    async def publish(self, payload: str, media: object = None) -> Outcome:
        self.sent.append(payload)
        self.during()
        return await self.inner.publish(payload, media)  # type: ignore[no-any-return]

    def display(self, outcome: Outcome) -> str:
        return str(self.inner.display(outcome))

    async def close(self) -> None:
        await self.inner.close()


def _relay_cfg(
    write_config: Callable[[str], Path], nostr_key: Path, relay: InProcessRelay
) -> config_module.Config:
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{relay.url}"]\n'
    )
    return config_module.load()


@pytest.mark.parametrize("outage", ["shorter", "longer"])
def test_a_connection_killed_mid_send_shorter_or_longer_than_the_lease(
    outage: str,
    write_config: Callable[[str], Path],
    nostr_key: Path,
    inprocess_relay: InProcessRelay,
    postgres_cluster: PostgresCluster,
    pg: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pg_terminate_backend while the post is on the wire. Shorter than the lease: the sender
    reconnects and records its own outcome. Longer: another daemon's claim takes the delivery
    over and re-sends the stored payload byte for byte; the first sender's late outcome is
    refused. Either way the relay has the note once."""
    from plurcast.platforms.nostr import NostrPublisher

    monkeypatch.setenv("PLURCAST_DATABASE_URL", pg)
    cfg = _relay_cfg(write_config, nostr_key, inprocess_relay)
    [post_id] = _enqueue(cfg, 1, T0 + 60)
    clock_t = [T0 + 120]
    a_db, b_db = queue.open_db(cfg), queue.open_db(cfg)
    a = Engine(cfg, a_db, owner="host-a:1:1", clock=lambda: clock_t[0], lease_seconds=120)
    b = Engine(cfg, b_db, owner="host-b:1:1", clock=lambda: clock_t[0], lease_seconds=120)
    taken_over: list[Any] = []
    resent = Interrupted(NostrPublisher.from_config(cfg, "default"), lambda: None)

    def cut() -> None:
        postgres_cluster.admin(f"SELECT pg_terminate_backend({a_db.backend_pid()})")  # type: ignore[attr-defined]
        if outage == "longer":
            clock_t[0] += 121  # the lease ran out while A could not write
            claims = b.claim_due(10)
            b.pool._publishers[("nostr", "default")] = resent
            # Another daemon, elsewhere: its own thread and event loop.
            other = threading.Thread(target=lambda: taken_over.extend(deliver(b, claims)))
            other.start()
            other.join(60)

    publisher = Interrupted(NostrPublisher.from_config(cfg, "default"), cut)
    a.pool._publishers[("nostr", "default")] = publisher
    [result] = deliver(a, a.claim_due(10))
    row = b_db.execute(
        "SELECT state, attempts, payload, remote_id FROM deliveries WHERE post_id = ?", (post_id,)
    ).fetchone()
    events = inprocess_relay.fetch_events()
    assert len(events) == 1
    assert row[0] == "sent" and row[1] == 1 and row[3].startswith("note1")
    assert json.loads(row[2])["id"] == events[0]["id"]  # the stored payload is what arrived
    if outage == "shorter":
        assert result.state == "sent"
        assert taken_over == []
    else:
        assert result.state == "lost"
        assert [d.state for d in taken_over] == ["sent"]
        assert resent.sent == publisher.sent == [row[2]]
    a_db.close()
    b_db.close()


def test_sqlite_clock_and_waking_stay_as_they_were(db_path: Path) -> None:
    db = connect(db_path)
    watcher = db.watcher()
    mark = watcher.mark()
    assert abs(db.now_ms() / 1000 - time.time()) < 5
    other = sqlite3.connect(db_path)
    other.execute("INSERT INTO heartbeats VALUES ('x', 'h', 1, 0, 0, 'v')")
    other.commit()
    other.close()
    assert watcher.changed(mark)
    db.close()


def test_a_daemon_on_another_host_that_went_silent_has_its_leases_taken_over(
    cfg: config_module.Config,
) -> None:
    """G2 across hosts: process.is_dead cannot see another host's pids; a heartbeat silent
    for 30 s (server time) can. Its payload stays, to be re-sent byte for byte."""
    [silent, alive] = _enqueue(cfg, 2, T0 + 60)
    db = queue.open_db(cfg)
    now = db.now_ms()
    for post_id, owner, beat in ((silent, "host-x:7:7", now - 31_000), (alive, "host-y:8:8", now)):
        db.execute(
            "INSERT INTO heartbeats (owner, host, pid, started_at_ms, beat_at_ms, version) "
            "VALUES (?, ?, 1, ?, ?, 'test')",
            (owner, owner.split(":")[0], beat, beat),
        )
        db.execute(
            "UPDATE deliveries SET state = 'sending', lease_owner = ?, lease_expires_at_ms = ?, "
            "payload = ? WHERE post_id = ?",
            (owner, now + 100_000, f'{{"stored": "{post_id}"}}', post_id),
        )
    engine = Engine(cfg, db, owner="host-z:9:9")
    assert engine.recover_dead_leases() == 1
    [claim] = engine.claim_due(10)
    assert claim.post_id == silent
    assert claim.payload == f'{{"stored": "{silent}"}}'
    assert engine.recover_dead_leases() == 0  # nothing more to recover, nothing logged again
    db.close()


def test_a_row_held_by_a_stuck_process_is_a_one_line_locked_error(
    cfg: config_module.Config, postgres_cluster: PostgresCluster
) -> None:
    """busy_timeout means the same on PostgreSQL: a lock held longer is `locked`, exit 1."""
    [post_id] = _enqueue(cfg, 1, T0 + 3600)
    holder = PostgresDatabase(os.environ["PLURCAST_DATABASE_URL"])
    waiter = PostgresDatabase(os.environ["PLURCAST_DATABASE_URL"], busy_timeout=0.2)
    try:
        with transaction(holder):
            holder.execute("SELECT 1 FROM deliveries WHERE post_id = ? FOR UPDATE", (post_id,))
            with pytest.raises(RuntimeFailure) as caught, transaction(waiter):
                waiter.execute("UPDATE deliveries SET due_at_ms = 1 WHERE post_id = ?", (post_id,))
        assert "locked by another process" in caught.value.message
        assert caught.value.exit_code == EXIT_RUNTIME
        row = waiter.execute("SELECT due_at_ms FROM deliveries WHERE post_id = ?", (post_id,))
        assert row.fetchone()[0] != 1
    finally:
        holder.close()
        waiter.close()
