"""The rows behind rate limits: the slots each (platform, account) used in its window, and
the holds a platform asked for.

`plurcast.ratelimit.Window` decides with them; a slot is reserved in the transaction that
claims its delivery, a hold set in the one that records a platform's rate-limit answer.
"""

from __future__ import annotations

from plurcast.store.base import Database


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
