"""Every SQL statement of the delivery engine: claim, prepare, record, release, recover.

Each function that writes runs inside the caller's `transaction()`; the engine
decides the transaction boundaries (one per claim batch, one per prepare, one per
outcome), because those boundaries are what the guarantees rest on.
"""

# No `from __future__ import annotations` here: the NamedTuples' field types are then
# objects, which typing takes as they are, not strings it compiles one by one (~55 K
# instructions a field, on every command's start-up; issue #16). Names not defined yet
# (or imported only for type checking) are quoted.
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from plurcast import models
from plurcast.store.base import POSTGRESQL, Database, by_dialect


def _sql_set(states: Sequence[models.DeliveryState]) -> str:
    """States as an SQL list, for `state IN …`: "('pending', 'retry')"."""
    return "(" + ", ".join(f"'{state.value}'" for state in states) + ")"


# models.WAITING and models.UNSENT, as every statement of the store writes them.
WAITING = _sql_set(models.WAITING)
UNSENT = _sql_set(models.UNSENT)
MAY_STILL_GO = _sql_set(models.MAY_STILL_GO)


class Parent(NamedTuple):
    """The sent delivery a reply links to: what its payload needs to name it (G6)."""

    remote_id: str
    remote_cid: str | None  # Bluesky: the record's CID
    payload: str | None  # as it was sent: the thread's root is named in it


class Claimed(NamedTuple):
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


class Lease(NamedTuple):
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
    rows = due_candidates(conn, lease.now_ms, list(caps), limit)
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
    conn: Database, now_ms: int, platforms: Sequence[str], limit: int
) -> list[tuple[Claimed, str]]:
    """What lease_due takes on SQLite: up to `limit` due (or lease-expired) deliveries per
    platform and state, oldest first, with their state.

    One query per platform and state, each an in-order walk of the (state, platform,
    due_at_ms) index that stops after its limit: cost follows what is taken, not how
    much is due — a backlog of 100,000 on a platform whose slots are full is not read.
    (A single query with OR across states makes SQLite sort every due row on every
    claim, O(n²) over a burst of n.)
    """
    head = f"SELECT {_claim_columns('d.state')} {_CLAIM_FROM} "
    rows: list[Any] = []
    for platform in platforms:
        params = {"p": platform, "now_ms": now_ms, "limit": limit}
        for walk in _due_walks(":p"):
            rows += conn.execute(f"{head} {walk} LIMIT :limit", params).fetchall()
    rows.sort(key=lambda r: (r[8], r[0]))
    return [(_claimed(r), r[9]) for r in rows]


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


def extend_lease(conn: Database, delivery_id: int, owner: str, until_ms: int) -> bool:
    """Keep holding a delivery still being prepared; False once it was cancelled or taken."""
    cur = conn.execute(
        "UPDATE deliveries SET lease_expires_at_ms = ? "
        "WHERE id = ? AND state = 'sending' AND lease_owner = ?",
        (until_ms, delivery_id, owner),
    )
    return cur.rowcount == 1


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


def store_payload(
    conn: Database, delivery_id: int, owner: str, payload: str, now_ms: int
) -> str | None:
    """Keep the first payload ever prepared and return it — or None when this process
    no longer holds the delivery (cancelled, or its lease was taken over): then it must
    not be published."""
    row = conn.execute(
        "UPDATE deliveries SET payload = coalesce(payload, ?), updated_at_ms = ? "
        "WHERE id = ? AND state = 'sending' AND lease_owner = ? RETURNING payload",
        (payload, now_ms, delivery_id, owner),
    ).fetchone()
    return None if row is None else str(row[0])


