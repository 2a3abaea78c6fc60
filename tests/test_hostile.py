"""Hostile input (issue 11): each case a hostile new user found, pinned so it stays fixed.

A case whose outcome rests on the database — stored times read back, a schedule's runs, a
rate-limit record, what is stored of a server's answer, heartbeats and leases, which posts a
query picks and in what order, a failing command's writes — runs on both backends (`ON_BOTH`).
Parsing, config, output, signals and SQLite's own files run on SQLite alone; where SQLite's
case cannot happen on PostgreSQL (no file to make, no directory to open) a twin asks the
same of PostgreSQL its own way.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nostr_sdk as n
import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_send.cli import cli as send_cli
from plurcast import config as config_module
from plurcast import health, logs, output, process, queue, schedules
from plurcast.daemon import Daemon, Options
from plurcast.engine import Engine
from plurcast.models import to_ms
from plurcast.outcomes import MAX_ERROR_CHARS
from plurcast.retry import MAX_RATE_LIMITED_WAITS, rate_limited_wait
from tests.helpers import (
    ANSWER_TIMEOUT,
    T0,
    Clock,
    Daemons,
    Run,
    add_post,
    free_port,
    many_posts,
    row,
    run_with_reader_gone,
    wait_until,
)
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import local_relay
from tests.peers.postgres import Backend, run_sql

pytestmark = pytest.mark.usefixtures("configured")
ON_BOTH = pytest.mark.usefixtures("backend")

YEAR_9999_MS = 253_402_300_740_000  # 9999-12-31 23:59 UTC


def post(run: Run, content: str, *args: str) -> str:
    result = run(post_cli, content, *args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["post_id"])


def sql(db_path: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    """One statement on the test's database, either backend, committed."""
    return run_sql(db_path, statement, *params)


# --- 1. a cron that floods ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "fields"), [("* * * * * *", 6), ("*/1 * * * * *", 6), ("* * *", 3), ("*", 1)]
)
def test_cron_with_other_than_5_fields_is_refused(
    run: Run, clock: Clock, db_path: Path, cron: str, fields: int
) -> None:
    result = run(post_cli, "flood", "--cron", cron)
    assert result.exit_code == 3
    assert result.stderr == (
        f'Error: invalid cron expression "{cron}": {fields} fields, not 5 — use 5 fields: '
        'minute hour day month weekday, e.g. "0 9 * * 1-5"\n'
    )
    assert not db_path.exists()


@ON_BOTH
def test_a_stored_seconds_cron_still_fires_at_most_once_a_minute(
    run: Run, clock: Clock, db_path: Path
) -> None:
    """A schedule written before the check (or by hand) must not flood either (G5)."""
    sid = json.loads(run(post_cli, "x", "--cron", "* * * * *", "-f", "json").stdout)["schedule_id"]
    sql(db_path, "UPDATE schedules SET cron = '* * * * * *', misfire = 'all'")
    conn = queue.open_db(config_module.load())
    made = []
    for _ in range(180):  # three minutes, second by second
        clock.advance(seconds=1)
        made += schedules.materialize(conn, to_ms(clock.now))
    assert 3 <= len(made) <= 4
    times = [r[0] for r in sql(db_path, "SELECT occurrence_at_ms FROM posts ORDER BY 1")]
    assert all(t % 60_000 == 0 for t in times), times
    assert sql(db_path, "SELECT count(*) FROM occurrences WHERE schedule_id = ?", sid) == [
        (len(made),)
    ]


# --- 2. a time beyond the horizon, and readers of any stored time ---------------------------


@pytest.mark.parametrize("when", ["9999-12-31 23:59 UTC", "3000-01-01", "in 101 years"])
def test_a_post_beyond_the_horizon_is_refused_and_nothing_written(
    run: Run, clock: Clock, db_path: Path, when: str
) -> None:
    result = run(post_cli, "x", "-s", when)
    assert result.exit_code == 3
    assert "is more than 100 years ahead — schedule posts up to" in result.stderr
    assert not db_path.exists()


@ON_BOTH
def test_reschedule_beyond_the_horizon_is_refused(run: Run, clock: Clock, db_path: Path) -> None:
    post_id = post(run, "x", "-s", "2126-01-01")
    before = sql(db_path, "SELECT * FROM deliveries")
    for when in ("9999-12-31 23:59 UTC", "2126-12-01", "+100w"):
        result = run(queue_cli, "reschedule", post_id, when)
        assert result.exit_code == 3, result.stderr
        assert "more than 100 years ahead" in result.stderr
    assert sql(db_path, "SELECT * FROM deliveries") == before


