"""Hostile input (issue 11): each case a hostile new user found, pinned so it stays fixed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import config as config_module
from plurcast import queue, schedules
from plurcast.models import to_ms
from tests.helpers import Clock, Run

pytestmark = pytest.mark.usefixtures("configured")

YEAR_9999_MS = 253_402_300_740_000  # 9999-12-31 23:59 UTC


def post(run: Run, content: str, *args: str) -> str:
    result = run(post_cli, content, *args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["post_id"])


def sql(db_path: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(statement, params).fetchall()


# --- 1. a cron that floods ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "fields"), [("* * * * * *", 6), ("*/1 * * * * *", 6), ("* * *", 3), ("*", 1)]
)
def test_cron_with_other_than_5_fields_is_refused(
    run: Run, clock: Clock, db_path: Path, cron: str, fields: int
) -> None:
    result = run(post_cli, "flood", "--cron", cron)
    assert result.exit_code == 3
    assert result.stderr == (
        f'Error: invalid cron expression "{cron}": {fields} fields, not 5 — use 5 fields: '
        'minute hour day month weekday, e.g. "0 9 * * 1-5"\n'
    )
    assert not db_path.exists() or sql(db_path, "SELECT count(*) FROM schedules") == [(0,)]


def test_a_stored_seconds_cron_still_fires_at_most_once_a_minute(
    run: Run, clock: Clock, db_path: Path
) -> None:
    """A schedule written before the check (or by hand) must not flood either (G5)."""
    sid = json.loads(run(post_cli, "x", "--cron", "* * * * *", "-f", "json").stdout)["schedule_id"]
    sql(db_path, "UPDATE schedules SET cron = '* * * * * *', misfire = 'all'")
    conn = queue.open_db(config_module.load())
    made = []
    for _ in range(180):  # three minutes, second by second
        clock.advance(seconds=1)
        made += schedules.materialize(conn, to_ms(clock.now))
    assert 3 <= len(made) <= 4
    times = [r[0] for r in sql(db_path, "SELECT occurrence_at_ms FROM posts ORDER BY 1")]
    assert all(t % 60_000 == 0 for t in times), times
    assert sql(db_path, "SELECT count(*) FROM occurrences WHERE schedule_id = ?", sid) == [
        (len(made),)
    ]


# --- 2. a time beyond the horizon, and readers of any stored time ---------------------------


@pytest.mark.parametrize("when", ["9999-12-31 23:59 UTC", "3000-01-01", "in 101 years"])
def test_a_post_beyond_the_horizon_is_refused_and_nothing_written(
    run: Run, clock: Clock, db_path: Path, when: str
) -> None:
    result = run(post_cli, "x", "-s", when)
    assert result.exit_code == 3
    assert "is more than 100 years ahead — schedule posts up to" in result.stderr
    assert not db_path.exists() or sql(db_path, "SELECT count(*) FROM posts") == [(0,)]


def test_reschedule_beyond_the_horizon_is_refused(run: Run, clock: Clock, db_path: Path) -> None:
    post_id = post(run, "x", "-s", "2126-01-01")
    before = sql(db_path, "SELECT * FROM deliveries")
    for when in ("9999-12-31 23:59 UTC", "2126-12-01", "+100w"):
        result = run(queue_cli, "reschedule", post_id, when)
        assert result.exit_code == 3, result.stderr
        assert "more than 100 years ahead" in result.stderr
    assert sql(db_path, "SELECT * FROM deliveries") == before


@pytest.mark.parametrize("stored_ms", [YEAR_9999_MS, 2**62, -(2**62)])
def test_every_reader_copes_with_any_stored_time(
    run: Run, clock: Clock, db_path: Path, stored_ms: int
) -> None:
    """A time written by an older version or by hand must not make the queue unreadable."""
    post_id = post(run, "x", "-s", "1h")
    sql(db_path, "UPDATE posts SET scheduled_at_ms = ?", stored_ms)
    sql(db_path, "UPDATE deliveries SET due_at_ms = ?", stored_ms)
    for args in (
        ["list"],
        ["list", "--all"],
        ["list", "-f", "json"],
        ["stats"],
        ["stats", "-f", "json"],
        ["show", post_id],
        ["show", post_id, "-f", "json"],
    ):
        result = run(queue_cli, *args)
        assert result.exit_code == 0, (args, result.stderr)
    listed = json.loads(run(queue_cli, "list", "-f", "json").stdout)[0]
    assert listed["scheduled_at"] == stored_ms // 1000  # the epoch field stays exact
    if stored_ms > 0:
        result = run(post_cli, "y", "-s", "random:1h-2h")
        assert result.exit_code == 3
        assert "after the latest pending post" in result.stderr
    assert run(queue_cli, "cancel", post_id, "--force").exit_code == 0
    assert run(post_cli, "y", "-s", "random:1h-2h").exit_code == 0


def test_until_beyond_the_horizon_is_refused(run: Run, clock: Clock) -> None:
    result = run(post_cli, "x", "--every", "1d", "--until", "9999-12-31 23:59 UTC")
    assert result.exit_code == 3
    assert "more than 100 years ahead" in result.stderr


# --- 8. plain bad input is exit 3, never an internal error -------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "-p", ","], 'Error: -p "," names 0 platforms — give one of'),
        (["list", "-p", "nostr,mastodon"], 'Error: -p "nostr,mastodon" names 2 platforms'),
    ],
)
def test_queue_bad_platform_filter_is_exit_3(
    run: Run, clock: Clock, args: list[str], message: str
) -> None:
    result = run(queue_cli, *args)
    assert result.exit_code == 3
    assert result.stderr.startswith(message), result.stderr


@pytest.mark.parametrize(
    ("zone", "hint"),
    [
        ("a" * 300, 'use an IANA name such as "Europe/Berlin" or "UTC"'),
        ("Europe", 'use an IANA name such as "Europe/Berlin" or "UTC"'),
        ("posix/Europe/Berlin", 'use "Europe/Berlin"'),
        ("right/Europe/Berlin", 'use "Europe/Berlin"'),
        ("localtime", 'use an IANA name such as "Europe/Berlin" or "UTC"'),
    ],
)
@pytest.mark.parametrize("when", ["1h", "in 3 days at noon"])
def test_a_zone_that_is_no_iana_zone_is_exit_3(
    run: Run, clock: Clock, db_path: Path, zone: str, hint: str, when: str
) -> None:
    result = run(post_cli, "x", "-s", when, "--tz", zone)
    assert result.exit_code == 3
    assert result.stderr == f'Error: unknown timezone "{zone}" — {hint}\n'
    result = run(post_cli, "x", "-s", f"tomorrow 9am {zone}")
    assert result.exit_code == 3, result.stderr
    assert not db_path.exists() or sql(db_path, "SELECT count(*) FROM posts") == [(0,)]


def test_a_config_zone_that_is_no_iana_zone_is_exit_2(
    run: Run, clock: Clock, configured: Path
) -> None:
    configured.write_text(
        configured.read_text().replace('"Europe/Berlin"', '"posix/Europe/Berlin"')
    )
    result = run(queue_cli, "list")
    assert result.exit_code == 2
    assert 'timezone "posix/Europe/Berlin" is not a known IANA zone' in result.stderr


@pytest.mark.parametrize("answer", [b"\xff\xfe\n", b"\xe9\n", b""])
def test_a_non_utf8_answer_at_the_prompt_declines(
    run: Run, clock: Clock, db_path: Path, answer: bytes
) -> None:
    post_id = post(run, "x", "-s", "1h")
    result = run(queue_cli, "cancel", post_id, input=answer)
    assert result.exit_code == 3
    assert result.stderr.endswith(
        "Error: Cancelled by user — nothing was changed; answer y, or pass --force\n"
    )
    assert sql(db_path, "SELECT DISTINCT state FROM deliveries") == [("pending",)]


# --- 12. a pipe closed early ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_reader_that_goes_away_is_no_error(run: Run, clock: Clock) -> None:
    for n in range(3):
        post(run, f"post {n}", "-s", f"{n + 1}h")
    run(post_cli, "again", "--every", "1h")
    for args in (["list"], ["schedules"], ["stats"], ["list", "-f", "json"], ["--help"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # `| head -0`: the reader is gone before the first byte
        try:
            done = subprocess.run(
                [str(Path(sys.executable).parent / "plur-queue"), *args],
                stdout=write_end,
                stderr=subprocess.PIPE,
                timeout=60,
                check=False,
            )
        finally:
            os.close(write_end)
        assert done.returncode == 0, (args, done.stderr)
        assert b"Error" not in done.stderr and b"Exception" not in done.stderr, args
