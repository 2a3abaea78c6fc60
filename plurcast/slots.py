"""Posting slots: weekly wall times at which posts go out, the Buffer way.

`[slots]` in the config maps a platform name, or `all`, to weekly times in the config's
zone: `nostr = ["mon-fri 09:00", "sat 10:30"]`. `--schedule next` (and `reschedule ID
next`) takes the earliest slot that no queued post of the same targets holds. Reading
the specs and listing slot instants is pure; `take` picks a free one and must run inside
the transaction that writes the time, so two writers never get the same slot.

The instants come from cronsim, as recurring posts' do, so daylight saving time is decided
in one way everywhere: a slot whose wall time does not exist (the spring gap) moves to right
after the gap, an ambiguous one (the repeated autumn hour) is its first occurrence, once.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from plurcast.errors import ConfigError, InvalidInput
from plurcast.models import Post, from_ms, to_ms
from plurcast.store import listing
from plurcast.store import posts as store
from plurcast.store.base import Database

if TYPE_CHECKING:  # config imports this module to check [slots]
    from plurcast.config import Config

# A slot is (weekday, minute of the day): Monday is 0, as datetime.weekday() counts.
Slot = tuple[int, int]
ALL = "all"
WORD = "next"  # --schedule next
EXAMPLE = 'e.g. "mon-fri 09:00" or "sat 10:30"'

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {
    **{d: i for i, d in enumerate(_DAYS)},
    **{
        name: i
        for i, names in enumerate(
            (
                ("monday",),
                ("tues", "tuesday"),
                ("wednesday",),
                ("thur", "thurs", "thursday"),
                ("friday",),
                ("saturday",),
                ("sunday",),
            )
        )
        for name in names
    },
}
_DAY_SETS = {
    "daily": range(7),
    "*": range(7),
    "weekdays": range(5),
    "weekends": range(5, 7),
}
_TIME = r"(?P<h>\d{1,2}):(?P<m>\d{2})"  # compiled at first use (re's cache)
_MAX_SPEC_CHARS = 200


class SlotError(ValueError):
    """A weekly time that cannot be read; the message says which part and why."""


def parse_spec(text: str) -> frozenset[Slot]:
    """`"mon-fri 09:00"`, `"sat,sun 10:30, 16:00"`, `"daily 08:00"`, `"12:00"` → slots.

    Days are names (`mon`, `monday`), ranges (`fri-mon` wraps), comma lists, or `daily`,
    `weekdays`, `weekends`; without days, every day. Times are 24-hour `HH:MM`.
    """
    if len(text) > _MAX_SPEC_CHARS:
        raise SlotError(f"longer than {_MAX_SPEC_CHARS} characters")
    squashed = re.sub(r"\s*([,-])\s*", r"\1", " ".join(text.lower().split()))
    if not squashed:
        raise SlotError("empty")
    head, _, rest = squashed.partition(" ")
    if head[:1].isdigit():
        days, times = frozenset(range(7)), squashed
    else:
        days, times = _days(head), rest
    minutes = [_minute(part) for part in re.split(r"[ ,]+", times) if part]
    if not minutes:
        raise SlotError("no time of day (24-hour HH:MM)")
    return frozenset((day, minute) for day in days for minute in minutes)


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        if item in _DAY_SETS:
            days.update(_DAY_SETS[item])
            continue
        first, dash, last = item.partition("-")
        start = _day(first)
        end = _day(last) if dash else start
        span = (end - start) % 7
        days.update((start + i) % 7 for i in range(span + 1))
    return frozenset(days)


def _day(name: str) -> int:
    if name not in _DAY_NAMES:
        raise SlotError(f'unknown day "{name}"' if name else "a day is missing")
    return _DAY_NAMES[name]


def _minute(text: str) -> int:
    match = re.fullmatch(_TIME, text)
    if match is None:
        raise SlotError(f'"{text}" is not a 24-hour time (HH:MM)')
    hour, minute = int(match["h"]), int(match["m"])
    if hour > 23:
        raise SlotError(f'hour {hour} in "{text}" is not 0-23')
    if minute > 59:
        raise SlotError(f'minute {minute} in "{text}" is not 0-59')
    return hour * 60 + minute


def parse_specs(value: Sequence[str]) -> frozenset[Slot]:
    """A platform's list of specs, merged."""
    slots: set[Slot] = set()
    for spec in value:
        slots |= parse_spec(spec)
    return frozenset(slots)


def for_platforms(
    rules: Mapping[str, frozenset[Slot]], platforms: Iterable[str]
) -> frozenset[Slot]:
    """The slots every one of `platforms` has: its own list, else `all`'s.

    A post has one time for all its platforms, so a post to two platforms can only take a
    time that is a slot of both.
    """
    common: frozenset[Slot] | None = None
    for platform in platforms:
        own = rules.get(platform, rules.get(ALL, frozenset()))
        common = own if common is None else common & own
    return common or frozenset()