def record(
    conn: Database,
    delivery_id: int,
    owner: str,
    *,
    state: models.Recorded,
    now_ms: int,
    count_attempt: bool,
    due_at_ms: int | None = None,
    remote_id: str | None = None,
    remote_url: str | None = None,
    remote_cid: str | None = None,
    error: str | None = None,
    error_kind: models.ErrorKind | None = None,
) -> bool:
    """Write an attempt's outcome if this process still holds the lease.

    A delivery cancelled while it was on the wire keeps `cancelled` unless it was
    in fact sent: then `sent` is the truth and is recorded.
    """
    cur = conn.execute(
        "UPDATE deliveries SET "
        "  state = CASE WHEN state = 'cancelled' AND :state != 'sent' THEN 'cancelled' "
        "          ELSE :state END, "
        "  attempts = attempts + :counted, due_at_ms = coalesce(:due, due_at_ms), "
        "  remote_id = coalesce(:remote_id, remote_id), "
        "  remote_url = coalesce(:remote_url, remote_url), "
        "  remote_cid = coalesce(:remote_cid, remote_cid), "
        "  sent_at_ms = CASE WHEN :state = 'sent' THEN :now ELSE sent_at_ms END, "
        "  last_error = :error, error_kind = :error_kind, "
        "  lease_owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = :now "
        "WHERE id = :id AND lease_owner = :owner AND state IN ('sending', 'cancelled')",
        {
            "state": state,
            "counted": int(count_attempt),
            "due": due_at_ms,
            "remote_id": remote_id,
            "remote_url": remote_url,
            "remote_cid": remote_cid,
            "now": now_ms,
            "error": error,
            "error_kind": error_kind,
            "id": delivery_id,
            "owner": owner,
        },
    )
    return cur.rowcount == 1


def unblock_children(conn: Database, parent_id: int, now_ms: int) -> int:
    """Let the deliveries answering `parent_id` be claimed, now that it is sent with its
    remote id; in the transaction that records it so (G6)."""
    unblocked = conn.execute(
        "UPDATE deliveries SET blocked = 0, updated_at_ms = ? "
        "WHERE parent_id = ? AND blocked = 1 AND EXISTS (SELECT 1 FROM deliveries x "
        "WHERE x.id = ? AND x.state = 'sent' AND x.remote_id IS NOT NULL)",
        (now_ms, parent_id, parent_id),
    ).rowcount
    if unblocked:
        conn.notify_work()
    return unblocked


def log_attempt(
    conn: Database,
    delivery_id: int,
    *,
    started_ms: int,
    finished_ms: int,
    outcome: str,
    error: str | None,
    error_kind: str | None,
    detail: dict[str, str],
    worker: str,
) -> None:
    conn.execute(
        "INSERT INTO attempts (delivery_id, number, started_at_ms, finished_at_ms, outcome, "
        "error, error_kind, detail, worker) SELECT ?, count(*) + 1, ?, ?, ?, ?, ?, ?, ? "
        "FROM attempts WHERE delivery_id = ?",
        (
            delivery_id,
            started_ms,
            finished_ms,
            outcome,
            error,
            error_kind,
            json.dumps(detail, ensure_ascii=False) if detail else None,
            worker,
            delivery_id,
        ),
    )


def rate_limited_in_a_row(conn: Database, delivery_id: int) -> int:
    """The delivery's latest attempts that were rate-limit waits, counted back to the last
    attempt that was something else (a give-up ends the run, so a retried one starts anew)."""
    row = conn.execute(
        "SELECT count(*) FROM attempts WHERE delivery_id = :id AND outcome = 'retry' "
        "AND error_kind = 'rate_limited' AND id > coalesce((SELECT max(id) FROM attempts "
        "WHERE delivery_id = :id AND NOT (outcome = 'retry' AND error_kind = 'rate_limited')), 0)",
        {"id": delivery_id},
    ).fetchone()
    return int(row[0])


def release(conn: Database, owner: str, now_ms: int) -> int:
    """Give back every lease `owner` holds; the payload stays, so a re-send is the same post."""
    released = conn.execute(
        "UPDATE deliveries SET state = CASE WHEN attempts > 0 THEN 'retry' ELSE 'pending' END, "
        "lease_owner = NULL, lease_expires_at_ms = NULL, "
        "due_at_ms = CASE WHEN due_at_ms IS NULL OR due_at_ms > ? THEN ? ELSE due_at_ms END, "
        "updated_at_ms = ? WHERE lease_owner = ? AND state = 'sending'",
        (now_ms, now_ms, now_ms, owner),
    ).rowcount
    if released:
        conn.notify_work()
    return released