@ON_BOTH
@pytest.mark.parametrize("stored_ms", [YEAR_9999_MS, 2**62, -(2**62)])
def test_every_reader_copes_with_any_stored_time(
    run: Run, clock: Clock, db_path: Path, stored_ms: int
) -> None:
    """A time written by an older version or by hand must not make the queue unreadable."""
    post_id = post(run, "x", "-s", "1h")
    sql(db_path, "UPDATE posts SET scheduled_at_ms = ?", stored_ms)
    sql(db_path, "UPDATE deliveries SET due_at_ms = ?", stored_ms)
    for args in (
        ["list"],
        ["list", "--all"],
        ["list", "-f", "json"],
        ["stats"],
        ["stats", "-f", "json"],
        ["show", post_id],
        ["show", post_id, "-f", "json"],
    ):
        result = run(queue_cli, *args)
        assert result.exit_code == 0, (args, result.stderr)
    listed = json.loads(run(queue_cli, "list", "-f", "json").stdout)[0]
    assert listed["scheduled_at"] == stored_ms // 1000  # the epoch field stays exact
    if stored_ms > 0:
        result = run(post_cli, "y", "-s", "random:1h-2h")
        assert result.exit_code == 3
        assert "after the latest pending post" in result.stderr
    assert run(queue_cli, "cancel", post_id, "--force").exit_code == 0
    assert run(post_cli, "y", "-s", "random:1h-2h").exit_code == 0


def test_until_beyond_the_horizon_is_refused(run: Run, clock: Clock) -> None:
    result = run(post_cli, "x", "--every", "1d", "--until", "9999-12-31 23:59 UTC")
    assert result.exit_code == 3
    assert "more than 100 years ahead" in result.stderr


# --- 8. plain bad input is exit 3, never an internal error -------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "-p", ","], 'Error: -p "," names 0 platforms — give one of'),
        (["list", "-p", "nostr,mastodon"], 'Error: -p "nostr,mastodon" names 2 platforms'),
    ],
)
def test_queue_bad_platform_filter_is_exit_3(
    run: Run, clock: Clock, args: list[str], message: str
) -> None:
    result = run(queue_cli, *args)
    assert result.exit_code == 3
    assert result.stderr.startswith(message), result.stderr


@pytest.mark.parametrize(
    ("zone", "hint"),
    [
        ("a" * 300, 'use an IANA name such as "Europe/Berlin" or "UTC"'),
        ("Europe", 'use an IANA name such as "Europe/Berlin" or "UTC"'),
        ("posix/Europe/Berlin", 'use "Europe/Berlin"'),
        ("right/Europe/Berlin", 'use "Europe/Berlin"'),
        ("localtime", 'use an IANA name such as "Europe/Berlin" or "UTC"'),
    ],
)
@pytest.mark.parametrize("when", ["1h", "in 3 days at noon"])
def test_a_zone_that_is_no_iana_zone_is_exit_3(
    run: Run, clock: Clock, db_path: Path, zone: str, hint: str, when: str
) -> None:
    result = run(post_cli, "x", "-s", when, "--tz", zone)
    assert result.exit_code == 3
    assert result.stderr == f'Error: unknown timezone "{zone}" — {hint}\n'
    result = run(post_cli, "x", "-s", f"tomorrow 9am {zone}")
    assert result.exit_code == 3, result.stderr
    assert not db_path.exists()


def test_a_config_zone_that_is_no_iana_zone_is_exit_2(
    run: Run, clock: Clock, configured: Path
) -> None:
    configured.write_text(
        configured.read_text().replace('"Europe/Berlin"', '"posix/Europe/Berlin"')
    )
    result = run(queue_cli, "list")
    assert result.exit_code == 2
    assert 'timezone "posix/Europe/Berlin" is not a known IANA zone' in result.stderr


@pytest.mark.parametrize("answer", [b"\xff\xfe\n", b"\xe9\n", b""])
def test_a_non_utf8_answer_at_the_prompt_declines(
    run: Run, clock: Clock, db_path: Path, answer: bytes
) -> None:
    post_id = post(run, "x", "-s", "1h")
    result = run(queue_cli, "cancel", post_id, input=answer)
    assert result.exit_code == 3
    assert result.stderr.endswith(
        "Error: Cancelled by user — nothing was changed; answer y, or pass --force\n"
    )
    assert sql(db_path, "SELECT DISTINCT state FROM deliveries") == [("pending",)]


# --- 12. a pipe closed early ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_reader_that_goes_away_is_no_error(run: Run, clock: Clock) -> None:
    for hours in range(1, 4):
        post(run, f"post {hours}", "-s", f"{hours}h")
    run(post_cli, "again", "--every", "1h")
    for args in (["list"], ["schedules"], ["stats"], ["list", "-f", "json"], ["--help"]):
        done = run_with_reader_gone("plur-queue", *args)
        assert done.returncode == 0, (args, done.stderr)
        assert b"Error" not in done.stderr and b"Exception" not in done.stderr, args


