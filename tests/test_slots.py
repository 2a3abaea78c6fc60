"""Posting slots: the weekly grammar, DST against a brute-force oracle, and `next` taking a
free slot under the write lock (two writers never share one)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import slots
from plurcast.store import posts as post_store
from tests.helpers import BASE_CONFIG, Clock, Run
from tests.peers.postgres import Backend, run_sql

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute change
    "America/Santiago",  # changes at midnight
    "Pacific/Apia",  # skipped 30 Dec 2011 entirely
    "Asia/Kathmandu",  # no DST, a :45 offset
]
SLOTS_CONFIG = BASE_CONFIG + '\n[slots]\nall = ["mon-fri 09:00", "sat 10:30"]\n'


# --- the grammar -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mon-fri 09:00", {(d, 540) for d in range(5)}),
        ("sat 10:30", {(5, 630)}),
        ("12:00", {(d, 720) for d in range(7)}),
        ("daily 8:05", {(d, 485) for d in range(7)}),
        ("weekends 10:00, 16:00", {(5, 600), (6, 600), (5, 960), (6, 960)}),
        ("Fri - Mon 23:59", {(4, 1439), (5, 1439), (6, 1439), (0, 1439)}),
        ("monday,WED , friday 00:00", {(0, 0), (2, 0), (4, 0)}),
        ("tues thur 10:00", None),  # two day words: the second is not a time
    ],
)
def test_weekly_times(spec: str, expected: set[tuple[int, int]] | None) -> None:
    if expected is None:
        with pytest.raises(slots.SlotError):
            slots.parse_spec(spec)
    else:
        assert slots.parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("funday 25:00", 'unknown day "funday"'),
        ("mon 25:00", "hour 25"),
        ("mon 09:60", "minute 60"),
        ("mon 9", '"9" is not a 24-hour time'),
        ("mon 9am", '"9am" is not a 24-hour time'),
        ("mon", "no time of day"),
        ("", "empty"),
        ("   ", "empty"),
        ("mon-\x00 09:00", "unknown day"),
        ("mon 09:00 " * 40, "longer than 200"),
    ],
)
def test_weekly_time_errors(spec: str, reason: str) -> None:
    with pytest.raises(slots.SlotError, match=reason):
        slots.parse_spec(spec)


def test_a_post_to_several_platforms_takes_their_common_slots() -> None:
    rules = {
        "all": slots.parse_spec("daily 12:00"),
        "nostr": slots.parse_spec("mon-fri 09:00, 12:00"),
    }
    assert slots.for_platforms(rules, ["nostr"]) == slots.parse_spec("mon-fri 09:00, 12:00")
    assert slots.for_platforms(rules, ["mastodon"]) == slots.parse_spec("daily 12:00")
    assert slots.for_platforms(rules, ["nostr", "mastodon"]) == slots.parse_spec("mon-fri 12:00")
    assert slots.for_platforms({"nostr": rules["nostr"]}, ["bluesky"]) == frozenset()


# --- instants, against an oracle that walks the clock minute by minute -------------------


def oracle(
    slot_set: frozenset[tuple[int, int]], zone: ZoneInfo, after: datetime, days: int
) -> list[datetime]:
    """Slot instants in (after, after + days): a wall time that exists is its first
    occurrence; one in a gap is the first instant whose wall clock has passed it."""
    found: set[datetime] = set()
    first = after.astimezone(zone).date() - timedelta(days=2)
    end = after + timedelta(days=days)
    for offset in range(days + 4):
        day = first + timedelta(days=offset)
        for weekday, minute in slot_set:
            if day.weekday() != weekday:
                continue
            wall = datetime.combine(day, time(minute // 60, minute % 60))
            instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            if instant.astimezone(zone).replace(tzinfo=None) != wall:
                instant = _end_of_gap(wall, zone)
            if after < instant < end:
                found.add(instant)
    return sorted(found)


def _end_of_gap(wall: datetime, zone: ZoneInfo) -> datetime:
    probe = min(wall.replace(tzinfo=zone, fold=f).astimezone(UTC).replace(second=0) for f in (0, 1))
    while probe.astimezone(zone).replace(tzinfo=None) < wall:
        probe += timedelta(minutes=1)
    return probe


@cache
def transitions(name: str) -> list[datetime]:
    """Instants (to the hour) where the zone's offset changes, 2005-2035."""
    zone = ZoneInfo(name)
    found = []
    t = datetime(2005, 1, 1, tzinfo=UTC)
    previous = t.astimezone(zone).utcoffset()
    while t.year < 2035:
        t += timedelta(hours=1)
        offset = t.astimezone(zone).utcoffset()
        if offset != previous:
            found.append(t)
            previous = offset
    found.append(datetime(2011, 12, 29, 10, tzinfo=UTC))  # Apia's lost day, for every zone
    return found


