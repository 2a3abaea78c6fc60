"""plur-send as users run it: real processes, real signals, the real nostr-relay.

Every post is counted on the relay itself; each test would fail if its guarantee broke.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import queue
from tests.helpers import add_post
from tests.peers.nostr import NostrRelay

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


Setup = Callable[..., config_module.Config]


@pytest.fixture
def setup(write_config: Callable[[str], Path], nostr_key: Path, nostr_relay: NostrRelay) -> Setup:
    def write(scheduling: str = "", posts_per_hour: int = 100_000) -> config_module.Config:
        """Bursts of hundreds would meet the default 100 posts/hour: raised unless tested."""
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
            f'relays = ["{nostr_relay.url}"]\ntimeout = 3\n'
            f"[scheduling]\npoll_interval = 60\nshutdown_timeout = 3\n{scheduling}\n"
            f"[scheduling.rate_limits.nostr]\nposts_per_hour = {posts_per_hour}\n"
        )
        cfg = config_module.load()
        queue.open_db(cfg).close()  # created and migrated, as any first command would
        return cfg

    return write


class Daemons:
    """plur-send processes started by a test; whatever is left is killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"plur-send-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / "plur-send"), *args], stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob("plur-send-*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    d = Daemons(tmp_path)
    yield d
    d.stop_all()


def db(cfg: config_module.Config) -> sqlite3.Connection:
    """Read-write but never create: a test must not make a database the daemon didn't."""
    return sqlite3.connect(f"file:{cfg.db_path}?mode=rw", uri=True, timeout=10)


def scalar(cfg: config_module.Config, sql: str, *params: object) -> int:
    with db(cfg) as conn:
        return int(conn.execute(sql, params).fetchone()[0] or 0)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_heartbeat(cfg: config_module.Config, n: int = 1) -> None:
    wait_until(lambda: scalar(cfg, "SELECT count(*) FROM heartbeats") >= n, 20, "daemon start")


def enqueue(cfg: config_module.Config, count: int, at: float, prefix: str = "post") -> list[str]:
    """`count` posts for `at` (epoch seconds), written through the real queue code."""
    conn = queue.open_db(cfg)
    contents = [f"{prefix} {i} — ✨" for i in range(count)]
    for text in contents:
        add_post(conn, cfg, text, at if at > time.time() else None, now=time.time())
    conn.close()
    return contents


def sent_count(cfg: config_module.Config) -> int:
    return scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sent'")


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
    wait_until(lambda: sent_count(cfg) == 300, 90, "300 posts sent")
    for proc in daemons.procs:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert_each_exactly_once(nostr_relay, contents)
    workers = scalar(cfg, "SELECT count(DISTINCT worker) FROM attempts")
    assert workers == 2, "both daemons should have taken part"


