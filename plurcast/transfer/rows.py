"""What plur-import makes of its rows: each `Row` (its entry, key, and what became of it),
the `Plan` of a whole import, and `Refused` when some row is bad."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from plurcast import writing
from plurcast.errors import PlurcastError
from plurcast.models import from_ms
from plurcast.store.imports import Known
from plurcast.transfer.fields import Entry

if TYPE_CHECKING:  # imported when a row recurs: schedules brings logging and cron's rules
    from plurcast.schedules import NewSchedule

Target = tuple[str, str]


@dataclass
class Row:
    """One entry, and what became of it: skipped (`existing`), checked (`new`), written."""

    entry: Entry
    key: str
    existing: Known | None = None  # the post or schedule this key names: skipped
    new: writing.NewPost | None = None
    recurring: NewSchedule | None = None  # a row with cron or every: checked
    overdue: bool = False  # its time is past (an `overdue` row): queued due now, at it
    made_by: str | None = None  # the schedule that made the post (`from_schedule`)
    created: writing.Created | None = None  # after the write (or the dry run)

    @property
    def post_ids(self) -> list[str]:
        return [] if self.created is None else list(self.created.post_ids)

    @property
    def schedule_id(self) -> str | None:
        """The row's schedule: the one it makes (or is), else the one that made its post."""
        if self.existing is not None:
            return self.existing.id if self.existing.schedule else self.existing.made_by
        return self.made_by if self.recurring is None else self.recurring.schedule.id

    @property
    def scheduled_at(self) -> datetime | None:
        """When it goes out: the post's time (None: a draft), a schedule's next run."""
        if self.recurring is not None:
            return from_ms(self.recurring.schedule.next_run_at_ms or 0)
        if self.created is not None:
            return self.created.scheduled_at
        return None if self.new is None else self.new.scheduled_at

    @property
    def targets(self) -> list[Target]:
        if self.recurring is not None:
            return list(self.recurring.schedule.targets)
        return [] if self.new is None else list(self.new.checked.targets)

    @property
    def text(self) -> str:
        if self.recurring is not None:
            return self.recurring.schedule.content
        return self.entry.content if self.new is None else self.new.checked.text


class Refused(PlurcastError):
    """Some rows are bad: each problem names its row; nothing was written.

    Exit 3 (invalid input), or 2 when a row needs configuration that is missing or wrong
    (a platform not configured, a key file others can read)."""

    def __init__(self, problems: Sequence[str], *, config: bool) -> None:
        self.problems = list(problems)
        self.exit_code = 2 if config else 3
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} found; nothing was imported",
            "fix them and run plur-import again",
        )


@dataclass
class Plan:
    rows: list[Row]
    problems: list[tuple[int, str]]  # (entry index, message naming the row)
    config_problem: bool = False  # some row needs configuration that is missing or wrong
    warnings: list[str] = field(default_factory=list)  # "line 3: image 1 (…) has no alt text"
