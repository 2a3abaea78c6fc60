"""Schedule expressions: turn what a user types after ``--schedule`` into a UTC instant.

The common forms are parsed by the regexes below rather than by dateparser, because
importing dateparser and running its first parse costs ~120 ms, more than the whole CLI
start-up budget, and its timezone-aware mode attaches the wrong offset across DST changes.
dateparser stays the last resort for free-form language and is imported only then.

Wall-clock forms are resolved on naive local datetimes and turned into an instant in
exactly one place (``_localize``), so DST gaps and folds are decided once and consistently.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, available_timezones

from plurcast.config import zone
from plurcast.errors import InvalidInput
from plurcast.timefmt import MONTHS as _MONTHS
from plurcast.timefmt import compact_duration as _compact
from plurcast.timefmt import format_local
from plurcast.value import Value

if TYPE_CHECKING:  # random:MIN-MAX only
    import random

MAX_INPUT_CHARS = 200
HINT = 'try "30m", "tomorrow 9am" or "2027-01-01 10:00 Europe/Berlin"'
_MAX_DURATION = timedelta(days=36525)  # 100 years: anything longer is a typo, not a plan
# Nothing is scheduled further ahead than this: a typo such as year 9999 is refused, not queued.
HORIZON = _MAX_DURATION
_RANDOM_MIN = timedelta(seconds=30)
_RANDOM_MAX = timedelta(days=30)
_TONIGHT = time(20)
_YEARS_AHEAD = 9  # enough for a yearless Feb 29 to find its next leap year
_DURATION_HINT = 'try "30m", "1h30m" or "2 days"'
_RANDOM_HINT = 'e.g. "random:1h-2h" (minimum at least 30s, maximum at most 30d)'

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A duration's units, each with every spelling the grammar takes.
_UNIT_SECONDS = {
    spelling: seconds
    for seconds, spellings in (
        (604800, "weeks week wks wk w"),
        (86400, "days day d"),
        (3600, "hours hour hrs hr h"),
        (60, "minutes minute mins min m"),
        (1, "seconds second secs sec s"),
    )
    for spelling in spellings.split()
}

# Patterns are kept as source and matched with re's functions, whose cache compiles each at
# its first use: a run parses one expression, needing a few of them, not all (issue #16).
# A unit is a whole word, looked up in _UNIT_SECONDS: one alternative a spelling would make the
# pattern the costliest of a plur-post run to compile (~3 M instructions).
_UNIT = r"[a-z]+(?![a-z])"
_TERM = rf"(?:\d+(?:\.\d+)?|\.\d+)\s*{_UNIT}"
_TERM_RE = rf"(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>{_UNIT})"
_DURATION_RE = rf"{_TERM}(?:\s*(?:,\s*|and\s+)?{_TERM})*"
_RELATIVE_RE = r"(?:in\s+|(?P<sign>[+-])\s*)?(?P<duration>.+)"
_SHIFT_RE = r"(?P<sign>[+-])\s*(?P<duration>.+)"
_SHIFT_SHAPE_RE = r"\s*[+-]\s*\.?\d"
_RANDOM_RE = r"random:\s*(?P<low>[^-]+?)\s*-\s*(?P<high>[^-]+)"

_CLOCK = r"(?:noon|midnight|\d{1,2}(?::\d{2}){0,2}\s*[ap]\.?m\.?|\d{1,2}(?::\d{2}){1,2})"
_CLOCK_RE = r"(?P<h>\d{1,2})(?::(?P<mi>\d{2}))?(?::(?P<s>\d{2}))?\s*(?:(?P<ap>[ap])\.?m\.?)?"
_DAY_THEN_CLOCK_RE = rf"(?:(?P<day>.+?)\s+)?(?:at\s+)?(?P<clock>{_CLOCK})"
_CLOCK_THEN_DAY_RE = rf"(?P<clock>{_CLOCK})\s+(?:on\s+)?(?P<day>.+)"
_ISO_T_RE = r"(\d{4,}-\d{1,2}-\d{1,2})t(?=\d)"
_ISO_INSTANT_RE = (
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[t ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:\.\d+)?)?\s*(?:(?P<z>z)|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2}))?)"
)

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_WEEKDAY_RE = (
    r"(?:on\s+)?(?:(?P<next>next|this)\s+)?(?P<wd>mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?"
    r"|thu(?:r(?:s(?:day)?)?)?|fri(?:day)?|sat(?:urday)?|sun(?:day)?)"
)
_ISO_DATE_RE = r"(?P<y>\d{4,})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
_MONTH_DAY_RE = (
    rf"(?:on\s+)?(?P<mon>{_MONTH})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?P<y>\d{{4,}}))?"
)
_DAY_MONTH_RE = (
    rf"(?:on\s+)?(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon>{_MONTH})\.?"
    rf"(?:,?\s+(?P<y>\d{{4,}}))?"
)
_ZONE_SHAPE_RE = r"(?ai:utc|[a-z]+(?:/[a-z][a-z0-9_+\-]*)+)"
# What dateparser is shown (see _natural_language): the squashed text, in these characters.
_NATURAL_RE = r"[a-z0-9 :.,/+'-]+"
_TRAILING_CLOCK_RE = rf"(?P<rest>.+?) (?:at )?(?P<clock>{_CLOCK})"
_STRAY_CLOCK_RE = rf"(?<![a-z0-9:.]){_CLOCK}(?![a-z0-9:])|\bat\b| \d{{1,2}}$"


class _Context(Value):
    """Everything wall-clock resolution needs, computed once per call."""

    now: datetime  # aware, any zone
    zone: ZoneInfo
    local: datetime  # naive wall-clock "now" in zone
    raw: str  # the input as typed, for error messages


# --- public API ---------------------------------------------------------------------


def parse_when(
    text: str,
    *,
    now: datetime,
    tz: ZoneInfo,
    pending_after: datetime | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """Resolve a schedule expression to an aware UTC instant strictly after ``now``.

    ``now`` is injected (never read from the clock) so results are reproducible; ``tz`` is
    the user's zone for wall-clock forms unless the text names its own zone at the end.
    ``pending_after`` lets ``random:MIN-MAX`` queue behind the last pending post.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")  # a naive now would silently mean host time
    raw = _clean(text)
    body, zone = _split_zone(raw, tz)
    lowered = _squash(body)
    if lowered in ("now", "today"):  # "today" keeps the current wall-clock time: that is now
        return _whole_seconds(now)
    if lowered.startswith("random:"):
        import random

        return _random_after(lowered, raw, now, zone, pending_after, rng or random.SystemRandom())
    ctx = _Context(now, zone, now.astimezone(zone).replace(tzinfo=None), raw)
    result = (
        _relative(lowered, now, raw)
        or _iso_instant(lowered, raw)
        or _wall_clock(lowered, ctx)
        or _natural_language(lowered, ctx)
    )
    if result is None:
        raise _unparseable(raw)
    _ensure_future(result, zone, now)
    return result