@st.composite
def starts(draw: st.DrawFn, name: str) -> datetime:
    """Any time, or (mostly) a few days around one of the zone's clock changes."""
    if draw(st.booleans()) and transitions(name):
        near = draw(st.sampled_from(transitions(name)))
        return near + timedelta(minutes=draw(st.integers(-4 * 1440, 1440)))
    return draw(st.datetimes(datetime(2005, 1, 1), datetime(2034, 1, 1), timezones=st.just(UTC)))


TRICKY_MINUTES = [0, 1, 15, 30, 45, 59, 60, 90, 119, 120, 135, 150, 179, 180, 181, 1439]
slot_sets = st.frozensets(
    st.tuples(
        st.integers(0, 6),
        st.one_of(st.sampled_from(TRICKY_MINUTES), st.integers(0, 1439)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(ZONES), slot_set=slot_sets)
def test_slot_instants_match_the_oracle_across_dst(
    data: st.DataObject, name: str, slot_set: frozenset[tuple[int, int]]
) -> None:
    zone = ZoneInfo(name)
    after = data.draw(starts(name))
    days = 9
    expected = oracle(slot_set, zone, after, days)
    got: list[datetime] = []
    for instant in slots.upcoming(slot_set, zone, after):
        if instant >= after + timedelta(days=days):
            break
        got.append(instant)
    assert got == expected
    assert all(a < b for a, b in pairwise(got))  # in order, each once
    for instant in got:
        local = instant.astimezone(zone)
        mark = (local.weekday(), local.hour * 60 + local.minute)
        # On the wall clock it is a slot, or the first moment after a gap that swallowed one.
        just_before = (instant - timedelta(seconds=1)).astimezone(zone)
        assert mark in slot_set or local.utcoffset() != just_before.utcoffset()


def test_spring_gap_slot_moves_to_right_after_it_and_autumn_slot_runs_once() -> None:
    daily = slots.parse_spec("02:30")
    spring = slots.upcoming(daily, BERLIN, datetime(2027, 3, 27, 12, tzinfo=UTC))
    assert next(spring).isoformat() == "2027-03-28T01:00:00+00:00"  # 03:00 CEST
    assert next(spring).astimezone(BERLIN).isoformat() == "2027-03-29T02:30:00+02:00"
    autumn = slots.upcoming(daily, BERLIN, datetime(2027, 10, 30, 12, tzinfo=UTC))
    assert next(autumn).astimezone(BERLIN).isoformat() == "2027-10-31T02:30:00+02:00"
    assert next(autumn).astimezone(BERLIN).isoformat() == "2027-11-01T02:30:00+01:00"


def test_first_free_skips_held_slots_and_gap_twins() -> None:
    rule = slots.parse_spec("02:30, 03:00")
    after = datetime(2027, 3, 27, 12, tzinfo=UTC)
    gap_end = datetime(2027, 3, 28, 1, tzinfo=UTC)  # both slots land on 03:00 CEST: one slot
    assert slots.first_free(rule, BERLIN, after, []) == gap_end
    assert slots.first_free(rule, BERLIN, after, [gap_end]) == datetime(
        2027, 3, 29, 0, 30, tzinfo=UTC
    )


def test_the_calendar_ends_without_an_error() -> None:
    late = datetime(9999, 12, 30, tzinfo=UTC)
    assert slots.first_free(slots.parse_spec("daily 09:00"), BERLIN, late, []) in (
        None,
        datetime(9999, 12, 30, 8, tzinfo=UTC),
        datetime(9999, 12, 31, 8, tzinfo=UTC),
    )
    assert list(slots.upcoming(slots.parse_spec("daily 09:00"), BERLIN, late))[-1].year == 9999


# --- the config ------------------------------------------------------------------------


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('nostr = ["funday 25:00"]', 'slots.nostr: "funday 25:00" is not a weekly time'),
        ('all = ["mon 09:00", 9]', "slots.all must be a list of weekly times"),
        ('all = "mon 25:00"', 'slots.all: "mon 25:00" is not a weekly time (hour 25'),
        ('myspace = ["mon 09:00"]', "slots.myspace is not a platform"),
        ("all = 5", "slots.all must be a list"),
    ],
)
def test_a_bad_slot_is_a_config_error_and_nothing_is_written(
    run: Run, clock: Clock, config_path: Path, db_path: Path, table: str, message: str
) -> None:
    config_path.write_text(BASE_CONFIG + f"\n[slots]\n{table}\n")
    result = run(post_cli, "Hello", "-s", "next")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stderr.startswith(f"Error: {config_path}: ")
    assert not db_path.exists()