@pytest.mark.slow
def test_a_reader_that_leaves_after_the_first_line_of_a_long_listing_is_no_error(
    db_path: Path,
) -> None:
    """`plur-queue list | head -1` over more posts than a pipe holds: the reader leaves while
    the listing is still being read and written, a chunk at a time. Exit 0, nothing on
    stderr, in every format."""
    many_posts(db_path, 3000, "✨ " + "x" * 300)  # ~1.3 MB of JSON, twenty pipes' worth
    for fmt in ("json", "jsonl", "text"):
        listing = subprocess.Popen(
            [str(Path(sys.executable).parent / "plur-queue"), "list", "-f", fmt],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert listing.stdout is not None and listing.stderr is not None
        first = listing.stdout.readline()
        listing.stdout.close()  # `| head -1`
        stderr = listing.stderr.read()
        assert listing.wait(timeout=60) == 0, (fmt, stderr)
        assert stderr == b"", fmt
        assert first.startswith(b"[" if fmt == "json" else b"{" if fmt == "jsonl" else b"0000"), fmt


# --- 3. rate-limit answers: growing waits, and an end -------------------------------------------


def engine_on(
    relay: str, write_config: Callable[[str], Path], key: Path, scheduling: str = ""
) -> tuple[config_module.Config, sqlite3.Connection, Clock, Engine]:
    """An engine on a stepped clock, for the default Nostr account on `relay`."""
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{key}"\nrelays = ["{relay}"]\n'
        f"timeout = {ANSWER_TIMEOUT:g}\n"
        f"[scheduling]\n{scheduling}"
    )
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    clock = Clock(T0)
    return cfg, conn, clock, Engine(cfg, conn, clock=clock)


def test_rate_limited_waits_grow_and_end() -> None:
    rng = random.Random(1)
    nostr_like = [rate_limited_wait(n, None, 1.0, rng) for n in range(MAX_RATE_LIMITED_WAITS + 1)]
    assert nostr_like[-1] is None
    waits = [w for w in nostr_like if w is not None]
    assert len(waits) == MAX_RATE_LIMITED_WAITS
    assert 0.8 <= waits[0] <= 1.2
    assert all(later > earlier for earlier, later in itertools.pairwise(waits))
    # A server that names its time is believed the first time, then our backoff is the floor.
    assert rate_limited_wait(0, 1.0, 300.0, rng) == 1.0
    assert 240 <= (rate_limited_wait(1, 1.0, 300.0, rng) or 0) <= 360
    assert rate_limited_wait(1, 3600.0, 300.0, rng) == 3600.0


@ON_BOTH
def test_a_relay_that_always_says_slow_down_is_not_retried_forever(
    write_config: Callable[[str], Path], nostr_key: Path
) -> None:
    """24 attempts in 25 s with retry_delay = 1 and a constant interval, before the fix."""

    async def scenario() -> tuple[list[float], tuple[object, ...], int]:
        async with local_relay(notes_per_minute=1) as url:
            cfg, conn, clock, engine = engine_on(
                url, write_config, nostr_key, "retry_delay = 1\nmax_retries = 2\n"
            )
            first = add_post(conn, cfg, "takes the relay's one note a minute", T0 + 1)
            limited = add_post(conn, cfg, "slowed down", T0 + 2)
            clock.advance(2)
            waits: list[float] = []
            for _ in range(3 * MAX_RATE_LIMITED_WAITS):
                claims = engine.claim_due(10)
                if not claims:
                    break
                for claim in claims:
                    result = await engine.deliver(claim)
                    if claim.post_id == limited and result.state == "retry":
                        waits.append((result.due_at_ms or 0) / 1000 - clock())
                clock.advance(max(waits[-1:] or [0]) + 1)
            await engine.pool.close()
            assert row(conn, first).state == "sent"
            attempts = sql(cfg.db_path, "SELECT count(*) FROM attempts")[0][0]
            return waits, tuple(row(conn, limited)), int(str(attempts))

    waits, (state, attempts, _, error, kind, *_), logged = asyncio.run(scenario())
    assert len(waits) == MAX_RATE_LIMITED_WAITS
    assert all(later > earlier for earlier, later in itertools.pairwise(waits)), waits
    assert (state, attempts, kind) == ("dead", 1, "rate_limited")
    assert str(error).startswith(
        f"gave up after {MAX_RATE_LIMITED_WAITS + 1} rate-limit answers in a row: "
    )
    assert str(error).endswith("rate-limited: slow down")
    assert logged == 1 + MAX_RATE_LIMITED_WAITS + 1


# --- 4, 5. control characters and markup from content or a platform, in every text output --------

HOSTILE = "abc\x1b[31mRED\x1b[0m\x07 \u202eevil\x9b2J"
SHOWN = "abc\\x1b[31mRED\\x1b[0m\\x07 \\u202eevil\\x9b2J"
MARKUP = "look [bold red]IMPORTANT[/bold red] [/] :smile:"


def raw_control(text: str) -> list[str]:
    """Characters a terminal would act on, left in `text` (tab and newline are fine)."""
    return [c for c in text if c not in "\t\n" and (ord(c) < 32 or 0x7F <= ord(c) < 0xA0)] + [
        c for c in text if c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    ]


def text_outputs(run: Run, post_id: str, schedule_id: str) -> dict[str, str]:
    outputs = {}
    for args in (
        ["list"],
        ["list", "--all"],
        ["show", post_id],
        ["stats"],
        ["schedules"],
        ["failed", "list"],
        ["history", schedule_id],
    ):
        result = run(queue_cli, *args)
        assert result.exit_code == 0, (args, result.stderr)
        outputs[" ".join(args)] = result.stdout + result.stderr
    return outputs