def upcoming(slots: frozenset[Slot], zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Every slot instant strictly after `after`, in order, each instant once (forever)."""
    import cronsim

    by_minute: dict[int, list[int]] = {}
    for day, minute in slots:
        by_minute.setdefault(minute, []).append(day)
    start = after.astimezone(zone)
    streams = []
    for minute, days in sorted(by_minute.items()):
        # cron counts weekdays from Sunday = 0.
        cron_days = ",".join(str((d + 1) % 7) for d in sorted(days))
        expression = f"{minute % 60} {minute // 60} * * {cron_days}"
        streams.append(_safe(cronsim.CronSim(expression, start)))
    last: datetime | None = None
    for instant in heapq.merge(*streams):
        if instant != last and instant > after:
            yield instant
        last = instant


def _safe(stream: Iterator[datetime]) -> Iterator[datetime]:
    """In UTC (aware datetimes of one zone compare by wall time, wrong across the autumn
    hour), stopping at the end of the calendar (year 9999) instead of raising."""
    while True:
        try:
            instant = next(stream)
        except (StopIteration, OverflowError, ValueError):
            return
        yield instant.astimezone(UTC)


def first_free(
    slots: frozenset[Slot], zone: ZoneInfo, after: datetime, held: Container[datetime]
) -> datetime | None:
    """The earliest slot instant after `after` not `held`; None only if the calendar ends."""
    for instant in upcoming(slots, zone, after):
        if instant not in held:
            return instant
    return None


def describe(slots: frozenset[Slot]) -> str:
    """`mon 09:00, mon 13:30, …` — for messages and `plur-queue slots`."""
    return ", ".join(
        f"{_DAYS[day]} {minute // 60:02d}:{minute % 60:02d}" for day, minute in sorted(slots)
    )


# --- taking a slot --------------------------------------------------------------------


def is_slot(expression: str | None) -> bool:
    """`--schedule next`: the earliest free posting slot."""
    return expression is not None and expression.strip().lower() == WORD


def check(cfg: Config, targets: Sequence[tuple[str, str]]) -> frozenset[Slot]:
    """The weekly slots these targets share, or a ConfigError saying what to add."""
    platforms = list(dict.fromkeys(p for p, _ in targets))
    missing = [p for p in platforms if not cfg.slots.get(p, cfg.slots.get(ALL))]
    if missing:
        raise ConfigError(
            f"no posting slots for {', '.join(missing)}",
            f'add [slots] {missing[0]} = ["mon-fri 09:00"] (or all = [...]) to {cfg.path}',
        )
    common = for_platforms(cfg.slots, platforms)
    if not common:
        raise ConfigError(
            f"{' and '.join(platforms)} have no posting slot in common",
            f"give them shared times in [slots] of {cfg.path}, or post to them separately",
        )
    return common


def take(
    conn: Database,
    cfg: Config,
    targets: Sequence[tuple[str, str]],
    now: datetime,
    *,
    moving: str | None = None,
) -> datetime:
    """The earliest slot after `now` that no queued post of these targets holds.

    Call it inside the write transaction that stores the time: the posts read here
    cannot change before the commit. `moving` is a post being rescheduled (its own time
    holds no slot against it).
    """
    return Picker(conn, cfg, now, moving=moving).take(targets)


class Picker:
    """Free slots handed out one after another inside one write transaction (an import).

    Each target's held times are read once; a slot given out is held from then on. For the
    same targets the next free slot is never before the last one given (holds only grow),
    so each search starts there: 10,000 rows cost 10,000 short searches, not a long one each.
    """

    def __init__(
        self, conn: Database, cfg: Config, now: datetime, *, moving: str | None = None
    ) -> None:
        self.conn, self.cfg, self.now, self.moving = conn, cfg, now, moving
        self._held: dict[tuple[str, str], set[datetime]] = {}
        self._last: dict[tuple[tuple[str, str], ...], datetime] = {}

    def _lock(self, targets: Sequence[tuple[str, str]]) -> None:
        """Two writers must not pick the same free slot: SQLite's write lock already keeps
        them apart; on PostgreSQL a lock per target does, taken in one order."""
        for platform, account in sorted(set(targets) - set(self._held)):
            self.conn.lock(f"slots:{platform}:{account}")

    def _held_by(self, target: tuple[str, str]) -> set[datetime]:
        if target not in self._held:
            times = store.held_times_ms(self.conn, [target], to_ms(self.now), self.moving)
            self._held[target] = {from_ms(ms) for ms in times}
        return self._held[target]

    def hold(self, targets: Sequence[tuple[str, str]], at: datetime) -> None:
        """A time given in the same transaction by hand (an import row with a time): the
        slot there, if it is one, is taken."""
        self._lock(targets)
        for target in dict.fromkeys(targets):
            self._held_by(target).add(at)

    def take(self, targets: Sequence[tuple[str, str]]) -> datetime:
        common = check(self.cfg, targets)
        self._lock(targets)
        held = [self._held_by(t) for t in dict.fromkeys(targets)]
        group = tuple(sorted(set(targets)))
        found = first_free(common, self.cfg.timezone, self._last.get(group, self.now), _AnyOf(held))
        if found is None:
            raise InvalidInput(
                "no free posting slot is left", f"add slots to [slots] in {self.cfg.path}"
            )
        for times in held:
            times.add(found)
        self._last[group] = found
        return found


class _AnyOf:
    """Held by any of these targets (without building their union for every row)."""

    def __init__(self, sets: list[set[datetime]]) -> None:
        self.sets = sets

    def __contains__(self, item: object) -> bool:
        return any(item in times for times in self.sets)


def coming(
    conn: Database,
    cfg: Config,
    targets: Sequence[tuple[str, str]],
    now: datetime,
    count: int,
) -> list[tuple[datetime, list[Post]]]:
    """The next `count` slots of these targets, each with the posts that hold it."""
    common = check(cfg, targets)
    times: list[datetime] = []
    for instant in upcoming(common, cfg.timezone, now):
        if len(times) >= count:
            break
        times.append(instant)
    holding = listing.posts_at(conn, [to_ms(t) for t in times], targets)
    by_time: dict[int, list[Post]] = {}
    for post in holding:
        by_time.setdefault(post.scheduled_at_ms or 0, []).append(post)
    return [(t, by_time.get(to_ms(t), [])) for t in times]
