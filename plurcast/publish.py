"""Publishing in the foreground: plur-post without --schedule, plur-queue now and failed retry.

`publish_now` is the one way to do it: the same engine as the daemon, in this process.
The deliveries are leased to this process (by plur-post in the transaction that writes
the post), so a running daemon can never take them too; deliveries another process is
sending right now are waited for and reported as they end; and the caller learns whether
a daemon is alive to retry what failed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from plurcast import health, logs
from plurcast.engine import Delivered, Engine
from plurcast.models import Delivery, DeliveryState, Post
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


@dataclass(frozen=True)
class Published:
    """Each delivery of the posts as it stands after publishing, and whether a daemon is
    alive to retry what failed."""

    reports: list[Report]
    daemon_alive: bool


def publish_now(
    engine: Engine, post_ids: Sequence[str], claims: Sequence[Claimed] | None = None
) -> Published:
    """Deliver the posts' waiting deliveries now, in this process, and report on each.

    `claims` are the deliveries the caller already leased (plur-post, in the transaction
    that wrote the post); without them each post's waiting deliveries are claimed here.
    """
    if claims is None:
        claims = [c for post_id in post_ids for c in engine.claim_post(post_id)]
    _deliver(engine, claims)
    reports: list[Report] = []
    for post_id in post_ids:
        _wait_for_others(engine.conn, post_id, WAIT_FOR_OTHERS_SECONDS)
        reports += _report(engine.conn, post_id)
    daemon = health.daemon_health(engine.conn, engine.now_ms())
    return Published(reports, daemon.running)


def _deliver(engine: Engine, claims: Sequence[Claimed]) -> list[Delivered]:
    logs.foreground()

    async def run() -> list[Delivered]:
        try:
            return await engine.deliver_all(claims, engine.cfg.scheduling.max_concurrency)
        finally:
            await engine.pool.close()

    return asyncio.run(run()) if claims else []


def _wait_for_others(conn: sqlite3.Connection, post_id: str, timeout: float) -> None:
    """Wait while another process holds some of this post's deliveries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        post = post_store.get_posts(conn, [post_id])[0]
        if not any(d.state == DeliveryState.SENDING for d in post.deliveries):
            return
        time.sleep(0.1)


def report_line(d: Delivery) -> str:
    """What plur-post prints for a delivery: `nostr:note1…`, `mastodon:<id>`,
    `bluesky:at://…` once sent; `<platform>:error:<why>` otherwise."""
    if d.state == DeliveryState.SENT:
        return f"{d.platform}:{d.remote_id}"
    return f"{d.platform}:error:{d.last_error or _unsent(d.state.value)}"


def _report(conn: sqlite3.Connection, post_id: str) -> list[Report]:
    """Each delivery of the post as it stands now."""
    post: Post = post_store.get_posts(conn, [post_id])[0]
    reports = []
    for d in post.deliveries:
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
                report_line(d),
            )
        )
    return reports


def _unsent(state: str) -> str:
    if state == "cancelled":
        return "cancelled"
    if state == "sending":
        return "still being sent by another process"
    return f"not sent ({state})"