@pytest.mark.parametrize("terminal", [False, True])
def test_control_characters_and_markup_are_shown_as_text(
    run: Run, clock: Clock, db_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    escaped = post(run, HOSTILE, "-s", "1h")
    marked = post(run, MARKUP, "-s", "2h")
    failed = post(run, f"failed {HOSTILE}", "-s", "3h")
    sql(
        db_path,
        "UPDATE deliveries SET state = 'dead', last_error = ? WHERE post_id = ?",
        HOSTILE,
        failed,
    )
    result = run(post_cli, HOSTILE, "--every", "1h", "-f", "json")
    schedule_id = json.loads(result.stdout)["schedule_id"]
    sql(
        db_path,
        "INSERT INTO occurrences VALUES (?, 1, 1, 'skipped', NULL, ?)",
        schedule_id,
        HOSTILE,
    )
    monkeypatch.setattr(output, "fancy", lambda: terminal)
    for args, text in text_outputs(run, failed, schedule_id).items():
        assert raw_control(text) == [], args
        if args != "history " + schedule_id:
            assert "RED" in text, args
    listed = run(queue_cli, "list").stdout
    if terminal:  # the table may fold a cell over lines, and pads it
        cells = "".join(re.findall(r"│ ([^│\n]*?) *$", listed, re.MULTILINE))
        assert "IMPORTANT" in cells and "[/bold" in cells and "[/]" in cells, listed
    else:
        assert SHOWN in listed and "[bold red]IMPORTANT[/bold red] [/] :smile:" in listed
    for post_id, content in ((escaped, HOSTILE), (marked, MARKUP)):
        shown = json.loads(run(queue_cli, "show", post_id, "-f", "json").stdout)
        assert shown["content"] == content  # JSON stays exact


def test_an_error_line_shows_what_was_typed_escaped(run: Run, clock: Clock) -> None:
    result = run(post_cli, "x", "-s", "\x1b[2J\x1b]0;pwned\x07")
    assert result.exit_code == 3
    assert result.stderr.startswith(
        'Error: cannot understand the time "\\x1b[2J\\x1b]0;pwned\\x07"'
    )
    assert raw_control(result.stderr) == []
    result = run(queue_cli, "show", "\u202e12345678")
    assert result.exit_code == 3
    assert "\\u202e12345678" in result.stderr and raw_control(result.stderr) == []


def test_log_lines_are_printable_and_carry_their_zone() -> None:
    record = logging.LogRecord(
        "plurcast.engine", logging.WARNING, __file__, 1, "failed (%s)", (HOSTILE,), None
    )
    line = logs.TextFormatter().format(record)
    assert SHOWN in line and raw_control(line) == []
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [+-]\d{4} WARNING failed", line), line
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["msg"] == f"failed ({HOSTILE})"  # JSON stays exact


class Refusing(n.WritePolicy):  # type: ignore[misc]
    """A relay that refuses every note with a 200 KB answer full of terminal escapes."""

    async def admit_event(self, event: Any, socket_addr: str) -> Any:
        return n.WritePolicyResult.REJECT(f"{HOSTILE} " + "y" * 200_000)


@ON_BOTH
def test_a_relays_error_text_is_capped_escaped_and_the_same_everywhere(
    run: Run, clock: Clock, write_config: Callable[[str], Path], nostr_key: Path
) -> None:
    async def scenario() -> str:
        # the relay calls the Python policy from its own thread: tell uniffi our loop
        n.uniffi_set_event_loop(asyncio.get_running_loop())
        try:
            async with local_relay(write_policy=Refusing()) as url:
                cfg, conn, engine_clock, engine = engine_on(url, write_config, nostr_key)
                post_id = add_post(conn, cfg, "refused", T0 + 1)
                engine_clock.advance(2)
                [claim] = engine.claim_due(1)
                result = await engine.deliver(claim)
                await engine.pool.close()
        finally:
            n.uniffi_set_event_loop(None)
        assert result.state == "dead"
        return post_id

    post_id = asyncio.run(scenario())
    cfg = config_module.load()
    [(error, detail)] = sql(
        cfg.db_path,
        "SELECT a.error, a.detail FROM attempts a JOIN deliveries d ON d.id = a.delivery_id",
    )
    assert isinstance(error, str) and len(error) < MAX_ERROR_CHARS + 100
    assert error.endswith(" more characters)")
    assert len(str(detail)) < MAX_ERROR_CHARS + 200
    assert sql(cfg.db_path, "SELECT last_error FROM deliveries") == [(error,)]
    for args in (["show", post_id], ["failed", "list"]):
        shown = run(queue_cli, *args).stdout
        assert "\\x1b[31mRED" in shown and raw_control(shown) == [], args


# --- 6. a secret echoed back by a server ---------------------------------------------------


def test_a_token_the_server_echoes_is_never_printed_stored_or_logged(
    run: Run,
    clock: Clock,
    write_config: Callable[[str], Path],
    isolated_home: Path,
    db_path: Path,
    mastodon_server: MastodonMock,
    caplog: pytest.LogCaptureFixture,
    backend: Backend,
) -> None:
    token = TOKENS["alice"]
    token_file = isolated_home / "alice.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    write_config(
        f'timezone = "UTC"\n[mastodon]\ninstance = "{mastodon_server.url}"\n'
        f'token_file = "{token_file}"\ntimeout = {ANSWER_TIMEOUT:g}\n'
    )
    echo = {"error": f"The access token is invalid (you sent: Bearer {token})"}
    mastodon_server.add_fault({"type": "status", "status": 401, "body": echo})
    with caplog.at_level(logging.INFO):
        result = run(post_cli, "hello", "-p", "mastodon")
    assert result.exit_code == 2, result.stderr
    assert result.stdout == (
        "mastodon:error:HTTP 401 Unauthorized: The access token is invalid "
        "(you sent: Bearer [redacted]) — check the account's access token\n"
    )
    listed = run(queue_cli, "failed", "list")
    shown = run(queue_cli, "show", listed.stdout[:8], "-f", "json")
    assert "[redacted]" in listed.stdout and "[redacted]" in shown.stdout
    texts = [result.stderr, listed.stdout, shown.stdout, caplog.text, dump(backend, db_path)]
    assert [text for text in texts if token in text] == []


