"""Claiming deliveries: which are due, and leasing them to one process.

A claim runs inside the caller's `transaction()` (the engine's: one per claim batch) —
SQLite's BEGIN IMMEDIATE keeps every other writer out; on PostgreSQL one statement locks and
leases what it takes — so that two processes never hold the same delivery (G1), and one whose
parent is not sent is never taken (G6). A just-leased delivery that may not go yet is handed
back (`give_back`) or, staler than its grace, given up (`expire`) in the same transaction.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from plurcast import models
from plurcast.store.base import POSTGRESQL, WAITING, Database, by_dialect
from plurcast.value import Value


class Parent(Value):
    """The sent delivery a reply links to: what its payload needs to name it (G6)."""

    remote_id: str
    remote_cid: str | None  # Bluesky: the record's CID
    payload: str | None  # as it was sent: the thread's root is named in it


class Claimed(Value):
    """A delivery this process holds the lease on, with what publishing it needs."""

    delivery_id: int
    post_id: str
    platform: str
    account: str
    content: str
    metadata: dict[str, Any]
    payload: str | None  # set when an earlier attempt prepared it: re-send exactly this
    attempts: int
    due_at_ms: int
    parent: Parent | None = None
    continues_thread: bool = False  # a thread's part after the first: never expired (grace)
    ready: bool = False  # `payload` was prepared and stored in the claim's own transaction


class Lease(Value):
    """Who takes a claim's deliveries, at what time, until when."""

    owner: str
    now_ms: int
    until_ms: int


# A delivery with a parent is claimable only once that parent is sent with its remote id (G6):
# `blocked` is cleared in the transaction that records the parent sent (unblock_children), and
# the claim checks the parent itself as well. The text is the delivery's own, else the post's.
# Column 9 is the state the delivery was leased from.
def _claim_columns(state: str) -> str:
    return (
        "d.id, d.post_id, d.platform, d.account, coalesce(d.content, p.content), p.metadata, "
        f"d.payload, d.attempts, coalesce(d.due_at_ms, 0), {state}, "
        "x.remote_id, x.remote_cid, x.payload, coalesce(p.thread_part, 1) > 1"
    )


_CLAIM_FROM = (
    "FROM deliveries d JOIN posts p ON p.id = d.post_id "
    "LEFT JOIN deliveries x ON x.id = d.parent_id"
)
_PARENT_SENT = (
    "d.blocked = 0 AND (d.parent_id IS NULL OR (x.state = 'sent' AND x.remote_id IS NOT NULL))"
)
# What a lease is taken from: a waiting delivery, or one whose holder's lease ran out.
_FREE = f"(state IN {WAITING} OR (state = 'sending' AND lease_expires_at_ms <= :now_ms))"
_TAKE = (
    "state = 'sending', lease_owner = :owner, lease_expires_at_ms = :until_ms, "
    "updated_at_ms = :now_ms"
)


def _claimed(row: Any) -> Claimed:
    metadata = {} if row[5] == "{}" else json.loads(row[5])
    parent = None if row[10] is None else Parent(row[10], row[11], row[12])
    return Claimed(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        metadata,
        row[6],
        row[7],
        row[8],
        parent,
        bool(row[13]),
    )


def lease_due(
    conn: Database,
    lease: Lease,
    platforms: Sequence[str],
    limit: int,
    room: Mapping[str, int] | None = None,
) -> list[tuple[Claimed, str]]:
    """Lease up to `limit` deliveries that are due, or whose lease ran out (their holder
    died), oldest first, each with the state it was leased from; with `room`, no more for a
    platform than its free slots, none for a full one.

    On PostgreSQL one statement, as procrastinate and River claim: a CTE selects the
    candidates `FOR UPDATE OF d SKIP LOCKED … LIMIT n` — a daemon on another host claiming
    at the same instant skips these rows instead of reading them too (READ COMMITTED alone
    lets both take them) — and the UPDATE in the same statement leases them, still only if
    they are free (the second line of defence). On SQLite, BEGIN IMMEDIATE keeps every other
    writer out between `due_candidates` and one UPDATE.
    """
    caps = {
        p: n
        for p in platforms
        if (n := limit if room is None else min(limit, room.get(p, limit))) > 0
    }
    if not caps:
        return []
    if conn.dialect == POSTGRESQL:
        return _lease_due_at_once(conn, lease, caps, limit)
    rows = due_candidates(conn, lease.now_ms, caps)
    taken: Counter[str] = Counter()
    kept: list[tuple[Claimed, str]] = []
    for row in rows:
        platform = row[0].platform
        if taken[platform] < caps[platform] and len(kept) < limit:
            taken[platform] += 1
            kept.append(row)
    return _take(conn, kept, lease)


