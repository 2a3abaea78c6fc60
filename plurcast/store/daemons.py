"""What the daemons keep and read beside claims: heartbeats, whole processes' leases, when to
wake, the status line's counts.

A daemon beats a heartbeat (host, pid, version) that `plur-send status` reads and that tells
the others it still runs. A process gives back every lease it holds when it stops
(`release`); the leases of dead ones — this host's processes that no longer run, daemons on
any host whose heartbeat went silent — become claimable at once (`expire_leases`).
`next_wake_ms` is when a daemon should look again, `queue_summary` what its status line counts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from plurcast.store.base import WAITING, Database


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


def has_heartbeats_before(conn: Database, before_ms: int) -> bool:
    """Whether `forget_heartbeats_before` would forget any (a read: an idle --once writes
    nothing)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM heartbeats WHERE beat_at_ms < ?)", (before_ms,)
    ).fetchone()
    return bool(row[0])


def forget_heartbeats_before(conn: Database, before_ms: int) -> int:
    """Drop the heartbeats of daemons silent since long ago (their leases were recovered)."""
    return conn.execute("DELETE FROM heartbeats WHERE beat_at_ms < ?", (before_ms,)).rowcount


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


def next_wake_ms(conn: Database, platforms: Sequence[str]) -> int | None:
    """The earliest time something of these platforms may become claimable: a due time
    or a lease expiry. One index probe per platform and state; a blocked delivery (its
    parent is not sent) has no time to wake for."""
    if not platforms:
        return None
    args = [platform for platform in platforms for _ in range(3)]
    row = conn.execute(_next_wake_sql(len(platforms)), args).fetchone()
    return None if row[0] is None else int(row[0])


@functools.cache
def _next_wake_sql(platforms: int) -> str:
    """next_wake_ms' statement over this many platforms (three `?` each), made once."""
    arms: list[str] = []
    for _ in range(platforms):
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
    return f"SELECT min(due_at_ms) FROM ({' UNION ALL '.join(arms)}) AS wake"


def queue_summary(conn: Database) -> tuple[int, int | None, int]:
    """(waiting deliveries, the earliest due time among them, dead deliveries)."""
    row = conn.execute(
        f"SELECT (SELECT count(*) FROM deliveries WHERE state IN {WAITING} "
        f"        AND due_at_ms IS NOT NULL), "
        f"       (SELECT min(due_at_ms) FROM deliveries WHERE state IN {WAITING}), "
        f"       (SELECT count(*) FROM deliveries WHERE state = 'dead')"
    ).fetchone()
    return int(row[0]), row[1], int(row[2])
