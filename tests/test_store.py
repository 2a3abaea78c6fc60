"""plurcast.store (connection, migrations, posts) and the status rule in plurcast.models."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from plurcast.errors import EXIT_CONFIG, EXIT_RUNTIME, ConfigError, RuntimeFailure
from plurcast.models import (
    Delivery,
    DeliveryState,
    Post,
    PostStatus,
    WaitingOn,
    derive_status,
    to_ms,
)
from plurcast.store import connection, migrations
from plurcast.store.base import Database
from plurcast.store.connection import connect, transaction
from plurcast.store.listing import get_posts, select_posts
from plurcast.store.migrations import SCHEMA_VERSION
from plurcast.store.posts import (
    NewPost,
    cancel_unsent,
    delete_posts,
    find_post_ids,
    insert_post,
    latest_waiting_time_ms,
    set_schedule,
)
from tests.helpers import NOW
from tests.peers.postgres import Backend, open_test_db, run_sql

# What a violated constraint raises: sqlite3's own error, or the PostgreSQL backend's.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, RuntimeFailure)

T0 = to_ms(NOW)
HOUR = 3_600_000
CREATED = T0 - HOUR

ID_A = "aaaaaaaa-1111-4111-8111-111111111111"
ID_A2 = "aaaaaaaa-2222-4222-8222-222222222222"
ID_B = "bbbbbbbb-1111-4111-8111-111111111111"
ID_C = "cccccccc-1111-4111-8111-111111111111"
ID_D = "dddddddd-1111-4111-8111-111111111111"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def conn(db_path: Path, backend: Backend) -> Iterator[Database]:
    """The store on each backend in turn (the tests that take it form the contract suite)."""
    c = open_test_db(db_path)
    yield c
    c.close()


def new_post(
    post_id: str,
    at_ms: int | None,
    *targets: tuple[str, str],
    content: str = "hello",
    created_ms: int = CREATED,
    metadata: str = "{}",
) -> NewPost:
    return NewPost(
        id=post_id,
        content=content,
        created_at_ms=created_ms,
        scheduled_at_ms=at_ms,
        timezone="Europe/Berlin",
        targets=targets or (("nostr", "default"),),
        metadata=metadata,
    )


def add(conn: Database, *posts: NewPost) -> None:
    with transaction(conn):
        for post in posts:
            insert_post(conn, post)


def set_state(conn: Database, post_id: str, platform: str, state: str) -> None:
    conn.execute(
        "UPDATE deliveries SET state = ? WHERE post_id = ? AND platform = ?",
        (state, post_id, platform),
    )


def count(conn: Database, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# --- connect: files, pragmas, versions --------------------------------------------------------


def test_connect_creates_private_dir_and_file_whatever_the_umask(db_path: Path) -> None:
    assert not db_path.parent.exists()
    old = os.umask(0o000)
    try:
        c = connect(db_path)
    finally:
        os.umask(old)
    try:
        assert mode(db_path.parent) == 0o700
        assert mode(db_path) == 0o600
        add(c, new_post(ID_A, T0))
        wal = db_path.with_name(db_path.name + "-wal")
        assert wal.exists()
        assert mode(wal) == 0o600
    finally:
        c.close()


def test_connect_creates_every_missing_directory_0700(isolated_home: Path, db_path: Path) -> None:
    assert not (isolated_home / ".local").exists()
    old = os.umask(0o000)
    try:
        connect(db_path).close()
    finally:
        os.umask(old)
    created = [isolated_home / ".local", isolated_home / ".local" / "share", db_path.parent]
    assert [oct(mode(d)) for d in created] == [oct(0o700)] * 3


def test_connect_keeps_an_existing_file(db_path: Path) -> None:
    connect(db_path).close()
    db_path.chmod(0o640)
    connect(db_path).close()
    assert mode(db_path) == 0o640


@pytest.mark.sqlite_only
def test_pragmas(conn: Database) -> None:
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: tests/test_durable.py
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert SCHEMA_VERSION == len(migrations.MIGRATIONS) >= 1
    assert conn.isolation_level is None


@pytest.mark.parametrize(("seconds", "ms"), [(2.5, 2500), (0.1, 100), (0, 0)])
def test_busy_timeout_pragma(db_path: Path, seconds: float, ms: int) -> None:
    c = connect(db_path, busy_timeout=seconds)
    try:
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] == ms
    finally:
        c.close()


def test_reopening_does_not_migrate_again(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = connect(db_path)
    add(c, new_post(ID_A, T0))
    c.close()

    def must_not_run(conn: Database) -> int:
        raise AssertionError("migrate() called on a current database")

    monkeypatch.setattr(connection, "migrate", must_not_run)
    c = connect(db_path)
    try:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [p.id for p in get_posts(c, [ID_A])] == [ID_A]
    finally:
        c.close()


@pytest.mark.sqlite_only
def test_migrate_on_a_current_database_applies_nothing(conn: Database) -> None:
    assert migrations.migrate(conn) == 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert not conn.in_transaction


@pytest.mark.sqlite_only
def test_final_schema(conn: Database) -> None:
    db = sqlite_utils.Database(conn)
    assert {"posts", "deliveries", "attempts", "heartbeats"} <= set(db.table_names())
    columns = {
        t: [c.name for c in db[t].columns]
        for t in ("posts", "deliveries", "attempts", "heartbeats")
    }
    assert columns == {
        "posts": [
            "id",
            "content",
            "created_at_ms",
            "scheduled_at_ms",
            "timezone",
            "schedule_id",
            "occurrence_at_ms",
            "metadata",
            "updated_at_ms",
            "thread_id",
            "thread_part",
        ],
        "deliveries": [
            "id",
            "post_id",
            "platform",
            "account",
            "state",
            "due_at_ms",
            "attempts",
            "lease_owner",
            "lease_expires_at_ms",
            "payload",
            "remote_id",
            "remote_url",
            "sent_at_ms",
            "last_error",
            "error_kind",
            "updated_at_ms",
            "parent_id",
            "blocked",
            "content",
            "remote_cid",
        ],
        "attempts": [
            "id",
            "delivery_id",
            "number",
            "started_at_ms",
            "finished_at_ms",
            "outcome",
            "error",
            "error_kind",
            "detail",
            "worker",
        ],
        "heartbeats": ["owner", "host", "pid", "started_at_ms", "beat_at_ms", "version"],
    }
    assert db.table("posts").pks == ["id"]
    assert db.table("deliveries").pks == ["id"]
    assert db.table("heartbeats").pks == ["owner"]

    def named(table: str) -> dict[str, list[str]]:
        return {i.name: i.columns for i in db.table(table).indexes}

    def unique(table: str) -> list[list[str]]:
        return [i.columns for i in db.table(table).indexes if i.unique and i.origin == "u"]

    assert named("posts")["posts_by_time"] == ["scheduled_at_ms"]
    assert named("deliveries")["deliveries_due"] == ["state", "due_at_ms"]
    assert named("deliveries")["deliveries_claimable"] == [
        "state",
        "platform",
        "blocked",
        "due_at_ms",
    ]
    assert "deliveries_due_by_platform" not in named("deliveries")
    assert named("deliveries")["deliveries_by_parent"] == ["parent_id"]
    assert named("posts")["posts_by_thread"] == ["thread_id", "thread_part"]
    assert named("attempts")["attempts_by_delivery"] == ["delivery_id"]
    assert ["post_id", "platform", "account"] in unique("deliveries")
    assert ["schedule_id", "occurrence_at_ms"] in unique("posts")

    fks = {
        (f.table, f.column, f.other_table, f.other_column)
        for t in db.tables
        for f in t.foreign_keys
    }
    assert ("deliveries", "post_id", "posts", "id") in fks
    assert ("attempts", "delivery_id", "deliveries", "id") in fks
    assert ("deliveries", "parent_id", "deliveries", "id") in fks


def test_check_constraint_rejects_a_bad_state_and_the_schema_names_no_platform(
    conn: Database,
) -> None:
    """States are the engine's, fixed; platforms are the registry's, which checks every name
    before a row is written — a new platform needs no schema change (migration 8)."""
    add(conn, new_post(ID_A, T0))
    with pytest.raises(INTEGRITY_ERRORS, match=r"(?i)check"):
        conn.execute("UPDATE deliveries SET state = 'lost' WHERE post_id = ?", (ID_A,))
    conn.execute(
        "INSERT INTO deliveries (post_id, platform, updated_at_ms) VALUES (?, 'myspace', 0)",
        (ID_A,),
    )
    for state in DeliveryState:
        conn.execute("UPDATE deliveries SET state = ? WHERE post_id = ?", (state.value, ID_A))


def test_unique_constraints_hold(conn: Database) -> None:
    add(conn, new_post(ID_A, T0, ("nostr", "default"), ("nostr", "test")))
    add(conn, new_post(ID_B, T0), new_post(ID_C, T0))  # NULL schedule ids never clash
    with pytest.raises(INTEGRITY_ERRORS, match=r"(?i)unique"):
        conn.execute(
            "INSERT INTO deliveries (post_id, platform, account, updated_at_ms) "
            "VALUES (?, 'nostr', 'test', 0)",
            (ID_A,),
        )
    conn.execute("UPDATE posts SET schedule_id = 's1', occurrence_at_ms = 5 WHERE id = ?", (ID_A,))
    with pytest.raises(INTEGRITY_ERRORS, match=r"(?i)unique"):
        conn.execute(
            "UPDATE posts SET schedule_id = 's1', occurrence_at_ms = 5 WHERE id = ?", (ID_B,)
        )


def test_delete_cascades_to_deliveries_and_attempts(conn: Database) -> None:
    add(conn, new_post(ID_A, T0, ("nostr", "default"), ("mastodon", "default")))
    add(conn, new_post(ID_B, T0))
    for (delivery_id,) in conn.execute(
        "SELECT id FROM deliveries WHERE post_id = ?", (ID_A,)
    ).fetchall():
        conn.execute(
            "INSERT INTO attempts (delivery_id, number, started_at_ms, outcome) "
            "VALUES (?, 1, ?, 'error')",
            (delivery_id, T0),
        )
    assert (count(conn, "deliveries"), count(conn, "attempts")) == (3, 2)
    with transaction(conn):
        assert delete_posts(conn, [ID_A]) == 1
    assert (count(conn, "posts"), count(conn, "deliveries"), count(conn, "attempts")) == (1, 1, 0)


def test_newer_schema_is_a_config_error(db_path: Path) -> None:
    connect(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(ConfigError) as caught:
        connect(db_path)
    assert caught.value.exit_code == EXIT_CONFIG
    assert f"schema version {SCHEMA_VERSION + 1}" in caught.value.message
    assert str(db_path) in caught.value.message


def test_garbage_file_is_a_one_line_runtime_failure(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = b"this is certainly not a sqlite database\n" * 100
    db_path.write_bytes(garbage)
    with pytest.raises(RuntimeFailure) as caught:
        connect(db_path)
    err = caught.value
    assert err.exit_code == EXIT_RUNTIME == 1
    assert "\n" not in str(err)
    assert str(db_path) in err.message
    assert "not a database" in err.message
    assert err.hint is not None
    assert "PLURCAST_DB_PATH" in err.hint
    assert db_path.read_bytes() == garbage


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "database or disk is full",
            "the database /q/posts.db has no room to grow (database or disk is full)",
            "free some space on its disk, then try again",
        ),
        (
            "disk I/O error",
            "cannot read or write the database /q/posts.db (disk I/O error)",
            "check that it is a regular file on a working disk, or set PLURCAST_DB_PATH",
        ),
    ],
)
def test_a_full_or_failing_disk_is_said_with_what_to_do(text: str, message: str, hint: str) -> None:
    # Both were "database error …: <SQLite's words>", with nothing to do about it.
    err = connection.database_error(sqlite3.OperationalError(text), Path("/q/posts.db"))
    assert (err.exit_code, err.message, err.hint) == (EXIT_RUNTIME, message, hint)


def test_a_device_as_the_database_is_a_one_line_runtime_failure() -> None:
    with pytest.raises(RuntimeFailure) as caught:
        connect(Path(os.devnull))
    assert (
        caught.value.message == f"cannot read or write the database {os.devnull} (disk I/O error)"
    )


def _half_done(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE half_done (x INTEGER)")
    raise RuntimeError("boom in the middle of a migration")


def _use_migrations(monkeypatch: pytest.MonkeyPatch, *steps: migrations.Migration) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(steps))
    monkeypatch.setattr(connection, "SCHEMA_VERSION", len(steps))


def _tables(path: Path) -> tuple[int, set[str]]:
    raw = sqlite3.connect(path)
    try:
        version = raw.execute("PRAGMA user_version").fetchone()[0]
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        raw.execute("BEGIN IMMEDIATE")  # nothing is left holding the write lock
        raw.execute("ROLLBACK")
    finally:
        raw.close()
    return version, names


def test_failed_migration_on_a_new_database_leaves_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_migrations(monkeypatch, migrations._m001_queue, _half_done)
    with pytest.raises(RuntimeError, match="boom"):
        connect(db_path)
    assert _tables(db_path) == (0, set())


def test_failed_migration_keeps_the_previous_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_migrations(monkeypatch, migrations._m001_queue)
    c = connect(db_path)
    c.execute(  # a post as version 1 wrote it
        "INSERT INTO posts (id, content, created_at_ms, scheduled_at_ms, timezone, updated_at_ms) "
        "VALUES (?, 'hello', 0, ?, 'UTC', 0)",
        (ID_A, T0),
    )
    c.close()
    _use_migrations(monkeypatch, migrations._m001_queue, _half_done)
    with pytest.raises(RuntimeError, match="boom"):
        connect(db_path)
    version, names = _tables(db_path)
    assert version == 1
    assert "half_done" not in names
    assert {"posts", "deliveries", "attempts", "heartbeats"} <= names


def test_pending_migration_is_applied_on_open(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_migrations(monkeypatch, migrations._m001_queue)
    connect(db_path).close()

    def m002(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE extra (x INTEGER)")

    _use_migrations(monkeypatch, migrations._m001_queue, m002)
    connect(db_path).close()
    version, names = _tables(db_path)
    assert version == 2
    assert "extra" in names


# --- transactions --------------------------------------------------------------------------


def test_locked_database_is_a_runtime_failure(db_path: Path) -> None:
    holder = connect(db_path)
    waiter = connect(db_path, busy_timeout=0.1)
    ran = False
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(RuntimeFailure) as caught, transaction(waiter):
            ran = True
        assert "locked" in caught.value.message
        assert caught.value.exit_code == EXIT_RUNTIME
        assert "\n" not in str(caught.value)
        assert ran is False
        assert not waiter.in_transaction
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiter.close()


def test_transaction_rolls_back_on_exception(conn: Database) -> None:
    with pytest.raises(ValueError, match="oops"), transaction(conn):
        insert_post(conn, new_post(ID_A, T0))
        assert count(conn, "posts") == 1
        raise ValueError("oops")
    assert not conn.in_transaction
    assert count(conn, "posts") == 0
    assert count(conn, "deliveries") == 0


def test_transaction_commits(conn: Database, db_path: Path) -> None:
    with transaction(conn):
        insert_post(conn, new_post(ID_A, T0))
        inside = conn.in_transaction
        assert run_sql(db_path, "SELECT count(*) FROM posts") == [(0,)]  # not yet for others
    assert inside is True
    assert not conn.in_transaction
    assert run_sql(db_path, "SELECT count(*) FROM posts") == [(1,)]


# --- posts: insert and read back ----------------------------------------------------------------


@pytest.fixture
def queue(conn: Database) -> Database:
    """A: +2h nostr(test)+mastodon · B: +1h bluesky · C: draft · D: +3h mastodon, already sent ·
    A2: +1h (same time as B, created later)."""
    add(
        conn,
        new_post(
            ID_A,
            T0 + 2 * HOUR,
            ("nostr", "test"),
            ("mastodon", "default"),
            content="A\nsecond line",
            metadata='{"thread": [1, 2]}',
        ),
        new_post(ID_C, None, ("nostr", "default"), created_ms=CREATED - HOUR),
        new_post(ID_D, T0 + 3 * HOUR, ("mastodon", "default")),
        new_post(ID_B, T0 + HOUR, ("bluesky", "default")),
        new_post(ID_A2, T0 + HOUR, ("nostr", "default"), created_ms=CREATED + 1),
    )
    set_state(conn, ID_D, "mastodon", "sent")
    return conn


def test_round_trip_fields(queue: Database) -> None:
    [a] = get_posts(queue, [ID_A])
    assert a.id == ID_A
    assert a.content == "A\nsecond line"
    assert (a.created_at_ms, a.scheduled_at_ms) == (CREATED, T0 + 2 * HOUR)
    assert a.timezone == "Europe/Berlin"
    assert (a.schedule_id, a.occurrence_at_ms) == (None, None)
    assert a.metadata == {"thread": [1, 2]}
    assert a.status == PostStatus.SCHEDULED
    assert a.platforms == ["nostr", "mastodon"]
    assert a.account is None
    got = [(d.platform, d.account, d.state, d.due_at_ms, d.attempts) for d in a.deliveries]
    assert got == [
        ("nostr", "test", DeliveryState.PENDING, T0 + 2 * HOUR, 0),
        ("mastodon", "default", DeliveryState.PENDING, T0 + 2 * HOUR, 0),
    ]
    assert all(not d.prepared and d.remote_id is None and d.history == [] for d in a.deliveries)
    [c] = get_posts(queue, [ID_C])
    assert c.scheduled_at_ms is None
    assert c.deliveries[0].due_at_ms is None
    assert c.status == PostStatus.DRAFT
    assert c.account == "default"


def test_select_posts_by_time_drafts_last(queue: Database) -> None:
    everything = select_posts(queue, waiting_only=False)
    assert [p.id for p in everything] == [ID_B, ID_A2, ID_A, ID_D, ID_C]
    assert [p.status for p in everything] == [
        PostStatus.SCHEDULED,
        PostStatus.SCHEDULED,
        PostStatus.SCHEDULED,
        PostStatus.POSTED,
        PostStatus.DRAFT,
    ]
    assert [len(p.deliveries) for p in everything] == [1, 1, 2, 1, 1]


def test_a_listing_builds_posts_as_they_are_asked_for(
    queue: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`stream_posts` (what `plur-queue list` reads) makes rows into posts a chunk at a time:
    a listing of a million posts into `head -1` holds one chunk, not the million."""
    from plurcast import queue as queue_module
    from plurcast.store import listing

    built: list[int] = []
    build = listing._build_posts
    monkeypatch.setattr(listing, "CHUNK", 2)
    monkeypatch.setattr(
        listing, "_build_posts", lambda rows: built.append(len(rows)) or build(rows)
    )
    listed = queue_module.list_posts(queue, include_all=True)
    assert built == []
    first = next(listed)
    assert (first.id, built) == (ID_B, [2])
    assert [first.id] + [p.id for p in listed] == [ID_B, ID_A2, ID_A, ID_D, ID_C]
    assert built == [2, 2, 1]
    assert select_posts(queue, waiting_only=False) == [
        p for chunk in listing.stream_posts(queue, waiting_only=False) for p in chunk
    ]


