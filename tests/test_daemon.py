"""plur-send as users run it: real processes, real signals, the real nostr-relay.

Every post is counted on the relay itself; each test would fail if its guarantee broke. None
asserts how long something took (the machine may be busy): what is promised is read from
what happened — which state a delivery is in, what the daemon decided and stored, which
event came first. The daemons poll only every hour, longer than any wait here, so a post
sent in a test was noticed, never found by a poll. The figures (lateness, how fast a stop
is) are measured by `make bench`.
"""

from __future__ import annotations

import math
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import process, queue
from tests.helpers import (
    BIN,
    DOWN_TIMEOUT,
    PATIENCE,
    Daemons,
    add_post,
    iso,
    scalar,
    silent_port,
    wait_until,
)
from tests.peers.nostr import NostrRelay
from tests.peers.postgres import run_sql
from tests.peers.process import Gate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("backend")]

POLL_INTERVAL = 3600  # longer than any wait in these tests


Setup = Callable[..., config_module.Config]


@pytest.fixture
def setup(write_config: Callable[[str], Path], nostr_key: Path, nostr_relay: NostrRelay) -> Setup:
    def write(
        scheduling: str = "", posts_per_hour: int = 100_000, timeout: float = 30, relay: str = ""
    ) -> config_module.Config:
        """Bursts of hundreds would meet the default 100 posts/hour: raised unless tested.
        The relay's `timeout` is long, so that a busy relay is never a failed attempt. The
        daemons reach the relay at its own URL, unless at `relay`'s."""
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
            f'relays = ["{relay or nostr_relay.url}"]\ntimeout = {timeout}\n'
            f"[scheduling]\npoll_interval = {POLL_INTERVAL}\nshutdown_timeout = 3\n"
            f"{scheduling}\n"
            f"[scheduling.rate_limits.nostr]\nposts_per_hour = {posts_per_hour}\n"
        )
        cfg = config_module.load()
        queue.open_db(cfg).close()  # created and migrated, as any first command would
        return cfg

    return write


def wait_for_heartbeat(cfg: config_module.Config, n: int = 1) -> None:
    wait_until(lambda: scalar(cfg, "SELECT count(*) FROM heartbeats") >= n, "the daemons' start")


def cli(*argv: str) -> str:
    """A plurcast command, as a user runs it; its stdout (it must exit 0)."""
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def enqueue(cfg: config_module.Config, count: int, at: float, prefix: str = "post") -> list[str]:
    """`count` posts for `at` (epoch seconds), written through the real queue code."""
    conn = queue.open_db(cfg)
    contents = [f"{prefix} {i} — ✨" for i in range(count)]
    for text in contents:
        # `at` goes in to the second: once that second is no longer ahead (writing 300
        # posts on a busy machine takes a while), the post is due now instead.
        now = time.time()
        add_post(conn, cfg, text, at if math.floor(at) > now else None, now=now)
    conn.close()
    return contents


def sent_count(cfg: config_module.Config) -> int:
    return scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sent'")


def state_of(cfg: config_module.Config, content: str) -> tuple[str, int]:
    """(state, attempts) of the delivery of the post with this text."""
    [(state, attempts)] = run_sql(
        cfg.db_path,
        "SELECT d.state, d.attempts FROM deliveries d JOIN posts p ON p.id = d.post_id "
        "WHERE p.content = ?",
        content,
    )
    return str(state), int(attempts)


def assert_each_exactly_once(relay: NostrRelay, contents: list[str]) -> None:
    counts = Counter(e["content"] for e in relay.stored_events())
    missing = [c for c in contents if counts[c] == 0]
    doubled = {c: n for c, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} posts lost, e.g. {missing[:3]}"
    assert not doubled, f"posts published more than once: {list(doubled.items())[:3]}"
    assert sum(counts[c] for c in contents) == len(contents)


