"""The queue at a glance: counts by status, platform and time, what is next, daemon health."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from plurcast import health
from plurcast.models import (
    WAITING,
    Delivery,
    DeliveryState,
    Post,
    PostStatus,
    Schedule,
    from_ms,
    to_ms,
)
from plurcast.store import listing
from plurcast.store import schedules as schedule_store
from plurcast.store.base import Database
from plurcast.value import Value

BUCKETS = ("overdue", "next_hour", "today", "this_week", "later")
CHART_DAYS = 14
UPCOMING = 5


class ThreadProgress(Value):
    """How far a thread is on one (platform, account): complete, on its way, or stopped at
    a part that gave up or was cancelled (the parts after it wait, G6)."""

    thread_id: str
    platform: str
    account: str
    sent: int
    parts: int
    state: str  # complete | in_progress | stopped
    stopped_at: int | None = None  # the part that stopped it
    error: str | None = None


def thread_progress(posts: list[Post]) -> list[ThreadProgress]:
    """Each thread's progress per (platform, account), threads in the order given."""
    by_thread: dict[str, list[Post]] = {}
    for post in posts:
        if post.thread_id is not None and (post.thread_parts or 0) > 1:
            by_thread.setdefault(post.thread_id, []).append(post)
    found = []
    for thread_id, parts in by_thread.items():
        chains: dict[tuple[str, str], list[tuple[int, Delivery]]] = {}
        for post in parts:
            for d in post.deliveries:
                chains.setdefault((d.platform, d.account), []).append((post.thread_part or 0, d))
        for (platform, account), chain in chains.items():
            chain.sort(key=lambda item: item[0])
            sent = sum(1 for _, d in chain if d.state == DeliveryState.SENT)
            stop = next(
                (
                    (n, d)
                    for n, d in chain
                    if d.state in (DeliveryState.DEAD, DeliveryState.CANCELLED)
                ),
                None,
            )
            if all(d.state == DeliveryState.CANCELLED for _, d in chain):
                continue  # called off: nothing to report
            if sent == len(chain):
                state = "complete"
            elif stop is not None:
                state = "stopped"
            else:
                state = "in_progress"
            found.append(
                ThreadProgress(
                    thread_id,
                    platform,
                    account,
                    sent,
                    len(chain),
                    state,
                    None if stop is None else stop[0],
                    None if stop is None else (stop[1].last_error or stop[1].state.value),
                )
            )
    return found


class QueueStats(Value):
    total: int
    by_status: dict[str, int]
    by_platform: dict[str, int]
    by_time_bucket: dict[str, int]
    upcoming: list[Post]
    per_day: list[tuple[str, int]]
    daemon: health.Daemon  # the one that beat last
    next_occurrences: list[Schedule]
    threads: Sequence[ThreadProgress] = ()
    daemons: Sequence[health.Daemon] = ()  # every one, on every host

    @property
    def overdue_without_daemon(self) -> bool:
        return self.by_time_bucket["overdue"] > 0 and not self.daemon.running

    @property
    def every_daemon(self) -> list[health.Daemon]:
        """What to show, one line each: every daemon that beats, or the one `not running`."""
        return list(self.daemons) or [self.daemon]

    def overdue_warning(self) -> str | None:
        """The one warning both plur-queue stats and plur-send status give."""
        if not self.overdue_without_daemon:
            return None
        n = self.by_time_bucket["overdue"]
        return (
            f"Warning: {n} post{'s are' if n != 1 else ' is'} overdue and no plur-send daemon "
            "is running — start it: plur-send start (or plur-send)"
        )


def bucket_bounds(now: datetime, tz: ZoneInfo) -> tuple[int, int, int, int]:
    """Ends of: now, the next hour, today, this week (Monday-based) — in the user's zone."""
    local = now.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    end_of_today = _next_local_midnight(midnight, 1, tz)
    end_of_week = _next_local_midnight(midnight, 7 - local.weekday(), tz)
    return (to_ms(now), to_ms(now + timedelta(hours=1)), to_ms(end_of_today), to_ms(end_of_week))


def _next_local_midnight(midnight: datetime, days: int, tz: ZoneInfo) -> datetime:
    # Wall-clock arithmetic, so a DST change inside the range does not shift the boundary.
    day = (midnight.replace(tzinfo=None) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def bucket_of(at_ms: int, bounds: tuple[int, int, int, int]) -> str:
    for name, bound in zip(BUCKETS[:-1], bounds, strict=True):
        if at_ms < bound:
            return name
    return BUCKETS[-1]


def next_due_ms(post: Post) -> int:
    """When the post's next delivery is due: a retry waiting for later is not overdue."""
    dues = [d.due_at_ms for d in post.deliveries if d.state in WAITING and d.due_at_ms is not None]
    return min(dues) if dues else post.scheduled_at_ms or 0


def compute(conn: Database, now: datetime, tz: ZoneInfo) -> QueueStats:
    daemons = health.all_daemons(conn, to_ms(now))
    posts = listing.select_posts(conn, waiting_only=False)
    by_status = Counter(p.status.value for p in posts)
    queued = [p for p in posts if p.status == PostStatus.SCHEDULED]
    bounds = bucket_bounds(now, tz)
    buckets = dict.fromkeys(BUCKETS, 0)
    by_platform: Counter[str] = Counter()
    per_day: Counter[str] = Counter()
    due_of = {post.id: next_due_ms(post) for post in queued}
    queued.sort(key=lambda p: due_of[p.id])
    for post in queued:
        due = due_of[post.id]
        buckets[bucket_of(due, bounds)] += 1
        by_platform.update(d.platform for d in post.deliveries if d.state in WAITING)
        per_day[from_ms(due).astimezone(tz).date().isoformat()] += 1
    today = now.astimezone(tz).date()
    days = [(today + timedelta(days=i)).isoformat() for i in range(CHART_DAYS)]
    return QueueStats(
        total=len(queued),
        by_status={s.value: by_status.get(s.value, 0) for s in PostStatus},
        by_platform=dict(sorted(by_platform.items())),
        by_time_bucket=buckets,
        upcoming=[p for p in queued if due_of[p.id] >= bounds[0]][:UPCOMING],
        per_day=[(day, per_day.get(day, 0)) for day in days],
        daemon=daemons[0] if daemons else health.Daemon(running=False),
        daemons=daemons,
        next_occurrences=[s for s in schedule_store.all_schedules(conn) if s.state == "active"][
            :UPCOMING
        ],
        threads=thread_progress(posts),
    )