# --- plur-post -s next, plur-queue reschedule ID next, plur-queue slots ------------------


def scheduled(run: Run, *args: str) -> dict[str, object]:
    result = run(post_cli, *args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture
def slotted(configured: Path, backend: Backend) -> Path:
    """Slots in the config; the test runs on both backends."""
    configured.write_text(SLOTS_CONFIG)
    return configured


@pytest.mark.usefixtures("slotted")
def test_next_takes_the_earliest_free_slot_of_the_same_targets(run: Run, clock: Clock) -> None:
    # Sunday 11:04 in Berlin: the next slots are Monday 09:00, Tuesday 09:00 …
    first = scheduled(run, "one", "-s", "next")
    assert first["scheduled_at_iso"] == "2026-11-23T09:00:00+01:00"
    assert scheduled(run, "two", "-s", "NEXT ")["scheduled_at_iso"] == "2026-11-24T09:00:00+01:00"
    # Other targets do not hold these slots; a post that shares one platform does.
    other = scheduled(run, "three", "-s", "next", "-p", "bluesky")
    assert other["scheduled_at_iso"] == "2026-11-23T09:00:00+01:00"
    shared = scheduled(run, "four", "-s", "next", "-p", "mastodon,bluesky")
    assert shared["scheduled_at_iso"] == "2026-11-25T09:00:00+01:00"
    # A post placed by hand on a slot holds it too; a cancelled one frees it.
    manual = scheduled(run, "five", "-s", "2026-11-26 09:00", "-p", "nostr")
    assert scheduled(run, "six", "-s", "next", "-p", "nostr")["scheduled_at_iso"] == (
        "2026-11-25T09:00:00+01:00"  # "four" went to mastodon and bluesky only
    )
    assert scheduled(run, "6b", "-s", "next", "-p", "nostr")["scheduled_at_iso"] == (
        "2026-11-27T09:00:00+01:00"
    )
    assert run(queue_cli, "cancel", str(manual["post_id"]), "-f").exit_code == 0
    assert scheduled(run, "seven", "-s", "next", "-p", "nostr")["scheduled_at_iso"] == (
        "2026-11-26T09:00:00+01:00"
    )


@pytest.mark.usefixtures("slotted")
def test_text_output_and_reschedule_next(run: Run, clock: Clock) -> None:
    result = run(post_cli, "Tip of the week", "-s", "next")
    assert result.stdout.endswith(":for:in 21h 55m (Nov 23 09:00 CET)\n")
    post_id = result.stdout.split(":")[1]
    draft = run(post_cli, "later", "--draft").stdout.strip().split(":")[1]
    moved = run(queue_cli, "reschedule", draft, "next")
    assert moved.exit_code == 0, moved.stderr
    assert moved.stdout == f"rescheduled:{draft}:for:in 1d 21h (Nov 24 09:00 CET)\n"
    # A post moved to `next` does not count its own time against itself.
    again = run(queue_cli, "reschedule", post_id, "next", "-f", "json")
    assert json.loads(again.stdout)["scheduled_at_iso"] == "2026-11-23T09:00:00+01:00"


@pytest.mark.usefixtures("configured", "backend")
def test_next_without_slots_is_a_config_error_nothing_written(
    run: Run, clock: Clock, db_path: Path
) -> None:
    result = run(post_cli, "Hello", "-s", "next")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: no posting slots for nostr, mastodon — add [slots] nostr = "
        f'["mon-fri 09:00"] (or all = [...]) to {Path(os.environ["HOME"])}'
        "/.config/plurcast/config.toml\n"
    )
    if db_path.exists() or os.environ.get("PLURCAST_DATABASE_URL"):
        assert run_sql(db_path, "SELECT count(*) FROM posts") == [(0,)]