def shift(text: str, *, base: datetime, now: datetime) -> datetime:
    """Move ``base`` by a signed duration, for ``reschedule ID -30m``.

    The past error is shown in ``now``'s zone when it is a ZoneInfo (else UTC), so pass
    ``now`` in the user's zone to get local times in messages.
    """
    raw = _clean(text)
    match = re.fullmatch(_SHIFT_RE, _squash(raw))
    delta = _duration_or_none(match["duration"], raw) if match else None
    if match is None or delta is None:
        raise _unparseable(raw)
    zone = now.tzinfo if isinstance(now.tzinfo, ZoneInfo) else ZoneInfo("UTC")
    try:
        result = _whole_seconds(base + (delta if match["sign"] == "+" else -delta))
    except OverflowError:  # a time stored before the horizon existed, moved further still
        raise _beyond_horizon(f'"{raw}" from {format_local(base, zone, now)}', now, zone) from None
    _ensure_future(result, zone, now)
    return result


def is_relative_shift(text: str) -> bool:
    """Tell a signed duration from an option, so ``reschedule ID -30m`` needs no ``--``.

    Only the shape is checked (sign then a number): a malformed shift such as ``-0m`` still
    reaches ``shift`` and gets a time error instead of an unknown-option error.
    """
    return re.match(_SHIFT_SHAPE_RE, text) is not None


def parse_duration(text: str, *, minimum_seconds: int = 1) -> timedelta:
    """Parse a duration such as ``1h30m`` or ``1 day 2 hours`` of at least
    ``minimum_seconds``, in whole seconds."""
    raw = _clean(text)
    delta = _duration_or_none(_squash(raw), raw, minimum_seconds, _DURATION_HINT)
    if delta is None:
        raise InvalidInput(f'cannot understand the duration "{raw}"', hint=_DURATION_HINT)
    return delta


# --- input handling and errors ------------------------------------------------------


def _clean(text: str) -> str:
    """Strip and bound the input before any regex or dateparser sees it."""
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("empty time expression", hint=HINT)
    if len(stripped) > MAX_INPUT_CHARS:
        raise InvalidInput(
            f"time expression is too long ({len(stripped)} characters, max {MAX_INPUT_CHARS})",
            hint=HINT,
        )
    return stripped