def test_select_posts_filters(queue: Database) -> None:
    assert [p.id for p in select_posts(queue, waiting_only=True)] == [ID_B, ID_A2, ID_A]
    nostr = select_posts(queue, waiting_only=False, platform="nostr")
    assert [p.id for p in nostr] == [ID_A2, ID_A, ID_C]
    # A keeps all its deliveries even when filtered by one platform
    assert [d.platform for d in nostr[1].deliveries] == ["nostr", "mastodon"]
    assert [p.id for p in select_posts(queue, waiting_only=True, platform="mastodon")] == [ID_A]
    assert select_posts(queue, waiting_only=False, with_dead_only=True) == []
    set_state(queue, ID_A, "mastodon", "dead")
    dead = select_posts(queue, waiting_only=False, with_dead_only=True)
    assert [p.id for p in dead] == [ID_A]


def test_get_posts_in_time_order(queue: Database) -> None:
    assert [p.id for p in get_posts(queue, [ID_C, ID_A, ID_B])] == [ID_B, ID_A, ID_C]
    assert get_posts(queue, []) == []
    assert get_posts(queue, ["ffffffff-0000-4000-8000-000000000000"]) == []


def test_find_post_ids(queue: Database) -> None:
    assert find_post_ids(queue, "aaaaaaaa") == [ID_A, ID_A2]
    assert find_post_ids(queue, "aaaaaaaa", limit=1) == [ID_A]
    assert find_post_ids(queue, "aaaaaaaa-2") == [ID_A2]
    assert find_post_ids(queue, "bbbbbbbb") == [ID_B]
    assert find_post_ids(queue, ID_D) == [ID_D]
    assert find_post_ids(queue, "eeeeeeee") == []
    assert find_post_ids(queue, "AAAAAAAA") == []


