"""Every SQL statement about posts and their deliveries, used by `plurcast.queue`."""

# No `from __future__ import annotations` here: the NamedTuples' field types are then
# objects, which typing takes as they are, not strings it compiles one by one (~55 K
# instructions a field, on every command's start-up; issue #16). Names not defined yet
# (or imported only for type checking) are quoted.
import json
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from plurcast.bulk import no_cycle_collection
from plurcast.models import WAITING as models_waiting
from plurcast.models import Attempt, Delivery, DeliveryState, Post, WaitingOn
from plurcast.platforms import registry
from plurcast.store.base import UNSENT, WAITING, Database, by_dialect

# One row per post, its deliveries folded into a JSON array by the database: half the rows
# and a third of the Python objects of a JOIN (listing 10,000 posts: ~75 ms vs ~120 ms).
_DELIVERY_FIELDS = """d.id, d.platform, d.account, d.state, d.due_at_ms, d.attempts, d.remote_id,
                d.remote_url, d.sent_at_ms, d.last_error, d.error_kind,
                d.payload IS NOT NULL OR d.attempts > 0, d.payload IS NOT NULL,
                d.parent_id, d.blocked, d.content"""
_POST_COLUMNS = """p.id, p.content, p.created_at_ms, p.scheduled_at_ms, p.timezone, p.schedule_id,
           p.occurrence_at_ms, p.metadata"""
_THREAD_COLUMNS = """p.thread_id, p.thread_part,
           CASE WHEN p.thread_id IS NULL THEN NULL
                ELSE (SELECT count(*) FROM posts t WHERE t.thread_id = p.thread_id) END,
           CASE WHEN p.thread_part > 1 THEN (SELECT t.id FROM posts t
                WHERE t.thread_id = p.thread_id AND t.thread_part = p.thread_part - 1) END"""
_POST_ROW_SQLITE = f"""
    SELECT {_POST_COLUMNS},
           (SELECT json_group_array(json_array({_DELIVERY_FIELDS}))
            FROM deliveries d WHERE d.post_id = p.id) AS deliveries,
           {_THREAD_COLUMNS}
    FROM posts p
"""
_POST_ROW_POSTGRESQL = f"""
    SELECT {_POST_COLUMNS},
           (SELECT coalesce(json_agg(json_build_array({_DELIVERY_FIELDS})), '[]')::text
            FROM deliveries d WHERE d.post_id = p.id) AS deliveries,
           {_THREAD_COLUMNS}
    FROM posts p
"""


def _post_row(conn: Database) -> str:
    return by_dialect(conn, sqlite=_POST_ROW_SQLITE, postgresql=_POST_ROW_POSTGRESQL)


# A thread's parts share their time: they are kept together, in order.
_ORDER = (
    "ORDER BY p.scheduled_at_ms IS NULL, p.scheduled_at_ms, p.created_at_ms, "
    "coalesce(p.thread_id, p.id), p.thread_part"
)
_TIME_ORDER = (  # drafts left out
    "ORDER BY p.scheduled_at_ms, p.created_at_ms, coalesce(p.thread_id, p.id), p.thread_part"
)
_STATES = {state.value: state for state in DeliveryState}


class NewPost(NamedTuple):
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


def posts_at(
    conn: Database, times_ms: Sequence[int], targets: Sequence[tuple[str, str]]
) -> list[Post]:
    """Posts scheduled at one of these times that hold a slot of one of these targets."""
    if not times_ms or not targets:
        return []
    marks = ",".join("?" * len(times_ms))
    arms = " OR ".join("(d.platform = ? AND d.account = ?)" for _ in targets)
    sql = (
        f"{_post_row(conn)} WHERE p.scheduled_at_ms IN ({marks}) AND EXISTS (SELECT 1 FROM "
        f"deliveries d WHERE d.post_id = p.id AND d.state NOT IN ('cancelled', 'dead') "
        f"AND ({arms})) {_ORDER}"
    )
    params = [*times_ms, *(v for target in targets for v in target)]
    return _posts_from_rows(conn, conn.execute(sql, params))


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


def _posts_from_rows(conn: Database, rows: Iterable[Any]) -> list[Post]:
    """Posts from `_POST_ROW` rows, each blocked delivery told what it waits on."""
    with no_cycle_collection():
        posts = _build_posts(rows)
    blocked = [d for p in posts for d in p.deliveries if d.blocked and d.state in models_waiting]
    if blocked:
        causes = waiting_causes(conn, [(d.id, d.parent_id) for d in blocked])
        for d in blocked:
            d.waiting_on = causes.get(d.id)
    return posts


