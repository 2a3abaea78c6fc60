"""Publishing in the foreground: plur-post without --schedule, plur-queue now and failed retry.

The same engine as the daemon, in this process: the post's deliveries are leased
to this process in the transaction that makes them claimable, so a running daemon
can never take them too. Deliveries another process is sending right now are
waited for, and reported as they end.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from plurcast import health
from plurcast.engine import Delivered, Engine
from plurcast.models import DeliveryState, Post
from plurcast.store import posts as post_store
from plurcast.store.deliveries import Claimed

WAIT_FOR_OTHERS_SECONDS = 60.0


@dataclass(frozen=True)
class Report:
    """One line per (platform, account) of a post, after publishing in the foreground."""

    post_id: str
    platform: str
    account: str
    state: str  # sent | retry | dead | cancelled | pending | sending
    remote_id: str | None
    url: str | None
    error: str | None
    error_kind: str | None
    due_at_ms: int | None
    line: str

    @property
    def success(self) -> bool:
        return self.state == "sent"


def deliver(engine: Engine, claims: Sequence[Claimed]) -> list[Delivered]:
    async def run() -> list[Delivered]:
        try:
            return await engine.deliver_all(claims, engine.cfg.scheduling.max_concurrency)
        finally:
            await engine.pool.close()

    return asyncio.run(run()) if claims else []


def wait_for_others(conn: sqlite3.Connection, post_id: str, timeout: float) -> None:
    """Wait while another process holds some of this post's deliveries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        post = post_store.get_posts(conn, [post_id])[0]
        if not any(d.state == DeliveryState.SENDING for d in post.deliveries):
            return
        time.sleep(0.1)


def report(conn: sqlite3.Connection, post_id: str, delivered: Sequence[Delivered]) -> list[Report]:
    """Each delivery of the post as it stands now, with this run's display lines."""
    lines = {d.claim.delivery_id: d for d in delivered}
    post: Post = post_store.get_posts(conn, [post_id])[0]
    reports = []
    for d in post.deliveries:
        mine = lines.get(d.id)
        if mine is not None and d.state == DeliveryState.SENT and mine.display:
            line = mine.display
        elif d.state == DeliveryState.SENT:
            line = f"{d.platform}:{d.remote_id}"
        elif d.last_error:
            line = f"{d.platform}:error:{d.last_error}"
        else:
            line = f"{d.platform}:error:{_unsent(d.state.value)}"
        reports.append(
            Report(
                post.id,
                d.platform,
                d.account,
                d.state.value,
                d.remote_id,
                d.remote_url,
                d.last_error,
                d.error_kind,
                d.due_at_ms,
                line,
            )
        )
    return reports


def _unsent(state: str) -> str:
    if state == "cancelled":
        return "cancelled"
    if state == "sending":
        return "still being sent by another process"
    return f"not sent ({state})"


def daemon_alive(conn: sqlite3.Connection, now_ms: int) -> bool:
    return health.daemon_health(conn, now_ms).running