def test_latest_waiting_time(conn: Database) -> None:
    assert latest_waiting_time_ms(conn) is None
    add(conn, new_post(ID_C, None))
    assert latest_waiting_time_ms(conn) is None
    add(conn, new_post(ID_A, T0 + HOUR), new_post(ID_B, T0 + 5 * HOUR, ("mastodon", "default")))
    assert latest_waiting_time_ms(conn) == T0 + 5 * HOUR
    set_state(conn, ID_B, "mastodon", "sent")
    assert latest_waiting_time_ms(conn) == T0 + HOUR
    set_state(conn, ID_A, "nostr", "retry")
    assert latest_waiting_time_ms(conn) == T0 + HOUR
    set_state(conn, ID_A, "nostr", "cancelled")
    assert latest_waiting_time_ms(conn) is None


def test_cancel_unsent_keeps_the_lease_and_spares_what_may_be_out(
    queue: Database,
) -> None:
    """A claimed but unprepared delivery is cancelled with its lease kept (the engine's prepare
    check finds it); one with a stored payload may already be published and is left alone."""
    queue.execute(
        "UPDATE deliveries SET state = 'sending', lease_owner = 'w1', lease_expires_at_ms = 5 "
        "WHERE post_id = ? AND platform = 'nostr'",
        (ID_A,),
    )
    queue.execute(
        "UPDATE deliveries SET state = 'retry', payload = '{}' WHERE post_id = ?", (ID_A2,)
    )
    later = T0 + 7
    with transaction(queue):
        changed = cancel_unsent(queue, [ID_A, ID_D], later)
        assert cancel_unsent(queue, [ID_A2], later) == 0  # its payload may already be out
    assert changed == 2  # A's two unsent deliveries; D's sent one is left alone
    rows = queue.execute(
        "SELECT post_id, platform, state, lease_owner, lease_expires_at_ms, updated_at_ms "
        "FROM deliveries WHERE post_id IN (?, ?) ORDER BY post_id, id",
        (ID_A, ID_D),
    ).fetchall()
    assert rows == [
        (ID_A, "nostr", "cancelled", "w1", 5, later),
        (ID_A, "mastodon", "cancelled", None, None, later),
        (ID_D, "mastodon", "sent", None, None, CREATED),
    ]
    [a] = get_posts(queue, [ID_A])
    assert a.status == PostStatus.CANCELLED
    assert queue.execute("SELECT updated_at_ms FROM posts WHERE id = ?", (ID_A,)).fetchone() == (
        later,
    )
    [a2] = get_posts(queue, [ID_A2])
    assert [(d.state.value, d.has_payload) for d in a2.deliveries] == [("retry", True)]


