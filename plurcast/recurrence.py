"""Recurring schedules: when the next occurrence is, and what to do about missed ones.

Cron expressions (5 fields; names like MON or JAN) are evaluated by cronsim in the
schedule's own IANA zone, which gives the DST behaviour users expect: a wall time
that does not exist runs right after the gap (02:30 on a spring-forward night runs
at 03:00), an ambiguous one runs once (02:30 on the autumn night), and an hourly
`0 * * * *` runs for both 02:00 hours, since they are different hours. Intervals
count elapsed time from their anchor, whatever the clocks do.

`decide` is the misfire policy, a pure function of the missed occurrences and
the time: it never lets a cold start or days of downtime flood the queue.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from plurcast.errors import InvalidInput
from plurcast.models import from_ms, to_ms
from plurcast.value import Value

MISFIRE_POLICIES = ("latest", "skip", "all")
MIN_INTERVAL_SECONDS = 60
MINUTE_MS = 60_000
CRON_FIELDS = 5  # minute hour day-of-month month day-of-week
_CRON_HINT = 'use 5 fields: minute hour day month weekday, e.g. "0 9 * * 1-5"'
DEFAULT_GRACE_SECONDS = 3600
# An occurrence this late is still "on time": the daemon was running, just busy.
ON_TIME_MS = 60_000
# `all` catches up at most this many missed occurrences; older ones are skipped.
MAX_CATCH_UP = 10
# Missed occurrences are recorded one by one up to this many per pass; the rest in one line.
MAX_RECORDED_MISSES = 1000


class Rule(Value):
    """A cron expression or a fixed interval, in a zone, from an anchor."""

    cron: str | None
    every_seconds: int | None
    timezone: ZoneInfo
    anchor_ms: int  # intervals: the first occurrence; cron: occurrences start after it

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron}"
        from plurcast.timefmt import compact_duration

        return f"every {compact_duration(self.every_seconds or 0)}"

    def next_after(self, after_ms: int) -> int:
        """The first occurrence strictly after `after_ms` (and not before the anchor)."""
        if self.cron is not None:
            import cronsim

            start = max(after_ms, self.anchor_ms - 1)
            # Cron counts whole minutes: asked from the minute's last instant, even a
            # stored expression with a seconds field fires at most once a minute (G5).
            start += MINUTE_MS - 1 - start % MINUTE_MS
            local = datetime.fromtimestamp(start / 1000, self.timezone)
            return to_ms(next(cronsim.CronSim(self.cron, local)))
        every = (self.every_seconds or 0) * 1000
        if after_ms < self.anchor_ms:
            return self.anchor_ms
        return self.anchor_ms + ((after_ms - self.anchor_ms) // every + 1) * every

    def occurrences(self, from_ms_: int, until_ms: int) -> Iterator[int]:
        """Occurrences t with from_ms_ <= t <= until_ms, in order."""
        t = self.next_after(from_ms_ - 1)
        while t <= until_ms:
            yield t
            t = self.next_after(t)


def validate_cron(expression: str, tz: ZoneInfo, now: datetime) -> str:
    """A 5-field cron expression, checked now so a typo is refused, not discovered at 9 am."""
    import cronsim

    expression = " ".join(expression.split())
    fields = len(expression.split())
    if fields != CRON_FIELDS:
        # cronsim would take a sixth field as seconds: "* * * * * *" posts every second.
        raise InvalidInput(
            f'invalid cron expression "{expression}": {fields} fields, not 5', _CRON_HINT
        )
    try:
        next(cronsim.CronSim(expression, now.astimezone(tz)))
    except cronsim.CronSimError as exc:
        raise InvalidInput(f'invalid cron expression "{expression}": {exc}', _CRON_HINT) from None
    except StopIteration:
        raise InvalidInput(
            f'cron expression "{expression}" never matches', "check the day and month fields"
        ) from None
    return expression


class Decision(Value):
    occurrence_ms: int
    post: bool
    reason: str | None = None  # why it was skipped


def decide(missed: list[int], now_ms: int, policy: str, grace_seconds: int) -> list[Decision]:
    """What to do with occurrences that are due (all <= now), oldest first.

    latest: post the newest if it is within the grace window; skip the others.
    skip:   post only what is on time; skip what the daemon missed.
    all:    post the newest MAX_CATCH_UP; skip older ones.
    """
    decisions = []
    newest = missed[-1] if missed else None
    for index, t in enumerate(missed):
        late = now_ms - t
        if late <= ON_TIME_MS:
            decisions.append(Decision(t, True))
        elif policy == "skip":
            decisions.append(
                Decision(t, False, f"missed by {late // 1000} s (misfire policy skip)")
            )
        elif policy == "all":
            if len(missed) - index <= MAX_CATCH_UP:
                decisions.append(Decision(t, True))
            else:
                decisions.append(Decision(t, False, f"beyond the catch-up bound of {MAX_CATCH_UP}"))
        elif t != newest:
            decisions.append(
                Decision(
                    t,
                    False,
                    f"superseded by the occurrence at {from_ms(newest or t):%Y-%m-%d %H:%M} UTC",
                )
            )
        elif late <= grace_seconds * 1000:
            decisions.append(Decision(t, True))
        else:
            decisions.append(
                Decision(
                    t, False, f"missed by {late // 1000} s, beyond the grace of {grace_seconds} s"
                )
            )
    return decisions
