"""How times read in output: `Nov 22 10:34 CET`, `in 1h 30m`.

Separate from `when` (the input grammar) so listings do not compile its regexes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_COMPACT_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_relative(delta: timedelta) -> str:
    """Say how far away a time is in at most two units: precise enough to act on, short."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "now"
    compact = compact_duration(abs(seconds))
    return f"in {compact}" if seconds > 0 else f"{compact} ago"


def format_local(dt: datetime, tz: ZoneInfo, now: datetime) -> str:
    """An instant as the user reads clocks, with the year only when it is not `now`'s.

    Month names come from a table, not ``%b``, so output never depends on the process locale.
    """
    try:
        local = dt.astimezone(tz)
    except OverflowError:  # the last hours of year 9999 in a zone east of UTC: as given
        local = dt
    year = f" {local.year}" if local.year != now.astimezone(tz).year else ""
    month = MONTHS[local.month - 1].capitalize()
    return f"{month} {local.day}{year} {local:%H:%M} {local.tzname()}"


def compact_duration(seconds: int) -> str:
    """Two adjacent units at most (``2d 3h``, never ``2d 5m``): the smaller one is a refinement."""
    for index, (name, size) in enumerate(_COMPACT_UNITS):
        if seconds >= size:
            major, rest = divmod(seconds, size)
            if index + 1 < len(_COMPACT_UNITS):
                minor_name, minor_size = _COMPACT_UNITS[index + 1]
                if minor := rest // minor_size:
                    return f"{major}{name} {minor}{minor_name}"
            return f"{major}{name}"
    return "0s"
