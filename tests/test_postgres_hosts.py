"""Daemons on several hosts sharing one PostgreSQL queue: real plur-send processes, each with
its own PLURCAST_HOST (so none can see the others' pids), one with a clock ten minutes ahead,
one killed with kill -9 in the middle of a burst — and the LISTEN connection cut under a
running daemon. Every post is counted on the real nostr-relay.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import queue
from plurcast.health import HEARTBEAT_STALE_MS
from tests.helpers import BIN, Daemons, add_post, add_thread, scalar
from tests.peers.nostr import NostrRelay
from tests.peers.postgres import PostgresCluster, run_sql

pytestmark = pytest.mark.slow

POLL_INTERVAL_MS = 60_000


@pytest.fixture
def shared(
    write_config: Callable[[str], Path],
    nostr_key: Path,
    nostr_relay: NostrRelay,
    postgres_cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[config_module.Config]:
    """One PostgreSQL queue; every process the test starts inherits its url."""
    with postgres_cluster.database() as url:
        monkeypatch.setenv("PLURCAST_DATABASE_URL", url)
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
            f'relays = ["{nostr_relay.url}"]\ntimeout = 3\n'
            f"[scheduling]\npoll_interval = {POLL_INTERVAL_MS // 1000}\nshutdown_timeout = 3\n"
            "[scheduling.rate_limits.nostr]\nposts_per_hour = 100000\n"
        )
        yield config_module.load()


def wait_for(check: Callable[[], bool], timeout: float, what: str, daemons: Daemons) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}\n{daemons.output()}"
            )
        time.sleep(0.05)


def enqueue(cfg: config_module.Config, count: int, at: float, prefix: str) -> list[str]:
    db = queue.open_db(cfg)
    contents = [f"{prefix} {i} ✨" for i in range(count)]
    for text in contents:
        add_post(db, cfg, text, at, now=time.time())
    db.close()
    return contents


def assert_each_exactly_once(relay: NostrRelay, contents: list[str]) -> None:
    counts = Counter(e["content"] for e in relay.stored_events())
    assert [c for c in contents if counts[c] == 0] == [], "posts lost"
    assert {c: n for c, n in counts.items() if n > 1} == {}, "posts published twice"


def test_three_hosts_one_ahead_one_killed_send_each_post_once_and_none_early(
    shared: config_module.Config, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G1, G2 and time from the server, across hosts: host-a's clock is 10 minutes ahead,
    host-c is killed with kill -9 while it holds leases; host-c's pids mean nothing to the
    others, so its leases come back through its silent heartbeat, and are re-sent once."""
    cfg = shared
    daemons.start("--max-concurrency", "2", host="host-a", ahead=600)
    wait_for(lambda: scalar(cfg, "SELECT count(*) FROM heartbeats") == 1, 30, "host-a", daemons)
    contents = enqueue(cfg, 150, time.time() + 8, "three hosts")
    time.sleep(3)  # by host-a's own clock every post is ten minutes overdue
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE state != 'pending'") == 0
    daemons.start("--max-concurrency", "2", host="host-b")
    victim = daemons.start("--max-concurrency", "4", host="host-c")
    wait_for(
        lambda: scalar(cfg, "SELECT count(*) FROM heartbeats") == 3, 30, "three daemons", daemons
    )
    held_by_c = (
        "SELECT count(*) FROM deliveries WHERE state = 'sending' AND lease_owner LIKE 'host-c:%'"
    )
    wait_for(lambda: scalar(cfg, held_by_c) > 0, 60, "host-c holding leases", daemons)
    victim.kill()
    victim.wait()
    stranded = scalar(cfg, held_by_c)
    assert stranded > 0, "host-c died holding nothing: nothing to recover"
    # Its silence, stepped rather than waited for: the dead host's last beat moved back by
    # the time after which a heartbeat is stale (30 s), as if that long had gone by.
    run_sql(
        cfg.db_path,
        "UPDATE heartbeats SET beat_at_ms = beat_at_ms - ? WHERE host = 'host-c'",
        HEARTBEAT_STALE_MS,
    )
    wait_for(
        lambda: scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sent'") == 150,
        120,
        "every post sent",
        daemons,
    )
    assert_each_exactly_once(nostr_relay, contents)
    assert scalar(cfg, "SELECT count(*) FROM deliveries WHERE sent_at_ms < due_at_ms") == 0
    owners = Counter(
        r[0].split(":")[0]
        for r in run_sql(cfg.db_path, "SELECT worker FROM attempts WHERE outcome = 'sent'")
    )
    assert set(owners) <= {"host-a", "host-b", "host-c"}
    assert owners["host-a"] > 0 and owners["host-b"] > 0, owners
    assert "recovered" in daemons.output()