def test_kill_9_mid_burst_five_times_loses_and_doubles_nothing(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G2: a crash at any instant, then a restart, publishes each post exactly once."""
    cfg = setup()
    contents = enqueue(cfg, 400, time.time())
    rng = random.Random(2026)
    killed_while_sending = 0
    for _ in range(5):
        proc = daemons.start("--max-concurrency", "4")
        wait_until(
            lambda p=proc: sent_count(cfg) > 0 or p.poll() is not None,
            30,
            "a first send",
        )
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
    assert final.wait(120) == 0, daemons.output()
    assert sent_count(cfg) == 400
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state != 'sent'") == 0
    assert_each_exactly_once(nostr_relay, contents)


def test_sigterm_mid_burst_exits_0_in_time_and_leaves_nothing_sending(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """Graceful stop: finish in flight within shutdown_timeout, give back the rest, exit 0."""
    cfg = setup()
    contents = enqueue(cfg, 300, time.time())
    proc = daemons.start("--max-concurrency", "4")
    wait_until(lambda: sent_count(cfg) >= 20, 30, "20 posts sent")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(cfg.scheduling.shutdown_timeout + 1) == 0
    assert time.monotonic() - started <= cfg.scheduling.shutdown_timeout + 1
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sending'") == 0
    assert scalar(cfg, "SELECT count(*) FROM heartbeats") == 0
    assert sent_count(cfg) < 300, "the burst should have been interrupted"
    assert daemons.start("--once").wait(60) == 0
    assert_each_exactly_once(nostr_relay, contents)


def test_relay_down_retries_with_growing_delays_then_delivers_once(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    cfg = setup("retry_delay = 1\nmax_retries = 6\n")
    nostr_relay.stop()
    contents = enqueue(cfg, 1, time.time(), "through an outage")
    daemons.start()
    wait_until(
        lambda: scalar(cfg, "SELECT count(*) FROM attempts WHERE outcome = 'retry'") >= 3,
        40,
        "three failed attempts",
    )
    with db(cfg) as conn:
        times = conn.execute("SELECT started_at_ms, finished_at_ms FROM attempts ORDER BY id")
        spans = list(times)
    # The wait between one attempt's end and the next one's start is the backoff: ~1 s, ~2 s …
    gaps = [(nxt[0] - prev[1]) / 1000 for prev, nxt in itertools.pairwise(spans)]
    assert 0.7 <= gaps[0] <= 1.5, gaps
    assert gaps[1] > gaps[0] * 1.3, f"delays should grow: {gaps}"
    nostr_relay.restart()
    wait_until(lambda: sent_count(cfg) == 1, 60, "delivery after the relay came back")
    attempts = scalar(cfg, "SELECT attempts FROM deliveries")
    assert 4 <= attempts <= 7
    assert_each_exactly_once(nostr_relay, contents)


def test_cancel_while_the_daemon_runs_is_never_sent(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    cfg = setup()
    daemons.start()
    wait_for_heartbeat(cfg)
    env = dict(os.environ)
    out = subprocess.run(
        [str(BIN / "plur-post"), "never to be seen", "-s", "3s"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    post_id = out.split(":")[1]
    subprocess.run([str(BIN / "plur-queue"), "cancel", post_id, "--force"], check=True, env=env)
    time.sleep(5)
    assert [e["content"] for e in nostr_relay.stored_events()] == []
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'cancelled'") == 1


def test_now_while_the_daemon_runs_is_sent_once(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    cfg = setup()
    daemons.start()
    wait_for_heartbeat(cfg)
    contents = enqueue(cfg, 1, time.time() + 3600, "right now please")
    post_id = queue.list_posts(queue.open_db(cfg))[0].id
    result = subprocess.run(
        [str(BIN / "plur-queue"), "now", post_id], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nostr:note1")
    time.sleep(2)
    assert_each_exactly_once(nostr_relay, contents)
    assert scalar(cfg, "SELECT count(*) FROM attempts") == 1


def test_posts_per_hour_sends_exactly_n_and_defers_the_rest(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    cfg = setup(posts_per_hour=5)
    enqueue(cfg, 8, time.time())
    started = time.time()
    daemons.start()
    wait_until(lambda: sent_count(cfg) == 5, 30, "five sent")
    time.sleep(1.5)
    assert sent_count(cfg) == 5
    assert len(nostr_relay.stored_events()) == 5
    with db(cfg) as conn:
        deferred = [
            r[0] for r in conn.execute("SELECT due_at_ms FROM deliveries WHERE state = 'pending'")
        ]
    assert len(deferred) == 3
    for due in deferred:
        assert started + 3590 < due / 1000 < started + 3620


def test_a_post_due_in_2_s_is_sent_within_1_s_of_its_time(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G4: the daemon waits with poll_interval = 60 and still notices, and is on time."""
    cfg = setup()
    daemons.start("--poll-interval", "60")
    wait_for_heartbeat(cfg)
    time.sleep(1)
    subprocess.run([str(BIN / "plur-post"), "on the second", "-s", "2s"], check=True)
    wait_until(lambda: sent_count(cfg) == 1, 10, "the post sent")
    lateness = scalar(cfg, "SELECT sent_at_ms - due_at_ms FROM deliveries")
    assert 0 <= lateness <= 1000
    assert [e["content"] for e in nostr_relay.stored_events()] == ["on the second"]


def test_a_second_sigterm_exits_at_once(
    write_config: Callable[[str], Path], nostr_key: Path, daemons: Daemons
) -> None:
    """With a delivery stuck on the wire, the first TERM waits; the second does not."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers: the publish hangs
    write_config(
        f'[nostr]\nkeys_file = "{nostr_key}"\n'
        f'relays = ["ws://127.0.0.1:{silent.getsockname()[1]}"]\ntimeout = 30\n'
        "[scheduling]\nshutdown_timeout = 20\n"
    )
    cfg = config_module.load()
    queue.open_db(cfg).close()
    enqueue(cfg, 1, time.time())
    proc = daemons.start()
    wait_until(
        lambda: scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sending'") == 1,
        20,
        "the delivery on the wire",
    )
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None, "the first SIGTERM should wait for the delivery in flight"
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(5) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 1.0
    silent.close()


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
        timeout=30,
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
        timeout=30,
    )
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert result.stdout == ""


def test_sighup_reloads_the_config(setup: Setup, daemons: Daemons, nostr_relay: NostrRelay) -> None:
    cfg = setup()
    proc = daemons.start()
    wait_for_heartbeat(cfg)
    setup("retry_delay = 7\n")
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config reloaded" in daemons.output(), 10, "the reload")
    contents = enqueue(cfg, 1, time.time(), "after the reload")
    wait_until(lambda: sent_count(cfg) == 1, 10, "a send after the reload")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert_each_exactly_once(nostr_relay, contents)


def test_two_daemons_send_each_recurring_occurrence_once_and_on_time(
    setup: Setup, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G5 with real processes: the occurrence is materialised once and sent on its second."""
    cfg = setup()
    daemons.start()
    daemons.start()
    wait_for_heartbeat(cfg, 2)
    subprocess.run(
        [str(BIN / "plur-post"), "every minute ⏰", "--every", "1m", "--schedule", "2s"],
        check=True,
    )
    wait_until(lambda: sent_count(cfg) == 1, 15, "the first occurrence sent")
    time.sleep(1.5)
    assert [e["content"] for e in nostr_relay.stored_events()] == ["every minute ⏰"]
    assert scalar(cfg, "SELECT count(*) FROM occurrences") == 1
    assert 0 <= scalar(cfg, "SELECT sent_at_ms - due_at_ms FROM deliveries") <= 1000
