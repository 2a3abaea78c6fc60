"""How times read in output: `views.iso` is `isoformat`'s text, however it is made."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo, available_timezones

import pytest

from plurcast import views
from plurcast.models import MAX_MS, MIN_MS, from_ms

BERLIN = ZoneInfo("Europe/Berlin")


def isoformat(ms: int, tz: ZoneInfo) -> str:
    """What `iso` must say: the plain way, clamped as `from_ms` clamps."""
    try:
        return datetime.fromtimestamp(ms // 1000, tz).isoformat()
    except (OverflowError, ValueError, OSError):
        return from_ms(ms).astimezone(tz).replace(microsecond=0).isoformat()


def test_iso_says_what_isoformat_says_in_every_zone() -> None:
    """Any instant in any zone (offsets with seconds before 1900, half hours, 13 hours, the
    years 1 and 9999, beyond them), asked once and again (the second answer is the kept one)."""
    rnd = random.Random(16)
    beyond = 10**13
    for name in sorted(available_timezones()):
        tz = ZoneInfo(name)
        for _ in range(12):
            ms = rnd.choice(
                [
                    rnd.randint(MIN_MS - beyond, MAX_MS + beyond),
                    rnd.randint(-3_000_000_000_000, 0),  # 1875–1970: local mean times
                    rnd.randint(1_700_000_000_000, 1_900_000_000_000),
                ]
            )
            assert views.iso(ms, tz) == isoformat(ms, tz), (name, ms)
            assert views.iso(ms + 999 - ms % 1000, tz) == isoformat(ms, tz), (name, ms)


@pytest.mark.parametrize(
    "change_ms",
    [1_711_846_800_000, 1_729_990_800_000],  # 2024-03-31 01:00 UTC, 2024-10-27 01:00 UTC
    ids=["spring", "autumn"],
)
def test_iso_follows_each_second_across_a_clock_change(change_ms: int) -> None:
    """Every second of the hour either side: the offset (and in autumn the repeated local
    hour) changes exactly at the change, whatever was asked before."""
    seconds = range(change_ms - 3_600_000, change_ms + 3_600_000, 1000)
    texts = [views.iso(ms, BERLIN) for ms in seconds]
    assert texts == [isoformat(ms, BERLIN) for ms in seconds]
    assert len(set(texts)) == len(texts)


def test_iso_keeps_a_bounded_number_of_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon lives long: what `iso` keeps per zone is bounded, and starting over
    changes no answer."""
    monkeypatch.setattr(views, "_SEEN_MAX", 5)
    tz = ZoneInfo("America/St_Johns")  # -03:30 / -02:30
    times = [1_800_000_000_000 + n * 86_399_000 for n in range(40)]
    for ms in times * 2:
        assert views.iso(ms, tz) == isoformat(ms, tz)
    zone = views._ZONES[tz]
    assert len(zone.seen) <= 5
    assert len(zone.days) <= 5