def _due_walks(platform: str) -> list[str]:
    """The WHERE … ORDER BY of each index walk a due claim makes on the platform that
    parameter `platform` names: one per waiting state, then the leases that ran out."""
    walks = [
        f"WHERE d.state = '{state.value}' AND d.platform = {platform} AND {_PARENT_SENT} "
        "AND d.due_at_ms <= :now_ms"
        for state in models.WAITING
    ]
    walks.append(
        f"WHERE d.state = 'sending' AND d.platform = {platform} "
        "AND d.lease_expires_at_ms <= :now_ms"
    )
    return [f"{walk} ORDER BY d.due_at_ms, d.id" for walk in walks]


def _lease_due_at_once(
    conn: Database, lease: Lease, caps: Mapping[str, int], limit: int
) -> list[tuple[Claimed, str]]:
    """lease_due on PostgreSQL: due_candidates' index walks, each locking what it returns;
    the oldest `limit` of them (at most a platform's cap each) leased by the same statement."""
    arms: list[str] = []
    params: dict[str, object] = {**lease._asdict(), "limit": limit}
    lock = _row_lock(conn)
    for i, (platform, cap) in enumerate(caps.items()):
        params[f"p{i}"] = platform
        arms += [
            f"SELECT * FROM (SELECT d.id AS cid, coalesce(d.due_at_ms, 0) AS cdue, "
            f"d.state AS was, d.platform AS cplat, {int(cap)} AS cap FROM deliveries d "
            f"LEFT JOIN deliveries x ON x.id = d.parent_id {walk} LIMIT {int(cap)}{lock}) "
            f"AS a{i}_{j}"
            for j, walk in enumerate(_due_walks(f":p{i}"))
        ]
    candidates = (
        f"c AS ({' UNION ALL '.join(arms)}), "
        "picked AS (SELECT cid, cdue, was FROM (SELECT *, row_number() OVER "
        "(PARTITION BY cplat ORDER BY cdue, cid) AS n FROM c) AS r WHERE n <= cap "
        "ORDER BY cdue, cid LIMIT :limit)"
    )
    return _take_at_once(conn, candidates, params, "l.ldue, l.lid")


def due_candidates(
    conn: Database, now_ms: int, caps: Mapping[str, int]
) -> list[tuple[Claimed, str]]:
    """What lease_due takes on SQLite: up to `caps[platform]` due (or lease-expired)
    deliveries per platform and state, oldest first, with their state.

    One statement: per platform and state an in-order walk of the (state, platform,
    due_at_ms) index that stops after the platform's cap, the walks joined by UNION ALL —
    cost follows what is taken, not how much is due: a backlog of 100,000 on a platform
    whose slots are full is not read, and in a burst, where a claim comes each time a lane
    frees, one row is read for the one lane. (A single query with OR across states makes
    SQLite sort every due row on every claim, O(n²) over a burst of n; a statement per walk
    made a claim three statements a platform.)
    """
    if not caps:
        return []
    params: dict[str, object] = {"now_ms": now_ms}
    for i, (platform, cap) in enumerate(caps.items()):
        params[f"p{i}"], params[f"n{i}"] = platform, cap
    rows = conn.execute(_due_candidates_sql(len(caps)), params).fetchall()
    rows.sort(key=lambda r: (r[8], r[0]))
    return [(_claimed(r), r[9]) for r in rows]


@functools.cache
def _due_candidates_sql(platforms: int) -> str:
    """due_candidates' statement over this many platforms (`:p0`, `:n0` …): its text is made
    once, not on every claim."""
    return " UNION ALL ".join(
        f"SELECT * FROM (SELECT {_claim_columns('d.state')} {_CLAIM_FROM} {walk} "
        f"LIMIT :n{i}) AS w{i}_{j}"
        for i in range(platforms)
        for j, walk in enumerate(_due_walks(f":p{i}"))
    )


def lease_post(
    conn: Database, lease: Lease, post_id: str, platforms: Sequence[str]
) -> list[tuple[Claimed, str]]:
    """Lease a post's deliveries that `now` may take: waiting ones, whatever their time."""
    params: dict[str, object] = {**lease._asdict(), "post": post_id}
    params.update({f"p{i}": p for i, p in enumerate(platforms)})
    marks = ", ".join(f":p{i}" for i in range(len(platforms)))
    where = (
        f"WHERE d.post_id = :post AND d.platform IN ({marks}) AND d.state IN {WAITING} "
        f"AND {_PARENT_SENT}"
    )
    return _lease_where(conn, lease, where, params)