def test_a_listener_cut_off_misses_nothing(
    shared: config_module.Config,
    daemons: Daemons,
    nostr_relay: NostrRelay,
    postgres_cluster: PostgresCluster,
) -> None:
    """G4 after the LISTEN connection is killed: the daemon listens again and looks at the
    queue at once, so a post due in 2 s goes out when due, not at the next poll (60 s).

    The bound is that poll, not a second: how late a woken daemon is on a loaded machine is
    `make bench`'s lateness figure, not this test's."""
    cfg = shared
    daemons.start(host="host-a")
    wait_for(lambda: scalar(cfg, "SELECT count(*) FROM heartbeats") == 1, 30, "the daemon", daemons)
    database = os.environ["PLURCAST_DATABASE_URL"].rsplit("/", 1)[1]
    assert postgres_cluster.terminate(database, application_name="plurcast-listener") == 1
    subprocess.run([str(BIN / "plur-post"), "after the cut", "-s", "2s"], check=True)
    wait_for(  # long enough for the poll to send it, so that a missed wake fails below
        lambda: scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sent'") == 1,
        POLL_INTERVAL_MS // 1000 + 30,
        "the post sent",
        daemons,
    )
    lateness = scalar(cfg, "SELECT sent_at_ms - due_at_ms FROM deliveries")
    assert 0 <= lateness < POLL_INTERVAL_MS // 2, daemons.output()
    assert [e["content"] for e in nostr_relay.stored_events()] == ["after the cut"]
    assert "LISTEN connection" in daemons.output()


def test_threads_across_three_hosts_go_out_in_order_each_part_once(
    shared: config_module.Config, daemons: Daemons, nostr_relay: NostrRelay
) -> None:
    """G6 across hosts: 6 threads of 4 parts, every part due at once, three daemons of two
    lanes each racing for them. Each part is published once, replying to the part before it
    as the relay stored it, and was first tried only after that part was sent (the server's
    clock); the parts went out from more than one host."""
    cfg = shared
    for host in ("host-a", "host-b", "host-c"):
        daemons.start("--max-concurrency", "2", host=host)
    wait_for(
        lambda: scalar(cfg, "SELECT count(*) FROM heartbeats") == 3, 30, "three daemons", daemons
    )
    threads = [[f"thread {t} part {i} ✨" for i in range(1, 5)] for t in range(6)]
    db = queue.open_db(cfg)
    at = db.now_ms() / 1000 + 2
    for parts in threads:
        add_thread(db, cfg, parts, at)
    db.close()
    wait_for(
        lambda: scalar(cfg, "SELECT count(*) FROM deliveries WHERE state = 'sent'") == 24,
        120,
        "every part sent",
        daemons,
    )
    assert_each_exactly_once(nostr_relay, [part for parts in threads for part in parts])
    events = {e["content"]: e for e in nostr_relay.stored_events()}
    for parts in threads:
        for before, part in itertools.pairwise(parts):
            replies = [t for t in events[part]["tags"] if t[0] == "e" and t[3] == "reply"]
            root = [t for t in events[part]["tags"] if t[0] == "e" and t[3] == "root"]
            assert root[0][1] == events[parts[0]]["id"]
            assert [t[1] for t in replies] == ([events[before]["id"]] if before != parts[0] else [])
    early = run_sql(
        cfg.db_path,
        "SELECT count(*) FROM attempts a JOIN deliveries c ON c.id = a.delivery_id "
        "JOIN deliveries p ON p.id = c.parent_id WHERE a.started_at_ms < p.sent_at_ms",
    )
    assert early == [(0,)]
    senders = {
        r[0].split(":")[0]
        for r in run_sql(cfg.db_path, "SELECT worker FROM attempts WHERE outcome = 'sent'")
    }
    assert len(senders) >= 2, senders