def queue_summary(conn: Database) -> tuple[int, int | None, int]:
    """(waiting deliveries, the earliest due time among them, dead deliveries)."""
    row = conn.execute(
        f"SELECT (SELECT count(*) FROM deliveries WHERE state IN {WAITING} "
        f"        AND due_at_ms IS NOT NULL), "
        f"       (SELECT min(due_at_ms) FROM deliveries WHERE state IN {WAITING}), "
        f"       (SELECT count(*) FROM deliveries WHERE state = 'dead')"
    ).fetchone()
    return int(row[0]), row[1], int(row[2])


def lease_owners(conn: Database) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT lease_owner FROM deliveries "
        "WHERE state = 'sending' AND lease_owner IS NOT NULL"
    )
    return [r[0] for r in rows]


def silent_lease_owners(conn: Database, beat_before_ms: int) -> list[str]:
    """Daemons, on any host, that hold leases but have not beaten since `beat_before_ms`:
    killed, or cut off from the database. (A foreground plur-post beats no heartbeat; its
    leases run out at their expiry.)"""
    rows = conn.execute(
        "SELECT DISTINCT d.lease_owner FROM deliveries d JOIN heartbeats h "
        "ON h.owner = d.lease_owner WHERE d.state = 'sending' AND h.beat_at_ms < ?",
        (beat_before_ms,),
    )
    return [r[0] for r in rows]


def expire_leases(conn: Database, owners: Sequence[str], now_ms: int) -> int:
    """Let the leases of dead processes be claimed at once instead of at their expiry; the
    number of leases that had not run out yet (those recovered by this call)."""
    marks = ",".join("?" * len(owners))
    expired = conn.execute(
        f"UPDATE deliveries SET lease_expires_at_ms = ?, updated_at_ms = ? "
        f"WHERE state = 'sending' AND lease_owner IN ({marks}) AND lease_expires_at_ms > ?",
        [now_ms, now_ms, *owners, now_ms],
    ).rowcount
    if expired:
        conn.notify_work()
    return expired


def next_wake_ms(conn: Database, platforms: Sequence[str]) -> int | None:
    """The earliest time something of these platforms may become claimable: a due time
    or a lease expiry. One index probe per platform and state; a blocked delivery (its
    parent is not sent) has no time to wake for."""
    arms: list[str] = []
    args: list[str] = []
    for platform in platforms:
        n = len(arms)
        arms += [
            f"SELECT * FROM (SELECT due_at_ms FROM deliveries WHERE state = 'pending' "
            f"AND platform = ? AND blocked = 0 AND due_at_ms IS NOT NULL "
            f"ORDER BY due_at_ms LIMIT 1) AS a{n}",
            f"SELECT * FROM (SELECT due_at_ms FROM deliveries WHERE state = 'retry' "
            f"AND platform = ? AND blocked = 0 AND due_at_ms IS NOT NULL "
            f"ORDER BY due_at_ms LIMIT 1) AS a{n + 1}",
            "SELECT min(lease_expires_at_ms) FROM deliveries WHERE state = 'sending' "
            "AND platform = ?",
        ]
        args += [platform] * 3
    if not arms:
        return None
    row = conn.execute(
        f"SELECT min(due_at_ms) FROM ({' UNION ALL '.join(arms)}) AS wake", args
    ).fetchone()
    return None if row[0] is None else int(row[0])


def retry_dead(conn: Database, post_ids: Sequence[str], now_ms: int) -> int:
    """Queue the dead deliveries of these posts again, now, with a fresh retry budget."""
    marks = ",".join("?" * len(post_ids))
    queued = conn.execute(
        f"UPDATE deliveries SET state = 'pending', attempts = 0, due_at_ms = ?, "
        f"last_error = NULL, error_kind = NULL, updated_at_ms = ? "
        f"WHERE state = 'dead' AND post_id IN ({marks})",
        [now_ms, now_ms, *post_ids],
    ).rowcount
    if queued:
        conn.notify_work()
    return queued


# --- rate limits ----------------------------------------------------------------------


