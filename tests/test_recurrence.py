"""Recurring schedules with an injected clock: DST, downtime, two daemons, pause, ends (G5)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import config as config_module
from plurcast import queue, schedules
from plurcast.models import to_ms
from plurcast.recurrence import Rule, decide
from plurcast.schedules import Recurring
from plurcast.store.base import Database
from tests.helpers import Clock, Run, deliver
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("backend")

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def run_times(rule: Rule, start: datetime, n: int) -> list[str]:
    """The next n occurrences after `start`, as local wall times with their offsets."""
    out, t = [], to_ms(start)
    for _ in range(n):
        t = rule.next_after(t)
        out.append(datetime.fromtimestamp(t / 1000, rule.timezone).isoformat())
    return out


# --- DST ------------------------------------------------------------------------------


def test_berlin_spring_gap_runs_right_after_and_autumn_runs_once() -> None:
    rule = Rule("30 2 * * *", None, BERLIN, 0)
    assert run_times(rule, utc(2026, 3, 28, 12), 3) == [
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that night
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert run_times(rule, utc(2026, 10, 24, 12), 3) == [
        "2026-10-25T02:30:00+02:00",  # the ambiguous 02:30, once
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_new_york_spring_and_autumn() -> None:
    rule = Rule("30 2 * * *", None, NEW_YORK, 0)
    assert run_times(rule, utc(2027, 3, 13, 12), 2) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-15T02:30:00-04:00",
    ]
    assert run_times(rule, utc(2026, 10, 31, 12), 2) == [
        "2026-11-01T02:30:00-05:00",
        "2026-11-02T02:30:00-05:00",
    ]


def test_hourly_runs_for_both_repeated_hours_and_skips_the_missing_one() -> None:
    berlin = Rule("0 * * * *", None, BERLIN, 0)
    assert run_times(berlin, utc(2026, 10, 24, 22, 30), 4) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    assert run_times(berlin, utc(2026, 3, 28, 23, 30), 2) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]
    new_york = Rule("0 * * * *", None, NEW_YORK, 0)
    assert run_times(new_york, utc(2026, 11, 1, 4, 30), 3) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_intervals_count_elapsed_time_across_dst() -> None:
    anchor = to_ms(datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN))
    rule = Rule(None, 6 * 3600, BERLIN, anchor)
    assert run_times(rule, utc(2026, 10, 24, 10, 0), 4) == [
        "2026-10-24T18:00:00+02:00",
        "2026-10-25T00:00:00+02:00",
        "2026-10-25T05:00:00+01:00",  # six hours of elapsed time, not 06:00 on the clock
        "2026-10-25T11:00:00+01:00",
    ]


# --- misfire --------------------------------------------------------------------------

T = to_ms(utc(2026, 11, 22, 9))
H = 3_600_000


def test_decide_latest_skip_all() -> None:
    missed = [T + i * H for i in range(72)]  # three days of hourly occurrences
    now = missed[-1] + 10 * 60_000
    latest = decide(missed, now, "latest", 3600)
    assert [d.occurrence_ms for d in latest if d.post] == [missed[-1]]
    assert latest[0].reason == "superseded by the occurrence at 2026-11-25 08:00 UTC"
    assert not any(d.post for d in decide(missed, now, "skip", 3600))
    everything = decide(missed, now, "all", 3600)
    assert [d.occurrence_ms for d in everything if d.post] == missed[-10:]
    assert everything[0].reason == "beyond the catch-up bound of 10"
    too_late = decide(missed, missed[-1] + 2 * H, "latest", 3600)
    assert not any(d.post for d in too_late)
    assert too_late[-1].reason == "missed by 7200 s, beyond the grace of 3600 s"
    on_time = decide([T], T + 5_000, "skip", 3600)
    assert [d.post for d in on_time] == [True]


# --- materializing ----------------------------------------------------------------------


@pytest.fixture
def cfg(configured: Path) -> config_module.Config:
    return config_module.load()


def make(cfg: config_module.Config, now: datetime, **spec: object) -> tuple[Database, str]:
    conn = queue.open_db(cfg)
    s = schedules.create(
        conn,
        cfg,
        "recurring ✨",
        Recurring(**spec),  # type: ignore[arg-type]
        platforms=["nostr"],
        account=None,
        tz=BERLIN,
        now=now,
    )
    return conn, s.id


def posts_of(conn: Database, schedule_id: str) -> list[int]:
    rows = conn.execute(
        "SELECT occurrence_at_ms FROM posts WHERE schedule_id = ? ORDER BY 1", (schedule_id,)
    )
    return [r[0] for r in rows]


def test_three_days_of_downtime_latest_one_catch_up(cfg: config_module.Config) -> None:
    start = utc(2026, 11, 22, 7)
    conn, sid = make(cfg, start, cron="0 9 * * *")
    now = utc(2026, 11, 25, 8, 20)  # 09:20 Berlin, three days on
    created = schedules.materialize(conn, to_ms(now))
    assert len(created) == 1
    assert posts_of(conn, sid) == [to_ms(utc(2026, 11, 25, 8))]
    fates = conn.execute(
        "SELECT fate, count(*) FROM occurrences WHERE schedule_id = ? GROUP BY fate", (sid,)
    ).fetchall()
    assert dict(fates) == {"posted": 1, "skipped": 3}
    assert schedules.get(conn, sid).next_run_at_ms == to_ms(utc(2026, 11, 26, 8))
    assert schedules.materialize(conn, to_ms(now)) == []


def test_three_days_of_downtime_skip_none_and_all_bounded(cfg: config_module.Config) -> None:
    start = utc(2026, 11, 22, 7)
    later = to_ms(utc(2026, 11, 25, 8, 20))
    conn, skip_id = make(cfg, start, cron="0 * * * *", misfire="skip")
    _, all_id = make(cfg, start, cron="0 * * * *", misfire="all")
    schedules.materialize(conn, later)
    assert posts_of(conn, skip_id) == []
    assert len(posts_of(conn, all_id)) == 10
    assert posts_of(conn, all_id)[-1] == to_ms(utc(2026, 11, 25, 8))


def test_two_daemons_one_post_per_occurrence(cfg: config_module.Config) -> None:
    start = utc(2026, 11, 22, 7)
    conn, sid = make(cfg, start, every="1h", misfire="all")
    other = queue.open_db(cfg)
    t = to_ms(start)
    for step in range(1, 30):
        now = t + step * 20 * 60_000
        schedules.materialize(conn if step % 2 else other, now)
        schedules.materialize(other if step % 2 else conn, now)
    occurrences = posts_of(conn, sid)
    assert occurrences == sorted(set(occurrences))
    assert len(occurrences) == 9  # every hour from 08:00 to 16:00 UTC


def test_pause_then_resume_follows_the_policy(cfg: config_module.Config) -> None:
    start = utc(2026, 11, 22, 7)
    conn, sid = make(cfg, start, cron="0 9 * * *")
    schedules.pause(conn, schedules.get(conn, sid), to_ms(start))
    assert schedules.materialize(conn, to_ms(utc(2026, 11, 24, 8, 30))) == []
    schedules.resume(conn, schedules.get(conn, sid), to_ms(utc(2026, 11, 24, 8, 30)))
    assert len(schedules.materialize(conn, to_ms(utc(2026, 11, 24, 8, 30)))) == 1
    history = schedules.history(conn, schedules.get(conn, sid))
    assert [h.fate for h in history] == ["skipped", "skipped", "scheduled"]
    assert history[0].reason is not None and "superseded" in history[0].reason


def test_ends_by_count_and_by_until(cfg: config_module.Config) -> None:
    start = utc(2026, 11, 22, 7)
    conn, by_count = make(cfg, start, every="1h", count=2)
    _, by_until = make(cfg, start, every="1h", until="2026-11-22 11:30 Europe/Berlin")
    t = to_ms(start)
    for step in range(1, 8):
        schedules.materialize(conn, t + step * H)
    assert len(posts_of(conn, by_count)) == 2
    assert schedules.get(conn, by_count).state == "finished"
    # 11:30 in Berlin is 10:30 UTC: the 08:00, 09:00 and 10:00 UTC occurrences, no more.
    assert posts_of(conn, by_until) == [to_ms(utc(2026, 11, 22, h)) for h in (8, 9, 10)]
    assert schedules.get(conn, by_until).state == "finished"


def test_occurrences_are_delivered_by_the_engine(
    write_config: Callable[[str], Path], nostr_key: Path, inprocess_relay: object
) -> None:
    from plurcast.engine import Engine

    url = inprocess_relay.url  # type: ignore[attr-defined]
    write_config(f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{url}"]\n')
    cfg = config_module.load()
    start = datetime.now(UTC).replace(microsecond=0)
    conn, sid = make(cfg, start, every="1m")
    now = to_ms(start) + 61_000
    schedules.materialize(conn, now)
    engine = Engine(cfg, conn, clock=lambda: now / 1000)

    deliver(engine, engine.claim_due(5), 2)
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["recurring ✨"]  # type: ignore[attr-defined]
    assert [h.fate for h in schedules.history(conn, schedules.get(conn, sid))] == ["posted"]


# --- the command line ---------------------------------------------------------------------


@pytest.mark.usefixtures("configured")
def test_cli_create_list_pause_resume_history_cancel(run: Run, clock: Clock) -> None:
    result = run(post_cli, "Standup", "--cron", "0 9 * * MON-FRI", "--tz", "Europe/Berlin")
    assert result.exit_code == 0, result.stderr
    prefix, sid, rest = result.stdout.strip().split(":", 2)
    assert (prefix, rest) == ("schedule", "next:in 21h 55m (Nov 23 09:00 CET)")
    data = json.loads(run(post_cli, "x", "--every", "6h", "-f", "json").stdout)
    assert data["rule"] == "every 6h"
    assert data["next_run_at_iso"] == "2026-11-22T17:04:43+01:00"
    lines = run(queue_cli, "schedules").stdout.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        [data["schedule_id"], "active", "every 6h"],  # next at 17:04 today
        [sid, "active", "cron 0 9 * * MON-FRI"],  # next tomorrow 09:00
    ]
    assert run(queue_cli, "pause", sid[:8]).stdout == f"paused:{sid}\n"
    assert run(queue_cli, "pause", sid).exit_code == 3
    assert run(queue_cli, "resume", sid).stdout == f"resumed:{sid}\n"
    assert run(queue_cli, "history", sid).stdout == ""
    stats = json.loads(run(queue_cli, "stats", "-f", "json").stdout)
    assert [s["schedule_id"] for s in stats["schedules"]] == [data["schedule_id"], sid]
    result = run(queue_cli, "cancel", sid, "--force")
    assert result.stdout == f"cancelled:{sid}\n"
    assert run(queue_cli, "schedules", "-f", "json").stdout.count('"cancelled"') == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 * * * *"], 'Error: invalid cron expression "61 * * * *": Bad minute'),
        (["--cron", "* * *"], 'Error: invalid cron expression "* * *": 3 fields, not 5'),
        (["--cron", "0 9 * * * *"], 'Error: invalid cron expression "0 9 * * * *": 6 fields'),
        (["--cron", "0 9 * * *", "--tz", "Mars/Base"], 'Error: unknown timezone "Mars/Base"'),
        (["--every", "30s"], 'Error: duration "30s" must be at least 1m — try "30m"'),
        (["--every", "0s"], 'Error: duration "0s" must be at least 1m'),
        (["--every", "soon"], 'Error: cannot understand the duration "soon"'),
        (["--cron", "0 9 * * *", "--every", "1h"], "Error: give either --cron or --every"),
        (["--cron", "0 9 * * *", "--draft"], "Error: --draft cannot be used with --cron"),
        (["--every", "1h", "--count", "0"], "Error: --count must be from 1 to 1,000,000 — or"),
        (["--every", "1h", "--count", "9" * 23], "Error: --count must be from 1 to 1,000,000"),
        (["--every", "1h", "--until", "yesterday"], "Error: Nov 21 11:04 CET is in the past"),
        (["--until", "tomorrow"], "Error: --until, --count and --grace go with --cron or --every"),
    ],
)
@pytest.mark.usefixtures("configured")
def test_cli_bad_rules_exit_3_and_write_nothing(
    run: Run, clock: Clock, db_path: Path, args: list[str], message: str
) -> None:
    result = run(post_cli, "x", *args)
    assert result.exit_code == 3
    assert result.stderr.startswith(message), result.stderr
    if os.environ.get("PLURCAST_DATABASE_URL"):
        assert run_sql(db_path, "SELECT count(*) FROM schedules") == [(0,)]
    else:
        assert not db_path.exists()  # a refused schedule makes no database either


@pytest.mark.usefixtures("configured")
def test_cli_history_shows_skips_and_why(run: Run, clock: Clock, db_path: Path) -> None:
    sid = run(post_cli, "x", "--cron", "0 * * * *", "-f", "json").stdout
    schedule_id = json.loads(sid)["schedule_id"]
    conn = queue.open_db(config_module.load())
    schedules.materialize(conn, to_ms(clock.now + timedelta(hours=3, minutes=10)))
    lines = run(queue_cli, "history", schedule_id).stdout.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["skipped", "skipped", "scheduled"]
    assert lines[0].split("\t")[3].startswith("superseded by the occurrence at ")