def dump(backend: Backend, db_path: Path) -> str:
    """Everything the test's database holds, as SQL text: sqlite3's iterdump, or pg_dump."""
    if backend.is_postgresql:
        assert backend.cluster is not None and backend.url is not None
        pg_dump = str(backend.cluster.bin_dir / "pg_dump")
        done = subprocess.run(
            [pg_dump, "--no-owner", backend.url], capture_output=True, text=True, check=True
        )
        assert "INSERT" in done.stdout or "COPY public.deliveries" in done.stdout
        return done.stdout
    with sqlite3.connect(db_path) as conn:
        return "\n".join(conn.iterdump())


# --- 10. health after kill -9 ---------------------------------------------------------------------


def ended_process_owner() -> tuple[str, int]:
    """The lease-owner id of a process of this host that has ended, and its pid."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = process.owner_id(child.pid)
    child.kill()
    child.wait()
    return owner, child.pid


def add_heartbeat(db_path: Path, owner: str, pid: int, beat_ms: int) -> None:
    sql(
        db_path,
        "INSERT INTO heartbeats VALUES (?, ?, ?, ?, ?, '0.1.0')",
        owner,
        process.HOST,
        pid,
        beat_ms - 60_000,
        beat_ms,
    )


@ON_BOTH
def test_a_fresh_heartbeat_of_a_process_that_ended_is_no_running_daemon(
    run: Run, clock: Clock, db_path: Path
) -> None:
    post(run, "x", "-s", "1h")  # the database exists
    owner, pid = ended_process_owner()
    add_heartbeat(db_path, owner, pid, to_ms(clock.now) - 1_000)
    daemon = health.daemon_health(queue.open_db(config_module.load()), to_ms(clock.now))
    assert (daemon.running, daemon.gone, daemon.pid) == (False, True, pid)
    result = run(send_cli, "health")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: plur-send is gone: pid {pid} on {process.HOST}, last heartbeat 1s ago, but its "
        "process has ended — start it: plur-send start (or plur-send)\n"
    )
    # A live daemon that beat a little earlier still counts.
    add_heartbeat(db_path, process.owner_id(), os.getpid(), to_ms(clock.now) - 3_000)
    result = run(send_cli, "health")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ok: plur-send pid {os.getpid()} on ")


@pytest.mark.slow
@ON_BOTH
def test_plur_send_health_fails_at_once_after_kill_9(
    run: Run, db_path: Path, daemons: Daemons
) -> None:
    daemon = daemons.start()

    def beating() -> bool:
        if os.environ.get("PLURCAST_DATABASE_URL"):  # made and migrated by the fixture
            return bool(sql(db_path, "SELECT count(*) FROM heartbeats")[0][0])
        try:  # read-only: the test must not make the daemon's database itself
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
                return bool(conn.execute("SELECT count(*) FROM heartbeats").fetchone()[0])
        except sqlite3.OperationalError:  # not created or not migrated yet
            return False

    wait_until(beating, "the daemon's first heartbeat")
    assert run(send_cli, "health").exit_code == 0
    daemon.kill()
    daemon.wait()
    result = run(send_cli, "health")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: plur-send is gone: pid {daemon.pid} on ")


# --- 11. a failing command writes nothing, and a foreign SQLite file is left alone ---------------


COMMANDS_THAT_FAIL_OR_ONLY_READ = [
    (post_cli, ["", "-s", "1h"], 3),
    (post_cli, ["x", "-s", "yesterday"], 3),
    (post_cli, ["x", "--cron", "* * * * * *"], 3),
    (post_cli, ["x", "-p", "myspace"], 3),
    (queue_cli, ["list"], 0),
    (queue_cli, ["list", "--all", "-f", "json"], 0),
    (queue_cli, ["stats"], 0),
    (queue_cli, ["schedules"], 0),
    (queue_cli, ["failed", "list"], 0),
    (queue_cli, ["failed", "retry", "--all"], 0),
    (queue_cli, ["cancel", "--all", "--force"], 0),
    (queue_cli, ["show", "12345678"], 3),
    (queue_cli, ["cancel", "12345678", "--force"], 3),
    (queue_cli, ["reschedule", "12345678", "1h"], 3),
    (send_cli, ["health"], 1),
    (send_cli, ["status"], 0),
]


@pytest.mark.parametrize(("cli", "args", "code"), COMMANDS_THAT_FAIL_OR_ONLY_READ)
def test_a_command_that_fails_or_only_reads_makes_no_database(
    run: Run, clock: Clock, db_path: Path, cli: Any, args: list[str], code: int
) -> None:
    result = run(cli, *args)
    assert result.exit_code == code, result.stderr
    assert "internal error" not in result.stderr
    assert not db_path.parent.exists(), list(db_path.parent.iterdir())


def rows_by_table(db_path: Path) -> dict[str, int]:
    """How many rows each table of the test's PostgreSQL database holds (but the schema's
    version), in one statement."""
    tables = [
        str(t)
        for (t,) in sql(
            db_path,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'plurcast_schema' ORDER BY 1",
        )
    ]
    counts = ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)
    return dict(
        zip(tables, (int(str(n)) for n in sql(db_path, f"SELECT {counts}")[0]), strict=True)
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("cli", "args", "code"), COMMANDS_THAT_FAIL_OR_ONLY_READ)
def test_on_postgresql_a_command_that_fails_or_only_reads_writes_no_row(
    run: Run, clock: Clock, db_path: Path, backend: Backend, cli: Any, args: list[str], code: int
) -> None:
    """The twin of the one above: there the database is a file not to be made; here it is
    the operator's, made and migrated, and must be left as it was (and nothing made on
    disk either)."""
    before = rows_by_table(db_path)
    result = run(cli, *args)
    assert result.exit_code == code, result.stderr
    assert "internal error" not in result.stderr
    assert rows_by_table(db_path) == before
    assert len(before) > 10 and set(before.values()) == {0}
    assert not db_path.parent.exists(), list(db_path.parent.iterdir())


@pytest.mark.parametrize(
    ("cli", "args"),
    [
        (post_cli, ["x", "-s", "1h", "-p", "mastodon"]),
        (queue_cli, ["list"]),
        (send_cli, ["--once"]),
    ],
)
def test_a_postgresql_server_that_is_gone_is_exit_1_saying_what_to_check(
    run: Run,
    clock: Clock,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Any,
    args: list[str],
) -> None:
    """PostgreSQL's twin of "cannot open the database" (a directory given as the SQLite
    file, in test_errors_say_how_to_fix_them): nothing listens where the url points."""
    url = f"postgresql://plur:hunter2@127.0.0.1:{free_port()}/plur"
    monkeypatch.setenv("PLURCAST_DATABASE_URL", url)
    result = run(cli, *args)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("Error: cannot reach the PostgreSQL server at "), result.stderr
    assert result.stderr.endswith(" — check that it runs and that [database] url names it\n")
    assert result.stderr.count("\n") == 1 and "hunter2" not in result.stderr
    assert not db_path.parent.exists()


def test_the_first_post_makes_the_database(run: Run, clock: Clock, db_path: Path) -> None:
    post(run, "first", "-s", "1h")
    assert db_path.stat().st_mode & 0o777 == 0o600
    assert db_path.parent.stat().st_mode & 0o777 == 0o700
    assert run(queue_cli, "list").stdout.endswith("\tfirst\n")


def test_the_empty_stand_in_refuses_writes_loudly(db_path: Path) -> None:
    """A writer that forgot create=True must fail, never write into memory and lose it."""
    conn = queue.open_db(config_module.load(), create=False)
    assert list(queue.list_posts(conn)) == []
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM posts")
    assert not db_path.exists()


def test_a_sqlite_file_that_is_not_ours_is_refused_untouched(run: Run, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as theirs:
        theirs.execute("CREATE TABLE notes (body TEXT)")
        theirs.execute("INSERT INTO notes VALUES ('keep me')")
    theirs.close()
    before = db_path.read_bytes()
    for cli, args in ((queue_cli, ["list"]), (post_cli, ["x", "-s", "1h"]), (send_cli, ["--once"])):
        result = run(cli, *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr == (
            f"Error: {db_path} is not a Plurcast database (it holds notes) — set "
            "PLURCAST_DB_PATH or [database] path to a new file\n"
        )
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["posts.db"]


def test_an_empty_file_is_a_new_database(run: Run, clock: Clock, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    post(run, "into the empty file", "-s", "1h")
    assert sql(db_path, "SELECT content FROM posts") == [("into the empty file",)]


# --- 9. signals while plur-send starts ------------------------------------------------------------


def test_plur_send_holds_stop_signals_before_any_import_of_its_own() -> None:
    """The window in which a SIGTERM still kills plur-send is Python's own start-up: catching
    the signals imports nothing (the `signal` module alone pulls in `enum`, ~20 ms loaded)."""
    probe = (
        "import sys; before = set(sys.modules); from plur_send import early; early.catch(); "
        "print(sorted(set(sys.modules) - before))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "['plur_send', 'plur_send.early']"


_HUP_AND_TERM_WHILE_STARTING = """\
import os, signal, sys
from plur_send import early, main
early.catch()  # what the plur-send script does first
os.kill(os.getpid(), signal.SIGHUP)  # a reload, then a stop, while it still starts
os.kill(os.getpid(), signal.SIGTERM)
sys.argv = ["plur-send"]
main()
"""


@pytest.mark.slow
def test_a_reload_then_a_stop_while_starting_are_both_acted_on() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HUP_AND_TERM_WHILE_STARTING],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "SIGTERM: finishing in-flight deliveries, then stopping" in done.stderr
    assert "plur-send stopped" in done.stderr


# --- 13. the smaller ones -------------------------------------------------------------------


def display_width(line: str) -> int:
    """Columns a terminal that joins emoji sequences gives `line`: a grapheme cluster is two
    when it is wide or an emoji (a joined family, a flag, a tone), else one."""
    import unicodedata

    import regex

    width = 0
    for cluster in regex.findall(r"\X", line):
        first = cluster[0]
        wide = unicodedata.east_asian_width(first) in "WF" or ord(first) >= 0x1F000
        width += 2 if wide or "\u200d" in cluster or "\ufe0f" in cluster else 1
    return width


def test_joined_emoji_keep_the_table_aligned(
    run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for text in ("plain", "👨\u200d👩\u200d👧\u200d👦 family", "🇩🇪 flag", "👍🏽 tone", "日本語"):
        post(run, text, "-s", "1h")
    monkeypatch.setattr(output, "fancy", lambda: True)
    lines = run(queue_cli, "list").stdout.splitlines()
    assert len({display_width(line) for line in lines if "│" in line}) == 1, lines


@ON_BOTH
def test_reschedule_random_goes_after_the_latest_other_pending_post(
    run: Run, clock: Clock, db_path: Path
) -> None:
    moved = post(run, "moved", "-s", "1h")
    post(run, "the latest", "-s", "10d")
    result = run(queue_cli, "reschedule", moved, "random:1h-2h", "-f", "json")
    assert result.exit_code == 0, result.stderr
    at = json.loads(result.stdout)["scheduled_at"]
    ten_days = clock.now.timestamp() + 10 * 86400
    assert ten_days + 3600 <= at <= ten_days + 7200
    # Moving the latest itself counts from the others, not from its own old time.
    latest = sql(db_path, "SELECT id FROM posts WHERE content = 'the latest'")[0][0]
    result = run(queue_cli, "reschedule", str(latest), "random:1h-2h", "-f", "json")
    assert json.loads(result.stdout)["scheduled_at"] <= at + 7200


@ON_BOTH
def test_a_multi_id_cancel_reports_in_the_order_given(run: Run, clock: Clock) -> None:
    later = post(run, "later", "-s", "2h")
    sooner = post(run, "sooner", "-s", "1h")
    result = run(queue_cli, "cancel", later, sooner, "--force")
    assert result.stdout == f"cancelled:{later}\ncancelled:{sooner}\n"


@ON_BOTH
def test_dead_leases_are_recovered_and_logged_once(
    run: Run, clock: Clock, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    post(run, "x", "-s", "1h", "-p", "nostr")
    owner, _pid = ended_process_owner()
    later = to_ms(clock.now) + 600_000
    sql(
        db_path,
        "UPDATE deliveries SET state = 'sending', lease_owner = ?, lease_expires_at_ms = ?",
        owner,
        later,
    )
    cfg = config_module.load()
    engine = Engine(cfg, queue.open_db(cfg), clock=Clock(clock.now))
    with caplog.at_level(logging.WARNING):
        assert [engine.recover_dead_leases() for _ in range(3)] == [1, 0, 0]
    assert caplog.text.count("recovered 1 deliveries from 1 dead process(es)") == 1


def test_the_start_line_names_the_configured_platforms_only(
    write_config: Callable[[str], Path],
    nostr_key: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_config(f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["ws://127.0.0.1:1"]\n')
    daemon = Daemon(config_module.load, queue.open_db, Options(once=True))
    with caplog.at_level(logging.INFO):
        assert asyncio.run(daemon.run()) == 0
    [started] = [r.getMessage() for r in caplog.records if " started (pid " in r.getMessage()]
    assert started.endswith(", platforms nostr)")


def test_errors_say_how_to_fix_them(
    run: Run,
    clock: Clock,
    configured: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    result = run(post_cli, "x", "--every", "1h", "--count", "0")
    assert result.stderr == (
        "Error: --count must be from 1 to 1,000,000 — or end the schedule with --until WHEN\n"
    )
    (configured.parent / "nostr.keys").write_text("1" * 70_000)
    result = run(post_cli, "x", "-s", "1h", "-p", "nostr")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "is too large to be a secret (over 64 KiB) — put only the Nostr secret key in it\n"
    )
    monkeypatch.setenv("PLURCAST_DB_PATH", str(tmp_path))  # a directory
    result = run(post_cli, "x", "-s", "1h", "-p", "mastodon")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot open the database {tmp_path}: ")
    assert result.stderr.endswith(
        " — check the file and its directory, or set PLURCAST_DB_PATH to another file\n"
    )
    configured.write_text('[scheduling]\npoll_interval = "60"\n')
    result = run(queue_cli, "list")
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {configured}: scheduling.poll_interval has the wrong type (str) — write a "
        "number, without quotes\n"
    )


# --- 7. config values that pass loading and fail later ----------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300"])
@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("database", "busy_timeout"),
        ("scheduling", "poll_interval"),
        ("scheduling", "retry_delay"),
        ("scheduling", "shutdown_timeout"),
        ("scheduling", "grace"),
        ("scheduling", "startup_delay"),
        ("scheduling", "inter_retry_delay"),
    ],
)
def test_a_number_out_of_its_range_is_a_config_error_naming_the_key(
    run: Run, write_config: Callable[[str], Path], table: str, key: str, value: str
) -> None:
    path = write_config(f"[{table}]\n{key} = {value}\n")
    result = run(queue_cli, "list")
    assert result.exit_code == 2
    allowed = config_module.RANGES[key]
    assert result.stderr.startswith(f"Error: {path}: {table}.{key} must be {allowed} (it is ")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[scheduling]\nmax_retries = 100000\n", "scheduling.max_retries"),
        ("[scheduling]\nmax_concurrency = 9223372036854775807\n", "scheduling.max_concurrency"),
        ("[scheduling.rate_limits.nostr]\nposts_per_hour = 10000000000\n", "posts_per_hour"),
    ],
)
def test_a_whole_number_out_of_its_range_is_a_config_error(
    run: Run, write_config: Callable[[str], Path], text: str, key: str
) -> None:
    write_config(text)
    result = run(queue_cli, "list")
    assert result.exit_code == 2
    assert key in result.stderr and " must be from " in result.stderr


@pytest.mark.parametrize("value", ["inf", "1e300", "56", "nan"])
def test_a_platform_timeout_out_of_range_is_refused_when_the_post_is_written(
    run: Run, clock: Clock, configured: Path, db_path: Path, value: str
) -> None:
    configured.write_text(
        configured.read_text().replace(
            'relays = ["ws://127.0.0.1:1"]', f'relays = ["ws://127.0.0.1:1"]\ntimeout = {value}'
        )
    )
    result = run(post_cli, "x", "-s", "1h", "-p", "nostr")
    assert result.exit_code == 2
    assert "nostr.timeout must be a number of seconds above 0 and at most 55" in result.stderr
    assert not db_path.exists()


def test_a_deeply_nested_config_is_a_config_error(
    run: Run, write_config: Callable[[str], Path]
) -> None:
    path = write_config("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = run(queue_cli, "list")
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {path}: arrays or tables nested too deeply to read — flatten them\n"
    )


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--poll-interval", "nan"], "nan is not from 0.1 to 86,400"),
        (["--poll-interval", "inf"], "inf is not from 0.1 to 86,400"),
        (["--poll-interval", "1e309"], "inf is not from 0.1 to 86,400"),
        (["--poll-interval", "0.01"], "0.01 is not from 0.1 to 86,400"),
        (["--max-concurrency", "9" * 20], f"{int('9' * 20):,} is not from 1 to 1,000"),
        (["--max-concurrency", "0"], "0 is not from 1 to 1,000"),
        (["--startup-delay", "inf"], "inf is not from 0 to 3,600"),  # --once slept for ever
        (["--startup-delay", "nan"], "nan is not from 0 to 3,600"),
    ],
)
def test_plur_send_flags_out_of_range_are_exit_3(
    run: Run, db_path: Path, args: list[str], shown: str
) -> None:
    result = run(send_cli, *args, "--once")
    assert result.exit_code == 3
    option = args[0]
    assert result.stderr == (
        f"Error: Invalid value for '{option}': {shown} — see 'plur-send --help'\n"
    )
    assert not db_path.exists()


@pytest.mark.slow
def test_sighup_with_a_bad_config_keeps_the_old_one(
    write_config: Callable[[str], Path], nostr_key: Path, daemons: Daemons
) -> None:
    config = f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["ws://127.0.0.1:1"]\n'
    path = write_config(config + "[scheduling]\npoll_interval = 5\n")
    daemon = daemons.start()
    wait_until(lambda: " started (pid " in daemons.log(daemon), "the daemon's start")
    path.write_text(config + "[scheduling]\npoll_interval = nan\n")
    daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: "keeping the old one" in daemons.log(daemon), "the refused reload")
    assert daemon.poll() is None, daemons.log(daemon)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 0, daemons.log(daemon)
    assert "scheduling.poll_interval must be from 0.1 to 86,400 (it is nan)" in daemons.log(daemon)
