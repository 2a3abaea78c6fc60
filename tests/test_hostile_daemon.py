"""A daemon among hostile neighbours: another process that holds SQLite's lock for longer
than busy_timeout (a `sqlite3` shell in a transaction, a long import) is waited out, not a
reason to exit (issue 11). PostgreSQL's twin, a server that goes away, is test_postgres's."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import queue
from tests.helpers import Daemons, add_post, scalar, wait_until
from tests.peers.nostr import NostrRelay

pytestmark = pytest.mark.slow


def test_the_daemon_waits_out_a_lock_held_past_busy_timeout(
    write_config: Callable[[str], Path],
    nostr_key: Path,
    nostr_relay: NostrRelay,
    daemons: Daemons,
) -> None:
    # It exited 1 ("Error: the database is locked by another process") when it met the lock.
    write_config(
        f'timezone = "UTC"\n[database]\nbusy_timeout = 0.2\n[nostr]\nkeys_file = "{nostr_key}"\n'
        f'relays = ["{nostr_relay.url}"]\ntimeout = 30\n[scheduling]\npoll_interval = 3600\n'
    )
    cfg = config_module.load()
    queue.open_db(cfg).close()
    proc = daemons.start()
    wait_until(lambda: scalar(cfg, "SELECT count(*) FROM heartbeats") == 1, "the daemon's start")
    conn = queue.open_db(cfg)
    add_post(conn, cfg, "held up", time.time() + 1, now=time.time())
    conn.close()
    holder = sqlite3.connect(cfg.db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        wait_until(
            lambda: "database is locked" in daemons.log(proc) or proc.poll() is not None,
            "the daemon meeting the lock",
        )
    finally:
        holder.execute("COMMIT")
        holder.close()
    sent = "SELECT count(*) FROM deliveries WHERE state = 'sent'"
    wait_until(lambda: scalar(cfg, sent) == 1 or proc.poll() is not None, "the post sent")
    assert proc.poll() is None, daemons.log(proc)
    assert "trying again in " in daemons.log(proc)
    assert [e["content"] for e in nostr_relay.stored_events()] == ["held up"]
