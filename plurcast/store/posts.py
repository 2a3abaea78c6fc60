"""Every SQL statement about posts and their deliveries, used by `plurcast.queue`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from plurcast.bulk import no_cycle_collection
from plurcast.models import Attempt, Delivery, DeliveryState, Post
from plurcast.platforms import registry
from plurcast.store.deliveries import UNSENT, WAITING

# One row per post, its deliveries folded into a JSON array by SQLite: half the rows
# and a third of the Python objects of a JOIN (listing 10,000 posts: ~75 ms vs ~120 ms).
_POST_ROW = """
    SELECT p.id, p.content, p.created_at_ms, p.scheduled_at_ms, p.timezone, p.schedule_id,
           p.occurrence_at_ms, p.metadata,
           (SELECT json_group_array(json_array(
                d.id, d.platform, d.account, d.state, d.due_at_ms, d.attempts, d.remote_id,
                d.remote_url, d.sent_at_ms, d.last_error, d.error_kind,
                d.payload IS NOT NULL OR d.attempts > 0, d.payload IS NOT NULL))
            FROM deliveries d WHERE d.post_id = p.id) AS deliveries
    FROM posts p
"""
_ORDER = "ORDER BY p.scheduled_at_ms IS NULL, p.scheduled_at_ms, p.created_at_ms, p.id"
_TIME_ORDER = "ORDER BY p.scheduled_at_ms, p.created_at_ms, p.id"  # drafts left out
_STATES = {state.value: state for state in DeliveryState}


@dataclass(frozen=True)
class NewPost:
    id: str
    content: str
    created_at_ms: int
    scheduled_at_ms: int | None
    timezone: str
    targets: Sequence[tuple[str, str]]  # (platform, account)
    metadata: str = "{}"
    schedule_id: str | None = None
    occurrence_at_ms: int | None = None
    due_at_ms: int | None = None  # default: scheduled_at_ms (a catch-up is due now, not then)


def insert_post(conn: sqlite3.Connection, post: NewPost) -> None:
    """One post and its deliveries; the caller owns the transaction."""
    conn.execute(
        "INSERT INTO posts (id, content, created_at_ms, scheduled_at_ms, timezone, metadata, "
        "updated_at_ms, schedule_id, occurrence_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            post.id,
            post.content,
            post.created_at_ms,
            post.scheduled_at_ms,
            post.timezone,
            post.metadata,
            post.created_at_ms,
            post.schedule_id,
            post.occurrence_at_ms,
        ),
    )
    conn.executemany(
        "INSERT INTO deliveries (post_id, platform, account, due_at_ms, updated_at_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (
                post.id,
                platform,
                account,
                post.scheduled_at_ms if post.due_at_ms is None else post.due_at_ms,
                post.created_at_ms,
            )
            for platform, account in post.targets
        ],
    )


def latest_waiting_time_ms(conn: sqlite3.Connection, excluding: str = "") -> int | None:
    """The latest time at which scheduled work is still waiting (for random: placement),
    leaving out the post `excluding` (the one being moved)."""
    row = conn.execute(
        f"SELECT max(due_at_ms) FROM deliveries WHERE state IN {WAITING} "
        "AND due_at_ms IS NOT NULL AND post_id != ?",
        (excluding,),
    ).fetchone()
    return None if row[0] is None else int(row[0])


def held_times_ms(
    conn: sqlite3.Connection,
    targets: Sequence[tuple[str, str]],
    after_ms: int,
    moving: str | None = None,
) -> set[int]:
    """Times after `after_ms` of posts that hold a posting slot of any of these
    (platform, account) targets: a delivery there neither cancelled nor given up.
    `moving` (a post being rescheduled) holds none."""
    if not targets:
        return set()
    arms = " OR ".join("(d.platform = ? AND d.account = ?)" for _ in targets)
    params: list[object] = [after_ms, *(v for target in targets for v in target)]
    skip = ""
    if moving is not None:
        skip = "AND p.id <> ? "
        params.append(moving)
    rows = conn.execute(
        "SELECT DISTINCT p.scheduled_at_ms FROM posts p JOIN deliveries d ON d.post_id = p.id "
        "WHERE p.scheduled_at_ms > ? AND d.state NOT IN ('cancelled', 'dead') "
        f"AND ({arms}) {skip}",
        params,
    )
    return {int(r[0]) for r in rows}


def posts_at(
    conn: sqlite3.Connection, times_ms: Sequence[int], targets: Sequence[tuple[str, str]]
) -> list[Post]:
    """Posts scheduled at one of these times that hold a slot of one of these targets."""
    if not times_ms or not targets:
        return []
    marks = ",".join("?" * len(times_ms))
    arms = " OR ".join("(d.platform = ? AND d.account = ?)" for _ in targets)
    sql = (
        f"{_POST_ROW} WHERE p.scheduled_at_ms IN ({marks}) AND EXISTS (SELECT 1 FROM "
        f"deliveries d WHERE d.post_id = p.id AND d.state NOT IN ('cancelled', 'dead') "
        f"AND ({arms})) {_ORDER}"
    )
    params = [*times_ms, *(v for target in targets for v in target)]
    return _posts_from_rows(conn.execute(sql, params))


def find_post_ids(conn: sqlite3.Connection, prefix: str, limit: int = 2) -> list[str]:
    """Ids starting with `prefix` (lower-case hex and dashes only, checked by the caller)."""
    rows = conn.execute(
        "SELECT id FROM posts WHERE id GLOB ? ORDER BY id LIMIT ?", (prefix + "*", limit)
    )
    return [r[0] for r in rows]


def _posts_from_rows(rows: Iterable[Any]) -> list[Post]:
    """Posts from `_POST_ROW` rows."""
    with no_cycle_collection():
        return _build_posts(rows)


def _build_posts(rows: Iterable[Any]) -> list[Post]:
    """Positional construction because this loop is hot."""
    posts: list[Post] = []
    append = posts.append
    states = _STATES
    loads = json.loads
    for r in rows:
        deliveries = [
            Delivery(
                d[0],
                d[1],
                d[2],
                states[d[3]],
                d[4],
                d[5],
                d[6],
                d[7],
                d[8],
                d[9],
                d[10],
                bool(d[11]),
                bool(d[12]),
                [],
            )
            for d in loads(r[8])
        ]
        if len(deliveries) > 1:
            deliveries.sort(key=lambda d: (registry.ORDER[d.platform], d.account))
        metadata = {} if r[7] == "{}" else loads(r[7])
        append(Post(r[0], r[1], r[2], r[3], r[4], r[5], r[6], metadata, deliveries))
    return posts


def select_posts(
    conn: sqlite3.Connection,
    *,
    waiting_only: bool,
    platform: str | None = None,
    with_dead_only: bool = False,
) -> list[Post]:
    """Posts with all their deliveries, by time (drafts last).

    `waiting_only` narrows to posts with a time and waiting work (what `list`
    shows); `with_dead_only` to posts with a delivery that gave up.
    """
    where: list[str] = []
    params: list[object] = []
    order = _ORDER
    if waiting_only:
        # In time order along posts_by_time, each post asking its own deliveries (their
        # unique index): `p.id IN (every waiting delivery)` looked up and sorted every post.
        where.append(
            "p.scheduled_at_ms IS NOT NULL AND EXISTS (SELECT 1 FROM deliveries w "
            f"WHERE w.post_id = p.id AND w.state IN {WAITING})"
        )
        order = _TIME_ORDER
    if with_dead_only:
        where.append("p.id IN (SELECT post_id FROM deliveries WHERE state = 'dead')")
    if platform:
        where.append("p.id IN (SELECT post_id FROM deliveries WHERE platform = ?)")
        params.append(platform)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return _posts_from_rows(conn.execute(f"{_POST_ROW} {clause} {order}", params))


def get_posts(conn: sqlite3.Connection, ids: Sequence[str]) -> list[Post]:
    """The given posts with their deliveries, in time order."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    sql = f"{_POST_ROW} WHERE p.id IN ({marks}) {_ORDER}"
    return _posts_from_rows(conn.execute(sql, list(ids)))