def waiting_causes(
    conn: Database, blocked: Sequence[tuple[int, int | None]]
) -> dict[int, WaitingOn]:
    """For each blocked delivery, the first delivery up its chain that is not sent (G6 lets
    nothing below an unsent delivery go out, so that one is what everything waits on).

    `blocked` holds (delivery id, parent id) pairs. One recursive walk up the `parent_id`
    links for all of them, stopping at a sent one.
    """
    delivery_ids = [delivery_id for delivery_id, _ in blocked]
    marks = ",".join("?" * len(delivery_ids))
    rows = conn.execute(
        "WITH RECURSIVE up (start, id, parent_id, state, depth) AS ("
        "  SELECT d.id, x.id, x.parent_id, x.state, 1 FROM deliveries d "
        f"  JOIN deliveries x ON x.id = d.parent_id WHERE d.id IN ({marks}) "
        "  UNION ALL "
        "  SELECT up.start, x.id, x.parent_id, x.state, up.depth + 1 FROM up "
        "  JOIN deliveries x ON x.id = up.parent_id WHERE up.state <> 'sent'"
        ") SELECT start, id, depth FROM up WHERE state <> 'sent'",
        list(delivery_ids),
    ).fetchall()
    top: dict[int, tuple[int, int]] = {}
    for start, found, depth in rows:
        if start not in top or depth > top[start][1]:
            top[start] = (found, depth)
    causes: dict[int, WaitingOn] = {}
    if top:
        found_ids = sorted({found for found, _ in top.values()})
        marks = ",".join("?" * len(found_ids))
        details = {
            r[0]: WaitingOn(r[1], r[2], r[3], r[4], r[5])
            for r in conn.execute(
                "SELECT d.id, d.post_id, p.thread_part, d.platform, d.state, d.last_error "
                f"FROM deliveries d JOIN posts p ON p.id = d.post_id WHERE d.id IN ({marks})",
                found_ids,
            )
        }
        causes = {start: details[found] for start, (found, _) in top.items()}
    for delivery_id, parent_id in blocked:
        if parent_id is None:  # the post it answers was deleted: it can never be sent
            causes[delivery_id] = WaitingOn(None, None, "", "deleted", None)
    return causes


def _build_posts(rows: Iterable[Any]) -> list[Post]:
    """Positional construction because this loop is hot. orjson parses the deliveries'
    arrays (the database's own JSON of ids, names and times) in half the time of the json
    module: 10,000 posts, 15 ms instead of 32. A post's metadata keeps json's reading."""
    import orjson

    posts: list[Post] = []
    append = posts.append
    states = _STATES
    loads = json.loads
    parse_deliveries = orjson.loads
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
                d[13],
                bool(d[14]),
                d[15],
            )
            for d in parse_deliveries(r[8])
        ]
        if len(deliveries) > 1:
            deliveries.sort(key=lambda d: (registry.ORDER[d.platform], d.account))
        metadata = {} if r[7] == "{}" else loads(r[7])
        append(
            Post(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                metadata,
                deliveries,
                r[9],
                r[10],
                r[11],
                r[12],
            )
        )
    return posts


def select_posts(
    conn: Database,
    *,
    waiting_only: bool,
    platform: str | None = None,
    with_dead_only: bool = False,
    blocked_only: bool = False,
) -> list[Post]:
    """Posts with all their deliveries, by time (drafts last).

    `waiting_only` narrows to posts with a time and waiting work (what `list`
    shows); `with_dead_only` to posts with a delivery that gave up; `blocked_only` to posts
    with a waiting delivery whose parent is not sent.
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
    if blocked_only:
        where.append(
            f"p.id IN (SELECT post_id FROM deliveries WHERE state IN {WAITING} AND blocked = 1)"
        )
    if platform:
        where.append("p.id IN (SELECT post_id FROM deliveries WHERE platform = ?)")
        params.append(platform)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return _posts_from_rows(conn, conn.execute(f"{_post_row(conn)} {clause} {order}", params))


def get_posts(conn: Database, ids: Sequence[str]) -> list[Post]:
    """The given posts with their deliveries, in time order."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    sql = f"{_post_row(conn)} WHERE p.id IN ({marks}) {_ORDER}"
    return _posts_from_rows(conn, conn.execute(sql, list(ids)))


def load_history(conn: Database, post: Post) -> None:
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
