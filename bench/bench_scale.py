"""Scale: what a big queue costs the daemon, and whether a long-running daemon grows.

- due query, claim and next wake with 1,000,000 queued posts beside 1,000 (target: within
  1.5×). Both databases have the real schema (`plurcast.store.connect`) and the same 2,000 due
  deliveries; the big one holds a million more, queued for later, written with plain SQL in one
  transaction (~20 s). Each figure is the median of hundreds of calls with an in-process clock:
  `claiming.due_candidates(…, {p: 8})` (the due query), `Engine.claim_due(8)` (query + leases + rate
  slots, committed), and what the daemon asks before every sleep (`Engine.next_wake_ms` and
  `schedules.next_run_ms`). The status line the daemon computes every heartbeat (5 s) is shown
  too, for scale: it counts the queue.
- daemon RSS after 100,000 deliveries (target: no growth, last sample within 10 % of the
  first): a real plur-send sends ten batches of 10,000 posts to nostr-sdk's relay (run in its
  own process, so the relay's memory is not counted), and VmRSS is sampled after each batch.

Prints figures beside targets and never fails the build (like the other benchmarks).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.peers.nostr import NostrRelay
from tests.peers.process import dies_with_parent

BIN = Path(sys.executable).parent
BIG = 1_000_000
SMALL = 1_000
DUE = 2_000
CLAIM = 8
RUNS = 200
BATCH = 10_000
BATCHES = 10
SEND_TIMEOUT = 240.0  # per batch; a daemon far slower than this is a finding of its own
RATIO_TARGET = 1.5
RSS_GROWTH_TARGET = 0.10


def write_config(work: Path, relay_url: str = "ws://127.0.0.1:9") -> dict[str, str]:
    key = work / "nostr.keys"
    key.write_text("11" * 32)
    key.chmod(0o600)
    cfg = work / "config.toml"
    cfg.write_text(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{key}"\nrelays = ["{relay_url}"]\n'
        # A transient error (nostr-sdk has said "relay not connected" once in 10,000 here) is
        # retried after a second, not after the default 5 minutes.
        "[scheduling]\npoll_interval = 60\nretry_delay = 1\nmax_retries = 20\n"
        "[scheduling.rate_limits.nostr]\nposts_per_hour = 100000000\n"
    )
    return {
        "PLURCAST_CONFIG": str(cfg),
        "PLURCAST_DB_PATH": str(work / "posts.db"),
        "PYTHONPYCACHEPREFIX": str(work / "pycache"),
    }


def load_config(env: dict[str, str]) -> Any:
    from plurcast import config

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return config.load()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fill(conn: sqlite3.Connection, queued: int, due: int, now_ms: int) -> None:
    """`queued` posts for the coming year and `due` posts due a minute ago, one delivery each,
    in one transaction through a recursive CTE: ~20 s for a million, against hours through
    create_post (whose cost is not what is measured here)."""
    conn.execute("PRAGMA cache_size = -400000")  # 400 MB while the indexes are built
    conn.execute("BEGIN IMMEDIATE")
    for first, count, due_expr in (
        (0, due, f"{now_ms - 60_000} + i"),
        (due, queued, f"{now_ms + 3_600_000} + i * 31"),  # spread over the next year
    ):
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO posts (id, content, created_at_ms, scheduled_at_ms, timezone, "
            "  metadata, updated_at_ms) "
            "SELECT printf('%08x-0000-4000-8000-%012x', i, i), 'queued post ' || i || ' ✨', "
            f"  ?, {due_expr}, 'UTC', '{{}}', ? FROM n",
            (first, first + count - 1, now_ms, now_ms),
        )
        conn.execute(
            "INSERT INTO deliveries (post_id, platform, account, state, due_at_ms, "
            "  updated_at_ms) "
            "SELECT id, 'nostr', 'default', 'pending', scheduled_at_ms, ? FROM posts "
            "WHERE rowid > (SELECT coalesce(max(rowid), 0) FROM deliveries)",
            (now_ms,),
        )
    conn.execute("COMMIT")
    # No ANALYZE: plurcast never runs it, and with its statistics (a table of nothing but
    # pending rows) SQLite walks the whole table for next_wake_ms's `state = 'sending'` part.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA cache_size = -2000")  # back to SQLite's default, as the daemon has


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def measure(work: Path, queued: int) -> dict[str, float]:
    from plurcast import schedules
    from plurcast.engine import Engine
    from plurcast.store import claiming, connect, daemons

    work.mkdir(parents=True)
    env = write_config(work)
    cfg = load_config(env)
    now_ms = int(time.time() * 1000)
    conn = connect(cfg.db_path)
    started = time.perf_counter()
    fill(conn, queued, DUE, now_ms)
    built = time.perf_counter() - started
    conn.close()
    conn = connect(cfg.db_path)  # a fresh connection, as a daemon has after a start
    engine = Engine(cfg, conn, clock=lambda: now_ms / 1000)
    platforms = engine.pool.platforms
    figures = {"build_s": built}
    figures["due_query"] = median_ms(
        lambda: claiming.due_candidates(conn, now_ms, dict.fromkeys(platforms, CLAIM)), RUNS * 2
    )
    figures["next_wake"] = median_ms(
        lambda: (engine.next_wake_ms(), schedules.next_run_ms(conn)), RUNS * 2
    )
    figures["status_line"] = median_ms(lambda: daemons.queue_summary(conn), 20)
    claimed = []
    figures["claim"] = median_ms(lambda: claimed.extend(engine.claim_due(CLAIM)), RUNS)
    if len(claimed) != RUNS * CLAIM:
        raise SystemExit(f"claimed {len(claimed)} deliveries, expected {RUNS * CLAIM}")
    conn.close()
    return figures


def due_and_claim(work: Path) -> None:
    small = measure(work / "small", SMALL)
    big = measure(work / "big", BIG)
    print(
        f"queue of {BIG:,} built in {big['build_s']:.1f} s "
        f"({SMALL:,}: {small['build_s']:.2f} s); {DUE:,} due in each; median of {RUNS}+ calls"
    )
    print(f"{'':<34} {SMALL:>10,} {BIG:>12,} {'ratio':>7}  target")
    for key, name in (
        ("due_query", f"due query (8 of {DUE:,} due)"),
        ("claim", f"Engine.claim_due({CLAIM})"),
        ("next_wake", "next wake (before every sleep)"),
        ("status_line", "status line (every 5 s, counts)"),
    ):
        ratio = big[key] / small[key]
        target = ""
        if key != "status_line":
            verdict = "ok" if ratio <= RATIO_TARGET else "MISSED"
            target = f"<= {RATIO_TARGET}x {verdict}"
        print(f"{name:<34} {small[key]:>8.3f}ms {big[key]:>10.3f}ms {ratio:>6.2f}x  {target}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def enqueue_due(db: Path, start: int, count: int) -> None:
    """`count` posts due now, written with SQL in one transaction (see `fill`)."""
    from plurcast.store import connect

    now_ms = int(time.time() * 1000)
    conn = connect(db)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO posts (id, content, created_at_ms, scheduled_at_ms, timezone, metadata, "
        "  updated_at_ms) "
        "SELECT printf('%08x-0000-4000-8000-%012x', i, i), 'rss post ' || i || ' ✨', "
        "  ?, ?, 'UTC', '{}', ? FROM n",
        (start, start + count - 1, now_ms, now_ms, now_ms),
    )
    conn.execute(
        "INSERT INTO deliveries (post_id, platform, account, state, due_at_ms, updated_at_ms) "
        "SELECT id, 'nostr', 'default', 'pending', scheduled_at_ms, ? FROM posts "
        "WHERE rowid > (SELECT coalesce(max(rowid), 0) FROM deliveries)",
        (now_ms,),
    )
    conn.execute("COMMIT")
    conn.close()


def retries(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return int(
            conn.execute("SELECT count(*) FROM attempts WHERE outcome != 'sent'").fetchone()[0]
        )


def sent(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return int(
            conn.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()[0]
        )


def daemon_rss(work: Path) -> None:
    """The relay runs as its own process (nostr-relay, as in bench_engine.py): the 100,000
    events it keeps are not counted as the daemon's. (nostr-sdk's in-process relay, tried
    first, drops the connection every few thousand notes and stalls the sends for their
    timeout: a test-relay artefact that made the run several times slower.)"""
    work.mkdir(parents=True)
    daemon: subprocess.Popen[bytes] | None = None
    with NostrRelay(work / "relay") as relay:
        env = {**os.environ, **write_config(work, relay.url)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        db = Path(env["PLURCAST_DB_PATH"])
        enqueue_due(db, 0, 1)  # creates and migrates the database; a first send warms up
        try:
            with (work / "plur-send.log").open("wb") as log:
                daemon = subprocess.Popen(
                    dies_with_parent([str(BIN / "plur-send")]),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                wait_sent(db, 1, daemon)
                samples: list[tuple[int, float]] = [(0, rss_mb(daemon.pid))]
                started = time.perf_counter()
                for batch in range(BATCHES):
                    enqueue_due(db, 1 + batch * BATCH, BATCH)
                    wait_sent(db, 1 + (batch + 1) * BATCH, daemon)
                    samples.append(((batch + 1) * BATCH, rss_mb(daemon.pid)))
                elapsed = time.perf_counter() - started
                peak = peak_mb(daemon.pid)
                retried = retries(db)
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    total = BATCH * BATCHES
    line = "  ".join(f"{n // 1000}k {mb:.1f}" for n, mb in samples)
    print(f"daemon RSS (MB) after n deliveries: {line}")
    first, last = samples[1][1], samples[-1][1]
    growth = (last - first) / first
    verdict = "ok" if growth <= RSS_GROWTH_TARGET else "MISSED"
    print(
        f"daemon RSS after {total:,} deliveries ({total / elapsed:.0f}/s): "
        f"{first:.1f} MB after the first {BATCH:,}, {last:.1f} MB after {total:,} "
        f"({growth:+.1%}), peak {peak:.1f} MB, {retried} transient failures retried  "
        f"(target: no growth, <= {RSS_GROWTH_TARGET:.0%}: {verdict})"
    )


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_sent(db: Path, count: int, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SEND_TIMEOUT
    while sent(db) < count:
        if daemon.poll() is not None:
            raise SystemExit(f"plur-send exited with {daemon.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {count:,} sent")
        time.sleep(0.2)


class _Stop(BaseException):
    """SIGTERM/SIGINT: unwind through the `finally` blocks that stop the daemon and the relay."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="plurcast-bench-scale-") as tmp:
            due_and_claim(Path(tmp) / "queue")
            daemon_rss(Path(tmp) / "rss")
    except _Stop:
        sys.exit("stopped")
    print(f"bench_scale took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