def _squash(text: str) -> str:
    """One lowercase form so every regex can ignore case and runs of whitespace."""
    return " ".join(text.lower().split())


def _unparseable(raw: str) -> InvalidInput:
    return InvalidInput(f'cannot understand the time "{raw}"', hint=HINT)


def _out_of_range(raw: str, reason: str) -> InvalidInput:
    return InvalidInput(f'invalid date or time "{raw}": {reason}', hint=HINT)


def _ensure_future(result: datetime, zone: ZoneInfo, now: datetime) -> None:
    """Strictly after now and within the horizon."""
    if result <= now:
        raise InvalidInput(f"{format_local(result, zone, now)} is in the past")
    if result - now > HORIZON:
        raise _beyond_horizon(format_local(result, zone, now), now, zone)


def _beyond_horizon(shown: str, now: datetime, zone: ZoneInfo) -> InvalidInput:
    last = format_local(now + HORIZON, zone, now)
    return InvalidInput(
        f"{shown} is more than 100 years ahead", f"schedule posts up to {last} at the latest"
    )


def _whole_seconds(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(microsecond=0)


def _split_zone(raw: str, default: ZoneInfo) -> tuple[str, ZoneInfo]:
    """Peel a trailing ``Area/Name`` or ``UTC`` off the input; it overrides the user's zone."""
    *head, last = raw.rsplit(maxsplit=1)
    if not re.fullmatch(_ZONE_SHAPE_RE, last):
        return raw, default
    return " ".join(head), _zone(last)


def _zone(name: str) -> ZoneInfo:
    """Look a zone up exactly, then case-insensitively (the grammar is case-insensitive)."""
    if name.lower() == "utc":
        return ZoneInfo("UTC")
    try:
        return zone(name)
    except InvalidInput as exact_error:
        matches = [key for key in available_timezones() if key.lower() == name.lower()]
        if not matches:
            raise exact_error from None
        return zone(matches[0])


# --- durations ----------------------------------------------------------------------


def _duration_or_none(
    text: str, raw: str, minimum_seconds: int = 1, hint: str = HINT
) -> timedelta | None:
    """None when ``text`` is not shaped like a duration; raise when it is but makes no sense."""
    if not re.fullmatch(_DURATION_RE, text):
        return None
    terms = [(term["num"], term["unit"]) for term in re.finditer(_TERM_RE, text)]
    if any(unit not in _UNIT_SECONDS for _, unit in terms):
        return None
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in terms)
    if seconds > _MAX_DURATION.total_seconds():
        raise InvalidInput(f'duration "{raw}" is too long (max 100 years)', hint=hint)
    if round(seconds) < minimum_seconds:
        raise InvalidInput(
            f'duration "{raw}" must be at least {_compact(minimum_seconds)}', hint=hint
        )
    return timedelta(seconds=round(seconds))


def _relative(text: str, now: datetime, raw: str) -> datetime | None:
    match = re.fullmatch(_RELATIVE_RE, text)
    delta = _duration_or_none(match["duration"], raw) if match else None
    if match is None or delta is None:
        return None
    return _whole_seconds(now + (-delta if match["sign"] == "-" else delta))


def _random_after(
    text: str,
    raw: str,
    now: datetime,
    zone: ZoneInfo,
    pending_after: datetime | None,
    rng: random.Random,
) -> datetime:
    """Pick a uniform instant in [base+MIN, base+MAX], base being the latest pending post.

    Drawing whole seconds keeps the draw uniform and the result exact after truncation.
    """
    match = re.fullmatch(_RANDOM_RE, text)
    if match is None:
        raise InvalidInput(f'cannot understand the random range "{raw}"', hint=_RANDOM_HINT)
    low, high = (int(parse_duration(match[key]).total_seconds()) for key in ("low", "high"))
    for failed, problem in (
        (low < _RANDOM_MIN.total_seconds(), f"minimum must be at least 30s (got {_compact(low)})"),
        (high > _RANDOM_MAX.total_seconds(), f"maximum must be at most 30d (got {_compact(high)})"),
        (low >= high, "minimum must be less than the maximum"),
    ):
        if failed:
            raise InvalidInput(f"random: the {problem}", hint=_RANDOM_HINT)
    base = max(now, pending_after) if pending_after is not None else now
    try:
        result = _whole_seconds(base) + timedelta(seconds=rng.randint(low, high))
    except OverflowError:
        result = datetime.max.replace(tzinfo=UTC)
    if result - now > HORIZON:
        raise InvalidInput(
            f"{raw} after the latest pending post ({format_local(base, zone, now)}) is more "
            "than 100 years ahead",
            "reschedule or cancel that post (plur-queue list), or give a time",
        )
    return result