def test_set_schedule_moves_only_waiting_deliveries(queue: Database) -> None:
    set_state(queue, ID_A, "nostr", "sent")
    new_time = T0 + 10 * HOUR
    with transaction(queue):
        set_schedule(queue, ID_A, new_time, T0 + 1)
    [a] = get_posts(queue, [ID_A])
    assert a.scheduled_at_ms == new_time
    assert [(d.platform, d.state, d.due_at_ms) for d in a.deliveries] == [
        ("nostr", DeliveryState.SENT, T0 + 2 * HOUR),
        ("mastodon", DeliveryState.PENDING, new_time),
    ]
    [b] = get_posts(queue, [ID_B])
    assert b.scheduled_at_ms == T0 + HOUR


def test_delete_posts(queue: Database) -> None:
    with transaction(queue):
        assert delete_posts(queue, [ID_A, ID_C, "ffffffff-0000-4000-8000-000000000000"]) == 2
    assert [p.id for p in select_posts(queue, waiting_only=False)] == [ID_B, ID_A2, ID_D]
    assert count(queue, "deliveries") == 3


# --- models: the status rule ---------------------------------------------------------------------


def d(state: str, error_kind: str | None = None, platform: str = "nostr") -> Delivery:
    return Delivery(
        id=1,
        platform=platform,
        account="default",
        state=DeliveryState(state),
        due_at_ms=None,
        attempts=0,
        remote_id=None,
        remote_url=None,
        sent_at_ms=None,
        last_error=None,
        error_kind=error_kind,
    )


