"""SQLite and PostgreSQL side by side, in one run (issue #14).

1. claim throughput: 4 daemon processes claim and record 2,000 due deliveries through the
   engine (no network: this measures the store, not a relay), each delivery exactly once;
2. wake latency: how long after another process commits a post the daemon's watcher
   notices — SQLite's `PRAGMA data_version`, looked at every WATCH_SECONDS as the daemon
   does, against PostgreSQL's NOTIFY;
3. `plur-post x --schedule 30m` start-up on each backend (cached bytecode, as bench_cli
   measures it): the two interleaved, median of 20 each, PostgreSQL as a ratio to SQLite.

PostgreSQL is the throwaway cluster of tests/peers/postgres.py. Figures go to stdout.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ratios import command, interleave, machine
from tests.peers.postgres import PostgresCluster

BIN = Path(sys.executable).parent
DELIVERIES = 2_000
DAEMONS = 4
WAKES = 40
CLI_RUNS = 20


def _config(tmp: Path) -> dict[str, str]:
    tmp.mkdir(parents=True)
    cfg = tmp / "config.toml"
    key = tmp / "nostr.keys"
    key.write_text("11" * 32)
    key.chmod(0o600)
    cfg.write_text(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{key}"\nrelays = ["ws://127.0.0.1:7777"]\n'
        '[mastodon]\ninstance = "x"\n[scheduling.rate_limits.nostr]\nposts_per_hour = 1000000\n'
    )
    env = {
        **os.environ,
        "PLURCAST_CONFIG": str(cfg),
        "PLURCAST_DB_PATH": str(tmp / "posts.db"),
        "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
        "PLURCAST_MASTODON_TOKEN": "bench-token",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PLURCAST_DATABASE_URL", None)  # set by an earlier PostgreSQL run's os.environ
    return env


def _fill(env: dict[str, str], n: int) -> None:
    os.environ.update(env)
    from plurcast import config, queue
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    cfg = config.load()
    db = queue.open_db(cfg)
    now_ms = db.now_ms() - 1000
    with transaction(db):
        for i in range(n):
            insert_post(
                db,
                NewPost(
                    str(uuid.uuid4()), f"post {i}", now_ms, now_ms, "UTC", [("nostr", "default")]
                ),
            )
    db.close()


def _worker(env: dict[str, str], owner: str, out: multiprocessing.Queue[int]) -> None:
    os.environ.update(env)
    from plurcast import config, queue
    from plurcast.engine import Engine
    from plurcast.platforms.base import Outcome, OutcomeKind

    cfg = config.load()
    db = queue.open_db(cfg)
    engine = Engine(cfg, db, owner=owner)
    done = 0
    while claims := engine.claim_due(8):
        for claim in claims:
            started = engine.now_ms()
            sent = Outcome(OutcomeKind.SENT, remote_id=f"r{claim.delivery_id}")
            if engine._record(claim, sent, started).state == "sent":
                done += 1
    db.close()
    out.put(done)


def claim_throughput(env: dict[str, str]) -> tuple[float, str]:
    _fill(env, DELIVERIES)
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(env, f"bench:{i}:0", out)) for i in range(DAEMONS)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    counts = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    os.environ.update(env)
    from plurcast import config, queue

    db = queue.open_db(config.load())
    sent, once = db.execute(
        "SELECT count(*), count(DISTINCT delivery_id) FROM attempts WHERE outcome = 'sent'"
    ).fetchone()
    db.close()
    exact = sent == once == DELIVERIES == sum(counts)
    return DELIVERIES / elapsed, f"{counts} per daemon, exactly once: {exact}"


def wake_latency(env: dict[str, str]) -> list[float]:
    """ms from another connection's commit to the daemon-side watcher noticing it: a thread
    waits as Daemon._wait does (woken at once by a push, else looking every WATCH_SECONDS),
    while commits land at arbitrary moments of its interval."""
    os.environ.update(env)
    from plurcast import config, queue
    from plurcast.daemon import WATCH_SECONDS

    cfg = config.load()
    writer = queue.open_db(cfg)
    pushed = threading.Event()
    noticed = threading.Event()
    stop = threading.Event()
    seen: list[float] = []

    def wait_like_the_daemon() -> None:
        daemon_db = queue.open_db(cfg)  # the daemon's own connection, in its own thread
        watcher = daemon_db.watcher(pushed.set)
        mark = watcher.mark()
        ready.set()
        while not stop.is_set():
            pushed.wait(WATCH_SECONDS)
            pushed.clear()
            if watcher.changed(mark):
                seen.append(time.perf_counter())
                mark = watcher.mark()
                noticed.set()
        watcher.close()
        daemon_db.close()

    ready = threading.Event()
    waiter = threading.Thread(target=wait_like_the_daemon)
    waiter.start()
    ready.wait()
    samples: list[float] = []
    try:
        for i in range(WAKES):
            noticed.clear()
            time.sleep(0.03 + (i % 7) * 0.037)
            _insert_one(writer)
            committed = time.perf_counter()
            noticed.wait(5)
            samples.append((seen[-1] - committed) * 1000)
    finally:
        stop.set()
        waiter.join()
        writer.close()
    return samples


def _insert_one(db: object) -> None:
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    now = db.now_ms()  # type: ignore[attr-defined]
    with transaction(db):  # type: ignore[arg-type]
        insert_post(
            db,
            NewPost(str(uuid.uuid4()), "wake", now, now + 3_600_000, "UTC", [("nostr", "default")]),
        )  # type: ignore[arg-type]


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with PostgresCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", "postgresql"):
            with cluster.database() as url:
                env = _config(Path(tmp) / backend)
                if backend == "postgresql":
                    env["PLURCAST_DATABASE_URL"] = url
                rate, note = claim_throughput(env)
                rows.append(
                    (f"claim+record, {DAEMONS} daemons", backend, f"{rate:,.0f}/s ({note})")
                )
            with cluster.database() as url:
                env = _config(Path(tmp) / f"{backend}-wake")
                if backend == "postgresql":
                    env["PLURCAST_DATABASE_URL"] = url
                lat = sorted(wake_latency(env))
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                p50 = statistics.median(lat)
                text = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms"
                rows.append(("wake latency", backend, text))
        with cluster.database() as url:
            argv = [str(BIN / "plur-post"), "x", "--schedule", "30m"]
            lite = _config(Path(tmp) / "sqlite-cli")
            server = {**_config(Path(tmp) / "postgresql-cli"), "PLURCAST_DATABASE_URL": url}
            t = interleave(
                CLI_RUNS, {"sqlite": command(argv, lite), "postgresql": command(argv, server)}
            )
        ratio = t["postgresql"] / t["sqlite"]
        rows.append(("plur-post --schedule 30m", "sqlite", f"{t['sqlite']:.1f} ms median"))
        rows.append(
            (
                "plur-post --schedule 30m",
                "postgresql",
                f"{t['postgresql']:.1f} ms median, {ratio:.2f}× SQLite's (interleaved)",
            )
        )
    print(f"bench_postgres on {machine()}")
    print(f"{'what':<28} {'backend':<11} result")
    for what, backend, result in rows:
        print(f"{what:<28} {backend:<11} {result}")


if __name__ == "__main__":
    main()