@pytest.mark.usefixtures("configured")
def test_platforms_without_a_common_slot(run: Run, clock: Clock, config_path: Path) -> None:
    config_path.write_text(
        BASE_CONFIG + '\n[slots]\nnostr = ["mon 09:00"]\nmastodon = ["tue 09:00"]\n'
    )
    result = run(post_cli, "Hello", "-s", "next")
    assert result.exit_code == 2
    assert "nostr and mastodon have no posting slot in common" in result.stderr


def test_a_slot_in_the_spring_gap_is_taken_right_after_it(
    run: Run, clock: Clock, configured: Path
) -> None:
    configured.write_text(BASE_CONFIG + '\n[slots]\nall = ["sun 02:30"]\n')
    clock.now = datetime(2027, 3, 27, 12, tzinfo=UTC)
    data = scheduled(run, "spring", "-s", "next")
    assert data["scheduled_at_iso"] == "2027-03-28T03:00:00+02:00"
    assert scheduled(run, "after", "-s", "next")["scheduled_at_iso"] == (
        "2027-04-04T02:30:00+02:00"
    )


@pytest.mark.sqlite_only  # PostgreSQL: slots.take's advisory lock, the concurrent test below
@pytest.mark.usefixtures("slotted")
def test_the_slot_is_chosen_while_the_write_lock_is_held(
    run: Run, clock: Clock, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer cannot commit between reading the held slots and the insert."""
    run(post_cli, "warm up", "--draft")  # the database exists
    seen: list[str] = []
    real = post_store.held_times_ms

    def spy(conn: sqlite3.Connection, *args: object, **kwargs: object) -> set[int]:
        other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            seen.append("other writer got in")
            other.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            seen.append(str(exc))
        finally:
            other.close()
        return real(conn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(post_store, "held_times_ms", spy)
    assert run(post_cli, "Hello", "-s", "next").exit_code == 0
    assert seen and set(seen) == {"database is locked"}


def test_concurrent_plur_post_next_never_share_a_slot(
    slotted: Path, db_path: Path, tmp_path: Path
) -> None:
    """Four real plur-post processes at once: four different slots (on PostgreSQL, each
    takes the slots' advisory lock: READ COMMITTED alone would let two read the same
    free slot)."""
    env = {**os.environ, "PLURCAST_CONFIG": str(slotted)}
    script = (
        "import sys; from plur_post.cli import main; "
        "sys.argv = ['plur-post', sys.argv[1], '-s', 'next', '-f', 'json']; main()"
    )
    subprocess.run([sys.executable, "-c", script, "warm"], env=env, check=True, capture_output=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"post {i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    times = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        times.append(json.loads(out)["scheduled_at"])
    stored = [r[0] for r in run_sql(db_path, "SELECT scheduled_at_ms FROM posts")]
    assert len(set(times)) == 4 and len(set(stored)) == 5


@pytest.mark.usefixtures("slotted")
def test_queue_slots_shows_what_fills_them(run: Run, clock: Clock) -> None:
    one = scheduled(run, "first in line", "-s", "next")
    two = scheduled(run, "nostr only", "-s", "2026-11-24 09:00", "-p", "nostr")
    lines = run(queue_cli, "slots", "-n", "4").stdout.splitlines()
    assert lines == [
        f"2026-11-23T09:00:00+01:00\t{one['post_id']}\tnostr,mastodon\tfirst in line",
        f"2026-11-24T09:00:00+01:00\t{two['post_id']}\tnostr\tnostr only",
        "2026-11-25T09:00:00+01:00\tfree\tnostr,mastodon\t",
        "2026-11-26T09:00:00+01:00\tfree\tnostr,mastodon\t",
    ]
    data = json.loads(run(queue_cli, "slots", "-n", "2", "-p", "mastodon", "-f", "json").stdout)
    assert [(d["slot_at_iso"], d["free"]) for d in data] == [
        ("2026-11-23T09:00:00+01:00", False),
        ("2026-11-24T09:00:00+01:00", True),
    ]
    assert data[0]["posts"][0]["id"] == one["post_id"]
    assert run(queue_cli, "slots", "-n", "0").exit_code == 3