@pytest.mark.parametrize(
    ("states", "scheduled", "expected"),
    [
        (["pending"], None, "draft"),
        (["pending", "pending"], None, "draft"),
        (["pending"], T0, "scheduled"),
        (["retry"], T0, "scheduled"),
        (["sent", "retry"], T0, "scheduled"),
        (["pending", "cancelled"], T0, "scheduled"),
        (["sending"], T0, "sending"),
        (["sending", "pending"], T0, "sending"),
        (["sent", "sending"], T0, "sending"),
        (["dead", "sending", "cancelled"], T0, "sending"),
        (["sent"], T0, "posted"),
        (["sent", "sent"], T0, "posted"),
        (["sent", "cancelled"], T0, "posted"),
        (["cancelled", "sent", "cancelled"], T0, "posted"),
        (["sent", "dead"], T0, "partial"),
        (["sent", "dead:expired"], T0, "partial"),
        (["sent", "dead", "cancelled"], T0, "partial"),
        (["dead"], T0, "failed"),
        (["dead", "dead:expired"], T0, "failed"),
        (["dead", "cancelled"], T0, "failed"),
        (["dead:expired"], T0, "expired"),
        (["dead:expired", "dead:expired"], T0, "expired"),
        (["dead:expired", "cancelled"], T0, "expired"),
        (["cancelled"], T0, "cancelled"),
        (["cancelled", "cancelled"], None, "cancelled"),
    ],
)
def test_derive_status(states: list[str], scheduled: int | None, expected: str) -> None:
    deliveries = [d(*s.split(":")) for s in states]
    assert derive_status(deliveries, scheduled) == PostStatus(expected)
    post = Post(ID_A, "x", CREATED, scheduled, "UTC", None, None, {}, deliveries)
    assert post.status == PostStatus(expected)


