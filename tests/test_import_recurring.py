"""plur-import and plur-export with recurring posts (`cron`, `every`, `until`, `count`,
`misfire`, `grace`): a recurring row is checked as plur-post --cron/--every checks the same
flags and made into the same schedule, all or nothing, once per key — and an export, with
the schedules that have run part of their way, imports into an empty database as schedules
that run on from where they are, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_queue.plur_export import cli as export_cli
from plur_queue.plur_import import cli as import_cli
from plurcast import schedules
from tests.helpers import AnotherDatabase, Clock, Run, media_stored, rows_in, write_file
from tests.images import photo
from tests.peers.postgres import open_test_db, run_sql

pytestmark = pytest.mark.usefixtures("configured", "backend")
# What a copy makes anew (or, for a cron rule, only bounds its runs): left out of comparisons.
_ANEW = ("id", "created_at_ms", "updated_at_ms", "anchor_ms", "last_run_at_ms")


def _schedules(db_path: Path) -> list[dict[str, Any]]:
    """Every schedule as its row says, without what a copy makes anew, by next run."""
    if not db_path.exists() and not _postgresql():
        return []  # (asking SQLite would make the file)
    columns = [
        "id", "content", "targets", "metadata", "cron", "every_seconds", "timezone",
        "anchor_ms", "until_ms", "max_count", "posted", "next_run_at_ms", "misfire",
        "grace_seconds", "state", "created_at_ms", "updated_at_ms", "last_run_at_ms",
    ]  # fmt: skip
    rows = run_sql(db_path, f"SELECT {', '.join(columns)} FROM schedules")
    found = []
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        row["targets"], row["metadata"] = json.loads(row["targets"]), json.loads(row["metadata"])
        found.append(row)
    found.sort(key=lambda r: (r["next_run_at_ms"] or 0, r["content"]))
    return found


def _postgresql() -> bool:
    return bool(os.environ.get("PLURCAST_DATABASE_URL"))


def _same(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in _ANEW} for r in rows]


def test_a_recurring_row_is_the_schedule_plur_post_makes(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    plan = write_file(
        tmp_path,
        "plan.csv",
        "content,schedule,platforms,cron,every,until,count,misfire,grace,visibility\n"
        "Weekly,2026-11-23 09:00,mastodon,0 9 * * 1,,2027-01-31,,skip,,unlisted\n"
        "Often,,nostr,,6h,,10,,2h,\n",
    )
    imported = run(import_cli, plan)
    assert imported.exit_code == 0, imported.stderr
    assert imported.stderr == "imported 0 posts and 2 recurring posts\n"
    lines = imported.stdout.splitlines()
    assert lines[0].startswith("schedule:") and lines[0].endswith(
        ":next:in 21h 55m (Nov 23 09:00 CET)"
    )
    assert lines[1].endswith(":next:in 6h (Nov 22 17:04 CET)")
    from_import = _schedules(db_path)
    run_sql(db_path, "DELETE FROM schedule_import_keys")
    run_sql(db_path, "DELETE FROM schedules")
    for args in (
        ["Weekly", "-s", "2026-11-23 09:00", "-p", "mastodon", "--cron", "0 9 * * 1", "--until",
         "2027-01-31", "--misfire", "skip", "--visibility", "unlisted"],
        ["Often", "-p", "nostr", "--every", "6h", "--count", "10", "--grace", "2h"],
    ):  # fmt: skip
        made = run(post_cli, *args)
        assert made.exit_code == 0, made.stderr
    assert _same(from_import) == _same(_schedules(db_path))
    assert rows_in(db_path, "posts") == 0  # a schedule makes its posts when they are due


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('"cron": "0 9 * * *", "every": "1h"', "give either --cron or --every"),
        ('"cron": "0 9 * *"', 'invalid cron expression "0 9 * *": 4 fields, not 5'),
        ('"cron": "0 9 * * * *"', "6 fields, not 5"),
        ('"every": "30s"', "at least 1m"),
        ('"every": "often"', 'cannot understand the duration "often"'),
        ('"every": "1h", "count": 0', "--count must be from 1 to 1,000,000"),
        ('"every": "1h", "count": "many"', "count must be a whole number, not 'many'"),
        ('"every": "1h", "until": "2h", "count": 3', "--until and --count cannot be used"),
        ('"every": "1d", "until": "2h"', "--until is before the first occurrence"),
        ('"every": "1h", "misfire": "never"', 'unknown misfire policy "never"'),
        ('"every": "1h", "schedule": "2020-01-01 09:00"', "is in the past"),
        ('"every": "1h", "draft": true', "a draft cannot recur"),
        ('"every": "1h", "reply_to": "nostr:note1x"', "a recurring post cannot be a reply"),
        ('"until": "2027-01-01"', "until, count, misfire and grace go with cron or every"),
        ('"misfire": "all"', "until, count, misfire and grace go with cron or every"),
        ('"every": "1h", "platforms": "friendica"', 'unknown platform "friendica"'),
    ],
)
def test_a_bad_recurring_row_is_listed_and_nothing_is_written(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path, fields: str, message: str
) -> None:
    plan = write_file(
        tmp_path,
        "plan.jsonl",
        f'{{"content": "fine", "every": "1d"}}\n{{"content": "bad", {fields}}}\n',
    )
    result = run(import_cli, plan)
    assert result.exit_code in (2, 3), result.output
    assert result.stderr.startswith("Error: line 2: "), result.stderr
    assert message in result.stderr.splitlines()[0]
    assert "1 problem found; nothing was imported" in result.stderr
    assert _schedules(db_path) == [] and rows_in(db_path, "posts") == 0
    assert (_postgresql() or not db_path.exists()) and media_stored(db_path) == {}


def test_a_recurring_row_is_imported_once_and_a_dry_run_writes_nothing(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    (tmp_path / "chart.png").write_bytes(photo("PNG", (50, 40), orientation=1))
    plan = write_file(
        tmp_path,
        "plan.md",
        "---\nevery: 1d\nschedule: 2026-11-23 08:00\nplatforms: mastodon\nimages: [chart.png]\n"
        "alt: A chart\ncw: numbers\n---\nThe daily chart\n+++\n---\ncron: 0 12 * * *\n---\nNoon\n",
    )
    dry = run(import_cli, plan, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would-schedule:line-1:next:in 20h 55m (Nov 23 08:00 CET)",
        "would-schedule:line-11:next:in 55m 17s (Nov 22 12:00 CET)",
    ], dry.stdout
    assert dry.stderr == "would import 0 posts and 2 recurring posts\n"
    assert _schedules(db_path) == [] and (_postgresql() or not db_path.exists())
    assert media_stored(db_path) == {}
    first = run(import_cli, plan)
    assert first.exit_code == 0, first.stderr
    ids = [line.split(":")[1] for line in first.stdout.splitlines()]
    noon, daily = sorted(_schedules(db_path), key=lambda r: r["content"])
    assert daily["metadata"]["cw"] == "numbers"
    assert list(media_stored(db_path)) == [daily["metadata"]["images"][0]["sha256"]]
    again = run(import_cli, plan)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines() == [f"exists:{i}" for i in ids]
    assert again.stderr == "imported 0 posts; 2 already there\n"
    assert len(_schedules(db_path)) == 2
    report = json.loads(run(import_cli, plan, "--report", "json").stdout)
    # A schedule already there is reported as a new one is: by its schedule_id, no post.
    assert [(r["status"], r["post_id"], r["post_ids"], r["schedule_id"]) for r in report] == [
        ("exists", None, [], i) for i in ids
    ]
    assert noon["cron"] == "0 12 * * *"


def _make_schedules(run: Run, chart: Path) -> None:
    for args in (
        ["Weekly, on Monday", "-s", "2026-11-23 09:00", "-p", "mastodon,bluesky", "--cron",
         "0 9 * * 1", "--until", "2027-01-31 23:00", "--misfire", "skip", "--cw", "plans",
         "--lang", "de", "--image", str(chart), "--alt", "The week's chart"],
        ["Every 90 minutes", "-p", "nostr", "--every", "90m", "--count", "5", "--grace", "2h30m",
         "--misfire", "all", "--tz", "America/New_York"],
        ["Part one\n---\nPart two", "--thread", "-p", "mastodon,bluesky", "--every", "1d",
         "-s", "2026-11-23 07:00", "--variant", "bluesky=Kurz"],
        ["Paused", "-p", "nostr", "--every", "1d"],
        ["A plain post", "-s", "2026-11-24 10:00", "-p", "nostr"],
    ):  # fmt: skip
        made = run(post_cli, *args)
        assert made.exit_code == 0, made.stderr


@pytest.mark.parametrize("kind", ["jsonl", "csv", "md"])
def test_export_then_import_makes_the_same_schedules_running_on_from_where_they_are(
    run: Run,
    clock: Clock,
    tmp_path: Path,
    db_path: Path,
    another_database: AnotherDatabase,
    kind: str,
) -> None:
    chart = tmp_path / "chart.png"
    chart.write_bytes(photo("PNG", (50, 40), orientation=1))
    _make_schedules(run, chart)
    paused = next(s for s in _schedules(db_path) if s["content"] == "Paused")
    assert run(queue_cli, "pause", paused["id"]).exit_code == 0
    # The 90-minute schedule runs once (of its 5), then its next run is missed.
    clock.advance(minutes=91)
    conn = open_test_db(db_path)
    try:
        made = schedules.materialize(conn, int(clock() * 1000))
    finally:
        conn.close()
    assert len(made) == 1  # (its post is cancelled: a post whose time is past is not exported)
    cancelled = run(queue_cli, "cancel", made[0], "--force")
    assert cancelled.exit_code == 0, cancelled.output
    clock.advance(minutes=90)
    before = [s for s in _schedules(db_path) if s["content"] != "Paused"]
    often = next(s for s in before if s["every_seconds"] == 5400)
    assert often["posted"] == 1 and often["next_run_at_ms"] < clock() * 1000
    out = tmp_path / "out" / f"plan.{kind}"
    out.parent.mkdir()
    exported = run(export_cli, "-o", str(out))
    assert exported.exit_code == 0, exported.stderr
    warnings, summary = exported.stderr.splitlines()[:-1], exported.stderr.splitlines()[-1]
    assert summary == "exported 1 post and 3 recurring posts"
    assert len(warnings) == 2, warnings
    assert f"Warning: schedule {paused['id']}: paused schedules cannot be exported" in warnings[0]
    assert warnings[1].startswith(f"Warning: schedule {often['id']}: its run at ")
    assert "was missed; the export starts at the next one" in warnings[1]
    text = out.read_text()
    with another_database() as copy:
        imported = run(import_cli, str(out))
        assert imported.exit_code == 0, imported.stderr
        assert imported.stderr == "imported 1 post and 3 recurring posts\n"
        after = _schedules(copy)
        # The missed run is not made again: the copy starts at the next one, with 4 to go.
        often_copy = next(s for s in after if s["every_seconds"] == 5400)
        assert often_copy["next_run_at_ms"] == often["next_run_at_ms"] + 5400 * 1000
        assert (often_copy["max_count"], often_copy["posted"]) == (4, 0)
        for row in (often, often_copy):
            for name in ("next_run_at_ms", "max_count", "posted"):
                row.pop(name)
        assert _same(after) == _same(before)
        assert sorted(media_stored(copy)) == sorted(media_stored(db_path))
        again = tmp_path / "again" / f"plan.{kind}"
        again.parent.mkdir()
        assert run(export_cli, "-o", str(again)).exit_code == 0
        assert again.read_text() == text  # the export of the copy is the export
        back = run(import_cli, str(again))
        assert back.stderr == "imported 0 posts; 4 already there\n"


def test_export_filters_schedules_by_status_and_their_next_run(
    run: Run, clock: Clock, tmp_path: Path
) -> None:
    for args in (
        ["Soon", "-p", "nostr", "--every", "1h"],
        ["Later", "-p", "nostr", "--every", "1d", "-s", "2026-12-10 09:00"],
    ):
        assert run(post_cli, *args).exit_code == 0
    drafts = run(export_cli, "--status", "draft")
    assert drafts.exit_code == 0 and drafts.stdout == ""
    window = run(export_cli, "--since", "2026-12-01", "--until", "2026-12-31")
    assert [json.loads(line)["content"] for line in window.stdout.splitlines()] == ["Later"]
    row = json.loads(run(export_cli).stdout.splitlines()[0])
    assert row == {
        "key": row["key"],
        "content": "Soon",
        "schedule": "2026-11-22T12:04:43+01:00",
        "tz": "Europe/Berlin",
        "platforms": ["nostr"],
        "every": "1h",
    }


def test_a_schedule_whose_last_runs_were_all_missed_is_named_not_written(
    run: Run, clock: Clock
) -> None:
    made = run(post_cli, "Twice", "-p", "nostr", "--every", "1h", "--until", "2h30m")
    assert made.exit_code == 0, made.stderr
    clock.advance(hours=3)  # no daemon ran: both of its runs went by
    exported = run(export_cli)
    assert exported.exit_code == 0 and exported.stdout == ""
    [warning, summary] = exported.stderr.splitlines()
    assert warning.startswith("Warning: schedule ") and warning.endswith(
        "were missed; nothing of it is left to export"
    )
    assert summary == "exported 0 posts"


def test_an_auto_thread_comes_back_cut_as_it_was_cut(
    run: Run,
    clock: Clock,
    db_path: Path,
    another_database: AnotherDatabase,
) -> None:
    """A recurring --auto-thread keeps its parts as they were cut; the export writes them
    (one part on Nostr, three on Bluesky here) and the copy's runs post the same thread."""
    long = " ".join(f"word{i}" for i in range(120))  # ~870 characters
    made = run(
        post_cli, long, "--auto-thread", "--numbered", "-p", "nostr,bluesky", "--every", "1d"
    )
    assert made.exit_code == 0, made.stderr

    def next_run(db: Path) -> list[tuple[object, ...]]:
        clock.advance(days=1)
        conn = open_test_db(db)
        try:
            schedules.materialize(conn, int(clock() * 1000))
        finally:
            conn.close()
        clock.advance(days=-1)
        return run_sql(
            db,
            "SELECT p.content, p.thread_part, d.platform, coalesce(d.content, p.content) "
            "FROM posts p JOIN deliveries d ON d.post_id = p.id "
            "ORDER BY p.thread_part, d.platform",
        )

    exported = run(export_cli)
    assert exported.exit_code == 0, exported.stderr
    [before] = _schedules(db_path)
    posted = next_run(db_path)
    assert len(posted) == 4  # part 1 on both, parts 2 and 3 on Bluesky
    with another_database() as copy:
        imported = run(import_cli, "-f", "jsonl", "-", input=exported.stdout)
        assert imported.exit_code == 0, imported.stderr
        [after] = _schedules(copy)
        assert after["content"] == before["content"] == long
        assert after["metadata"]["thread"]["parts"] == before["metadata"]["thread"]["parts"]
        assert next_run(copy) == posted
