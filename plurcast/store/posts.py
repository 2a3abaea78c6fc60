"""Every SQL statement that writes or changes posts and their deliveries, and the small
lookups that answer with ids or times, not posts (an id by its prefix, a thread's parts,
the times already taken).

Posts read whole, with their deliveries, come from `plurcast.store.listing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from plurcast.store.base import UNSENT, WAITING, Database, by_dialect
from plurcast.value import Value


class NewPost(Value):
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
    thread_id: str | None = None
    thread_part: int | None = None
    texts: Mapping[tuple[str, str], str] = MappingProxyType({})  # a target's own text
    parents: Mapping[tuple[str, str], int] = MappingProxyType({})  # the delivery answered
    media: Sequence[str] = ()  # the sha256 of every image file the post refers to


def insert_post(conn: Database, post: NewPost) -> dict[tuple[str, str], int]:
    """One post, its deliveries and the images it needs; the caller owns the transaction.
    The delivery ids.

    A delivery with a parent starts blocked unless that parent is already sent with its
    remote id; the parent's own record step unblocks it later (G6). (On PostgreSQL the
    parent's row is locked here, so that its record step cannot miss this one.)
    """
    conn.execute(
        "INSERT INTO posts (id, content, created_at_ms, scheduled_at_ms, timezone, metadata, "
        "updated_at_ms, schedule_id, occurrence_at_ms, thread_id, thread_part) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            post.thread_id,
            post.thread_part,
        ),
    )
    due = post.scheduled_at_ms if post.due_at_ms is None else post.due_at_ms
    ids: dict[tuple[str, str], int] = {}
    for target in post.targets:
        parent = post.parents.get(target)
        if parent is not None:
            # PostgreSQL: wait for (and hold) the parent's row, so that its record step either
            # committed before the check below sees it, or runs after and sees this child.
            conn.execute(
                "SELECT 1 FROM deliveries WHERE id = ?"
                + by_dialect(conn, sqlite="", postgresql=" FOR UPDATE"),
                (parent,),
            )
        row = conn.execute(
            "INSERT INTO deliveries (post_id, platform, account, due_at_ms, updated_at_ms, "
            "content, parent_id, blocked) VALUES (?, ?, ?, ?, ?, ?, ?, "
            "CASE WHEN CAST(? AS BIGINT) IS NULL THEN 0 "
            "WHEN EXISTS (SELECT 1 FROM deliveries x WHERE x.id = ? AND x.state = 'sent' "
            "AND x.remote_id IS NOT NULL) THEN 0 ELSE 1 END) RETURNING id",
            (post.id, *target, due, post.created_at_ms, post.texts.get(target), *[parent] * 3),
        ).fetchone()
        ids[target] = int(row[0])
    conn.notify_work()
    if post.media:
        from plurcast.store import media

        media.add_post_media(conn, post.id, post.media)
    return ids


def latest_waiting_time_ms(conn: Database, excluding: str = "") -> int | None:
    """The latest time at which scheduled work is still waiting (for random: placement),
    leaving out the post `excluding` (the one being moved)."""
    row = conn.execute(
        f"SELECT max(due_at_ms) FROM deliveries WHERE state IN {WAITING} "
        "AND due_at_ms IS NOT NULL AND post_id != ?",
        (excluding,),
    ).fetchone()
    return None if row[0] is None else int(row[0])


def held_times_ms(
    conn: Database,
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


def thread_post_ids(conn: Database, thread_id: str, from_part: int = 1) -> list[str]:
    """The posts of a thread from part `from_part` on, in order."""
    rows = conn.execute(
        "SELECT id FROM posts WHERE thread_id = ? AND thread_part >= ? ORDER BY thread_part",
        (thread_id, from_part),
    )
    return [r[0] for r in rows]


def thread_part_id(conn: Database, thread_id: str, part: int) -> str | None:
    row = conn.execute(
        "SELECT id FROM posts WHERE thread_id = ? AND thread_part = ?", (thread_id, part)
    ).fetchone()
    return None if row is None else str(row[0])


def find_post_ids(conn: Database, prefix: str, limit: int = 2) -> list[str]:
    """Ids starting with `prefix` (lower-case hex and dashes only, checked by the caller)."""
    rows = conn.execute(
        by_dialect(
            conn,
            sqlite="SELECT id FROM posts WHERE id GLOB ? || '*' ORDER BY id LIMIT ?",
            postgresql="SELECT id FROM posts WHERE id LIKE ? || '%' ORDER BY id LIMIT ?",
        ),
        (prefix, limit),
    )
    return [r[0] for r in rows]


def cancel_unsent(conn: Database, post_ids: Sequence[str], now_ms: int) -> int:
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


def set_schedule(conn: Database, post_id: str, when_ms: int, now_ms: int) -> None:
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
    conn.notify_work()


def set_content(conn: Database, post_id: str, content: str, now_ms: int) -> None:
    conn.execute(
        "UPDATE posts SET content = ?, updated_at_ms = ? WHERE id = ?", (content, now_ms, post_id)
    )


def set_metadata(conn: Database, post_id: str, metadata: str, now_ms: int) -> None:
    conn.execute(
        "UPDATE posts SET metadata = ?, updated_at_ms = ? WHERE id = ?",
        (metadata, now_ms, post_id),
    )


def set_delivery_content(
    conn: Database, post_id: str, platform: str, content: str | None, now_ms: int
) -> None:
    """A delivery's own text (None: the post's)."""
    conn.execute(
        "UPDATE deliveries SET content = ?, updated_at_ms = ? WHERE post_id = ? AND platform = ?",
        (content, now_ms, post_id, platform),
    )


def delete_posts(conn: Database, post_ids: Sequence[str]) -> int:
    marks = ",".join("?" * len(post_ids))
    return conn.execute(f"DELETE FROM posts WHERE id IN ({marks})", list(post_ids)).rowcount