def blocked_on(state: str) -> Delivery:
    """A waiting delivery whose chain stops at a parent in `state`."""
    delivery = d("pending")
    delivery.blocked = True
    delivery.waiting_on = WaitingOn(ID_B, 2, "nostr", state, "boom")
    return delivery


@pytest.mark.parametrize(
    ("deliveries", "expected"),
    [
        ([blocked_on("dead")], "blocked"),
        ([blocked_on("cancelled")], "blocked"),
        ([blocked_on("deleted")], "blocked"),
        ([blocked_on("pending")], "scheduled"),  # a parent still on its way: just waiting
        ([blocked_on("retry")], "scheduled"),
        ([blocked_on("dead"), d("pending")], "scheduled"),  # another platform still goes
        ([blocked_on("dead"), d("sent")], "blocked"),  # done on one platform, stuck on another
        ([blocked_on("dead"), d("sending")], "sending"),
    ],
)
def test_derive_status_of_thread_parts(deliveries: list[Delivery], expected: str) -> None:
    assert derive_status(deliveries, T0) == PostStatus(expected)


def test_every_status_is_reachable() -> None:
    seen = {
        derive_status([blocked_on("dead")], T0),
        derive_status([d("pending")], None),
        derive_status([d("pending")], T0),
        derive_status([d("sending")], T0),
        derive_status([d("sent")], T0),
        derive_status([d("sent"), d("dead")], T0),
        derive_status([d("dead")], T0),
        derive_status([d("cancelled")], T0),
        derive_status([d("dead", "expired")], T0),
    }
    assert seen == set(PostStatus)


def test_post_platforms_in_canonical_order() -> None:
    post = Post(ID_A, "x", CREATED, T0, "UTC", None, None, {})
    post.deliveries = [d("pending", platform=p) for p in ("bluesky", "nostr", "mastodon")]
    assert post.platforms == ["nostr", "mastodon", "bluesky"]
    assert post.account == "default"
