"""plurcast.stats: time buckets in the user's zone (DST included), queue counts, daemon health.

NOW is Sunday 2026-11-22 10:04:43 UTC = 11:04:43 CET in Berlin, so "today" and "this week"
both end at Monday 2026-11-23 00:00 CET = 2026-11-22 23:00 UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from plurcast.health import HEARTBEAT_STALE_MS, Daemon, daemon_health
from plurcast.models import from_ms, to_ms
from plurcast.stats import BUCKETS, CHART_DAYS, UPCOMING, bucket_bounds, bucket_of, compute
from plurcast.store.base import Database
from plurcast.store.connection import connect, transaction
from plurcast.store.posts import NewPost, insert_post
from tests.helpers import NOW
from tests.peers.postgres import Backend, open_test_db

BERLIN = ZoneInfo("Europe/Berlin")
T0 = to_ms(NOW)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_ms(datetime(year, month, day, hour, minute, tzinfo=UTC))


def local(ms: int) -> datetime:
    return from_ms(ms).astimezone(BERLIN)


@pytest.fixture
def conn(db_path: Path, backend: Backend) -> Iterator[Database]:
    c = open_test_db(db_path)
    yield c
    c.close()


_counter = iter(range(1, 1_000_000))


def add(conn: Database, at_ms: int | None, *platforms: str, state: str | None = None) -> str:
    post_id = f"{next(_counter):08x}-0000-4000-8000-000000000000"
    with transaction(conn):
        insert_post(
            conn,
            NewPost(
                id=post_id,
                content=f"post {post_id[:8]}",
                created_at_ms=T0 - DAY,
                scheduled_at_ms=at_ms,
                timezone="Europe/Berlin",
                targets=[(p, "default") for p in platforms or ("nostr",)],
            ),
        )
        if state:
            conn.execute("UPDATE deliveries SET state = ? WHERE post_id = ?", (state, post_id))
    return post_id


def beat(conn: Database, owner: str, beat_ms: int, host: str = "box", pid: int = 42) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO heartbeats (owner, host, pid, started_at_ms, beat_at_ms, version) "
            "VALUES (?, ?, ?, ?, ?, '0.1.0')",
            (owner, host, pid, beat_ms - HOUR, beat_ms),
        )


# --- bucket bounds -----------------------------------------------------------------------------


def test_bounds_on_a_sunday() -> None:
    assert bucket_bounds(NOW, BERLIN) == (
        T0,
        T0 + HOUR,
        utc_ms(2026, 11, 22, 23),
        utc_ms(2026, 11, 22, 23),
    )


def test_bounds_on_a_saturday() -> None:
    now = NOW - timedelta(days=1)
    assert bucket_bounds(now, BERLIN) == (
        T0 - DAY,
        T0 - DAY + HOUR,
        utc_ms(2026, 11, 21, 23),
        utc_ms(2026, 11, 22, 23),
    )


def test_bounds_on_a_monday_run_to_next_monday() -> None:
    now = NOW + timedelta(days=1)
    _, _, today, week = bucket_bounds(now, BERLIN)
    assert today == utc_ms(2026, 11, 23, 23)
    assert week == utc_ms(2026, 11, 29, 23)
    assert local(week) == datetime(2026, 11, 30, tzinfo=BERLIN)


def test_bounds_follow_the_local_date_not_the_utc_date() -> None:
    before = datetime(2026, 11, 22, 22, 59, 59, tzinfo=UTC)  # Sunday 23:59:59 CET
    after = datetime(2026, 11, 22, 23, 0, 0, tzinfo=UTC)  # Monday 00:00:00 CET, still the 22nd UTC
    assert bucket_bounds(before, BERLIN)[2:] == (utc_ms(2026, 11, 22, 23), utc_ms(2026, 11, 22, 23))
    assert bucket_bounds(after, BERLIN)[2:] == (utc_ms(2026, 11, 23, 23), utc_ms(2026, 11, 29, 23))
    # the same instant in UTC belongs to Sunday
    assert bucket_bounds(after, ZoneInfo("UTC"))[2:] == (
        utc_ms(2026, 11, 23),
        utc_ms(2026, 11, 23),
    )


def test_bucket_of_around_each_bound() -> None:
    bounds = bucket_bounds(NOW, BERLIN)
    midnight = utc_ms(2026, 11, 22, 23)
    cases = {
        T0 - DAY: "overdue",
        T0 - 1: "overdue",
        T0: "next_hour",
        T0 + HOUR - 1: "next_hour",
        T0 + HOUR: "today",
        midnight - 1: "today",
        midnight: "later",
        midnight + 30 * DAY: "later",
    }
    assert {at: bucket_of(at, bounds) for at in cases} == cases


def test_bucket_of_this_week_on_a_saturday() -> None:
    bounds = bucket_bounds(NOW - timedelta(days=1), BERLIN)
    assert bucket_of(utc_ms(2026, 11, 21, 22, 59), bounds) == "today"
    assert bucket_of(utc_ms(2026, 11, 21, 23), bounds) == "this_week"
    assert bucket_of(utc_ms(2026, 11, 22, 22, 59), bounds) == "this_week"
    assert bucket_of(utc_ms(2026, 11, 22, 23), bounds) == "later"


def test_next_hour_wins_over_tomorrow_late_in_the_evening() -> None:
    now = datetime(2026, 11, 22, 22, 30, tzinfo=UTC)  # Sunday 23:30 CET
    bounds = bucket_bounds(now, BERLIN)
    assert bucket_of(utc_ms(2026, 11, 22, 23, 15), bounds) == "next_hour"
    assert bucket_of(utc_ms(2026, 11, 22, 23, 31), bounds) == "later"


def test_dst_autumn_week_ends_monday_midnight_local() -> None:
    now = datetime(2026, 10, 24, 10, 0, tzinfo=UTC)  # Saturday 12:00 CEST; clocks go back on 25th
    _, _, today, week = bucket_bounds(now, BERLIN)
    assert today == utc_ms(2026, 10, 24, 22)  # Sunday 00:00 CEST
    assert week == utc_ms(2026, 10, 25, 23)  # Monday 00:00 CET, not 22:00 UTC
    assert local(week).replace(tzinfo=None) == datetime(2026, 10, 26)
    assert local(week).utcoffset() == timedelta(hours=1)
    bounds = bucket_bounds(now, BERLIN)
    assert bucket_of(utc_ms(2026, 10, 25, 22, 30), bounds) == "this_week"  # Sun 23:30 CET


def test_dst_autumn_sunday_is_25_hours_long() -> None:
    now = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)  # Sunday 13:00 CET
    _, _, today, week = bucket_bounds(now, BERLIN)
    assert today == week == utc_ms(2026, 10, 25, 23)


def test_dst_spring_week_ends_monday_midnight_local() -> None:
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # Saturday 13:00 CET; clocks go forward on 29th
    _, _, today, week = bucket_bounds(now, BERLIN)
    assert today == utc_ms(2026, 3, 28, 23)  # Sunday 00:00 CET
    assert week == utc_ms(2026, 3, 29, 22)  # Monday 00:00 CEST
    assert local(week).replace(tzinfo=None) == datetime(2026, 3, 30)


# --- compute -------------------------------------------------------------------------------


def test_compute_on_a_real_queue(conn: Database) -> None:
    overdue = add(conn, T0 - DAY, "nostr", "mastodon")
    next_hour = add(conn, T0 + 30 * MINUTE, "nostr")
    today = add(conn, T0 + 5 * HOUR, "mastodon")
    after_local_midnight = add(conn, utc_ms(2026, 11, 22, 23, 30), "nostr")  # Mon 00:30 CET
    later_1 = add(conn, T0 + DAY + HOUR, "nostr")
    later_2 = add(conn, T0 + 2 * DAY, "bluesky")
    add(conn, T0 + 3 * DAY, "nostr")
    add(conn, T0 + 20 * DAY, "nostr")  # beyond the chart
    half = add(conn, T0 + 4 * DAY, "mastodon", "bluesky")
    conn.execute(
        "UPDATE deliveries SET state = 'cancelled' WHERE post_id = ? AND platform = ?",
        (half, "bluesky"),
    )  # only waiting deliveries count by platform
    add(conn, None, "nostr")  # a draft
    add(conn, T0 + 2 * HOUR, "nostr", state="sent")
    add(conn, T0 + 2 * HOUR, "mastodon", state="cancelled")
    add(conn, T0 - MINUTE, "bluesky", state="sending")
    add(conn, T0 - HOUR, "nostr", state="dead")

    s = compute(conn, NOW, BERLIN)

    assert s.total == 9
    assert s.by_time_bucket == {
        "overdue": 1,
        "next_hour": 1,
        "today": 1,
        "this_week": 0,
        "later": 6,
    }
    assert list(s.by_time_bucket) == list(BUCKETS)
    assert list(s.by_platform.items()) == [("bluesky", 1), ("mastodon", 3), ("nostr", 6)]
    assert s.by_status == {
        "draft": 1,
        "scheduled": 9,
        "sending": 1,
        "posted": 1,
        "partial": 0,
        "failed": 1,
        "cancelled": 1,
        "expired": 0,
        "blocked": 0,
    }
    assert UPCOMING == 5
    assert [p.id for p in s.upcoming] == [next_hour, today, after_local_midnight, later_1, later_2]
    assert overdue not in [p.id for p in s.upcoming]
    assert len(s.per_day) == CHART_DAYS == 14
    assert s.per_day[0] == ("2026-11-22", 2)
    assert s.per_day[-1] == ("2026-12-05", 0)
    assert dict(s.per_day) == {
        **{(datetime(2026, 11, 22) + timedelta(days=i)).date().isoformat(): 0 for i in range(14)},
        "2026-11-22": 2,
        "2026-11-23": 2,  # 00:30 CET and 12:04 CET
        "2026-11-24": 1,
        "2026-11-25": 1,
        "2026-11-26": 1,
    }
    assert s.daemon == Daemon(running=False)
    assert s.overdue_without_daemon is True


def test_compute_upcoming_with_few_posts_excludes_overdue(conn: Database) -> None:
    add(conn, T0 - 10 * MINUTE, "nostr")
    soon = add(conn, T0 + 10 * MINUTE, "nostr")
    first = add(conn, T0, "nostr")  # due exactly now: not overdue yet
    s = compute(conn, NOW, BERLIN)
    assert [p.id for p in s.upcoming] == [first, soon]
    assert s.by_time_bucket["overdue"] == 1
    assert s.by_time_bucket["next_hour"] == 2


def test_compute_this_week_on_a_saturday(conn: Database) -> None:
    add(conn, T0, "nostr")  # Sunday 11:04 CET
    s = compute(conn, NOW - timedelta(days=1), BERLIN)
    assert s.by_time_bucket["this_week"] == 1
    assert s.per_day[:2] == [("2026-11-21", 0), ("2026-11-22", 1)]


def test_compute_empty_queue(conn: Database) -> None:
    s = compute(conn, NOW, BERLIN)
    assert s.total == 0
    assert s.by_time_bucket == dict.fromkeys(BUCKETS, 0)
    assert s.by_platform == {}
    assert s.upcoming == []
    assert [n for _, n in s.per_day] == [0] * 14
    assert s.overdue_without_daemon is False


# --- daemon health ---------------------------------------------------------------------------


def test_no_heartbeat_means_no_daemon(conn: Database) -> None:
    assert daemon_health(conn, T0) == Daemon(running=False, host=None, pid=None)


def test_fresh_heartbeat_means_running(conn: Database) -> None:
    beat(conn, "box:42", T0 - HEARTBEAT_STALE_MS + 1)
    assert daemon_health(conn, T0) == Daemon(
        running=True, host="box", pid=42, last_heartbeat_ms=T0 - HEARTBEAT_STALE_MS + 1
    )


def test_stale_heartbeat_means_not_running(conn: Database) -> None:
    assert HEARTBEAT_STALE_MS == 30_000
    beat(conn, "box:42", T0 - 30_000)
    health = daemon_health(conn, T0)
    assert health.running is False
    assert (health.host, health.pid, health.last_heartbeat_ms) == ("box", 42, T0 - 30_000)


def test_latest_heartbeat_wins(conn: Database) -> None:
    beat(conn, "old:1", T0 - HOUR, host="old", pid=1)
    beat(conn, "new:2", T0 - 1_000, host="new", pid=2)
    beat(conn, "mid:3", T0 - 10 * MINUTE, host="mid", pid=3)
    health = daemon_health(conn, T0)
    assert (health.running, health.host, health.pid) == (True, "new", 2)


def test_compute_lists_every_daemon_on_every_host(conn: Database) -> None:
    beat(conn, "host-a:1:1", T0 - 2_000, host="host-a", pid=1)
    beat(conn, "host-b:7:7", T0 - 40_000, host="host-b", pid=7)  # silent: killed, or cut off
    beat(conn, "host-c:3:3", T0 - 1_000, host="host-c", pid=3)
    result = compute(conn, NOW, BERLIN)
    assert [(d.host, d.pid, d.running) for d in result.daemons] == [
        ("host-c", 3, True),
        ("host-a", 1, True),
        ("host-b", 7, False),
    ]
    assert (result.daemon.host, result.every_daemon) == ("host-c", result.daemons)


def test_compute_reports_daemon_and_overdue_warning(conn: Database) -> None:
    add(conn, T0 - HOUR, "nostr")
    beat(conn, "box:42", T0 - 5_000)
    s = compute(conn, NOW, BERLIN)
    assert s.daemon.running is True
    assert s.by_time_bucket["overdue"] == 1
    assert s.overdue_without_daemon is False
    assert compute(conn, NOW + timedelta(minutes=5), BERLIN).overdue_without_daemon is True


def test_a_retry_waiting_for_later_is_not_overdue(tmp_path: Path) -> None:
    conn = connect(tmp_path / "q.db")
    scheduled = to_ms(NOW - timedelta(minutes=10))
    with transaction(conn):
        insert_post(
            conn,
            NewPost("p-retry", "x", scheduled, scheduled, "UTC", [("nostr", "default")]),
        )
        conn.execute(
            "UPDATE deliveries SET state = 'retry', attempts = 1, due_at_ms = ?",
            (to_ms(NOW + timedelta(minutes=5)),),
        )
    result = compute(conn, NOW, ZoneInfo("Europe/Berlin"))
    assert result.by_time_bucket["overdue"] == 0
    assert result.by_time_bucket["next_hour"] == 1
    assert not result.overdue_without_daemon