# --- absolute and wall-clock forms --------------------------------------------------


def _iso_instant(text: str, raw: str) -> datetime | None:
    """ISO 8601 with ``Z`` or an offset names one instant, so the user's zone is irrelevant."""
    match = re.fullmatch(_ISO_INSTANT_RE, text)
    if match is None:
        return None
    sign = -1 if match["sign"] == "-" else 1
    year, month, day, hour, minute, second = (
        int(match[key] or 0) for key in ("y", "mo", "d", "h", "mi", "s")
    )
    offset = timedelta(hours=int(match["oh"] or 0), minutes=int(match["om"] or 0))
    if offset >= timedelta(hours=24):
        raise _out_of_range(raw, "the UTC offset must be less than 24 hours")
    try:
        zone = timezone(sign * offset)
        return _whole_seconds(datetime(year, month, day, hour, minute, second, tzinfo=zone))
    except (ValueError, OverflowError) as exc:
        raise _out_of_range(raw, str(exc)) from None


def _wall_clock(text: str, ctx: _Context) -> datetime | None:
    """Day words, weekdays, dates and times of day, optionally combined in either order."""
    text = re.sub(_ISO_T_RE, r"\1 ", text.removeprefix("at "))
    if text == "next week":
        return _whole_seconds(ctx.now + timedelta(days=7))
    day: str | None = text
    clock_text: str | None = None
    if match := re.fullmatch(_DAY_THEN_CLOCK_RE, text) or re.fullmatch(_CLOCK_THEN_DAY_RE, text):
        day, clock_text = match["day"], match["clock"]
    found = _candidate_days(day, ctx)
    if found is None:
        return None
    days, default_clock = found
    if clock_text is None:
        return _first_ahead(days, default_clock, ctx, strict=False)
    return _first_ahead(days, _parse_clock(clock_text, ctx.raw), ctx, strict=True)


def _candidate_days(day: str | None, ctx: _Context) -> tuple[list[date], time] | None:
    """Dates the expression may mean, earliest first, and the time used when none was typed.

    Several candidates mean "the next one still ahead" (a bare time, a weekday, a date
    without a year); a single one is taken as asked and may end up in the past.
    """
    today = ctx.local.date()
    keep = ctx.local.time().replace(microsecond=0, fold=0)
    if day is None:
        return [today, today + timedelta(days=1)], keep
    if day in ("today", "tonight", "tomorrow"):
        offset = 1 if day == "tomorrow" else 0
        return [today + timedelta(days=offset)], _TONIGHT if day == "tonight" else keep
    if match := re.fullmatch(_WEEKDAY_RE, day):
        ahead = (_WEEKDAYS.index(match["wd"][:3]) - today.weekday()) % 7 or 7
        later = today + timedelta(days=ahead)
        is_today = ahead == 7 and match["next"] != "next"
        return ([today, later] if is_today else [later]), keep
    if match := re.fullmatch(_ISO_DATE_RE, day):
        return [_date(int(match["y"]), int(match["mo"]), int(match["d"]), ctx.raw)], time()
    if match := re.fullmatch(_MONTH_DAY_RE, day) or re.fullmatch(_DAY_MONTH_RE, day):
        month, mday = _MONTHS.index(match["mon"][:3]) + 1, int(match["d"])
        if match["y"] is not None:
            return [_date(int(match["y"]), month, mday, ctx.raw)], time()
        return _yearless(month, mday, today, ctx.raw), time()
    return None


def _date(year: int, month: int, day: int, raw: str) -> date:
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise _out_of_range(raw, str(exc)) from None


def _yearless(month: int, day: int, today: date, raw: str) -> list[date]:
    """This year's and following years' occurrences, skipping years where the date is invalid."""
    found = []
    for year in range(today.year, today.year + _YEARS_AHEAD):
        try:
            found.append(date(year, month, day))
        except ValueError:
            continue
    if not found:
        raise _out_of_range(raw, "day is out of range for month")
    return found


def _parse_clock(text: str, raw: str) -> time:
    """Read a time of day; with am/pm, 12 wraps (12am is 00:00, 12pm is noon) as on clocks."""
    if text in ("noon", "midnight"):
        return time(12 if text == "noon" else 0)
    match = re.fullmatch(_CLOCK_RE, text)
    if match is None:
        raise _unparseable(raw)
    hour, minute, second = int(match["h"]), int(match["mi"] or 0), int(match["s"] or 0)
    if match["ap"]:
        if not 1 <= hour <= 12:
            raise _out_of_range(raw, "hour must be in 1..12 with am/pm")
        hour = hour % 12 + (12 if match["ap"] == "p" else 0)
    try:
        return time(hour, minute, second)
    except ValueError as exc:
        raise _out_of_range(raw, str(exc)) from None