def load_history(conn: sqlite3.Connection, post: Post) -> None:
    """Attach each delivery's attempt log, oldest first."""
    by_id = {d.id: d for d in post.deliveries}
    rows = conn.execute(
        "SELECT delivery_id, number, started_at_ms, finished_at_ms, outcome, error, error_kind, "
        "detail FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE post_id = ?) "
        "ORDER BY started_at_ms, id",
        (post.id,),
    )
    for r in rows:
        by_id[r[0]].history.append(Attempt(*r[1:]))


def cancel_unsent(conn: sqlite3.Connection, post_ids: Sequence[str], now_ms: int) -> int:
    """Cancel the deliveries of these posts that nothing can have sent: no payload stored.

    A delivery with a stored payload may already be out (its send timed out, or its
    sender died before recording) and is left to be delivered and recorded. One that is
    claimed but not yet prepared is safe to cancel: the engine's prepare step publishes
    only a delivery still `sending` — the lease stays, for that check to find.
    """
    marks = ",".join("?" * len(post_ids))
    cur = conn.execute(
        f"UPDATE deliveries SET state = 'cancelled', updated_at_ms = ? "
        f"WHERE post_id IN ({marks}) AND state IN {UNSENT} "
        f"AND payload IS NULL",
        [now_ms, *post_ids],
    )
    conn.execute(f"UPDATE posts SET updated_at_ms = ? WHERE id IN ({marks})", [now_ms, *post_ids])
    return cur.rowcount


def set_schedule(conn: sqlite3.Connection, post_id: str, when_ms: int, now_ms: int) -> None:
    """Move a post and its waiting deliveries to a new time."""
    conn.execute(
        "UPDATE posts SET scheduled_at_ms = ?, updated_at_ms = ? WHERE id = ?",
        (when_ms, now_ms, post_id),
    )
    conn.execute(
        f"UPDATE deliveries SET due_at_ms = ?, updated_at_ms = ? "
        f"WHERE post_id = ? AND state IN {WAITING}",
        (when_ms, now_ms, post_id),
    )


def set_content(conn: sqlite3.Connection, post_id: str, content: str, now_ms: int) -> None:
    conn.execute(
        "UPDATE posts SET content = ?, updated_at_ms = ? WHERE id = ?", (content, now_ms, post_id)
    )


def set_metadata(conn: sqlite3.Connection, post_id: str, metadata: str, now_ms: int) -> None:
    conn.execute(
        "UPDATE posts SET metadata = ?, updated_at_ms = ? WHERE id = ?",
        (metadata, now_ms, post_id),
    )


def delete_posts(conn: sqlite3.Connection, post_ids: Sequence[str]) -> int:
    marks = ",".join("?" * len(post_ids))
    return conn.execute(f"DELETE FROM posts WHERE id IN ({marks})", list(post_ids)).rowcount
