"""Every SQL statement about recurring schedules and their occurrences."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from plurcast.models import Schedule
from plurcast.store.base import UNSENT, Database, by_dialect

_COLUMNS = (
    "id, content, targets, metadata, cron, every_seconds, timezone, anchor_ms, until_ms, "
    "max_count, posted, next_run_at_ms, misfire, grace_seconds, state, created_at_ms, "
    "last_run_at_ms"
)


def _schedule(row: Any) -> Schedule:
    return Schedule(
        row[0],
        row[1],
        [tuple(t) for t in json.loads(row[2])],
        json.loads(row[3]),
        *row[4:],
    )


def insert(conn: Database, s: Schedule, now_ms: int, media: Sequence[str] = ()) -> None:
    """A new schedule and the images its posts will need; the caller owns the transaction."""
    conn.execute(
        f"INSERT INTO schedules ({_COLUMNS}, updated_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            s.id,
            s.content,
            json.dumps(s.targets),
            json.dumps(s.metadata, ensure_ascii=False),
            s.cron,
            s.every_seconds,
            s.timezone,
            s.anchor_ms,
            s.until_ms,
            s.max_count,
            s.posted,
            s.next_run_at_ms,
            s.misfire,
            s.grace_seconds,
            s.state,
            s.created_at_ms,
            s.last_run_at_ms,
            now_ms,
        ),
    )
    conn.notify_work()
    if media:
        from plurcast.store import media as media_sql

        media_sql.add_schedule_media(conn, s.id, media)


def due(conn: Database, now_ms: int) -> list[Schedule]:
    """Schedules with an occurrence to decide. On PostgreSQL each is locked until the
    transaction ends (another host's daemon skips it, then sees its cursor advanced)."""
    lock = by_dialect(conn, sqlite="", postgresql=" FOR UPDATE SKIP LOCKED")
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE state = 'active' AND next_run_at_ms <= ? "
        f"ORDER BY next_run_at_ms{lock}",
        (now_ms,),
    )
    return [_schedule(r) for r in rows]


def next_run_ms(conn: Database) -> int | None:
    row = conn.execute(
        "SELECT min(next_run_at_ms) FROM schedules WHERE state = 'active'"
    ).fetchone()
    return None if row[0] is None else int(row[0])


def any_due(conn: Database, now_ms: int) -> bool:
    """Whether an active schedule has an occurrence due by `now_ms` (a read, no lock)."""
    nxt = next_run_ms(conn)
    return nxt is not None and nxt <= now_ms


def record_occurrence(
    conn: Database,
    schedule_id: str,
    occurrence_ms: int,
    now_ms: int,
    fate: str,
    post_id: str | None,
    reason: str | None,
) -> bool:
    """Note an occurrence's fate once; False when it was already decided (by anyone)."""
    cur = conn.execute(
        "INSERT INTO occurrences (schedule_id, occurrence_at_ms, decided_at_ms, fate, post_id, "
        "reason) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (schedule_id, occurrence_ms, now_ms, fate, post_id, reason),
    )
    return cur.rowcount == 1


def advance(
    conn: Database,
    schedule_id: str,
    next_run_ms_: int | None,
    posted: int,
    state: str,
    now_ms: int,
) -> None:
    conn.execute(
        "UPDATE schedules SET next_run_at_ms = ?, posted = posted + ?, state = ?, "
        "last_run_at_ms = ?, updated_at_ms = ? WHERE id = ?",
        (next_run_ms_, posted, state, now_ms, now_ms, schedule_id),
    )


def set_state(
    conn: Database, schedule_id: str, state: str, now_ms: int, *, clear_next: bool = False
) -> None:
    conn.execute(
        "UPDATE schedules SET state = ?, updated_at_ms = ?, "
        "next_run_at_ms = CASE WHEN ? THEN NULL ELSE next_run_at_ms END WHERE id = ?",
        (state, now_ms, clear_next, schedule_id),
    )
    if state == "active":
        conn.notify_work()


def all_schedules(conn: Database) -> list[Schedule]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM schedules "
        "ORDER BY state != 'active', next_run_at_ms IS NULL, next_run_at_ms, created_at_ms"
    )
    return [_schedule(r) for r in rows]


def get(conn: Database, schedule_id: str) -> Schedule:
    row = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
    return _schedule(row)


def find_ids(conn: Database, prefix: str, limit: int = 2) -> list[str]:
    rows = conn.execute(
        by_dialect(
            conn,
            sqlite="SELECT id FROM schedules WHERE id GLOB ? || '*' ORDER BY id LIMIT ?",
            postgresql="SELECT id FROM schedules WHERE id LIKE ? || '%' ORDER BY id LIMIT ?",
        ),
        (prefix, limit),
    )
    return [r[0] for r in rows]


def occurrences(
    conn: Database, schedule_id: str
) -> list[tuple[int, int, str, str | None, str | None]]:
    """(occurrence, decided, fate, post id, reason), oldest first."""
    rows = conn.execute(
        "SELECT occurrence_at_ms, decided_at_ms, fate, post_id, reason FROM occurrences "
        "WHERE schedule_id = ? ORDER BY occurrence_at_ms",
        (schedule_id,),
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def waiting_post_ids(conn: Database, schedule_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT p.id FROM posts p JOIN deliveries d ON d.post_id = p.id "
        f"WHERE p.schedule_id = ? AND d.state IN {UNSENT}",
        (schedule_id,),
    )
    return [r[0] for r in rows]
