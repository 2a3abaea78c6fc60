"""Migration 8 on SQLite: `deliveries` rebuilt without its CHECK on `platform`, losing nothing.

A queue written by the version before (a thread, replies, attempts, rate slots, import keys,
every column of a delivery set) is opened by this one: every row of every table reads back
the same, every index is there again, references still hold and still cascade, and the
table takes a platform name the old CHECK refused. A reference already broken in the file
stops the migration before its commit, leaving the file as it was.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from plurcast.errors import RuntimeFailure
from plurcast.store import connection, migrations
from plurcast.store.connection import connect

BEFORE = migrations.MIGRATIONS.index(migrations._m008_any_platform)
POST_1 = "aaaaaaaa-1111-4111-8111-111111111111"
POST_2 = "aaaaaaaa-2222-4222-8222-222222222222"
OTHER = "bbbbbbbb-1111-4111-8111-111111111111"

# Rows as the version before wrote them: part 1 sent on nostr and mastodon, part 2 waiting
# on each (blocked behind part 1 on mastodon), a post of someone's thread's reply, attempts.
ROWS = (
    "INSERT INTO posts (id, content, created_at_ms, scheduled_at_ms, timezone, metadata, "
    "updated_at_ms, thread_id, thread_part) VALUES "
    f"('{POST_1}', 'part one', 1, 100, 'Europe/Berlin', '{{\"cw\": \"x\"}}', 2, '{POST_1}', 1), "
    f"('{POST_2}', 'part two', 1, 100, 'Europe/Berlin', '{{}}', 2, '{POST_1}', 2), "
    f"('{OTHER}', 'draft', 3, NULL, 'UTC', '{{}}', 3, NULL, NULL)",
    "INSERT INTO deliveries (id, post_id, platform, account, state, due_at_ms, attempts, "
    "lease_owner, lease_expires_at_ms, payload, remote_id, remote_url, sent_at_ms, last_error, "
    "error_kind, updated_at_ms, parent_id, blocked, content, remote_cid) VALUES "
    f"(7, '{POST_1}', 'nostr', 'default', 'sent', 100, 1, NULL, NULL, '{{\"id\": \"e1\"}}', "
    "'note1x', 'nostr:note1x', 150, NULL, NULL, 150, NULL, 0, NULL, NULL), "
    f"(9, '{POST_1}', 'mastodon', 'work', 'retry', 160, 2, NULL, NULL, '{{\"status\": 1}}', "
    "NULL, NULL, NULL, 'HTTP 503', 'transient', 170, NULL, 0, 'part one, shorter', NULL), "
    f"(12, '{POST_2}', 'nostr', 'default', 'sending', 100, 1, 'owner-1', 999, '{{}}', NULL, "
    "NULL, NULL, NULL, NULL, 180, 7, 0, NULL, NULL), "
    f"(13, '{POST_2}', 'mastodon', 'work', 'pending', 100, 0, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, 180, 9, 1, NULL, NULL), "
    f"(20, '{OTHER}', 'bluesky', 'default', 'pending', NULL, 0, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, 3, NULL, 0, NULL, 'bafycid')",
    "INSERT INTO attempts (id, delivery_id, number, started_at_ms, finished_at_ms, outcome, "
    "error, error_kind, detail, worker) VALUES "
    "(1, 7, 1, 140, 150, 'sent', NULL, NULL, '{\"ws://r\": null}', 'w1'), "
    "(2, 9, 1, 140, 150, 'retry', 'HTTP 503', 'transient', NULL, 'w1'), "
    "(3, 9, 2, 160, 170, 'retry', 'HTTP 503', 'transient', NULL, 'w2'), "
    "(4, 12, 1, 175, NULL, 'sending', NULL, NULL, NULL, 'w2')",
    "INSERT INTO rate_slots (platform, account, at_ms, delivery_id) VALUES "
    "('nostr', 'default', 140, 7), ('mastodon', 'work', 160, 9)",
    "INSERT INTO rate_holds (platform, account, until_ms, reason) VALUES "
    "('mastodon', 'work', 5000, 'HTTP 429')",
    f"INSERT INTO import_keys (key, post_id, imported_at_ms) VALUES ('row-1', '{POST_1}', 1)",
    "INSERT INTO heartbeats (owner, host, pid, started_at_ms, beat_at_ms, version) VALUES "
    "('owner-1', 'h', 42, 1, 2, '1.0')",
)


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def snapshot(path: Path) -> dict[str, object]:
    """Every table's rows, and every index and trigger as SQLite stores them."""
    with raw(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        shape: dict[str, object] = {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in sorted(tables)
        }
        shape["indexes and triggers"] = sorted(
            conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE type IN ('index', 'trigger')"
            ).fetchall(),
            key=str,
        )
        shape["columns"] = conn.execute("PRAGMA table_info(deliveries)").fetchall()
    return shape


