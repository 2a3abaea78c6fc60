"""plur-export → plur-import of a queue that is behind (no daemon ran): a post whose time
went by unsent comes back at that time, due now (`overdue`), a post a recurring schedule
made comes back made by the copy of that schedule (`from_schedule`) — and a past time that
no export marked is still refused. On SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_queue.plur_export import cli as export_cli
from plur_queue.plur_import import cli as import_cli
from plurcast import schedules
from tests.helpers import AnotherDatabase, Clock, Run, rows_in
from tests.peers.postgres import open_test_db, run_sql

pytestmark = pytest.mark.usefixtures("configured", "backend")


def _post(run: Run, *args: str) -> str:
    made = run(post_cli, *args)
    assert made.exit_code == 0, made.stderr
    return made.stdout.split(":")[1]


def _show(run: Run, post_id: str) -> dict[str, Any]:
    shown = run(queue_cli, "show", post_id, "-f", "json")
    assert shown.exit_code == 0, shown.output
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


def _behind(run: Run, clock: Clock, db_path: Path) -> tuple[str, str, str]:
    """A queue whose daemon stopped: a post due 40 min ago, one a schedule made 30 min ago
    (both unsent), one still ahead. Their ids (overdue, made, ahead)."""
    overdue = _post(run, "Due 50 minutes from the start", "-s", "50m", "-p", "nostr")
    ahead = _post(run, "Still ahead", "-s", "3h", "-p", "mastodon")
    assert run(post_cli, "Hourly", "-p", "mastodon", "--every", "1h").exit_code == 0
    clock.advance(minutes=90)
    conn = open_test_db(db_path)
    try:
        [made] = schedules.materialize(conn, int(clock() * 1000))
    finally:
        conn.close()
    return overdue, made, ahead


def test_a_queue_that_is_behind_comes_back_as_it_is(
    run: Run,
    clock: Clock,
    db_path: Path,
    another_database: AnotherDatabase,
) -> None:
    overdue, made, ahead = _behind(run, clock, db_path)
    [schedule_id] = [row[0] for row in run_sql(db_path, "SELECT id FROM schedules")]
    exported = run(export_cli)
    assert exported.exit_code == 0, exported.stderr
    assert exported.stderr.splitlines() == [
        "Warning: 2 posts are due and not sent yet (no daemon ran?): written with overdue, "
        "which plur-import queues due now",
        "exported 3 posts and 1 recurring post",
    ]
    rows = {row["key"]: row for row in map(json.loads, exported.stdout.splitlines())}
    assert rows[overdue]["overdue"] is True and "from_schedule" not in rows[overdue]
    assert rows[overdue]["schedule"] == "2026-11-22T11:54:43+01:00"  # its own time, kept
    assert rows[made]["overdue"] is True and rows[made]["from_schedule"] == schedule_id
    assert "overdue" not in rows[ahead] and "overdue" not in rows[schedule_id]
    # Back into the original: every row is there, a schedule reported as a schedule.
    back = run(import_cli, "-f", "jsonl", "-", "--report", "json", input=exported.stdout)
    assert back.exit_code == 0, back.stderr
    assert {
        r["key"]: (r["status"], r["post_id"], r["schedule_id"]) for r in json.loads(back.stdout)
    } == {
        overdue: ("exists", overdue, None),
        made: ("exists", made, schedule_id),
        ahead: ("exists", ahead, None),
        schedule_id: ("exists", None, schedule_id),
    }
    assert rows_in(db_path, "posts") == 3
    # A row that says it is a run a post already is, under another key, is refused.
    twin = {**rows[made], "key": "twin"}
    refused = run(import_cli, "-f", "jsonl", "-", input=json.dumps(twin) + "\n")
    assert refused.exit_code == 3
    assert refused.stderr.startswith(
        f'Error: line 1: a post in the queue already is that run of schedule "{schedule_id}"'
    )
    with another_database() as copy:
        imported = run(import_cli, "-f", "jsonl", "-", "--report", "json", input=exported.stdout)
        assert imported.exit_code == 0, imported.stderr
        warnings = imported.stderr.splitlines()
        assert warnings == [
            "Warning: line 1: it was due at Nov 22 11:54 CET and is not sent yet (overdue): "
            "it is queued due now",
            "Warning: line 2: it was due at Nov 22 12:04 CET and is not sent yet (overdue): "
            "it is queued due now",
            "imported 3 posts and 1 recurring post",
        ]
        report = {r["key"]: r for r in json.loads(imported.stdout)}
        [copy_schedule] = [row[0] for row in run_sql(copy, "SELECT id FROM schedules")]
        assert [(r["overdue"], r["schedule_id"]) for r in report.values()] == [
            (True, None),
            (True, copy_schedule),
            (False, None),
            (False, copy_schedule),
        ]
        assert report[schedule_id]["post_id"] is None and report[schedule_id]["post_ids"] == []
        # The overdue posts keep their times and are due: the next daemon sends them.
        now_ms = int(clock() * 1000)
        due = run_sql(
            copy,
            "SELECT p.scheduled_at_ms, d.due_at_ms, d.state FROM posts p "
            "JOIN deliveries d ON d.post_id = p.id WHERE p.scheduled_at_ms <= ?",
            now_ms,
        )
        assert sorted(due) == [
            (now_ms - minutes * 60_000, now_ms - minutes * 60_000, "pending")
            for minutes in (40, 30)
        ]
        # The made post belongs to the copy's schedule: shown so, in its history, and
        # cancelled with it.
        copied = report[made]["post_id"]
        assert _show(run, copied)["schedule_id"] == copy_schedule
        history = run(queue_cli, "history", copy_schedule, "-f", "json")
        assert [(h["post_id"], h["fate"]) for h in json.loads(history.stdout)] == [
            (copied, "scheduled")
        ]
        assert run(export_cli).stdout == exported.stdout  # the copy exports as the original
        assert run(queue_cli, "cancel", copy_schedule, "--force").exit_code == 0
        assert _show(run, copied)["status"] == "cancelled"
        assert _show(run, report[overdue]["post_id"])["status"] == "scheduled"


@pytest.mark.sqlite_only  # refused before anything is written: one backend is enough
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('"schedule": "2026-11-22T09:00:00+01:00"', "Nov 22 09:00 CET is in the past"),
        ('"overdue": true, "schedule": "today 9am"', "with its offset, as plur-export writes"),
        ('"overdue": true, "schedule": "2026-11-22T09:00:00"', "with its offset"),
        ('"overdue": true', "overdue goes with the schedule the post was due at"),
        ('"overdue": true, "draft": true', "overdue goes with the schedule"),
        ('"overdue": "maybe", "schedule": "1h"', "overdue must be true or false"),
        ('"every": "1h", "overdue": true', "a recurring row is neither overdue nor made by"),
        ('"every": "1h", "from_schedule": "fine"', "a recurring row is neither overdue"),
        ('"from_schedule": "nothing", "schedule": "1h"', 'from_schedule "nothing" is the key'),
        ('"from_schedule": "a-post", "schedule": "1h"', 'from_schedule "a-post" is the key'),
        ('"from_schedule": "fine", "draft": true', "a schedule makes no drafts"),
        ('"from_schedule": "fine", "schedule": "2d"', 'not before the next run of schedule "fine"'),
    ],
)
def test_a_past_time_is_queued_only_as_an_export_marks_it(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path, fields: str, message: str
) -> None:
    plan = tmp_path / "plan.jsonl"
    plan.write_text(
        '{"key": "fine", "content": "fine", "every": "1d"}\n'
        '{"key": "a-post", "content": "a post", "schedule": "2h"}\n'
        f'{{"content": "bad", {fields}}}\n'
    )
    result = run(import_cli, str(plan))
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("Error: line 3: "), result.stderr
    assert message in result.stderr.splitlines()[0]
    assert "1 problem found; nothing was imported" in result.stderr
    assert rows_in(db_path, "posts") == 0 and rows_in(db_path, "schedules") == 0


def test_an_overdue_row_whose_time_is_still_ahead_is_an_ordinary_row(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    plan = tmp_path / "plan.jsonl"
    plan.write_text('{"content": "x", "overdue": true, "schedule": "2026-11-22T12:00:00+01:00"}\n')
    result = run(import_cli, str(plan), "--report", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "imported 1 post\n"  # no warning: it is not overdue here
    [row] = json.loads(result.stdout)
    assert row["overdue"] is False and row["scheduled_at_iso"] == "2026-11-22T12:00:00+01:00"


@pytest.mark.sqlite_only  # refused before anything is written
def test_two_posts_cannot_be_one_run_of_a_schedule(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    run_of = '"from_schedule": "daily", "overdue": true, "schedule": "2026-11-22T09:00:00+01:00"'
    plan = tmp_path / "plan.jsonl"
    plan.write_text(
        '{"key": "daily", "content": "Daily", "every": "1d"}\n'
        f'{{"content": "one", {run_of}}}\n{{"content": "two", {run_of}}}\n'
    )
    result = run(import_cli, str(plan))
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        'Error: line 3: line 2 is the same run of schedule "daily" — keep one of them'
    )
    assert rows_in(db_path, "posts") == 0


def test_a_post_some_platforms_have_comes_back_for_the_others_only(
    run: Run,
    clock: Clock,
    db_path: Path,
    another_database: AnotherDatabase,
) -> None:
    """Sent to Nostr, not yet to Mastodon (its server was down): restoring the backup must
    not post it to Nostr a second time."""
    both = _post(run, "On Nostr already", "-s", "10m", "-p", "nostr,mastodon")
    thread = _post(run, "One\n---\nTwo", "--thread", "-s", "20m", "-p", "nostr,mastodon")
    clock.advance(minutes=30)
    run_sql(db_path, "UPDATE deliveries SET state = 'sent', remote_id = 'note1x' WHERE "
            "platform = 'nostr' AND (post_id = ? OR post_id = ?)", both, thread)  # fmt: skip
    exported = run(export_cli)
    assert exported.exit_code == 0, exported.stderr
    notes = exported.stderr.splitlines()
    assert (
        f"Warning: post {both}: already sent to nostr; its row carries the rest (mastodon)" in notes
    )
    rows = {row["key"]: row for row in map(json.loads, exported.stdout.splitlines())}
    assert rows[both]["platforms"] == ["mastodon"] and rows[both]["overdue"] is True
    # The thread's part 1 is on Nostr, part 2 not: written whole, and said so.
    assert rows[thread]["platforms"] == ["nostr", "mastodon"]
    assert any(
        n.startswith(f"Warning: post {thread}: part of its thread is already on nostr")
        for n in notes
    )
    with another_database() as copy:
        imported = run(import_cli, "-f", "jsonl", "-", input=exported.stdout)
        assert imported.exit_code == 0, imported.stderr
        query = "SELECT d.platform FROM deliveries d JOIN posts p ON p.id = d.post_id "
        assert run_sql(copy, query + "WHERE p.content = ?", "On Nostr already") == [("mastodon",)]


def test_a_thread_begun_is_named_not_dropped(run: Run, clock: Clock, db_path: Path) -> None:
    """Part 1 went out everywhere, part 2 still waits: a row cannot carry that (part 2 has
    to answer the post already out), so the export names the thread instead of leaving it
    out in silence."""
    first = _post(run, "One\n---\nTwo", "--thread", "-s", "10m", "-p", "nostr")
    clock.advance(minutes=11)
    run_sql(
        db_path,
        "UPDATE deliveries SET state = 'sent', remote_id = 'note1x' WHERE post_id = ?",
        first,
    )
    exported = run(export_cli)
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout == ""
    assert exported.stderr.splitlines() == [
        f"Warning: thread {first}: its first part is posted and 1 later part is scheduled; a "
        "thread begun cannot be exported by this version (its parts stay in this queue)",
        "exported 0 posts",
    ]