def test_two_daemons_publish_300_posts_each_exactly_once(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G1: two plur-send on one database never send the same post."""
    cfg = setup()
    contents = enqueue(cfg, 300, time.time() + 3)
    daemons.start()
    daemons.start()
    wait_for_heartbeat(cfg, 2)
    wait_until(lambda: sent_count(cfg) == 300, "300 posts sent")
    for proc in daemons.procs:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(PATIENCE) == 0
    assert_each_exactly_once(nostr_relay, contents)
    workers = scalar(cfg, "SELECT count(DISTINCT worker) FROM attempts")
    assert workers == 2, "both daemons should have taken part"


def test_kill_9_mid_burst_five_times_loses_and_doubles_nothing(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G2: a crash at any instant, then a restart, publishes each post exactly once.

    Each kill waits until the daemon has deliveries on the wire; the first lands right then,
    the later ones a random moment after — so at least one crash mid-send is certain.
    """
    cfg = setup()
    contents = enqueue(cfg, 400, time.time())
    rng = random.Random(2026)
    killed_while_sending = 0
    for kill in range(5):
        proc = daemons.start("--max-concurrency", "4")
        owner = process.owner_id(proc.pid)
        wait_until(
            lambda p=proc, owner=owner: (
                scalar(
                    cfg,
                    "SELECT count(*) FROM deliveries WHERE state = 'sending' AND lease_owner = ?",
                    owner,
                )
                > 0
                or sent_count(cfg) == 400
                or p.poll() is not None
            ),
            "a delivery on the wire",
        )
        if kill:
            time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.wait()
        killed_while_sending += (
            scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sending'") > 0
        )
        if sent_count(cfg) == 400:
            break
    assert killed_while_sending >= 1, "no kill landed while a delivery was on the wire"
    final = daemons.start("--once")
    assert final.wait(PATIENCE) == 0, daemons.output()
    assert sent_count(cfg) == 400
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state != 'sent'") == 0
    assert_each_exactly_once(nostr_relay, contents)


def test_sigterm_mid_burst_exits_0_and_leaves_nothing_sending(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """Graceful stop: finish in flight, give back the rest, exit 0."""
    cfg = setup()
    contents = enqueue(cfg, 300, time.time())
    proc = daemons.start("--max-concurrency", "4")
    wait_until(lambda: sent_count(cfg) >= 20, "20 posts sent")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(PATIENCE) == 0
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sending'") == 0
    assert scalar(cfg, "SELECT count(*) FROM heartbeats") == 0
    assert sent_count(cfg) < 300, "the burst should have been interrupted"
    assert daemons.start("--once").wait(PATIENCE) == 0
    assert_each_exactly_once(nostr_relay, contents)


def test_sigterm_gives_back_a_hung_delivery_after_shutdown_timeout(
    write_config: Callable[[str], Path], nostr_key: Path, daemons: Daemons
) -> None:
    """The relay takes the event and never answers; SIGTERM waits `shutdown_timeout` (1 s),
    not the publish's own limit (a minute): the delivery is given back unattempted, its
    payload kept for the next daemon, and plur-send exits 0."""
    with silent_port() as port:
        write_config(
            f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["ws://127.0.0.1:{port}"]\n'
            f"timeout = 55\n[scheduling]\npoll_interval = {POLL_INTERVAL}\n"
            "shutdown_timeout = 1\n"
        )
        cfg = config_module.load()
        queue.open_db(cfg).close()
        enqueue(cfg, 1, time.time(), "hung on the wire")
        proc = daemons.start()
        wait_until(
            lambda: scalar(cfg, "SELECT count(*) FROM deliveries WHERE payload IS NOT NULL") > 0,
            "the event stored and on its way",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(PATIENCE) == 0, daemons.output()
    assert state_of(cfg, "hung on the wire 0 — ✨") == ("pending", 0)
    assert scalar(cfg, "SELECT count(*) FROM attempts") == 0
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE payload IS NOT NULL") == 1
    assert "gave back 1 unfinished deliveries" in daemons.output()


def test_relay_down_retries_with_growing_delays_then_delivers_once(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G3: each retry waits what the engine decided — retry_delay (1 s) ±20 %, then twice
    that —, read from the delivery's due time after each failure; no retry starts early.

    The relay is down behind a gate (its port refuses connections) and back the moment the
    gate opens. Three attempts fail within ~5 s (a server not there gets DOWN_TIMEOUT), before
    nostr-sdk first tries to connect again (10 ± 3 s after it could not): that try finds the
    relay, so the 4th or the 5th attempt delivers. (A relay restarted instead is back only
    after its start-up, often after that try; the next comes 20 ± 3 s later: ~35 s in all.)
    """
    with Gate(nostr_relay.port) as gate:
        cfg = setup(
            "retry_delay = 1\nmax_retries = 6\n",
            timeout=DOWN_TIMEOUT,
            relay=f"ws://127.0.0.1:{gate.port}",
        )
        contents = enqueue(cfg, 1, time.time(), "through an outage")
        daemons.start()
        decided: dict[int, int] = {}  # attempt number → the retry's due time (ms)

        def three_failures() -> bool:
            [(state, attempts, due)] = run_sql(
                cfg.db_path, "SELECT state, attempts, due_at_ms FROM deliveries"
            )
            if state == "retry":
                decided.setdefault(attempts, due)
            return len(decided) >= 3

        wait_until(three_failures, "three failed attempts")
        gate.open()
        spans = run_sql(
            cfg.db_path,
            "SELECT number, started_at_ms, finished_at_ms FROM attempts ORDER BY number",
        )
        ended = {number: finished for number, _, finished in spans}
        waits = [(decided[n] - ended[n]) / 1000 for n in (1, 2, 3)]
        assert 0.8 <= waits[0] <= 1.2, waits  # retry_delay, ±20 %
        assert 1.6 <= waits[1] <= 2.4, waits  # doubled
        assert 3.2 <= waits[2] <= 4.8, waits
        for number, started, _ in spans[1:]:
            assert started >= decided[number - 1], f"attempt {number} started before its time"
        wait_until(lambda: sent_count(cfg) == 1, "delivery after the relay came back")
    attempts = scalar(cfg, "SELECT attempts FROM deliveries")
    assert 4 <= attempts <= 7
    assert_each_exactly_once(nostr_relay, contents)


def test_cancel_while_the_daemon_runs_is_never_sent(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """Two posts due at the same second; one is cancelled first. When that second comes, the
    daemon sends the other and never the cancelled one.

    The cancel must come before their time, whatever the load: the time is set from how
    long a command takes here and now (ten times that, three seconds at least).
    """
    cfg = setup()
    daemons.start()
    wait_for_heartbeat(cfg)
    started = time.monotonic()
    cli("plur-queue", "list")
    due = iso(math.ceil(time.time() + max(3.0, 10 * (time.monotonic() - started))))
    post_id = cli("plur-post", "never to be seen", "-s", due).split(":")[1]
    cli("plur-post", "the same second", "-s", due)
    assert cli("plur-queue", "cancel", post_id, "--force") == f"cancelled:{post_id}\n"
    wait_until(lambda: state_of(cfg, "the same second")[0] == "sent", "the other post sent")
    assert [e["content"] for e in nostr_relay.stored_events()] == ["the same second"]
    assert state_of(cfg, "never to be seen") == ("cancelled", 0)


def test_now_while_the_daemon_runs_is_sent_once(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """`plur-queue now` sends the post itself; the daemon, which has had its own pass since
    (it sent a later post), must not send it again."""
    cfg = setup()
    daemons.start()
    wait_for_heartbeat(cfg)
    contents = enqueue(cfg, 1, time.time() + 3600, "right now please")
    post_id = next(queue.list_posts(queue.open_db(cfg))).id
    assert cli("plur-queue", "now", post_id).startswith("nostr:note1")
    enqueue(cfg, 1, time.time(), "after the now")
    wait_until(lambda: state_of(cfg, "after the now 0 — ✨")[0] == "sent", "the later post")
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sending'") == 0
    assert_each_exactly_once(nostr_relay, contents)
    assert state_of(cfg, "right now please 0 — ✨") == ("sent", 1)


def test_posts_per_hour_sends_exactly_n_and_defers_the_rest(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """`posts_per_hour = 5`, 8 posts due: 5 sent, 3 moved to when a slot of the hour frees."""
    cfg = setup(posts_per_hour=5)
    enqueue(cfg, 8, time.time())
    started_ms = int(time.time() * 1000)
    daemons.start()

    def deferred() -> list[int]:
        sql = "SELECT due_at_ms FROM deliveries WHERE state = 'pending' AND due_at_ms > ?"
        return [r[0] for r in run_sql(cfg.db_path, sql, started_ms + 3_000_000)]

    wait_until(lambda: sent_count(cfg) == 5 and len(deferred()) == 3, "5 sent, 3 deferred")
    assert sent_count(cfg) == 5
    assert len(nostr_relay.stored_events()) == 5
    slots = [r[0] for r in run_sql(cfg.db_path, "SELECT at_ms FROM rate_slots")]
    assert len(slots) == 5 and min(slots) >= started_ms
    for due in deferred():
        assert due - 3_600_001 in slots, "deferred to when a reserved slot frees"


def test_a_post_written_while_the_daemon_sleeps_is_sent_at_its_time(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G4 in a real process: the daemon waits (polling only hourly) and still notices a post
    written by another command, and sends it at its time — never before. (That it wakes on
    the very second is tested on a stepped clock in test_daemon_loop.py; the lateness is
    measured by `make bench`.)"""
    cfg = setup()
    daemons.start()
    wait_for_heartbeat(cfg)
    cli("plur-post", "on the second", "-s", "2s")
    wait_until(lambda: sent_count(cfg) == 1, "the post sent")
    lateness = scalar(cfg, "SELECT sent_at_ms - due_at_ms FROM deliveries")
    assert lateness >= 0
    assert [e["content"] for e in nostr_relay.stored_events()] == ["on the second"]


def test_a_second_sigterm_exits_at_once(
    write_config: Callable[[str], Path], nostr_key: Path, daemons: Daemons
) -> None:
    """With a delivery stuck on the wire, the first TERM waits; the second does not.

    The wait would be long (shutdown_timeout 600 s, the publish's limit a minute), so an
    exit by signal within the test's patience is an exit at once.
    """
    with silent_port() as port:
        write_config(
            f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["ws://127.0.0.1:{port}"]\n'
            "timeout = 55\n[scheduling]\nshutdown_timeout = 600\n"
        )
        cfg = config_module.load()
        queue.open_db(cfg).close()
        enqueue(cfg, 1, time.time())
        proc = daemons.start()
        wait_until(
            lambda: scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sending'") == 1,
            "the delivery on the wire",
        )
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "finishing in-flight deliveries" in daemons.output(), "the first TERM")
        assert proc.poll() is None, "the first SIGTERM should wait for the delivery in flight"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(PATIENCE) == 128 + signal.SIGTERM


_TERM_WHILE_STARTING = """\
import os, signal, sys
from plur_send import early, main
early.catch()  # what the plur-send script does first
os.kill(os.getpid(), signal.SIGTERM)  # a stop while it still imports and opens the database
sys.argv = ["plur-send", *sys.argv[1:]]
main()
"""


def test_sigterm_while_starting_exits_0_and_claims_nothing(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """systemd may stop a daemon that has only just started: exit 0, not death by -15."""
    cfg = setup()
    enqueue(cfg, 3, time.time())
    result = subprocess.run(
        [sys.executable, "-c", _TERM_WHILE_STARTING],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "SIGTERM: finishing in-flight deliveries, then stopping" in result.stderr
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'pending'") == 3
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE attempts > 0") == 0
    assert scalar(cfg, "SELECT count(*) FROM heartbeats") == 0
    assert nostr_relay.stored_events() == []


def test_sigterm_while_a_command_starts_still_terminates_it(setup: Setup) -> None:
    """Only the daemon holds a stop signal for later; other commands die of it as usual."""
    setup()
    result = subprocess.run(
        [sys.executable, "-c", _TERM_WHILE_STARTING, "health"],
        check=False,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert result.stdout == ""


def test_sighup_reloads_the_config(setup: Setup, daemons: Daemons, nostr_relay: NostrRelay) -> None:
    cfg = setup()
    proc = daemons.start()
    wait_for_heartbeat(cfg)
    setup("retry_delay = 7\n")
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded" in daemons.output(), "the reload")
    contents = enqueue(cfg, 1, time.time(), "after the reload")
    wait_until(lambda: sent_count(cfg) == 1, "a send after the reload")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(PATIENCE) == 0
    assert_each_exactly_once(nostr_relay, contents)


def test_two_daemons_send_each_recurring_occurrence_once(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G5 with real processes: the occurrence is materialised once, and sent not before its
    time, though both daemons wake for it. Counted once both have beaten (every 5 s) after
    the occurrence: each has been through a pass past it by then."""
    cfg = setup()
    daemons.start()
    daemons.start()
    wait_for_heartbeat(cfg, 2)
    cli("plur-post", "every minute ⏰", "--every", "1m", "--schedule", "2s")
    wait_until(lambda: sent_count(cfg) == 1, "the first occurrence sent")
    due = scalar(cfg, "SELECT due_at_ms FROM deliveries")
    wait_until(
        lambda: (
            scalar(cfg, "SELECT count(*) FROM heartbeats WHERE beat_at_ms > ?", due + 1000) == 2
        ),
        "both daemons past the occurrence",
    )
    assert [e["content"] for e in nostr_relay.stored_events()] == ["every minute ⏰"]
    assert scalar(cfg, "SELECT count(*) FROM occurrences") == 1
    assert scalar(cfg, "SELECT sent_at_ms - due_at_ms FROM deliveries") >= 0