@pytest.fixture
def older(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A queue file at the schema before migration 8, holding ROWS."""
    with monkeypatch.context() as m:
        steps = migrations.MIGRATIONS[:BEFORE]
        m.setattr(migrations, "MIGRATIONS", steps)
        m.setattr(migrations, "SCHEMA_VERSION", len(steps))
        m.setattr(connection, "SCHEMA_VERSION", len(steps))
        conn = connect(db_path)
        try:
            with conn.transaction():
                for statement in ROWS:
                    conn.execute(statement)
        finally:
            conn.close()
    return db_path


def test_the_rebuild_keeps_every_row_index_and_reference(
    older: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = migrations.MIGRATIONS[: BEFORE + 1]  # up to this one: later ones add tables
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(steps))
    monkeypatch.setattr(connection, "SCHEMA_VERSION", len(steps))
    before = snapshot(older)
    with raw(older) as conn:
        old_sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'deliveries'"
        ).fetchone()[0]
    assert "'mastodon'" in old_sql  # the CHECK this migration removes

    conn = connect(older)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    after = snapshot(older)
    assert after == before

    conn = connect(older)
    try:
        with conn.transaction():
            new_sql = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'deliveries'"
            ).fetchone()[0]
            assert "'nostr'" not in new_sql and "'mastodon'" not in new_sql
            conn.execute(  # a platform the old CHECK refused
                "INSERT INTO deliveries (post_id, platform, updated_at_ms) VALUES (?, 'fourth', 0)",
                (OTHER,),
            )
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                conn.execute("UPDATE deliveries SET state = 'lost' WHERE id = 7")
            with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
                conn.execute(
                    "INSERT INTO attempts (delivery_id, number, started_at_ms, outcome) "
                    "VALUES (404, 1, 0, 'sent')"
                )
            # References still act: a part's parent gone sets it NULL, a post gone takes
            # its deliveries and their attempts with it.
            conn.execute("DELETE FROM deliveries WHERE id = 9")
            assert conn.execute("SELECT parent_id FROM deliveries WHERE id = 13").fetchone() == (
                None,
            )
            conn.execute("DELETE FROM posts WHERE id = ?", (POST_1,))
            assert (
                conn.execute("SELECT count(*) FROM attempts WHERE delivery_id = 7").fetchone()[0]
                == 0
            )
            assert conn.execute("SELECT count(*) FROM import_keys").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_broken_reference_stops_the_migration_before_its_commit(older: Path) -> None:
    with raw(older) as conn:  # foreign keys are off on a plain connection
        conn.execute(
            "INSERT INTO attempts (delivery_id, number, started_at_ms, outcome) "
            "VALUES (404, 1, 0, 'sent')"
        )
    before = snapshot(older)
    with pytest.raises(RuntimeFailure, match="reference"):
        connect(older)
    assert snapshot(older) == before
    with raw(older) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == BEFORE
