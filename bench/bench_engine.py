"""Delivery benchmarks against a real nostr-relay on 127.0.0.1.

- lateness: 500 posts due over 30 s; p50/p99/max of sent_at - scheduled_at (target p99 <= 1 s)
- burst: 5,000 posts due at once; posts/s beside the same 5,000 events, pre-signed and
  published by a minimal nostr-sdk client, one by one and 8 at a time (target >= 0.8 of
  the better baseline)
- burst with start-up: `plur-send --once` over 400 posts due at once, from its first line
  to its exit, beside bench/bare_nostr.py signing and sending 400 notes 16 at a time, also
  from its first line (target: >= 0.9 of its rate); 10 pairs in alternating order, each
  trial on a fresh relay and database; beside the medians, the ratio of each pair, its spread
  and the CPU each side and the relay spent per post
- idle: a daemon that has sent a post then waits 60 s; CPU seconds and peak RSS
  (targets <= 0.3 s and <= 80 MB)

    python bench/bench_engine.py                  # every row
    python bench/bench_engine.py --once [PAIRS]   # the burst with start-up alone
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ratios import PYTHON, Ratio, bytecode_cached, machine, report
from tests.peers.nostr import NostrRelay

BIN = Path(sys.executable).parent
BURST = 5_000
CONCURRENCY = 8
ONCE_BURST = 400
ONCE_CONCURRENCY = 16
ONCE_PAIRS = 10
IDLE_SECONDS = 60


def write_config(
    work: Path, relay: NostrRelay, name: str, concurrency: int = CONCURRENCY
) -> dict[str, str]:
    import nostr_sdk

    key = work / f"{name}.keys"
    key.write_text(nostr_sdk.Keys.generate().secret_key().to_hex())
    key.chmod(0o600)
    cfg = work / f"{name}.toml"
    cfg.write_text(
        f'[nostr]\nkeys_file = "{key}"\nrelays = ["{relay.url}"]\n'
        f"[scheduling]\npoll_interval = 60\nmax_concurrency = {concurrency}\n"
        "[scheduling.rate_limits.nostr]\nposts_per_hour = 1000000\n"
    )
    env = {
        **os.environ,
        "PLURCAST_CONFIG": str(cfg),
        "PLURCAST_DB_PATH": str(work / f"{name}.db"),
    }
    os.environ.update(env)
    return env


def enqueue(count: int, due: Callable[[int], float]) -> None:
    """Posts written straight through the store, post i due at due(i) (epoch seconds)."""
    from plurcast import config
    from plurcast.store import connect
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    conn = connect(config.load().db_path)
    now_ms = int(time.time() * 1000)
    with transaction(conn):
        for i in range(count):
            insert_post(
                conn,
                NewPost(
                    str(uuid.uuid4()),
                    f"bench post {i} ✨",
                    now_ms,
                    int(due(i)) * 1000,
                    "UTC",
                    [("nostr", "default")],
                ),
            )
    conn.close()


def query(env: dict[str, str], sql: str) -> list[tuple[int, ...]]:
    import sqlite3

    with sqlite3.connect(f"file:{env['PLURCAST_DB_PATH']}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def wait_sent(env: dict[str, str], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query(env, "SELECT count(*) FROM deliveries WHERE state = 'sent'")[0][0] >= count:
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {count} posts to be sent")


def daemon(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "plur-send")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def lateness(work: Path) -> tuple[float, float, float]:
    with NostrRelay(work / "relay-lateness") as relay:
        env = write_config(work, relay, "lateness")
        start = time.time() + 5
        enqueue(500, lambda i: start + (i * 30) // 500)
        proc = daemon(env)
        wait_sent(env, 500, 120)
        stop(proc)
    late = [
        r[0] / 1000
        for r in query(env, "SELECT sent_at_ms - due_at_ms FROM deliveries WHERE state = 'sent'")
    ]
    return statistics.median(late), percentile(late, 99), max(late)


async def baseline(url: str, concurrency: int) -> float:
    """The same number of pre-signed events through one plain nostr-sdk client; events/s."""
    import nostr_sdk as sdk

    keys = sdk.Keys.generate()
    events = [
        sdk.EventBuilder(sdk.Kind(1), f"bench post {i} ✨").finalize(keys) for i in range(BURST)
    ]
    client = sdk.Client()
    await client.add_relay(sdk.RelayUrl.parse(url))
    await client.connect(and_wait=timedelta(seconds=5))
    gate = asyncio.Semaphore(concurrency)

    async def send(event: object) -> None:
        async with gate:
            out = await client.send_event(event, ok_timeout=timedelta(seconds=10))
            if not out.success:
                raise SystemExit(f"baseline send failed: {out.failed}")

    started = time.perf_counter()
    await asyncio.gather(*(send(e) for e in events))
    elapsed = time.perf_counter() - started
    await client.shutdown()
    return BURST / elapsed


def burst(work: Path) -> tuple[float, float, float]:
    with NostrRelay(work / "relay-base-1") as relay:
        one_by_one = asyncio.run(baseline(relay.url, 1))
    with NostrRelay(work / "relay-base-8") as relay:
        eight = asyncio.run(baseline(relay.url, CONCURRENCY))
    with NostrRelay(work / "relay-burst") as relay:
        env = write_config(work, relay, "burst")
        enqueue(BURST, lambda i: time.time())
        proc = daemon(env)
        wait_sent(env, BURST, 600)
        stop(proc)
        stored = len(relay.stored_events())
    if stored != BURST:
        raise SystemExit(f"relay stored {stored} events, expected {BURST}")
    first, last = query(env, "SELECT min(started_at_ms), max(finished_at_ms) FROM attempts")[0]
    return BURST / ((last - first) / 1000), one_by_one, eight


class Trial(NamedTuple):
    """One timed run over ONCE_BURST posts: its rate, and CPU ms per post of the client
    (every thread, start-up included) and of the relay while it ran."""

    rate: float
    cpu_ms: float
    relay_cpu_ms: float


def run_timed(argv: list[str], env: dict[str, str], relay: NostrRelay) -> Trial:
    assert relay.process is not None
    relay_before = cpu_seconds(relay.process.pid)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[0]} exited {proc.returncode}")
    relay_used = cpu_seconds(relay.process.pid) - relay_before
    client_used = usage.ru_utime + usage.ru_stime
    return Trial(
        ONCE_BURST / elapsed, client_used * 1000 / ONCE_BURST, relay_used * 1000 / ONCE_BURST
    )


class OnceBurst(NamedTuple):
    ours: list[Trial]
    bare: list[Trial]

    def of(self, side: str) -> list[Trial]:
        return self.ours if side == "ours" else self.bare

    def rate(self, side: str) -> float:
        return statistics.median(t.rate for t in self.of(side))

    def ratios(self) -> list[float]:
        """ours / bare of each pair: both ran within seconds of each other, under the same load."""
        return sorted(o.rate / b.rate for o, b in zip(self.ours, self.bare, strict=True))

    def cpu(self, side: str) -> tuple[float, float]:
        trials = self.of(side)
        return (
            statistics.median(t.cpu_ms for t in trials),
            statistics.median(t.relay_cpu_ms for t in trials),
        )

    def summary(self) -> str:
        ratios = self.ratios()
        quartiles = statistics.quantiles(ratios, n=4)
        (ours_cpu, ours_relay), (bare_cpu, bare_relay) = self.cpu("ours"), self.cpu("bare")
        spread = {
            side: f"{min(t.rate for t in self.of(side)):.0f}–"
            f"{max(t.rate for t in self.of(side)):.0f}"
            for side in ("ours", "bare")
        }
        return (
            f"(--once over {ONCE_BURST}: {len(ratios)} pairs, a fresh relay and database each "
            f"trial, order alternated; posts/s ours {spread['ours']}, bare {spread['bare']}; "
            f"ratio of each pair: median {statistics.median(ratios):.2f}×, quartiles "
            f"{quartiles[0]:.2f}–{quartiles[2]:.2f}×, range {ratios[0]:.2f}–{ratios[-1]:.2f}×\n"
            f" CPU ms a post, start-up included: plur-send {ours_cpu:.2f} + relay {ours_relay:.2f}"
            f", bare {bare_cpu:.2f} + relay {bare_relay:.2f}; where the 2 cores are the limit the "
            f"rates go as {(bare_cpu + bare_relay) / (ours_cpu + ours_relay):.2f}×)"
        )


def once_burst(work: Path, pairs: int = ONCE_PAIRS) -> OnceBurst:
    """`plur-send --once` and the bare client, each a fresh process timed from its start to its
    exit (imports, config, connection and signing included), over ONCE_BURST posts.

    Each trial gets a relay and a database of its own, so that none pays for what an earlier
    one stored; the two run in turn, the one first in a pair second in the next, after one
    unrecorded pair (bytecode, page cache). Trials are ~1 s, so a burst of other work on the
    machine falls on one of them: hence many pairs, the ratio taken per pair, and the spread
    and each side's CPU per post printed beside it."""
    bare = str(Path(__file__).resolve().parent / "bare_nostr.py")
    trials: dict[str, list[Trial]] = {"ours": [], "bare": []}

    def trial(side: str, number: int) -> Trial:
        directory = work / f"once-{number}-{side}"
        directory.mkdir()
        with NostrRelay(directory / "relay") as relay:
            env = bytecode_cached(write_config(directory, relay, "once", ONCE_CONCURRENCY), work)
            if side == "ours":
                enqueue(ONCE_BURST, lambda i: time.time())
                done = run_timed([str(BIN / "plur-send"), "--once"], env, relay)
                sent = query(env, "SELECT count(*) FROM deliveries WHERE state = 'sent'")[0][0]
                if sent != ONCE_BURST:
                    raise SystemExit(f"plur-send --once sent {sent}, expected {ONCE_BURST}")
            else:
                key = str(directory / "once.keys")  # as write_config names it
                argv = [PYTHON, bare, key, relay.url, "bare burst", str(ONCE_BURST)]
                done = run_timed([*argv, str(ONCE_CONCURRENCY)], env, relay)
            stored = len(relay.stored_events())
        if stored != ONCE_BURST:
            raise SystemExit(f"the relay stored {stored} events of {side}'s {ONCE_BURST}")
        return done

    for number in range(pairs + 1):
        order = ("bare", "ours") if number % 2 else ("ours", "bare")
        for side in order:
            done = trial(side, number)
            if number:
                trials[side].append(done)
    return OnceBurst(trials["ours"], trials["bare"])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle(work: Path) -> tuple[float, float]:
    with NostrRelay(work / "relay-idle") as relay:
        env = write_config(work, relay, "idle")
        enqueue(1, lambda i: time.time())
        proc = daemon(env)
        wait_sent(env, 1, 30)
        time.sleep(1)
        before = cpu_seconds(proc.pid)
        time.sleep(IDLE_SECONDS)
        used = cpu_seconds(proc.pid) - before
        rss = peak_rss_mb(proc.pid)
        stop(proc)
    return used, rss


