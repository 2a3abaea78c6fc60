"""After a claim: the payload prepared once, the lease kept meanwhile, the outcome and its log.

The first payload ever prepared is stored before a byte is sent and every re-send sends it
(G2); an outcome is written only while this process still holds the lease, and a sent
delivery unblocks the replies waiting on it in the same transaction (G6). Each function that
writes runs inside the caller's `transaction()`: the engine decides the boundaries (one per
prepare, one per outcome), because the guarantees rest on them. `retry_dead` queues given-up
deliveries again (`plur-queue failed retry`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from plurcast import models
from plurcast.store.base import Database


def extend_lease(conn: Database, delivery_id: int, owner: str, until_ms: int) -> bool:
    """Keep holding a delivery still being prepared; False once it was cancelled or taken."""
    cur = conn.execute(
        "UPDATE deliveries SET lease_expires_at_ms = ? "
        "WHERE id = ? AND state = 'sending' AND lease_owner = ?",
        (until_ms, delivery_id, owner),
    )
    return cur.rowcount == 1


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
