"""Numbered schema migrations, applied on open inside one write transaction.

`PRAGMA user_version` is the schema number. A connection whose schema is current
never imports sqlite-utils (it costs ~75 ms, most of the CLIs' start-up budget);
one that is behind takes the write lock, re-reads the version (another process may
have migrated meanwhile), and runs each pending step inside a sqlite-utils savepoint.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

Migration = Callable[[Any], None]


def _m001_queue(db: Any) -> None:
    """Posts, their per-(platform, account) deliveries, the attempt log, daemon heartbeats."""
    db.execute(
        """
        CREATE TABLE posts (
            id               TEXT PRIMARY KEY,
            content          TEXT NOT NULL,
            created_at_ms    INTEGER NOT NULL,
            scheduled_at_ms  INTEGER,            -- NULL: a draft
            timezone         TEXT NOT NULL,      -- the zone the user meant
            schedule_id      TEXT,               -- set for occurrences of a recurring schedule
            occurrence_at_ms INTEGER,
            metadata         TEXT NOT NULL DEFAULT '{}',
            updated_at_ms    INTEGER NOT NULL,
            UNIQUE (schedule_id, occurrence_at_ms)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE deliveries (
            id                  INTEGER PRIMARY KEY,
            post_id             TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            platform            TEXT NOT NULL
                                CHECK (platform IN ('nostr', 'mastodon', 'bluesky')),
            account             TEXT NOT NULL DEFAULT 'default',
            state               TEXT NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sending', 'sent', 'retry',
                                                 'dead', 'cancelled')),
            due_at_ms           INTEGER,         -- NULL while the post is a draft
            attempts            INTEGER NOT NULL DEFAULT 0,
            lease_owner         TEXT,
            lease_expires_at_ms INTEGER,
            payload             TEXT,            -- prepared once, re-sent byte for byte
            remote_id           TEXT,
            remote_url          TEXT,
            sent_at_ms          INTEGER,
            last_error          TEXT,
            error_kind          TEXT,
            updated_at_ms       INTEGER NOT NULL,
            UNIQUE (post_id, platform, account)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE attempts (
            id             INTEGER PRIMARY KEY,
            delivery_id    INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
            number         INTEGER NOT NULL,
            started_at_ms  INTEGER NOT NULL,
            finished_at_ms INTEGER,
            outcome        TEXT NOT NULL,
            error          TEXT,
            error_kind     TEXT,
            detail         TEXT,                 -- JSON, e.g. per-relay answers
            worker         TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE heartbeats (
            owner         TEXT PRIMARY KEY,
            host          TEXT NOT NULL,
            pid           INTEGER NOT NULL,
            started_at_ms INTEGER NOT NULL,
            beat_at_ms    INTEGER NOT NULL,
            version       TEXT NOT NULL
        )
        """
    )
    db["posts"].create_index(["scheduled_at_ms"], index_name="posts_by_time")
    db["deliveries"].create_index(["state", "due_at_ms"], index_name="deliveries_due")
    db["attempts"].create_index(["delivery_id"], index_name="attempts_by_delivery")


def _m002_rate_limits(db: Any) -> None:
    """Sliding-window slots reserved at claim time, and holds a platform asked for."""
    db.execute(
        """
        CREATE TABLE rate_slots (
            id          INTEGER PRIMARY KEY,
            platform    TEXT NOT NULL,
            account     TEXT NOT NULL,
            at_ms       INTEGER NOT NULL,
            delivery_id INTEGER
        )
        """
    )
    db.execute(
        """
        CREATE TABLE rate_holds (
            platform TEXT NOT NULL,
            account  TEXT NOT NULL,
            until_ms INTEGER NOT NULL,
            reason   TEXT,
            PRIMARY KEY (platform, account)
        )
        """
    )
    db["rate_slots"].create_index(["platform", "account", "at_ms"], index_name="rate_slots_window")
    # Slots in the window, kept exact by triggers: counting them would cost O(window) per claim.
    db.execute(
        """
        CREATE TABLE rate_counts (
            platform TEXT NOT NULL,
            account  TEXT NOT NULL,
            used     INTEGER NOT NULL,
            PRIMARY KEY (platform, account)
        )
        """
    )
    db.execute(
        """
        CREATE TRIGGER rate_slot_added AFTER INSERT ON rate_slots BEGIN
            INSERT INTO rate_counts (platform, account, used) VALUES (new.platform, new.account, 1)
            ON CONFLICT (platform, account) DO UPDATE SET used = used + 1;
        END
        """
    )
    db.execute(
        """
        CREATE TRIGGER rate_slot_removed AFTER DELETE ON rate_slots BEGIN
            UPDATE rate_counts SET used = used - 1
            WHERE platform = old.platform AND account = old.account;
        END
        """
    )


def _m003_schedules(db: Any) -> None:
    """Recurring schedules, and the fate of every one of their occurrences."""
    db.execute(
        """
        CREATE TABLE schedules (
            id             TEXT PRIMARY KEY,
            content        TEXT NOT NULL,
            targets        TEXT NOT NULL,     -- JSON [[platform, account], …]
            metadata       TEXT NOT NULL DEFAULT '{}',
            cron           TEXT,
            every_seconds  INTEGER,
            timezone       TEXT NOT NULL,
            anchor_ms      INTEGER NOT NULL,
            until_ms       INTEGER,
            max_count      INTEGER,
            posted         INTEGER NOT NULL DEFAULT 0,
            next_run_at_ms INTEGER,           -- NULL once finished or cancelled
            misfire        TEXT NOT NULL DEFAULT 'latest'
                           CHECK (misfire IN ('latest', 'skip', 'all')),
            grace_seconds  INTEGER NOT NULL,
            state          TEXT NOT NULL DEFAULT 'active'
                           CHECK (state IN ('active', 'paused', 'finished', 'cancelled')),
            created_at_ms  INTEGER NOT NULL,
            updated_at_ms  INTEGER NOT NULL,
            last_run_at_ms INTEGER,
            CHECK ((cron IS NULL) != (every_seconds IS NULL))
        )
        """
    )
    db.execute(
        """
        CREATE TABLE occurrences (
            schedule_id      TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
            occurrence_at_ms INTEGER NOT NULL,
            decided_at_ms    INTEGER NOT NULL,
            fate             TEXT NOT NULL CHECK (fate IN ('posted', 'skipped')),
            post_id          TEXT REFERENCES posts(id) ON DELETE SET NULL,
            reason           TEXT,
            PRIMARY KEY (schedule_id, occurrence_at_ms)
        )
        """
    )
    db["schedules"].create_index(["state", "next_run_at_ms"], index_name="schedules_due")


def _m004_due_by_platform(db: Any) -> None:
    """Due deliveries per platform in time order: each platform has its own slots, and a
    claim asks each platform with a free slot for just that many."""
    db["deliveries"].create_index(
        ["state", "platform", "due_at_ms"], index_name="deliveries_due_by_platform"
    )


def _m005_threads(db: Any) -> None:
    """Threads and replies (G6): a post's place in its thread, a delivery's parent there.

    A delivery with a parent (the previous part on the same platform and account, or a post of
    ours it answers) is `blocked` until that parent is sent with its remote id; the claim index
    leads with `blocked`, so blocked deliveries are never read by a claim or a wake-up.
    `content` is a delivery's own text when it differs from the post's (per-platform parts,
    --variant); `remote_cid` the Bluesky record's CID, which a reply to it must name.
    """
    db.execute("ALTER TABLE posts ADD COLUMN thread_id TEXT")
    db.execute("ALTER TABLE posts ADD COLUMN thread_part INTEGER")
    db.execute(
        "ALTER TABLE deliveries ADD COLUMN parent_id INTEGER "
        "REFERENCES deliveries(id) ON DELETE SET NULL"
    )
    db.execute("ALTER TABLE deliveries ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE deliveries ADD COLUMN content TEXT")
    db.execute("ALTER TABLE deliveries ADD COLUMN remote_cid TEXT")
    db["posts"].create_index(["thread_id", "thread_part"], index_name="posts_by_thread")
    db["deliveries"].create_index(["parent_id"], index_name="deliveries_by_parent")
    db.execute("DROP INDEX deliveries_due_by_platform")
    db["deliveries"].create_index(
        ["state", "platform", "blocked", "due_at_ms"], index_name="deliveries_claimable"
    )


def _m006_import_keys(db: Any) -> None:
    """Which import key names which post: plur-import skips a row whose key is here, so a
    file imported twice makes no duplicates; plur-export writes the key back."""
    db.execute(
        """
        CREATE TABLE import_keys (
            key            TEXT PRIMARY KEY,
            post_id        TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            imported_at_ms INTEGER NOT NULL
        )
        """
    )
    db["import_keys"].create_index(["post_id"], index_name="import_keys_by_post")


def _m007_media(db: Any) -> None:
    """The images each post and each recurring schedule needs from the media store, so that
    collecting the ones nothing needs is one indexed query, not a read of every post; and the
    images' bytes when the queue is a shared PostgreSQL database (on SQLite they are files
    beside the database, and `media` stays empty)."""
    db.execute(
        """
        CREATE TABLE post_media (
            post_id TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            sha256  TEXT NOT NULL,
            PRIMARY KEY (post_id, sha256)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE schedule_media (
            schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
            sha256      TEXT NOT NULL,
            PRIMARY KEY (schedule_id, sha256)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE media (
            sha256        TEXT PRIMARY KEY,
            size          INTEGER NOT NULL,
            created_at_ms INTEGER NOT NULL,
            data          BLOB
        )
        """
    )


# The deliveries table as migration 5 left it, less the CHECK on `platform`.
_DELIVERIES_ANY_PLATFORM = """
CREATE TABLE deliveries_new (
    id                  INTEGER PRIMARY KEY,
    post_id             TEXT NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    platform            TEXT NOT NULL,
    account             TEXT NOT NULL DEFAULT 'default',
    state               TEXT NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'sending', 'sent', 'retry',
                                         'dead', 'cancelled')),
    due_at_ms           INTEGER,
    attempts            INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_expires_at_ms INTEGER,
    payload             TEXT,
    remote_id           TEXT,
    remote_url          TEXT,
    sent_at_ms          INTEGER,
    last_error          TEXT,
    error_kind          TEXT,
    updated_at_ms       INTEGER NOT NULL,
    parent_id           INTEGER REFERENCES deliveries(id) ON DELETE SET NULL,
    blocked             INTEGER NOT NULL DEFAULT 0,
    content             TEXT,
    remote_cid          TEXT,
    UNIQUE (post_id, platform, account)
)
"""


def _m008_any_platform(db: Any) -> None:
    """Deliveries to any platform in the registry: the schema names none (the registry
    checks every name before a row is written), so a new platform needs no migration.

    SQLite cannot drop a CHECK in place; this is its documented way to change a table
    (sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema Changes"): a new
    table, every row copied with its id (attempts and replies point at ids), the old one
    dropped, the new one renamed, its indexes made again from their saved SQL. `migrate`
    runs it with foreign keys off (else the DROP would delete every attempt with it) and
    checks them all before committing.
    """
    indexes = [
        row[0]
        for row in db.execute(
            "SELECT sql FROM sqlite_master "
            "WHERE tbl_name = 'deliveries' AND type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
    ]
    columns = ", ".join(row[1] for row in db.execute("PRAGMA table_info(deliveries)").fetchall())
    db.execute(_DELIVERIES_ANY_PLATFORM)
    db.execute(f"INSERT INTO deliveries_new ({columns}) SELECT {columns} FROM deliveries")
    db.execute("DROP TABLE deliveries")
    db.execute("ALTER TABLE deliveries_new RENAME TO deliveries")
    for sql in indexes:
        db.execute(sql)


def _m009_schedule_import_keys(db: Any) -> None:
    """Which import key names which recurring schedule: what `import_keys` is for posts, so a
    file with recurring rows imported twice makes no schedule twice."""
    db.execute(
        """
        CREATE TABLE schedule_import_keys (
            key            TEXT PRIMARY KEY,
            schedule_id    TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
            imported_at_ms INTEGER NOT NULL
        )
        """
    )
    db["schedule_import_keys"].create_index(
        ["schedule_id"], index_name="schedule_import_keys_by_schedule"
    )


MIGRATIONS: tuple[Migration, ...] = (
    _m001_queue,
    _m002_rate_limits,
    _m003_schedules,
    _m004_due_by_platform,
    _m005_threads,
    _m006_import_keys,
    _m007_media,
    _m008_any_platform,
    _m009_schedule_import_keys,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations atomically; returns the number applied."""
    import sqlite_utils

    # A step may rebuild a table that others reference (SQLite's ALTER procedure): foreign
    # keys are off until the end (the pragma is a no-op inside a transaction), and every
    # reference is checked before the commit instead.
    enforced = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
            for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                with db.atomic():
                    step(db)
                conn.execute(f"PRAGMA user_version = {number}")
            broken = conn.execute("PRAGMA foreign_key_check").fetchone()
            if broken is not None:
                raise sqlite3.IntegrityError(f"migration broke a reference: {tuple(broken)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if enforced else 'OFF'}")
    return SCHEMA_VERSION - version