def once_row(once: OnceBurst) -> Ratio:
    return Ratio(
        f"plur-send --once, {ONCE_BURST} due, start-up incl.",
        once.rate("ours"),
        f"bare nostr-sdk script, {ONCE_CONCURRENCY} at a time",
        once.rate("bare"),
        0.9,
        higher=True,
        unit="posts/s",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Delivery benchmarks against a local relay.")
    parser.add_argument(
        "--once",
        type=int,
        nargs="?",
        const=ONCE_PAIRS,
        metavar="PAIRS",
        help=f"only the burst with start-up, over PAIRS pairs (default {ONCE_PAIRS})",
    )
    pairs = parser.parse_args().once
    print(f"bench_engine on {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if pairs is not None:
            once = once_burst(work, pairs)
            report([once_row(once)])
            print(once.summary())
            return
        p50, p99, worst = lateness(work)
        print(
            f"lateness, 500 posts due over 30 s: p50 {p50:.3f} s  p99 {p99:.3f} s  "
            f"max {worst:.3f} s"
            f"  (target p99 <= 1 s: {'ok' if p99 <= 1 else 'MISSED'})"
        )
        rate, one, eight = burst(work)
        once = once_burst(work)
        better = "one by one" if one >= eight else f"{CONCURRENCY} at a time"
        report(
            [
                Ratio(
                    f"burst, {BURST:,} due at once: plur-send",
                    rate,
                    f"minimal client, pre-signed, {better}",
                    max(one, eight),
                    0.8,
                    higher=True,
                    unit="posts/s",
                ),
                once_row(once),
            ]
        )
        print(
            f"(minimal client of the {BURST:,} burst: {one:.0f}/s one by one, "
            f"{eight:.0f}/s {CONCURRENCY} at a time)"
        )
        print(once.summary())
        cpu, rss = idle(work)
        print(
            f"idle daemon, {IDLE_SECONDS} s after a send: CPU {cpu:.3f} s, peak RSS {rss:.1f} MB"
            f"  (targets <= 0.3 s, <= 80 MB: {'ok' if cpu <= 0.3 and rss <= 80 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
