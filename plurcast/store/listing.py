"""Posts read whole: each with its deliveries (and, for a blocked one, what it waits on), in
time order — what listing and showing posts, and every change to them, start from.

One statement builds each post's row, its deliveries folded into it by the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from plurcast.bulk import no_cycle_collection
from plurcast.models import WAITING as models_waiting
from plurcast.models import Attempt, Delivery, DeliveryState, Post, WaitingOn
from plurcast.platforms import registry
from plurcast.store.base import WAITING, Database, by_dialect

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


def _posts_from_rows(conn: Database, rows: Iterable[Any]) -> list[Post]:
    """Posts from `_POST_ROW` rows, each blocked delivery told what it waits on."""
    return [post for chunk in _chunks_of_posts(conn, rows) for post in chunk]


# Rows made into posts at a time when a listing streams: enough that the per-chunk lookup of
# what blocked deliveries wait on stays one statement among many rows, few enough that the
# memory a chunk takes is used again by the next (a post's objects are ~1 KB).
CHUNK = 500


def _chunks_of_posts(conn: Database, rows: Iterable[Any]) -> Iterator[list[Post]]:
    """Posts from `_POST_ROW` rows, CHUNK rows at a time, each blocked delivery told what it
    waits on."""
    rows = iter(rows)
    while chunk := list(islice(rows, CHUNK)):
        with no_cycle_collection():
            posts = _build_posts(chunk)
        del chunk
        blocked = [
            d for p in posts for d in p.deliveries if d.blocked and d.state in models_waiting
        ]
        if blocked:
            causes = waiting_causes(conn, [(d.id, d.parent_id) for d in blocked])
            for d in blocked:
                d.waiting_on = causes.get(d.id)
        yield posts


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
    return [
        post
        for chunk in stream_posts(
            conn,
            waiting_only=waiting_only,
            platform=platform,
            with_dead_only=with_dead_only,
            blocked_only=blocked_only,
        )
        for post in chunk
    ]


def stream_posts(
    conn: Database,
    *,
    waiting_only: bool,
    platform: str | None = None,
    with_dead_only: bool = False,
    blocked_only: bool = False,
) -> Iterator[list[Post]]:
    """`select_posts`, read as it is used: the statement runs at once, its rows become posts
    CHUNK at a time as they are asked for. A listing of 1,000,000 posts holds one chunk, and
    one piped into `head` reads no further than it writes."""
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
    return _chunks_of_posts(conn, conn.execute(f"{_post_row(conn)} {clause} {order}", params))


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