def lease_children(
    conn: Database, lease: Lease, parent_id: int, post_ids: Sequence[str], due_by_ms: int | None
) -> list[tuple[Claimed, str]]:
    """Lease the waiting deliveries of these posts that answer `parent_id` and may go now:
    due by `due_by_ms` (None: whatever their time). Publishing a thread in the foreground
    follows each part with the next this way."""
    params: dict[str, object] = {**lease._asdict(), "parent": parent_id}
    params.update({f"q{i}": p for i, p in enumerate(post_ids)})
    marks = ", ".join(f":q{i}" for i in range(len(post_ids)))
    due = ""
    if due_by_ms is not None:
        due, params["due_by"] = "AND d.due_at_ms <= :due_by ", due_by_ms
    where = (
        f"WHERE d.parent_id = :parent AND d.post_id IN ({marks}) AND d.state IN {WAITING} "
        f"AND {_PARENT_SENT} {due}"
    )
    return _lease_where(conn, lease, where, params)


def _lease_where(
    conn: Database, lease: Lease, where: str, params: dict[str, object]
) -> list[tuple[Claimed, str]]:
    """Lease the deliveries `where` names, in id order: on PostgreSQL in one statement (see
    lease_due), on SQLite a read and one UPDATE."""
    if conn.dialect == POSTGRESQL:
        candidates = (
            "picked AS (SELECT d.id AS cid, coalesce(d.due_at_ms, 0) AS cdue, d.state AS was "
            "FROM deliveries d LEFT JOIN deliveries x ON x.id = d.parent_id "
            f"{where} ORDER BY d.id{_row_lock(conn)})"
        )
        return _take_at_once(conn, candidates, params, "l.lid")
    rows = conn.execute(
        f"SELECT {_claim_columns('d.state')} {_CLAIM_FROM} {where} ORDER BY d.id", params
    ).fetchall()
    return _take(conn, [(_claimed(r), r[9]) for r in rows], lease)


def _take_at_once(
    conn: Database, candidates: str, params: Mapping[str, object], order: str
) -> list[tuple[Claimed, str]]:
    """One statement: the CTEs `candidates` (ending in `picked(cid, cdue, was)`, locked),
    the lease of each still free, and the claim's columns of those leased."""
    rows = conn.execute(
        f"WITH {candidates}, leased AS (UPDATE deliveries SET {_TAKE} FROM picked "
        f"WHERE id = picked.cid AND {_FREE} "
        "RETURNING id AS lid, picked.was AS lwas, picked.cdue AS ldue) "
        f"SELECT {_claim_columns('l.lwas')} FROM leased l JOIN deliveries d ON d.id = l.lid "
        "JOIN posts p ON p.id = d.post_id LEFT JOIN deliveries x ON x.id = d.parent_id "
        f"ORDER BY {order}",
        params,
    ).fetchall()
    return [(_claimed(r), r[9]) for r in rows]


def _take(
    conn: Database, candidates: Sequence[tuple[Claimed, str]], lease: Lease
) -> list[tuple[Claimed, str]]:
    """Lease the candidates still free (SQLite, inside the claim's BEGIN IMMEDIATE)."""
    if not candidates:
        return []
    params: dict[str, object] = dict(lease._asdict())
    params.update({f"i{n}": c.delivery_id for n, (c, _) in enumerate(candidates)})
    marks = ", ".join(f":i{n}" for n in range(len(candidates)))
    taken = {
        row[0]
        for row in conn.execute(
            f"UPDATE deliveries SET {_TAKE} WHERE id IN ({marks}) AND {_FREE} RETURNING id",
            params,
        )
    }
    return [(c, state) for c, state in candidates if c.delivery_id in taken]


def _row_lock(conn: Database) -> str:
    """The locking clause of a claim's candidate query (PostgreSQL; see lease_due)."""
    return by_dialect(conn, sqlite="", postgresql=" FOR UPDATE OF d SKIP LOCKED")


def give_back(conn: Database, lease: Lease, delivery_id: int, was: str, until_ms: int) -> None:
    """Hand a just-leased delivery back, due at a later time (its rate window is full), in
    the state it was leased from (a lease-expired one as a retry); never drops it."""
    conn.execute(
        "UPDATE deliveries SET due_at_ms = :until_ms, updated_at_ms = :now, lease_owner = NULL, "
        "lease_expires_at_ms = NULL, state = :back "
        "WHERE id = :id AND lease_owner = :owner AND state = 'sending'",
        {
            "until_ms": until_ms,
            "now": lease.now_ms,
            "back": "retry" if was == "sending" else was,
            "id": delivery_id,
            "owner": lease.owner,
        },
    )


def expire(conn: Database, lease: Lease, delivery_id: int, reason: str) -> None:
    """Give up a just-leased one-shot delivery that is staler than the configured grace."""
    conn.execute(
        "UPDATE deliveries SET state = 'dead', error_kind = 'expired', last_error = :reason, "
        "lease_owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = :now "
        "WHERE id = :id AND lease_owner = :owner AND state = 'sending'",
        {"reason": reason, "now": lease.now_ms, "id": delivery_id, "owner": lease.owner},
    )