def _first_ahead(days: list[date], clock: time, ctx: _Context, *, strict: bool) -> datetime:
    """Return the first candidate after now, else the last one (for the past error).

    Candidates whose wall time is already behind are skipped before localizing, so a time
    that fell into a DST gap earlier today does not stop us from trying tomorrow.
    """
    for day in days[:-1]:
        wall = datetime.combine(day, clock)
        if wall > ctx.local:
            instant = _localize(wall, ctx, strict=strict)
            if instant > ctx.now:
                return instant
    return _localize(datetime.combine(days[-1], clock), ctx, strict=strict)


def _localize(wall: datetime, ctx: _Context, *, strict: bool) -> datetime:
    """Attach the zone: folds take the first occurrence; gaps are an error when asked for.

    A non-existent wall time does not survive a round trip through UTC. When the user typed
    the time (``strict``) that is an error; when we chose it (a kept wall-clock time or
    midnight) zoneinfo's reading, which lands just after the gap, is what they want.
    """
    try:
        instant = wall.replace(tzinfo=ctx.zone, fold=0).astimezone(UTC)
        back = instant.astimezone(ctx.zone).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise _out_of_range(ctx.raw, "year is out of range") from None
    if strict and back != wall:
        raise InvalidInput(
            f"{wall:%Y-%m-%d %H:%M} does not exist in {ctx.zone} (the clocks skip forward there)",
            hint=f"pick a time outside the gap, e.g. {back:%H:%M}",
        )
    return instant


def _natural_language(text: str, ctx: _Context) -> datetime | None:
    """Last resort: dateparser, imported here only because it costs ~120 ms.

    It is asked for a naive wall time and the zone is attached with zoneinfo, because its
    own aware mode gets DST offsets wrong. ``TO_TIMEZONE`` is left out on purpose: with it,
    dateparser shifts naive results by the DST difference between ``RELATIVE_BASE`` and the
    result ("in 1 month" on 2026-03-28 11:00 in Berlin came back as 12:00).

    dateparser guesses where it should refuse, so it is kept on a short lead: it sees only
    words, numbers and the punctuation dates use (``@1h`` or ``1h!!`` is a typo, not 1h); it
    must find a day (``5`` or ``a`` came back as May or January the 22nd, ``friday 9`` as
    September); a time of day at the end is read by our own clock grammar (dateparser drops
    one it cannot read, so ``in 2 days at 25:00`` meant in 2 days at the current time), and
    a second time, an ``at`` before something that is no time, or a bare number at the end
    (``in 2 days 99``, ``1 2``: dateparser drops or guesses it) is refused; a zone
    abbreviation is refused too, since dateparser ignores it after a relative day
    (``tomorrow 10:00 EST`` came back as 10:00 in the user's zone) and many are ambiguous.
    """
    if not re.fullmatch(_NATURAL_RE, text) or not any(char.isalnum() for char in text):
        return None
    clock = None
    if match := re.fullmatch(_TRAILING_CLOCK_RE, text):
        text, clock = match["rest"], _parse_clock(match["clock"], ctx.raw)
    import dateparser
    from dateparser.timezone_parser import pop_tz_offset_from_string

    if pop_tz_offset_from_string(text)[1] is not None:
        raise InvalidInput(
            f'"{ctx.raw}" names a zone by an abbreviation',
            'name the zone instead, e.g. "tomorrow 10:00 America/New_York"',
        )
    if re.search(_STRAY_CLOCK_RE, text):
        return None
    settings: dict[str, Any] = {
        "PREFER_DATES_FROM": "future",
        "RETURN_AS_TIMEZONE_AWARE": False,
        "TIMEZONE": str(ctx.zone),
        "RELATIVE_BASE": ctx.local,
        "REQUIRE_PARTS": ["day"],
    }
    try:
        parsed = dateparser.parse(text, languages=["en"], settings=settings)
    except (ValueError, OverflowError):
        return None
    except KeyError:  # pytz, which dateparser uses, lacks a zone that zoneinfo knows
        raise InvalidInput(
            f'cannot read "{ctx.raw}" in the zone {ctx.zone}',
            'give the time as "YYYY-MM-DD HH:MM", or a duration such as "3d"',
        ) from None
    if parsed is None:
        return None
    wall = parsed.replace(microsecond=0, tzinfo=None)
    if clock is not None:
        wall = datetime.combine(wall.date(), clock)
    return _localize(wall, ctx, strict=True)
