"""Posts a recurring schedule made, imported with it (`from_schedule`): which schedule a
row's key names, whether the post can be one of its runs, and the run recorded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from plurcast import writing
from plurcast.errors import InvalidInput
from plurcast.models import from_ms, to_ms
from plurcast.store import imports as store
from plurcast.store.base import Database
from plurcast.timefmt import format_local
from plurcast.transfer.rows import Row


def check(conn: Database, rows: Sequence[Row]) -> list[tuple[int, str]]:
    """Each `from_schedule` post: its key names a schedule (a recurring row of this import,
    or one in the queue), and the post is one of that schedule's past runs — before its
    next run, a run no other post is — so that no run of the schedule makes it again."""
    named = schedules_named(conn, rows)
    problems: list[tuple[int, str]] = []
    runs: dict[tuple[str, int], int] = {}  # (schedule, occurrence) → the row's index
    for index, row in enumerate(rows):
        wanted = row.entry.from_schedule
        if wanted is None or row.new is None:
            continue
        try:
            if wanted not in named:
                raise InvalidInput(
                    f'from_schedule "{wanted}" is the key of no recurring row of this import '
                    "and of no schedule in the queue",
                    "import the post with the row of its schedule, or leave from_schedule out",
                )
            schedule_id, next_ms = named[wanted]
            if row.new.scheduled_at is None:
                raise InvalidInput(
                    "a post a schedule made has its own time", "give its schedule, not next"
                )
            at = to_ms(row.new.scheduled_at)
            if next_ms is not None and at >= next_ms:
                raise InvalidInput(
                    f'it is not before the next run of schedule "{wanted}" '
                    f"({format_local(from_ms(next_ms), row.new.timezone, row.new.scheduled_at)})"
                    ": a post a schedule made is one of its past runs",
                    "give the time of that run, or leave from_schedule out",
                )
            first = runs.setdefault((schedule_id, at), index)
            if first != index:
                raise InvalidInput(
                    f'{rows[first].entry.where} is the same run of schedule "{wanted}"',
                    "keep one of them",
                )
        except InvalidInput as exc:
            problems.append((index, f"{row.entry.where}: {exc}"))
    for run in sorted(store.runs_taken(conn, list(runs))):
        index = runs[run]
        entry = rows[index].entry
        taken = InvalidInput(
            f'a post in the queue already is that run of schedule "{entry.from_schedule}"',
            "leave from_schedule out to import it on its own",
        )
        problems.append((index, f"{rows[index].entry.where}: {taken}"))
    return problems


def schedules_named(conn: Database, rows: Sequence[Row]) -> dict[str, tuple[str, int | None]]:
    """`from_schedule` key → the schedule it names, and its next run: a recurring row of
    this import (made by it, or there already), else a schedule in the queue. Keys of
    posts, or of nothing, are left out."""
    from plurcast.store import schedules as schedule_store

    wanted = {r.entry.from_schedule for r in rows if r.new is not None} - {None}
    found: dict[str, tuple[str, int | None]] = {}
    there: dict[str, str] = {}  # key → a schedule already in the queue
    for r in rows:
        if r.key in wanted and r.recurring is not None and r.existing is None:
            found[r.key] = (r.recurring.schedule.id, r.recurring.schedule.next_run_at_ms)
        elif r.key in wanted and r.existing is not None and r.existing.schedule:
            there[r.key] = r.existing.id
    rest = [key for key in wanted if key is not None and key not in found and key not in there]
    if rest:
        there.update((key, k.id) for key, k in store.existing(conn, rest).items() if k.schedule)
    for key, schedule_id in there.items():
        found[key] = (schedule_id, schedule_store.get(conn, schedule_id).next_run_at_ms)
    return found


def record_run(conn: Database, schedule_id: str, created: writing.Created, now: datetime) -> None:
    """A post a schedule made, imported: its occurrence is in the schedule's history."""
    from plurcast.store import schedules as schedule_store

    assert created.scheduled_at is not None
    at = to_ms(created.scheduled_at)
    schedule_store.record_occurrence(
        conn, schedule_id, at, to_ms(now), "posted", created.post_id, None
    )