def slots_used(conn: Database, platform: str, account: str) -> int:
    """Slots held by (platform, account); exact once its old slots are pruned."""
    row = conn.execute(
        "SELECT used FROM rate_counts WHERE platform = ? AND account = ?", (platform, account)
    ).fetchone()
    return 0 if row is None else int(row[0])


def rate_state(conn: Database, platform: str, account: str) -> tuple[int | None, int]:
    """(the hold's end or None, the slots held) of (platform, account), in one read; the
    count is exact once its old slots are pruned, an upper bound before."""
    row = conn.execute(
        "SELECT (SELECT until_ms FROM rate_holds WHERE platform = :p AND account = :a), "
        "(SELECT used FROM rate_counts WHERE platform = :p AND account = :a)",
        {"p": platform, "a": account},
    ).fetchone()
    return (None if row[0] is None else int(row[0])), (0 if row[1] is None else int(row[1]))


def nth_slot_time(
    conn: Database, platform: str, account: str, since_ms: int, offset: int
) -> int | None:
    row = conn.execute(
        "SELECT at_ms FROM rate_slots WHERE platform = ? AND account = ? AND at_ms > ? "
        "ORDER BY at_ms LIMIT 1 OFFSET ?",
        (platform, account, since_ms, offset),
    ).fetchone()
    return None if row is None else int(row[0])


def reserve_slot(conn: Database, platform: str, account: str, at_ms: int, delivery_id: int) -> None:
    conn.execute(
        "INSERT INTO rate_slots (platform, account, at_ms, delivery_id) VALUES (?, ?, ?, ?)",
        (platform, account, at_ms, delivery_id),
    )


def prune_slots(conn: Database, platform: str, account: str, before_ms: int) -> None:
    """Forget slots that left the window (through the index: only the aged rows are visited)."""
    conn.execute(
        "DELETE FROM rate_slots WHERE platform = ? AND account = ? AND at_ms <= ?",
        (platform, account, before_ms),
    )


def set_hold(conn: Database, platform: str, account: str, until_ms: int, reason: str) -> None:
    conn.execute(
        "INSERT INTO rate_holds (platform, account, until_ms, reason) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (platform, account) DO UPDATE SET "
        "until_ms = CASE WHEN excluded.until_ms > rate_holds.until_ms "
        "THEN excluded.until_ms ELSE rate_holds.until_ms END, reason = excluded.reason",
        (platform, account, until_ms, reason),
    )


# --- daemon heartbeats --------------------------------------------------------------------


def beat(
    conn: Database,
    owner: str,
    host: str,
    pid: int,
    started_ms: int,
    now_ms: int,
    version: str,
) -> None:
    conn.execute(
        "INSERT INTO heartbeats (owner, host, pid, started_at_ms, beat_at_ms, version) "
        "VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (owner) DO UPDATE SET beat_at_ms = excluded.beat_at_ms",
        (owner, host, pid, started_ms, now_ms, version),
    )


def forget_heartbeat(conn: Database, owner: str) -> None:
    conn.execute("DELETE FROM heartbeats WHERE owner = ?", (owner,))


def latest_heartbeats(conn: Database, limit: int) -> list[tuple[str, str, int, int]]:
    """(owner, host, pid, beat_at_ms) of the daemons that beat last, the latest first."""
    rows = conn.execute(
        "SELECT owner, host, pid, beat_at_ms FROM heartbeats ORDER BY beat_at_ms DESC LIMIT ?",
        (limit,),
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def heartbeats(conn: Database) -> list[tuple[str, int, int]]:
    """(host, pid, beat_at_ms) of every daemon that beats, on any host; the latest first."""
    rows = conn.execute("SELECT host, pid, beat_at_ms FROM heartbeats ORDER BY beat_at_ms DESC")
    return [(r[0], r[1], r[2]) for r in rows]


def forget_heartbeats_before(conn: Database, before_ms: int) -> int:
    """Drop the heartbeats of daemons silent since long ago (their leases were recovered)."""
    return conn.execute("DELETE FROM heartbeats WHERE beat_at_ms < ?", (before_ms,)).rowcount
