"""Tests for plurcast.when: every grammar form pinned to an exact instant, plus DST and errors.

NOW is Sunday 2026-11-22 10:04:43 UTC = 11:04:43 CET (Berlin) = 05:04:43 EST (New York).
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plurcast.errors import InvalidInput
from plurcast.timefmt import format_local, format_relative
from plurcast.when import (
    HINT,
    HORIZON,
    is_relative_shift,
    parse_duration,
    parse_when,
    shift,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ZUTC = ZoneInfo("UTC")
NOW = datetime(2026, 11, 22, 10, 4, 43, tzinfo=UTC)


def utc(year: int, month: int, day: int, *clock: int) -> datetime:
    hour, minute, second = (*clock, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def when(text: str, tz: ZoneInfo = BERLIN, now: datetime = NOW) -> datetime:
    return parse_when(text, now=now, tz=tz)


def error_of(text: str, tz: ZoneInfo = BERLIN, now: datetime = NOW) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_when(text, now=now, tz=tz)
    return caught.value


def past(instant: datetime, tz: ZoneInfo = BERLIN) -> str:
    return f"{format_local(instant, tz, NOW)} is in the past"


# --- the grammar, form by form ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", utc(2026, 11, 22, 10, 34, 43)),
        ("2h", utc(2026, 11, 22, 12, 4, 43)),
        ("1d", utc(2026, 11, 23, 10, 4, 43)),
        ("1w", utc(2026, 11, 29, 10, 4, 43)),
        ("45s", utc(2026, 11, 22, 10, 5, 28)),
        ("1h30m", utc(2026, 11, 22, 11, 34, 43)),
        ("1h 30m", utc(2026, 11, 22, 11, 34, 43)),
        ("90 minutes", utc(2026, 11, 22, 11, 34, 43)),
        ("1.5h", utc(2026, 11, 22, 11, 34, 43)),
        ("1 hour, 30 mins", utc(2026, 11, 22, 11, 34, 43)),
        ("1 hour and 30 minutes", utc(2026, 11, 22, 11, 34, 43)),
        (".5h", utc(2026, 11, 22, 10, 34, 43)),
        ("2 weeks", utc(2026, 12, 6, 10, 4, 43)),
        ("1 wk", utc(2026, 11, 29, 10, 4, 43)),
        ("1 day 2 hours", utc(2026, 11, 23, 12, 4, 43)),
        ("3 secs", utc(2026, 11, 22, 10, 4, 46)),
        ("2 HRS", utc(2026, 11, 22, 12, 4, 43)),
        ("in 2 hours", utc(2026, 11, 22, 12, 4, 43)),
        ("in 30m", utc(2026, 11, 22, 10, 34, 43)),
        ("+2h", utc(2026, 11, 22, 12, 4, 43)),
        ("  30M \n", utc(2026, 11, 22, 10, 34, 43)),
        ("now", NOW),
        ("NOW", NOW),
        ("today", NOW),
    ],
)
def test_durations_and_now(text: str, expected: datetime) -> None:
    for tz in (BERLIN, NEW_YORK, ZUTC):
        assert when(text, tz) == expected


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("15:30", BERLIN, utc(2026, 11, 22, 14, 30)),
        ("3pm", BERLIN, utc(2026, 11, 22, 14)),
        ("3:15pm", BERLIN, utc(2026, 11, 22, 14, 15)),
        ("3 pm", BERLIN, utc(2026, 11, 22, 14)),
        ("3 P.M.", BERLIN, utc(2026, 11, 22, 14)),
        ("9am", BERLIN, utc(2026, 11, 23, 8)),  # 09:00 has passed in Berlin: tomorrow
        ("9am", NEW_YORK, utc(2026, 11, 22, 14)),  # still ahead in New York: today
        ("12am", BERLIN, utc(2026, 11, 22, 23)),
        ("12pm", BERLIN, utc(2026, 11, 22, 11)),
        ("noon", BERLIN, utc(2026, 11, 22, 11)),
        ("midnight", BERLIN, utc(2026, 11, 22, 23)),
        ("at 15:30", BERLIN, utc(2026, 11, 22, 14, 30)),
        ("11:04", BERLIN, utc(2026, 11, 23, 10, 4)),  # a minute ago: tomorrow
        ("11:05", BERLIN, utc(2026, 11, 22, 10, 5)),
        ("10:05", ZUTC, utc(2026, 11, 22, 10, 5)),
        ("10:04:43", ZUTC, utc(2026, 11, 23, 10, 4, 43)),  # exactly now is not ahead
        ("15:30", NEW_YORK, utc(2026, 11, 22, 20, 30)),
    ],
)
def test_time_of_day_is_next_occurrence(text: str, tz: ZoneInfo, expected: datetime) -> None:
    assert when(text, tz) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow", utc(2026, 11, 23, 10, 4, 43)),  # keeps the wall-clock time
        ("tomorrow 3pm", utc(2026, 11, 23, 14)),
        ("Tomorrow at 15:30", utc(2026, 11, 23, 14, 30)),
        ("tomorrow noon", utc(2026, 11, 23, 11)),
        ("3pm tomorrow", utc(2026, 11, 23, 14)),
        ("at 9am tomorrow", utc(2026, 11, 23, 8)),
        ("today 18:00", utc(2026, 11, 22, 17)),
        ("tonight", utc(2026, 11, 22, 19)),
        ("tonight 9pm", utc(2026, 11, 22, 20)),
        ("monday", utc(2026, 11, 23, 10, 4, 43)),
        ("mon", utc(2026, 11, 23, 10, 4, 43)),
        ("fri 9am", utc(2026, 11, 27, 8)),
        ("friday at 9am", utc(2026, 11, 27, 8)),
        ("on friday 9am", utc(2026, 11, 27, 8)),
        ("this friday 9am", utc(2026, 11, 27, 8)),
        ("9am on friday", utc(2026, 11, 27, 8)),
        ("Wednesday 18:30", utc(2026, 11, 25, 17, 30)),
        ("tues 10:00", utc(2026, 11, 24, 9)),
        ("thurs 10:00", utc(2026, 11, 26, 9)),
        ("next monday 10:00", utc(2026, 11, 23, 9)),  # first Monday strictly after today
        ("sun 12:00", utc(2026, 11, 22, 11)),  # today is Sunday and 12:00 is ahead
        ("sun 11:00", utc(2026, 11, 29, 10)),  # 11:00 has passed: next Sunday
        ("sunday", utc(2026, 11, 29, 10, 4, 43)),
        ("next sunday 12:00", utc(2026, 11, 29, 11)),  # "next" never means today
        ("next week", utc(2026, 11, 29, 10, 4, 43)),
    ],
)
def test_day_words_and_weekdays(text: str, expected: datetime) -> None:
    assert when(text) == expected


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("Jan 1 10:00", BERLIN, utc(2027, 1, 1, 9)),
        ("January 1 10am", BERLIN, utc(2027, 1, 1, 9)),
        ("1 Jan 10:00", BERLIN, utc(2027, 1, 1, 9)),
        ("jan 1st at 10:00", BERLIN, utc(2027, 1, 1, 9)),
        ("Nov 22 12:00", BERLIN, utc(2026, 11, 22, 11)),  # still ahead this year
        ("Nov 22 11:00", BERLIN, utc(2027, 11, 22, 10)),  # passed: next year
        ("Dec 25", BERLIN, utc(2026, 12, 24, 23)),  # a date alone is local midnight
        ("feb 29", BERLIN, utc(2028, 2, 28, 23)),  # next leap year
        ("Jan 1 2027", BERLIN, utc(2026, 12, 31, 23)),
        ("Jan 1, 2027 at 10:00", BERLIN, utc(2027, 1, 1, 9)),
        ("1 Jan 2027 10:00", BERLIN, utc(2027, 1, 1, 9)),
        ("2027-01-01 10:00", BERLIN, utc(2027, 1, 1, 9)),
        ("2027-01-01T10:00", BERLIN, utc(2027, 1, 1, 9)),
        ("2027-01-01 10:00:30", BERLIN, utc(2027, 1, 1, 9, 0, 30)),
        ("2027-01-01", BERLIN, utc(2026, 12, 31, 23)),
        ("2027-01-01 10:00", NEW_YORK, utc(2027, 1, 1, 15)),
        ("2027-01-01T10:00:00Z", NEW_YORK, utc(2027, 1, 1, 10)),
        ("2027-01-01T10:00+02:00", NEW_YORK, utc(2027, 1, 1, 8)),
        ("2027-01-01 10:00:30.75-05:00", BERLIN, utc(2027, 1, 1, 15, 0, 30)),
        ("2027-01-01 10:00 Europe/Berlin", NEW_YORK, utc(2027, 1, 1, 9)),
        ("2027-01-01 10:00 europe/berlin", NEW_YORK, utc(2027, 1, 1, 9)),
        ("tomorrow 9am America/New_York", BERLIN, utc(2026, 11, 23, 14)),
        ("2027-01-01 10:00 UTC", BERLIN, utc(2027, 1, 1, 10)),
        ("Jan 1 10:00 utc", NEW_YORK, utc(2027, 1, 1, 10)),
    ],
)
def test_dates_iso_and_zones(text: str, tz: ZoneInfo, expected: datetime) -> None:
    assert when(text, tz) == expected


def test_results_are_utc_whole_seconds_and_now_may_be_in_any_zone() -> None:
    fractional = NOW.astimezone(NEW_YORK) + timedelta(microseconds=600_000)
    assert parse_when("now", now=fractional, tz=BERLIN) == NOW
    result = parse_when("30m", now=fractional, tz=BERLIN)
    assert result == utc(2026, 11, 22, 10, 34, 43)
    assert result.tzinfo is UTC


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_when("30m", now=NOW.replace(tzinfo=None), tz=BERLIN)


def test_natural_language_falls_back_to_dateparser() -> None:
    assert when("in 2 months") == utc(2027, 1, 22, 10, 4, 43)
    assert when("next month") == utc(2026, 12, 22, 10, 4, 43)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 3 days at noon", utc(2026, 11, 25, 11)),
        ("December 25th 8am", utc(2026, 12, 25, 7)),
        ("next month at 3 pm", utc(2026, 12, 22, 14)),
        ("in 2 weeks at 9am", utc(2026, 12, 6, 8)),
        ("december 25th 2027", utc(2027, 12, 24, 23)),
    ],
)
def test_dateparser_days_take_our_time_of_day(text: str, expected: datetime) -> None:
    assert when(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a",  # was Jan 22 2027: dateparser's month guess from one letter
        "5",  # was May 22 2027
        "the 5th",  # was May 22 2027
        "march",  # was Mar 22 2027: a month without a day
        "december 2027",
        "friday 9",  # was Sep 22 2027
        "@1h",  # punctuation dateparser skipped over: was in 1 hour
        "1h!!",
        "\x1b[31m1h",  # was in 1h 31m
        "next month!",
        "tomorrow 3pm 3pm",  # was tomorrow at the current time: both times dropped
        "next month 10:00 11:00",
        "day after tomorrow at 9",  # was the day after tomorrow at the current time
        "in 2 days 99",
        "1 2",  # was Jan 2 2027
    ],
)
def test_dateparser_guesses_are_refused(text: str) -> None:
    assert error_of(text).message == f'cannot understand the time "{text}"'


def test_a_time_of_day_typo_after_a_dateparser_day_is_named() -> None:
    # dateparser dropped the time it could not read: in 3 days at the current time.
    assert error_of("in 3 days at 25:00").message == (
        'invalid date or time "in 3 days at 25:00": hour must be in 0..23'
    )


@pytest.mark.parametrize("text", ["tomorrow 10:00 EST", "10:00 est", "dec 25 10:00 PST"])
def test_a_zone_abbreviation_is_refused_with_the_iana_form(text: str) -> None:
    # After a relative day dateparser ignored it: tomorrow 10:00 EST was 10:00 in Berlin.
    error = error_of(text)
    assert error.message == f'"{text}" names a zone by an abbreviation'
    assert error.hint == 'name the zone instead, e.g. "tomorrow 10:00 America/New_York"'
    assert when("tomorrow 10:00 America/New_York") == utc(2026, 11, 23, 15)


def test_dateparser_fallback_gets_dst_right() -> None:
    # 11:00 CET on 2026-03-28; a month later is 11:00 CEST. dateparser with TO_TIMEZONE said 12:00.
    assert when("in 1 month", now=utc(2026, 3, 28, 10)) == utc(2026, 4, 28, 9)


@pytest.mark.slow
def test_common_forms_do_not_import_dateparser() -> None:
    code = (
        "import sys\n"
        "from datetime import datetime, UTC\n"
        "from zoneinfo import ZoneInfo\n"
        "from plurcast.when import parse_when\n"
        "now = datetime(2026, 11, 22, 10, 4, 43, tzinfo=UTC)\n"
        "for text in ('30m', 'tomorrow 9am', '2027-01-01 10:00', 'fri 9am', 'now', 'noon',\n"
        "             'Jan 1 10:00', '2027-01-01T10:00Z', 'random:1h-2h', 'next week'):\n"
        "    parse_when(text, now=now, tz=ZoneInfo('Europe/Berlin'))\n"
        "assert 'dateparser' not in sys.modules, 'dateparser was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# --- DST ------------------------------------------------------------------------------


def test_tomorrow_noon_across_spring_change_uses_summer_offset() -> None:
    assert when("tomorrow 12:00", now=utc(2026, 3, 28, 10)) == utc(2026, 3, 29, 10)


@pytest.mark.parametrize(
    ("text", "tz", "zone_name"),
    [
        ("2027-03-28 02:30 Europe/Berlin", NEW_YORK, "Europe/Berlin"),
        ("2027-03-28 02:30", BERLIN, "Europe/Berlin"),
        ("2027-03-14 02:30", NEW_YORK, "America/New_York"),
    ],
)
def test_wall_time_in_spring_gap_is_an_error(text: str, tz: ZoneInfo, zone_name: str) -> None:
    error = error_of(text, tz)
    day = text[:10]
    assert error.message == (
        f"{day} 02:30 does not exist in {zone_name} (the clocks skip forward there)"
    )
    assert error.hint == "pick a time outside the gap, e.g. 03:30"


def test_gap_time_of_day_is_an_error_only_while_it_is_still_ahead() -> None:
    assert "does not exist" in error_of("02:30", now=utc(2027, 3, 28, 0)).message
    # At 06:00 CEST today's 02:30 is behind us anyway: take tomorrow's, no error.
    assert when("02:30", now=utc(2027, 3, 28, 4)) == utc(2027, 3, 29, 0, 30)


def test_kept_wall_time_falling_into_gap_moves_past_it() -> None:
    # Asked at 02:30 CET the day before: the user typed no time, so 03:30 CEST is fine.
    assert when("tomorrow", now=utc(2027, 3, 27, 1, 30)) == utc(2027, 3, 28, 1, 30)


def test_ambiguous_autumn_time_takes_first_occurrence() -> None:
    assert when("2026-10-25 02:30", now=utc(2026, 10, 1)) == utc(2026, 10, 25, 0, 30)
    assert when("2026-11-01 01:30", NEW_YORK, now=utc(2026, 10, 1)) == utc(2026, 11, 1, 5, 30)


# --- random ---------------------------------------------------------------------------


def test_random_is_uniform_within_bounds_and_reproducible() -> None:
    results = set()
    for seed in range(200):
        result = parse_when("random:1h-2h", now=NOW, tz=BERLIN, rng=random.Random(seed))
        assert NOW + timedelta(hours=1) <= result <= NOW + timedelta(hours=2)
        assert result.microsecond == 0
        results.add(result)
    assert len(results) > 150
    again = parse_when("random:1h-2h", now=NOW, tz=BERLIN, rng=random.Random(7))
    assert again == parse_when("random:1h-2h", now=NOW, tz=BERLIN, rng=random.Random(7))


def test_random_goes_after_the_latest_pending_post() -> None:
    pending = NOW + timedelta(days=3)
    for seed in range(50):
        result = parse_when(
            "RANDOM:30m-90m", now=NOW, tz=BERLIN, pending_after=pending, rng=random.Random(seed)
        )
        assert pending + timedelta(minutes=30) <= result <= pending + timedelta(minutes=90)
    stale = NOW - timedelta(days=1)
    result = parse_when("random:1d-2d", now=NOW, tz=BERLIN, pending_after=stale)
    assert NOW + timedelta(days=1) <= result <= NOW + timedelta(days=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("random:10s-2h", "random: the minimum must be at least 30s (got 10s)"),
        ("random:1h-31d", "random: the maximum must be at most 30d (got 31d)"),
        ("random:2h-1h", "random: the minimum must be less than the maximum"),
        ("random:1h-1h", "random: the minimum must be less than the maximum"),
        ("random:1h", 'cannot understand the random range "random:1h"'),
        ("random:1h-2x", 'cannot understand the duration "2x"'),
    ],
)
def test_random_bad_bounds(text: str, message: str) -> None:
    assert error_of(text).message == message


# --- shift ----------------------------------------------------------------------------

BASE = NOW + timedelta(hours=3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+2h", BASE + timedelta(hours=2)),
        ("-30m", BASE - timedelta(minutes=30)),
        ("+1h30m", BASE + timedelta(minutes=90)),
        (" - 2 hours ", BASE - timedelta(hours=2)),
    ],
)
def test_shift_moves_relative_to_the_post(text: str, expected: datetime) -> None:
    assert shift(text, base=BASE, now=NOW) == expected


def test_shift_into_the_past_is_an_error_in_the_zone_of_now() -> None:
    with pytest.raises(InvalidInput) as caught:
        shift("-4h", base=BASE, now=NOW.astimezone(BERLIN))
    assert caught.value.message == past(BASE - timedelta(hours=4), BERLIN)
    with pytest.raises(InvalidInput) as caught:
        shift("-4h", base=BASE, now=NOW)
    assert caught.value.message == past(BASE - timedelta(hours=4), ZUTC)


@pytest.mark.parametrize("text", ["2h", "+", "+2x", "tomorrow", "-0m"])
def test_shift_rejects_non_shifts(text: str) -> None:
    with pytest.raises(InvalidInput):
        shift(text, base=BASE, now=NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+2h", True),
        ("-30m", True),
        ("-1h30m", True),
        (" -30m", True),
        ("-.5h", True),
        ("30m", False),
        ("-x", False),
        ("--tz", False),
        ("tomorrow", False),
        ("", False),
    ],
)
def test_is_relative_shift(text: str, expected: bool) -> None:
    assert is_relative_shift(text) is expected


# --- durations and formatting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        ("90 minutes", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        ("2 weeks", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        ("1 day 2 hours", timedelta(days=1, hours=2)),
        ("1.5s", timedelta(seconds=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("spellings", "seconds"),
    [
        ("w wk wks week weeks", 604800),
        ("d day days", 86400),
        ("h hr hrs hour hours", 3600),
        ("m min mins minute minutes", 60),
        ("s sec secs second seconds", 1),
    ],
)
def test_every_spelling_of_a_unit(spellings: str, seconds: int) -> None:
    for unit in spellings.split():
        for text in (f"2{unit}", f"2 {unit}", f"2 {unit.upper()}", f"1m 2{unit}"):
            assert parse_duration(text) == timedelta(seconds=2 * seconds + 60 * ("1m" in text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5x", 'cannot understand the duration "5x"'),
        ("5ms", 'cannot understand the duration "5ms"'),
        ("2 hourss", 'cannot understand the duration "2 hourss"'),
        ("1hand 30m", 'cannot understand the duration "1hand 30m"'),
        ("1h and30m", 'cannot understand the duration "1h and30m"'),
        ("2 mo", 'cannot understand the duration "2 mo"'),
        ("1h30", 'cannot understand the duration "1h30"'),
        ("-5m", 'cannot understand the duration "-5m"'),
        ("0m", 'duration "0m" must be at least 1s'),
        ("0s", 'duration "0s" must be at least 1s'),
        ("0.2s", 'duration "0.2s" must be at least 1s'),
        ("36526d", 'duration "36526d" is too long (max 100 years)'),
        ("9" * 150 + "w", f'duration "{"9" * 150}w" is too long (max 100 years)'),
        ("", "empty time expression"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration(text)
    assert caught.value.message == message


def test_parse_duration_names_the_minimum_it_was_given() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration("59s", minimum_seconds=60)
    assert caught.value.message == 'duration "59s" must be at least 1m'
    assert caught.value.hint == 'try "30m", "1h30m" or "2 days"'
    assert parse_duration("1m", minimum_seconds=60) == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(minutes=30), "in 30m"),
        (timedelta(minutes=90), "in 1h 30m"),
        (timedelta(days=2, hours=3, minutes=59), "in 2d 3h"),
        (timedelta(days=2, minutes=5), "in 2d"),  # units are adjacent: no "2d 5m"
        (timedelta(hours=1, seconds=30), "in 1h"),
        (timedelta(seconds=45), "in 45s"),
        (timedelta(seconds=90.9), "in 1m 30s"),
        (timedelta(days=40), "in 40d"),
        (timedelta(milliseconds=999), "now"),
        (timedelta(0), "now"),
        (timedelta(milliseconds=-999), "now"),
        (-timedelta(minutes=5), "5m ago"),
        (-timedelta(hours=1, minutes=30, seconds=20), "1h 30m ago"),
    ],
)
def test_format_relative(delta: timedelta, expected: str) -> None:
    assert format_relative(delta) == expected


def test_format_local_adds_the_year_only_when_it_is_not_nows() -> None:
    assert format_local(utc(2026, 11, 22, 9, 34), BERLIN, NOW) == "Nov 22 10:34 CET"
    assert format_local(utc(2026, 7, 4, 8, 5), BERLIN, NOW) == "Jul 4 10:05 CEST"
    assert format_local(utc(2026, 7, 4, 8, 5), NEW_YORK, NOW) == "Jul 4 04:05 EDT"
    assert format_local(utc(2027, 1, 1, 9), BERLIN, NOW) == "Jan 1 2027 10:00 CET"
    assert format_local(utc(2025, 12, 31, 23, 30), ZUTC, NOW) == "Dec 31 2025 23:30 UTC"
    # The year is the one of `now` in the zone shown: 2026-12-31 23:30 UTC is 2027 in Berlin.
    new_year = utc(2026, 12, 31, 23, 30)
    assert format_local(new_year, BERLIN, new_year) == "Jan 1 00:30 CET"


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["blah", "whenever", "Europe/Berlin", "tomorrow-ish", "💥"])
def test_unparseable(text: str) -> None:
    error = error_of(text)
    assert error.message == f'cannot understand the time "{text}"'
    assert error.hint == HINT
    assert error.exit_code == 3


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty(text: str) -> None:
    error = error_of(text)
    assert (error.message, error.hint) == ("empty time expression", HINT)


def test_overlong_input_is_refused_before_parsing() -> None:
    assert "too long" in error_of("1m " * 67 + "1m").message
    assert when(("1s " * 66) + "1s") == NOW + timedelta(seconds=67)  # 200 chars is fine


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-30m", utc(2026, 11, 22, 9, 34, 43)),
        ("today 9am", utc(2026, 11, 22, 8)),
        ("2026-01-01", utc(2025, 12, 31, 23)),
        ("Nov 22 2026 11:00", utc(2026, 11, 22, 10)),
        ("2026-11-22T10:04:43Z", NOW),
        ("yesterday", utc(2026, 11, 21, 10, 4, 43)),
    ],
)
def test_past(text: str, expected: datetime) -> None:
    assert error_of(text).message == past(expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("25:00", "hour must be in 0..23"),
        ("tomorrow 10:61", "minute must be in 0..59"),
        ("13pm", "hour must be in 1..12 with am/pm"),
        ("Feb 30", "day is out of range for month"),
        ("2027-02-30 10:00", "day is out of range for month"),
        ("2027-13-01", "month must be in 1..12"),
        ("99999-01-01", "year 99999 is out of range"),
        ("9999-12-31 23:59 America/New_York", "year is out of range"),
        ("2027-01-01T10:00+25:00", "the UTC offset must be less than 24 hours"),
    ],
)
def test_out_of_range(text: str, reason: str) -> None:
    assert error_of(text).message == f'invalid date or time "{text}": {reason}'


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("9999-12-31 23:59 UTC", "Dec 31 9999 23:59 UTC"),
        ("9999-12-31T23:59:59Z", "Dec 31 9999 23:59 UTC"),
        ("2126-11-24", "Nov 24 2126 00:00 CET"),
        ("Jan 1 3000 10:00", "Jan 1 3000 10:00 CET"),
        ("in 200 years", "Nov 22 2226 11:04 CET"),
    ],
)
def test_times_beyond_the_horizon_are_refused(text: str, shown: str) -> None:
    error = error_of(text)
    assert error.message == f"{shown} is more than 100 years ahead"
    limit = "10:04 UTC" if text.endswith("UTC") else "11:04 CET"
    assert error.hint == f"schedule posts up to Nov 23 2126 {limit} at the latest"


def test_the_horizon_itself_is_allowed() -> None:
    assert HORIZON.days == 36525  # 100 years of 365.25 days, as the README says
    assert when("36525d") == NOW + HORIZON
    assert when("2126-11-23 11:04") == utc(2126, 11, 23, 10, 4)


def test_shift_beyond_the_horizon_is_refused_even_from_a_stored_year_9999() -> None:
    with pytest.raises(InvalidInput, match="more than 100 years ahead"):
        shift("+5000w", base=NOW + timedelta(days=3000), now=NOW.astimezone(BERLIN))
    year_9999 = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    for text in ("+100w", "-1h"):
        with pytest.raises(InvalidInput, match="more than 100 years ahead"):
            shift(text, base=year_9999, now=NOW.astimezone(BERLIN))


def test_random_after_a_pending_post_beyond_the_horizon_names_it() -> None:
    year_9999 = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    for pending in (year_9999, NOW + HORIZON):
        with pytest.raises(InvalidInput) as caught:
            parse_when("random:1h-2h", now=NOW, tz=BERLIN, pending_after=pending)
        assert "after the latest pending post" in caught.value.message
        assert "more than 100 years ahead" in caught.value.message


def test_unknown_timezone() -> None:
    error = error_of("2027-01-01 10:00 Mars/Base")
    assert error.message == 'unknown timezone "Mars/Base"'


def test_absurd_duration() -> None:
    assert "too long" in error_of("1000000000000000000000000 weeks").message


# --- properties -----------------------------------------------------------------------

NOWS = st.sampled_from(
    [
        NOW,
        utc(2026, 3, 28, 10),
        utc(2027, 3, 28, 0, 45),
        utc(2026, 10, 25, 0, 45),
        utc(2026, 12, 31, 23, 59, 59),
    ]
)
ZONES = st.sampled_from([BERLIN, NEW_YORK, ZUTC])
PLAUSIBLE = st.one_of(
    st.from_regex(r"\A(in |\+|-)?\d{1,5}(\.\d{1,2})? ?(s|m|h|d|w|min|hours|days|weeks)\Z"),
    st.from_regex(r"\A\d{1,3}h ?\d{1,4}m\Z"),
    st.from_regex(
        r"\A(tomorrow|today|tonight|next monday|fri|sun)( at)? \d{1,2}(:\d{1,2})? ?(am|pm)?\Z"
    ),
    st.from_regex(r"\A\d{1,2}(:\d{2}){0,2} ?(am|pm|a\.m\.)?\Z"),
    st.from_regex(
        r"\A\d{4,5}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?(Z|[+-]\d{2}:\d{2})?"
        r"( Europe/Berlin| UTC| Mars/Base)?\Z"
    ),
    st.from_regex(r"\A(jan|feb|March|dec) \d{1,2}(st|th)?(,? \d{4})?( \d{1,2}:\d{2}| noon)?\Z"),
    st.from_regex(r"\Arandom:\d{1,3}[smhdw]-\d{1,3}[smhdw]\Z"),
)


def check_resolves_or_rejects(text: str, now: datetime, tz: ZoneInfo) -> None:
    try:
        result = parse_when(text, now=now, tz=tz)
    except InvalidInput:
        return
    assert result.tzinfo is UTC
    assert result.microsecond == 0
    assert now.replace(microsecond=0) <= result <= now + HORIZON


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60), now=NOWS, tz=ZONES)
def test_any_text_resolves_to_the_future_or_is_rejected(
    text: str, now: datetime, tz: ZoneInfo
) -> None:
    check_resolves_or_rejects(text, now, tz)


@settings(max_examples=300, deadline=None)
@given(text=PLAUSIBLE, now=NOWS, tz=ZONES)
def test_plausible_text_resolves_to_the_future_or_is_rejected(
    text: str, now: datetime, tz: ZoneInfo
) -> None:
    check_resolves_or_rejects(text, now, tz)
