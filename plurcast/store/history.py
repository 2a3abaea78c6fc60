"""The SQL of plur-history: posts that went out (or gave up), newest first."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from plurcast.store.base import Database

# A delivery is history once it was sent, gave up, or at least tried.
_OUTCOME = "(d.state IN ('sent', 'dead') OR (d.attempts > 0 AND d.state <> 'cancelled'))"
_AT = "coalesce(d.sent_at_ms, d.updated_at_ms)"


def posts(
    conn: Database,
    *,
    platform: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> Iterator[tuple[str, str, int, int]]:
    """(post id, content, created_at_ms, when it first went out) for each post with an
    outcome on `platform` (any), within [since, until), newest first — read lazily, so a
    caller that filters further can stop at its limit."""
    where, having = [_OUTCOME], []
    params: list[object] = []
    if platform is not None:
        where.append("d.platform = ?")
        params.append(platform)
    if since_ms is not None:
        having.append(f"min({_AT}) >= ?")
        params.append(since_ms)
    if until_ms is not None:
        having.append(f"min({_AT}) < ?")
        params.append(until_ms)
    sql = (
        f"SELECT p.id, p.content, p.created_at_ms, min({_AT}) AS at "
        f"FROM posts p JOIN deliveries d ON d.post_id = p.id WHERE {' AND '.join(where)} "
        f"GROUP BY p.id, p.content, p.created_at_ms "
        + (f"HAVING {' AND '.join(having)} " if having else "")
        + "ORDER BY at DESC, p.id"
    )
    for row in conn.execute(sql, params):
        yield str(row[0]), str(row[1]), int(row[2]), int(row[3])


def outcomes(
    conn: Database, post_ids: Sequence[str], platform: str | None
) -> list[tuple[Any, ...]]:
    """(post id, platform, account, state, remote id, url, error, at_ms) of these posts'
    deliveries that have an outcome, in platform order."""
    if not post_ids:
        return []
    marks = ",".join("?" * len(post_ids))
    params: list[object] = list(post_ids)
    only = ""
    if platform is not None:
        only = "AND d.platform = ? "
        params.append(platform)
    return conn.execute(
        f"SELECT d.post_id, d.platform, d.account, d.state, d.remote_id, d.remote_url, "
        f"d.last_error, {_AT} FROM deliveries d WHERE d.post_id IN ({marks}) AND {_OUTCOME} "
        f"{only}ORDER BY d.id",
        params,
    ).fetchall()
