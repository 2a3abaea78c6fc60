"""Publishing in the foreground: plur-post without --schedule, plur-queue now and failed retry.

`publish_now` is the one way to do it: the same engine as the daemon, in this process.
The deliveries are leased to this process (by plur-post in the transaction that writes
the post), so a running daemon can never take them too; deliveries another process is
sending right now are waited for and reported as they end; and the caller learns whether
a daemon is alive to retry what failed.

A thread goes out the way the daemon sends it (G6): each part on a platform as soon as the
part before it there is sent — the next part is leased when its parent comes back sent, so
Mastodon's part 3 need not wait for Bluesky's part 2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from plurcast import health, logs, views
from plurcast.engine import Engine
from plurcast.models import Delivery, DeliveryState, Post
from plurcast.record import Delivered
from plurcast.store import listing
from plurcast.store.base import Database
from plurcast.store.claiming import Claimed
from plurcast.value import Value

WAIT_FOR_OTHERS_SECONDS = 60.0


class Report(Value):
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
    thread_id: str | None = None
    thread_part: int | None = None
    thread_parts: int | None = None
    reply_to: str | None = None  # what the post answers: the part before, or --reply-to
    waiting: bool = False  # its parent is not sent: it goes out after it, in order
    stuck: bool = False  # ... and that parent gave up or was cancelled

    @property
    def success(self) -> bool:
        return self.state == "sent"


class Published(Value):
    """Each delivery of the posts as it stands after publishing, and whether a daemon is
    alive to retry what failed."""

    reports: list[Report]
    daemon_alive: bool


def publish_now(
    engine: Engine, post_ids: Sequence[str], claims: Sequence[Claimed] | None = None
) -> Published:
    """Deliver the posts' waiting deliveries now, in this process, and report on each.

    `claims` are the deliveries the caller already leased (plur-post, in the transaction
    that wrote the post); without them each post's waiting deliveries are claimed here —
    those whose parent is sent: the parts of a thread after them follow as they can.
    """
    if claims is None:
        claims = [c for post_id in post_ids for c in engine.claim_post(post_id)]
    _deliver(engine, claims, post_ids)
    reports: list[Report] = []
    for post_id in post_ids:
        reports += _report(_settled(engine.conn, post_id, WAIT_FOR_OTHERS_SECONDS))
    daemon = health.daemon_health(engine.conn, engine.now_ms())
    return Published(reports, daemon.running)


def _deliver(engine: Engine, claims: Sequence[Claimed], follow: Sequence[str]) -> list[Delivered]:
    """Deliver the claims; then, as each comes back sent, the deliveries of `follow`'s posts
    that answer it (the next part of a thread, whatever its time)."""
    logs.foreground()

    async def run() -> list[Delivered]:
        gate = asyncio.Semaphore(max(1, engine.cfg.scheduling.max_concurrency))

        async def one(claim: Claimed) -> Delivered:
            async with gate:
                return await engine.deliver(claim)

        results: list[Delivered] = []
        running = {asyncio.ensure_future(one(c)) for c in claims}
        try:
            while running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result = task.result()
                    results.append(result)
                    if result.state == "sent":
                        nxt = engine.claim_children(result.claim.delivery_id, follow, any_time=True)
                        running |= {asyncio.ensure_future(one(c)) for c in nxt}
        finally:
            await engine.pool.close()
        return results

    return asyncio.run(run()) if claims else []


def _settled(conn: Database, post_id: str, timeout: float) -> Post:
    """The post as it stands once no other process holds any of its deliveries, waiting at
    most `timeout` for that (then as it stands)."""
    deadline = time.monotonic() + timeout
    post = listing.get_posts(conn, [post_id])[0]
    while any(d.state == DeliveryState.SENDING for d in post.deliveries):
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
        post = listing.get_posts(conn, [post_id])[0]
    return post


def report_line(d: Delivery) -> str:
    """What plur-post prints for a delivery: `nostr:note1…`, `mastodon:<id>`,
    `bluesky:at://…` once sent; `<platform>:error:<why>` otherwise — for a thread's part
    that waits, what it waits on."""
    if d.state == DeliveryState.SENT:
        return f"{d.platform}:{d.remote_id}"
    return f"{d.platform}:error:{_error(d) or _unsent(d.state.value)}"


def _waits(d: Delivery) -> bool:
    return d.blocked and d.state in (DeliveryState.PENDING, DeliveryState.RETRY)


def _error(d: Delivery) -> str | None:
    return views.waiting_text(d.waiting_on) if _waits(d) else d.last_error


def _report(post: Post) -> list[Report]:
    """Each delivery of the post."""
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
                _error(d),
                d.error_kind,
                d.due_at_ms,
                report_line(d),
                post.thread_id,
                post.thread_part,
                post.thread_parts,
                post.reply_to,
                _waits(d),
                _waits(d) and d.waiting_on is not None and d.waiting_on.stuck,
            )
        )
    return reports


def _unsent(state: str) -> str:
    if state == "cancelled":
        return "cancelled"
    if state == "sending":
        return "still being sent by another process"
    return f"not sent ({state})"
