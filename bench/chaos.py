"""Chaos: everything going wrong at once, then a count on the servers themselves.

Why: each guarantee (G1–G5) has its own test, one fault at a time. Users trust the whole only
when it holds with crashes, outages, platform errors and their own edits all at the same time,
so this harness runs them together and counts what the *servers* hold, not what the database
says:

- real local peers: nostr-relay (strict: refuses re-sent events), mastodon_mock (with its fault
  API), and a real Bluesky PDS when tests/peers/bluesky.py exists and the engine registers a
  Bluesky adapter (checked at run time; the table says when Bluesky was left out, and why);
- two accounts per platform, N posts (each text unique) due over S seconds, written through the
  real queue code and a few through the plur-post CLI, plus recurring schedules (`--every 1m`
  and a cron every minute, ending with the run); D plur-send processes on one database, warmed
  up first by a post to every account;
- chaos: kill -9 of a random daemon every 0.5–3 s (restarted at once), the relay stopped and
  restarted on its port, Mastodon 429 (Retry-After: 1) / 503 / held requests, and concurrent
  `plur-queue cancel|reschedule|now` against random queued posts — "safe" cancels (nothing
  prepared, not due for 3 s) and, in the full run, "hostile" ones too: posts on the wire, held
  by a daemon just killed, or retrying (what a user does when a post looks stuck);
- then the daemons get SIGTERM (they must exit 0), one fresh daemon drains what is left, held
  requests are waited out, and `check` counts on the servers: every delivery not cancelled
  published exactly once, cancelled ones never, nothing left `sending`, every recurring
  occurrence once, the database's `sent` rows equal to what the servers hold.

The table also gives lateness (see `Harness.lateness` for what counts as on time, and why it is
split by the relay outage) and the CPU each party used: on a 2-core machine the chaos itself
(restarting daemons, plur-queue runs) takes a good part of it.

    python bench/chaos.py                 # the full run (make chaos), ~90 s
    python bench/chaos.py --small         # the run inside make test, ~45 s
    python bench/chaos.py --help          # sizes, seeds, and switches to leave a fault out

Exit status: 0 when no invariant broke, 1 when one did (the table says which, with examples;
the working directory with logs, database and chaos-run.json is kept), 2 when the harness
itself could not run (a peer did not start, ...). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import html
import json
import math
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the tests' peers live in the repository
    sys.path.insert(0, str(ROOT))

from tests.peers.mastodon import TOKENS, MastodonMock  # noqa: E402
from tests.peers.nostr import NostrRelay  # noqa: E402
from tests.peers.process import dies_with_parent  # noqa: E402

BIN = Path(sys.executable).parent
ACCOUNTS = ("default", "alt")
MASTODON_USERS = {"default": "alice", "alt": "bob"}
# mastodon_mock holds a `timeout` request this long, then serves it. (Once the client has given
# up the mock drops it — a real server may not: the harness waits the hold out before counting.)
HELD_REQUEST_SECONDS = 30.0
CLI_TIMEOUT = 60.0  # a plur-queue / plur-post still running after this is killed
STOP_TIMEOUT = 10.0  # SIGTERM → exit, beyond the config's shutdown_timeout


# =========================================================================== the invariant checker


@dataclass(frozen=True)
class Expected:
    """One delivery the harness asked for: (post, platform, account) and the text it carries.

    A recurring schedule's occurrences share one text, so the checker counts copies per
    (platform, account, text) against how many entries ask for that text.
    """

    post_id: str
    platform: str
    account: str
    text: str


@dataclass(frozen=True)
class Cancel:
    """A `plur-queue cancel` that exited 0: from then on the post's unsent deliveries are off."""

    post_id: str
    started_ms: int
    ended_ms: int


@dataclass(frozen=True)
class Published:
    """One post as a server holds it (remote_id in the form the database records)."""

    platform: str
    account: str
    text: str
    remote_id: str


@dataclass(frozen=True)
class Row:
    """One row of the deliveries table, read after every process stopped."""

    post_id: str
    platform: str
    account: str
    text: str
    state: str
    remote_id: str | None
    sent_at_ms: int | None


@dataclass(frozen=True)
class Occurrences:
    """One recurring schedule: the occurrence times it must have had, and those in the database."""

    schedule_id: str
    expected_ms: tuple[int, ...]
    posted_ms: tuple[int, ...]
    skipped_ms: tuple[int, ...] = ()


@dataclass
class Verdict:
    """What broke, each item a line naming the delivery; empty lists mean the invariant held."""

    expected: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    cancelled_published: list[str] = field(default_factory=list)
    disagree: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    occurrences: list[str] = field(default_factory=list)

    PROBLEMS = (
        "lost",
        "duplicated",
        "stuck",
        "cancelled_published",
        "disagree",
        "unexpected",
        "gave_up",
        "occurrences",
    )

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.PROBLEMS)

    def problems(self) -> dict[str, list[str]]:
        return {name: getattr(self, name) for name in self.PROBLEMS if getattr(self, name)}


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def check(
    expected: Sequence[Expected],
    cancels: Mapping[str, Cancel],
    published: Sequence[Published],
    rows: Sequence[Row],
    occurrences: Sequence[Occurrences] = (),
) -> Verdict:
    """Compare what was asked for with what the servers hold and what the database says.

    - A delivery of a post cancelled with exit 0 must not be on its server — unless the
      database shows it sent *before* that cancel started (cancel leaves sent ones alone).
    - Every other expected delivery is on its server exactly once: fewer is `lost`, more is
      `duplicated` (extra copies of a cancelled post's text count as `cancelled_published`).
    - After everything stopped, no row may be `sending` (`stuck`) or still waiting, none `dead`
      (the faults are transient and retries plenty: giving up is a loss too).
    - Each `sent` row's remote id is on its server with its text, and anything a server holds
      has a `sent` row (`disagree`); a server post nobody asked for is `unexpected`.
    - Each recurring schedule has exactly its expected occurrences posted (`occurrences`).
    """
    verdict = Verdict(expected=len(expected))
    row_of = {(r.post_id, r.platform, r.account): r for r in rows}
    on_server = Counter((p.platform, p.account, p.text) for p in published)
    ids_on_server = {(p.platform, p.account, p.remote_id): p.text for p in published}
    wanted: Counter[tuple[str, str, str]] = Counter()
    forbidden: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for e in expected:
        key = (e.platform, e.account, e.text)
        cancel = cancels.get(e.post_id)
        row = row_of.get((e.post_id, e.platform, e.account))
        if cancel is not None and not (
            row is not None
            and row.state == "sent"
            and row.sent_at_ms is not None
            and row.sent_at_ms < cancel.started_ms
        ):
            if row is None or row.state != "sent":
                why = f"database says {row.state if row else 'nothing'}"
            elif row.sent_at_ms is not None and row.sent_at_ms <= cancel.ended_ms:
                why = f"recorded sent {row.sent_at_ms - cancel.started_ms} ms into the cancel"
            else:
                late = (row.sent_at_ms or 0) - cancel.ended_ms
                why = f"recorded sent {late} ms after the cancel exited 0"
            forbidden[key].append(f"post {e.post_id} to {e.platform}/{e.account} ({why})")
            continue
        wanted[key] += 1
    for key in sorted(set(wanted) | set(forbidden)):
        platform, account, text = key
        have, want = on_server[key], wanted[key]
        if have < want:
            verdict.lost.append(
                f"{platform}/{account} {_short(text)!r}: {have} on the server, {want} expected"
            )
        elif have > want:
            extra = have - want
            cancelled = forbidden.get(key, [])
            for line in cancelled[:extra]:
                verdict.cancelled_published.append(line)
            if extra > len(cancelled):
                verdict.duplicated.append(
                    f"{platform}/{account} {_short(text)!r}: {have} on the server, {want} expected"
                )
    for key in sorted(set(on_server) - set(wanted) - set(forbidden)):
        verdict.unexpected.append(f"{key[0]}/{key[1]} {_short(key[2])!r} ×{on_server[key]}")
    sent_keys: Counter[tuple[str, str, str]] = Counter()
    for r in rows:
        where = f"post {r.post_id} to {r.platform}/{r.account}"
        if r.state == "sending":
            verdict.stuck.append(f"{where}: still sending")
        elif r.state in ("pending", "retry"):
            verdict.stuck.append(f"{where}: still {r.state} after the drain")
        elif r.state == "dead":
            verdict.gave_up.append(f"{where}: gave up")
        elif r.state == "sent":
            sent_keys[(r.platform, r.account, r.text)] += 1
            found = ids_on_server.get((r.platform, r.account, r.remote_id or ""))
            if found is None:
                verdict.disagree.append(f"{where}: sent as {r.remote_id}, not on the server")
            elif found != r.text:
                verdict.disagree.append(f"{where}: {r.remote_id} on the server has other text")
    for key in sorted(on_server):
        if sent_keys[key] == 0 and (key in wanted or key in forbidden):
            verdict.disagree.append(
                f"{key[0]}/{key[1]} {_short(key[2])!r}: on the server, no sent row in the database"
            )
    for occ in occurrences:
        posted = Counter(occ.posted_ms)
        for at in sorted(set(occ.expected_ms) - set(posted)):
            fate = "skipped" if at in occ.skipped_ms else "never materialised"
            verdict.occurrences.append(f"schedule {occ.schedule_id} occurrence {at}: {fate}")
        for at, n in sorted(posted.items()):
            if at not in occ.expected_ms:
                verdict.occurrences.append(f"schedule {occ.schedule_id} occurrence {at}: extra")
            elif n > 1:
                verdict.occurrences.append(f"schedule {occ.schedule_id} occurrence {at}: ×{n}")
    return verdict


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (as bench_engine.py): no interpolation between samples."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# =========================================================================== what a run records


@dataclass(frozen=True)
class Params:
    """The full run's shape (issue #7: 2,000 posts over 60 s, three daemons, 10-s outage)."""

    posts: int = 2000
    seconds: float = 60.0
    daemons: int = 3
    relay_outage: float = 10.0
    seed: int = 1
    kill_every: tuple[float, float] = (0.5, 3.0)
    cli_every: tuple[float, float] = (0.4, 1.2)
    plur_posts: int = 6  # of the posts, written through the plur-post CLI
    # Also cancel posts that a killed daemon held, or that are retrying after a held request:
    # the cancels most likely to race a send (what users do when a post seems stuck).
    hostile_cancels: bool = True
    faults: bool = True  # Mastodon 429 / 503 / held requests
    bluesky: bool = True  # when tests/peers/bluesky.py and the engine's adapter are there
    drain_timeout: float = 120.0

    @classmethod
    def small(cls, **changes: Any) -> Params:
        """The version inside `make test`: ~45 s on a 2-core machine."""
        base = cls(
            posts=200,
            seconds=20.0,
            daemons=2,
            relay_outage=4.0,
            plur_posts=3,
            hostile_cancels=False,
            drain_timeout=40.0,
        )
        return replace(base, **changes)


@dataclass
class PostInfo:
    """A post the harness wrote: what must be on the servers, kept apart from the database."""

    text: str
    targets: tuple[tuple[str, str], ...]
    via: str  # queue | queue-now | queue-late | warm-up | plur-post | plur-post-now
    post_id: str = ""  # plur-post's: found by its (unique) text afterwards


@dataclass
class CliOp:
    """One plur-queue / plur-post run; only its exit code decides whether a cancel binds."""

    kind: str  # cancel | reschedule | now | plur-post | plur-post-now
    post_id: str
    argv: list[str]
    started_ms: int
    proc: subprocess.Popen[str] | None = None
    ended_ms: int = 0
    code: int | None = None
    out: str = ""
    hostile: bool = False
    text: str = ""


@dataclass
class Kill:
    """A kill -9, and the deliveries (ids) the victim held: they wait for recovery."""

    at_ms: int
    pid: int
    held: list[str]


@dataclass
class Fault:
    """A rule given to mastodon_mock's fault API, and how many requests it hit (polled)."""

    kind: str  # ratelimit | 503 | timeout
    count: int
    injected_ms: int
    rule_id: str
    fired: int = 0
    last_fired_ms: int = 0


@dataclass
class Schedule:
    """A recurring schedule and the occurrences it must have had (computed, not read back)."""

    schedule_id: str
    text: str
    targets: tuple[tuple[str, str], ...]
    expected_ms: tuple[int, ...]
    rule: str


@dataclass
class Report:
    """What a run did and what the checker found; `table()` is the one table."""

    params: Params
    verdict: Verdict
    bluesky: str  # "PDS 0.5.35" or why not
    posts: int
    occurrences: int
    deliveries: Counter[tuple[str, str]]
    kills: int
    kills_in_flight: int
    stranded: int
    faults: Counter[str]
    relay_outage_s: float
    ops: Counter[tuple[str, bool]]  # (kind, exit 0)
    hostile_cancels: int
    daemon_stops: list[int | None]
    lateness: list[float]  # on-time deliveries due before the relay outage
    lateness_outage: list[float]  # … due while the relay was down
    lateness_after: list[float]  # … due after it came back
    lateness_all: list[float]
    excluded: Counter[str]
    seconds: float
    workdir: Path
    warm_up: int = 0
    mastodon_restarts: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_available: float = 0.0

    def table(self) -> str:
        """The one table: markdown, so it can go into the README as printed."""
        v, p = self.verdict, self.params

        def n(items: list[str]) -> str:
            return f"**{len(items)}**" if items else "0"

        by_platform: Counter[str] = Counter()
        for (platform, _), count in self.deliveries.items():
            by_platform[platform] += count
        deliveries = ", ".join(
            f"{platform} {count:,}" for platform, count in sorted(by_platform.items())
        )
        ops = ", ".join(
            f"{kind} {self.ops[(kind, True)]}/{self.ops[(kind, True)] + self.ops[(kind, False)]}"
            for kind in ("cancel", "reschedule", "now", "plur-post")
        )
        faults = ", ".join(f"{k} ×{c}" for k, c in sorted(self.faults.items())) or "none"
        stops = sum(1 for code in self.daemon_stops if code == 0)

        def late(values: list[float]) -> str:
            if not values:
                return "—"
            return (
                f"p50 {statistics.median(values):.3f} s, p99 {percentile(values, 99):.3f} s, "
                f"max {max(values):.3f} s (n = {len(values):,})"
            )

        excluded = ", ".join(f"{why} {c}" for why, c in self.excluded.most_common())
        cpu = f"{sum(self.cpu.values()):.0f} of {self.cpu_available:.0f}: " + ", ".join(
            f"{who} {seconds:.0f}" for who, seconds in self.cpu.items()
        )
        cancelled = n(v.cancelled_published)
        if v.cancelled_published:
            says = sum("database says" in line for line in v.cancelled_published)
            cancelled += (
                f" ({len(v.cancelled_published) - says} recorded sent during or after the "
                f"cancel, {says} while the database says cancelled)"
            )
        rows = [
            (
                "posts",
                f"{self.posts - self.warm_up:,} one-shot (+{self.warm_up} warm-up) + "
                f"{self.occurrences} recurring occurrences",
            ),
            ("deliveries (platform, account)", f"{sum(self.deliveries.values()):,}: {deliveries}"),
            ("Bluesky", self.bluesky),
            ("plur-send processes", f"{p.daemons}, for {p.seconds:g} s"),
            (
                "kill -9",
                f"{self.kills} ({self.kills_in_flight} with deliveries in flight, "
                f"{self.stranded} deliveries stranded)",
            ),
            (
                "SIGTERM at the end (and after the drain) → exit 0",
                f"{stops}/{len(self.daemon_stops)}",
            ),
            ("relay outage", f"{self.relay_outage_s:.1f} s"),
            ("Mastodon faults (requests hit)", faults),
            ("mastodon_mock restarted because it hung", str(self.mastodon_restarts)),
            (
                "plur-queue / plur-post (exit 0 / run)",
                ops + (f"; {self.hostile_cancels} hostile cancels" if p.hostile_cancels else ""),
            ),
            ("**lost**", n(v.lost)),
            ("**duplicated**", n(v.duplicated)),
            ("**stuck** (sending or waiting after the drain)", n(v.stuck)),
            ("cancelled (exit 0), yet published", cancelled),
            ("gave up (dead)", n(v.gave_up)),
            ("database `sent` ≠ servers", n(v.disagree)),
            ("unexpected posts on a server", n(v.unexpected)),
            ("recurring occurrences not exactly once", n(v.occurrences)),
            ("lateness, on-time deliveries due before the relay outage", late(self.lateness)),
            ("… due while the relay was down (other platforms)", late(self.lateness_outage)),
            ("… due after the relay came back", late(self.lateness_after)),
            ("lateness, every sent delivery (nothing left out)", late(self.lateness_all)),
            ("CPU seconds used, of the run's", cpu),
            ("verdict", "**PASS**" if v.ok else "**FAIL**"),
        ]
        lines = ["| what | result |", "|---|---|"]
        lines += [f"| {what} | {result} |" for what, result in rows]
        if excluded:
            lines.append("")
            lines.append(f"Not on time because of injected faults or user edits: {excluded}.")
        return "\n".join(lines)


# =========================================================================== the harness


class _MastodonServer(MastodonMock):
    """mastodon_mock with its data in a file instead of memory, so that a restart (see
    `Harness.watch_mastodon`) keeps the statuses to count and the Idempotency-Keys."""

    def _config(self) -> str:
        return (
            super()
            ._config()
            .replace(
                'path = ":memory:"', f"path = {json.dumps(str(self.directory / 'mastodon.sqlite'))}"
            )
        )


class HarnessError(RuntimeError):
    """The harness could not do its part (a peer would not start ...): no verdict."""


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_ms() -> int:
    return int(time.time() * 1000)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU of every child process this one has waited for."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """plurcast.config reads the environment: point it at the run's files, then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bluesky_available() -> tuple[bool, str]:
    """Bluesky takes part only when its test peer and the engine's adapter both exist."""
    if not (ROOT / "tests" / "peers" / "bluesky.py").is_file():
        return False, "not run: tests/peers/bluesky.py is missing"
    from plurcast.engine import default_factories

    if "bluesky" not in default_factories():
        return False, "not run: no Bluesky adapter in plurcast.engine.default_factories()"
    try:
        import plurcast.platforms.bluesky  # noqa: F401
    except ImportError as exc:
        return False, f"not run: the adapter does not import ({exc})"
    return True, ""


class Harness:
    """One chaos run in `work`; `run()` returns the report, and always stops what it started.

    Single-threaded on purpose: peers are started with PR_SET_PDEATHSIG tied to the starting
    thread (so nothing outlives a killed harness), and one loop of timed actions keeps the
    order of events easy to reason about.
    """

    def __init__(self, params: Params, work: Path, out: TextIO = sys.stdout) -> None:
        self.p = params
        self.work = work
        self.out = out
        self.rng = random.Random(params.seed)
        self.relay: NostrRelay | None = None
        self.mastodon: MastodonMock | None = None
        self.pds: Any = None
        self.bsky_accounts: dict[str, Any] = {}
        self.bluesky_note = "not run: disabled (--no-bluesky)"
        self.nostr_pubkeys: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.cfg: Any = None
        self.conn: sqlite3.Connection | None = None
        self.daemons: list[subprocess.Popen[bytes] | None] = []
        self.logs: list[IO[bytes]] = []
        self.posts: list[PostInfo] = []
        self.ops: list[CliOp] = []
        self.running_ops: list[CliOp] = []
        self.busy_posts: set[str] = set()
        self.kills: list[Kill] = []
        self.faults: list[Fault] = []
        self.schedules: list[Schedule] = []
        self.outage: tuple[float, float] | None = None
        self.daemon_stops: list[int | None] = []
        self.cpu: defaultdict[str, float] = defaultdict(float)  # seconds, by who used them
        self.mastodon_probe_at = 0.0
        self.mastodon_silent_since = 0.0
        self.mastodon_restarts = 0
        self.waited_peer_cpu = 0.0  # CPU of the relay process stopped for the outage
        self.targets: list[tuple[float, tuple[str, ...], str]] = []
        self.started = time.monotonic()
        self.run_id = f"{params.seed:x}{os.urandom(2).hex()}"

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", file=self.out, flush=True)

    # ----------------------------------------------------------------- set-up

    def start_peers(self) -> None:
        self.relay = NostrRelay(self.work / "nostr-relay")
        self.relay.start()
        self.mastodon = _MastodonServer(self.work / "mastodon-mock")
        self.mastodon.start()
        use_bluesky, why = bluesky_available() if self.p.bluesky else (False, self.bluesky_note)
        self.bluesky_note = why
        if use_bluesky:
            from tests.peers.bluesky import PDS_VERSION, Pds

            self.pds = Pds(self.work / "pds")
            try:
                self.pds.start()  # installs it first on a machine that has none (~90 s)
                for account in ACCOUNTS:
                    self.bsky_accounts[account] = self.pds.create_account()
                self.bluesky_note = f"PDS {PDS_VERSION}, 2 accounts"
            except Exception as exc:  # no npm, no network for the install ...: run without
                self.pds.stop()
                self.pds, self.bsky_accounts = None, {}
                self.bluesky_note = f"not run: the PDS did not start ({_short(str(exc), 80)})"
        self.say(
            f"peers: relay {self.relay.url}, mastodon_mock {self.mastodon.url}"
            + (f", PDS {self.pds.url}" if self.pds else f"; Bluesky {self.bluesky_note}")
        )

    def _secret(self, name: str, value: str) -> Path:
        path = self.work / "secrets" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return path

    def write_config(self) -> None:
        import nostr_sdk

        assert self.relay is not None and self.mastodon is not None
        keys = {a: nostr_sdk.Keys.generate() for a in ACCOUNTS}
        self.nostr_pubkeys = {keys[a].public_key().to_hex(): a for a in ACCOUNTS}
        nostr_files = {
            a: self._secret(f"nostr-{a}.keys", keys[a].secret_key().to_hex()) for a in ACCOUNTS
        }
        tokens = {
            a: self._secret(f"mastodon-{a}.token", TOKENS[MASTODON_USERS[a]]) for a in ACCOUNTS
        }
        text = [
            'timezone = "UTC"',
            "[database]\nbusy_timeout = 15",
            f'[nostr]\nkeys_file = "{nostr_files["default"]}"\nrelays = ["{self.relay.url}"]'
            "\ntimeout = 2",
            f'[accounts.nostr.alt]\nkeys_file = "{nostr_files["alt"]}"',
            f'[mastodon]\ninstance = "{self.mastodon.url}"\ntoken_file = "{tokens["default"]}"'
            "\ntimeout = 3",
            f'[accounts.mastodon.alt]\ntoken_file = "{tokens["alt"]}"',
        ]
        platforms = ["nostr", "mastodon"]
        if self.pds is not None:
            platforms.append("bluesky")
            for account, acc in self.bsky_accounts.items():
                table = "[bluesky]" if account == "default" else f"[accounts.bluesky.{account}]"
                password = self._secret(f"bluesky-{account}.password", acc.app_password)
                text.append(
                    f'{table}\nhandle = "{acc.handle}"\napp_password_file = "{password}"'
                    + (f'\npds = "{self.pds.url}"\ntimeout = 5' if account == "default" else "")
                )
        # Nothing may give up on the injected faults, and nothing may wait on a rate window:
        # retries come fast (1 s, 2 s, 4 s …) and often; the limits are far above the load.
        text.append(
            "[scheduling]\npoll_interval = 60\nretry_delay = 1\nmax_retries = 40\n"
            "shutdown_timeout = 3"
        )
        for platform in platforms:
            text.append(f"[scheduling.rate_limits.{platform}]\nposts_per_hour = 10000000")
        path = self.work / "config.toml"
        path.write_text("\n\n".join(text) + "\n")
        self.env = {
            **os.environ,
            "PLURCAST_CONFIG": str(path),
            "PLURCAST_DB_PATH": str(self.work / "posts.db"),
            "TZ": "UTC",
            "NO_COLOR": "1",
            # Cached bytecode, as an installed package has (bench_cli.py does the same): a
            # daemon restarted every second or two must not compile the project each time.
            "PYTHONPYCACHEPREFIX": str(self.work / "pycache"),
        }
        self.env.pop("PLURCAST_DEBUG", None)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        from plurcast import config, queue

        with _environ(
            PLURCAST_CONFIG=self.env["PLURCAST_CONFIG"],
            PLURCAST_DB_PATH=self.env["PLURCAST_DB_PATH"],
        ):
            self.cfg = config.load()
        self.conn = queue.open_db(self.cfg)
        mixes: list[tuple[float, tuple[str, ...], str]] = [
            (2, ("nostr",), "default"),
            (1, ("nostr",), "alt"),
            (2, ("mastodon",), "default"),
            (1, ("mastodon",), "alt"),
            (2, ("nostr", "mastodon"), "default"),
            (1, ("nostr", "mastodon"), "alt"),
        ]
        if self.pds is not None:
            mixes += [
                (1, ("bluesky",), "default"),
                (0.5, ("bluesky",), "alt"),
                (1.5, ("nostr", "mastodon", "bluesky"), "default"),
                (0.5, ("nostr", "mastodon", "bluesky"), "alt"),
            ]
        self.targets = mixes

    def pick_targets(self) -> tuple[tuple[str, ...], str]:
        weights = [w for w, _, _ in self.targets]
        _, platforms, account = self.rng.choices(self.targets, weights)[0]
        return platforms, account

    # ----------------------------------------------------------------- recurring schedules

    def create_schedules(self, t0: int) -> None:
        """`--every 1m` from soon, another from mid-run, and a cron every minute, all ending at
        the end of the chaos (`--until`), so which occurrences must exist is plain arithmetic."""
        from zoneinfo import ZoneInfo

        from plurcast import schedules

        assert self.conn is not None
        end = t0 + int(self.p.seconds)
        everything: tuple[str, ...] = ("nostr", "mastodon")
        if self.pds is not None:
            everything += ("bluesky",)
        plans: list[tuple[str, schedules.Recurring, tuple[str, ...], str, tuple[int, ...]]] = []
        for name, first, platforms, account in (
            ("A", t0 + 4, everything, "default"),
            ("B", t0 + int(self.p.seconds) // 2, ("nostr", "mastodon"), "alt"),
        ):
            times = tuple(range(first, end + 1, 60))
            spec = schedules.Recurring(every="1m", first=_iso(first), until=_iso(end))
            plans.append((f"{name}: --every 1m", spec, platforms, account, times))
        start = t0 + 3
        minutes = tuple(m for m in range(math.ceil(start / 60) * 60, end + 1, 60))
        if minutes:  # a short run may hold no minute boundary at all
            spec = schedules.Recurring(cron="* * * * *", first=_iso(start), until=_iso(end))
            plans.append(("C: --cron '* * * * *'", spec, ("nostr", "mastodon"), "default", minutes))
        for rule, spec, platforms, account, times in plans:
            text = f"chaos {self.run_id} recurring {rule[0]} ⏰"
            made = schedules.create(
                self.conn,
                self.cfg,
                text,
                spec,
                platforms=list(platforms),
                account=None if account == "default" else account,
                tz=ZoneInfo("UTC"),
                now=datetime.now(UTC),
            )
            targets = tuple((p, account) for p in platforms)
            self.schedules.append(Schedule(made.id, text, targets, times, rule))
        self.say(
            "schedules: " + "; ".join(f"{s.rule} ×{len(s.expected_ms)}" for s in self.schedules)
        )
        for s in self.schedules:
            s.expected_ms = tuple(t * 1000 for t in s.expected_ms)

    # ----------------------------------------------------------------- daemons

    def start_daemon(self, slot: int) -> None:
        proc = subprocess.Popen(
            dies_with_parent([str(BIN / "plur-send")]),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.logs[slot],
            stderr=subprocess.STDOUT,
        )
        self.daemons[slot] = proc

    def scalar(self, sql: str, *args: object) -> int:
        assert self.conn is not None
        return int(self.conn.execute(sql, args).fetchone()[0] or 0)

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            self.poll_ops()
            self.watch_mastodon()
            time.sleep(0.05)
        self.say(f"timed out after {timeout:g} s waiting for {what}")
        return False

    def holds_leases(self, owner: str) -> bool:
        return (
            self.scalar(
                "SELECT count(*) FROM deliveries WHERE state = 'sending' AND lease_owner = ?",
                owner,
            )
            > 0
        )

    def kill_one(self) -> None:
        """kill -9 a random live daemon, note what it held, restart it at once."""
        from plurcast import process

        live = {
            i: process.owner_id(d.pid)
            for i, d in enumerate(self.daemons)
            if d is not None and d.poll() is None
        }
        if not live:
            return
        # Half the kills go to a daemon with deliveries on the wire, when there is one: the
        # kills that test G1 must not be left to chance.
        busy = [i for i, owner in live.items() if self.holds_leases(owner)]
        slot = self.rng.choice(busy if busy and self.rng.random() < 0.5 else sorted(live))
        proc = self.daemons[slot]
        assert proc is not None
        owner = live[slot]
        self.cpu["plur-send"] += cpu_seconds(proc.pid)
        proc.kill()
        proc.wait(10)
        assert self.conn is not None
        held = self.conn.execute(
            "SELECT id, post_id FROM deliveries WHERE state = 'sending' AND lease_owner = ?",
            (owner,),
        ).fetchall()
        self.kills.append(Kill(_now_ms(), proc.pid, [str(r[0]) for r in held]))
        self.start_daemon(slot)
        if held and self.p.hostile_cancels and self.rng.random() < 0.5:
            post_id = str(self.rng.choice(held)[1])
            if post_id not in self.busy_posts:
                self.launch("cancel", post_id, ["cancel", post_id, "--force"], hostile=True)

    # ----------------------------------------------------------------- the CLIs, concurrently

    def launch(
        self, kind: str, post_id: str, args: list[str], *, hostile: bool = False, text: str = ""
    ) -> None:
        exe = "plur-post" if kind.startswith("plur-post") else "plur-queue"
        argv = [str(BIN / exe), *args]
        op = CliOp(kind, post_id, argv, _now_ms(), hostile=hostile, text=text)
        op.proc = subprocess.Popen(
            dies_with_parent(argv),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if post_id:
            self.busy_posts.add(post_id)
        self.running_ops.append(op)
        self.ops.append(op)

    def poll_ops(self) -> None:
        for op in list(self.running_ops):
            assert op.proc is not None
            if op.proc.poll() is None:
                if _now_ms() - op.started_ms < CLI_TIMEOUT * 1000:
                    continue
                op.proc.kill()  # hung: recorded as killed (code -9), never as binding
            out, err = op.proc.communicate()
            op.ended_ms, op.code, op.out = _now_ms(), op.proc.returncode, out + err
            op.proc = None
            self.running_ops.remove(op)
            self.busy_posts.discard(op.post_id)

    def waiting_posts(self) -> list[tuple[str, bool, bool]]:
        """(post id, safe to cancel, on the wire or retrying) for posts with work left.

        "Safe" means nothing of it is prepared or on the wire and it is not due for 3 s: a
        cancel then cannot race a send. The others are what --hostile cancels go for.
        """
        assert self.conn is not None
        soon = _now_ms() + 3000
        rows = self.conn.execute(
            "SELECT post_id, "
            "  min(state = 'pending' AND payload IS NULL AND due_at_ms > ?), "
            "  max(state = 'sending' OR (state = 'retry' AND payload IS NOT NULL)) "
            "FROM deliveries WHERE post_id IN "
            "  (SELECT post_id FROM deliveries WHERE state IN ('pending', 'retry', 'sending')) "
            "GROUP BY post_id",
            (soon,),
        ).fetchall()
        return [(r[0], bool(r[1]), bool(r[2])) for r in rows if r[0] not in self.busy_posts]

    def random_op(self) -> None:
        if len(self.running_ops) >= 2:  # two cores: more would only measure the scheduler
            return
        posts = self.waiting_posts()
        if not posts:
            return
        kind = self.rng.choices(("cancel", "reschedule", "now"), (0.35, 0.35, 0.3))[0]
        if kind == "cancel":
            hot = [p for p, _, wire in posts if wire]
            if self.p.hostile_cancels and hot and self.rng.random() < 0.5:
                post_id = self.rng.choice(hot)
                self.launch("cancel", post_id, ["cancel", post_id, "--force"], hostile=True)
                return
            safe = [p for p, ok, _ in posts if ok]
            if not safe:
                return
            post_id = self.rng.choice(safe)
            self.launch("cancel", post_id, ["cancel", post_id, "--force"])
        elif kind == "reschedule":
            post_id = self.rng.choice(posts)[0]
            shift = f"+{self.rng.randint(2, 8)}s"
            self.launch("reschedule", post_id, ["reschedule", post_id, shift])
        else:
            post_id = self.rng.choice(posts)[0]
            self.launch("now", post_id, ["now", post_id])

    def plur_post(self, index: int) -> None:
        platforms, account = self.pick_targets()
        text = self.text(index, platforms, account)
        args = [text, "-p", ",".join(platforms), "-f", "json"]
        if account != "default":
            args += ["-a", account]
        immediate = index % 2 == 1
        if not immediate:
            args += ["-s", f"{self.rng.randint(3, 6)}s"]
        self.posts.append(
            PostInfo(
                text,
                tuple((p, account) for p in platforms),
                "plur-post-now" if immediate else "plur-post",
            )
        )
        self.launch("plur-post-now" if immediate else "plur-post", "", args, text=text)

    # ----------------------------------------------------------------- writing posts

    def text(self, index: int, platforms: Sequence[str], account: str) -> str:
        """Unique per post, and plain: no '#', '@' or link that a server would rewrite."""
        what = f"warm-up {-index:03d}" if index < 0 else f"post {index:05d}"
        return f"chaos {self.run_id} {what} to {'+'.join(platforms)}/{account} ✨"

    def write(
        self,
        index: int,
        due: int,
        now_mode: bool,
        targets: tuple[tuple[str, ...], str] | None = None,
        via: str = "",
    ) -> None:
        from plurcast import queue

        assert self.conn is not None
        platforms, account = targets or self.pick_targets()
        text = self.text(index, platforms, account)
        late = not now_mode and due - time.time() < 1.0
        now = datetime.now(UTC)
        created = queue.create_post(
            self.conn,
            self.cfg,
            text,
            schedule="now" if now_mode or late else _iso(due),
            draft=False,
            platforms=list(platforms),
            account=None if account == "default" else account,
            tz=self.cfg.timezone,
            now=now,
        )
        assert created.scheduled_at is not None
        via = via or ("queue-now" if now_mode else "queue-late" if late else "queue")
        info = PostInfo(text, tuple((p, account) for p in platforms), via, created.post_id)
        self.posts.append(info)

    # ----------------------------------------------------------------- platform faults

    def watch_mastodon(self) -> None:
        """Restart mastodon_mock when it stops answering altogether (8 s without an answer).

        With clients killed mid-request it has been seen to hang for good — its event loop
        stuck after `ClientDisconnect` errors — and then no Mastodon post could go out and the
        run would end "stuck" for a reason that is not plurcast's. Its data is in a file, so the
        restart keeps every status and Idempotency-Key; rules not yet used up are lost.
        """
        now = time.monotonic()
        if self.mastodon is None or now < self.mastodon_probe_at:
            return
        self.mastodon_probe_at = now + 1.0
        try:
            self.mastodon.request("GET", "/api/v1/instance", timeout=0.5)
        except (OSError, urllib.error.URLError):
            self.mastodon_silent_since = self.mastodon_silent_since or now
            if now - self.mastodon_silent_since < 8:
                return
            self.say("mastodon_mock has not answered for 8 s: restarting it (same data)")
            self.poll_faults()
            for fault in self.faults:
                fault.count = fault.fired  # rules live in memory: the rest are gone
            if self.mastodon.process is not None:
                used = cpu_seconds(self.mastodon.process.pid)
                self.cpu["mastodon_mock"] += used
                self.waited_peer_cpu += used
            self.mastodon.stop()
            self.mastodon_restarts += 1
            log = self.mastodon.log_path  # start() truncates it: keep the hung one's
            log.rename(log.with_suffix(f".hung-{self.mastodon_restarts}.log"))
            self.mastodon.start()
        self.mastodon_silent_since = 0.0

    def mock(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        patient: bool = True,
    ) -> Any:
        """One call to mastodon_mock. Patient (counting at the end): up to 3 tries of 20 s,
        restarting a mock that hangs in between. Impatient (during the chaos, where the loop
        must not stall): one try of 2 s, so a fault that cannot be injected is skipped."""
        assert self.mastodon is not None
        for attempt in range(3 if patient else 1):
            started = time.monotonic()
            try:
                answer = self.mastodon.request(
                    method, path, token=token, body=body, timeout=20 if patient else 2
                )
            except (OSError, urllib.error.URLError) as exc:
                self.say(f"mastodon_mock: {method} {path} failed ({exc}), attempt {attempt + 1}")
                if patient:
                    self.mastodon_probe_at = 0.0
                    self.mastodon_silent_since = time.monotonic() - 8  # restart if it hangs
                    self.watch_mastodon()
                continue
            if time.monotonic() - started > 2:
                self.say(f"mastodon_mock took {time.monotonic() - started:.1f} s for {path}")
            return answer
        raise HarnessError(f"mastodon_mock does not answer {method} {path}")

    def inject(self, kind: str, count: int) -> None:
        effects: dict[str, dict[str, Any]] = {
            "ratelimit": {"type": "ratelimit", "headers": {"Retry-After": "1"}},
            "503": {"type": "status", "status": 503},
            "timeout": {"type": "timeout"},
        }
        rule = {
            "match": {"methods": ["POST"], "path": "/api/v1/statuses"},
            "effect": effects[kind],
            "count": count,
        }
        try:
            rule = self.mock("POST", "/api/v1/_mock/faults", body=rule, patient=False)
        except HarnessError as exc:  # a fault less is no reason to give up the run
            self.say(f"mastodon fault {kind} not injected: {exc}")
            return
        self.faults.append(Fault(kind, count, _now_ms(), str(rule["id"])))
        self.say(f"mastodon fault: {kind} ×{count}")

    def poll_faults(self) -> None:
        """How many requests each rule has hit so far (a used-up rule disappears)."""
        if self.mastodon is None or not any(f.fired < f.count for f in self.faults):
            return
        try:
            rules = self.mastodon.request("GET", "/api/v1/_mock/faults", timeout=2)
        except (OSError, urllib.error.URLError):
            return
        remaining = {str(r["id"]): r.get("remaining") for r in rules or []}
        now = _now_ms()
        for fault in self.faults:
            left = remaining.get(fault.rule_id, 0)
            fired = fault.count - int(left if left is not None else fault.count)
            if fired > fault.fired:
                fault.fired, fault.last_fired_ms = fired, now

    def fault_plan(self) -> list[tuple[float, str, int]]:
        """(fraction of the run, kind, requests hit): the first held request comes early, so
        that its 30-s hold is over soon after the drain."""
        plan = [(0.04, "timeout", 1), (0.3, "ratelimit", 3), (0.55, "503", 4)]
        if self.p.seconds >= 40:
            plan += [(0.15, "503", 3), (0.45, "ratelimit", 2), (0.7, "timeout", 1)]
        return sorted(plan)

    # ----------------------------------------------------------------- the relay

    def relay_down(self) -> None:
        assert self.relay is not None
        if self.relay.process is not None:
            self.waited_peer_cpu += cpu_seconds(self.relay.process.pid)
            self.cpu["nostr-relay"] += cpu_seconds(self.relay.process.pid)
        self.relay.stop()
        self.outage = (time.time(), 0.0)
        self.say(f"relay stopped for {self.p.relay_outage:g} s")

    def relay_up(self) -> None:
        assert self.relay is not None and self.outage is not None
        self.relay.start()  # the same port and database
        self.outage = (self.outage[0], time.time())
        self.say(f"relay back after {self.outage[1] - self.outage[0]:.1f} s")

    # ----------------------------------------------------------------- the run

    def run(self) -> Report:
        try:
            self.start_peers()
            self.write_config()
            return self._run()
        finally:
            self.shutdown()

    def _run(self) -> Report:
        p = self.p
        (self.work / "logs").mkdir(exist_ok=True)
        self.logs = [
            (self.work / "logs" / f"plur-send-{i}.log").open("ab") for i in range(p.daemons)
        ]
        self.daemons = [None] * p.daemons
        for slot in range(p.daemons):
            self.start_daemon(slot)
        if not self.wait_until(
            lambda: self.scalar("SELECT count(*) FROM heartbeats") >= p.daemons, 30, "daemons"
        ):
            raise HarnessError("the daemons did not start; see " + str(self.work / "logs"))
        self.warm_up()
        t0 = math.ceil(time.time()) + 1
        end = t0 + p.seconds
        self.create_schedules(t0)
        self.say(f"chaos for {p.seconds:g} s: {p.posts:,} posts, {p.daemons} daemons")
        actions: list[tuple[float, int, Callable[[], None]]] = []
        seq = iter(range(10**9))

        def at(when: float, action: Callable[[], None]) -> None:
            heapq.heappush(actions, (when, next(seq), action))

        queued = p.posts - p.plur_posts
        span = max(1, int(p.seconds) - 2)
        for i in range(queued):
            due = t0 + 2 + (span * i) // queued
            if self.rng.random() < 0.1:
                at(due, partial(self.write, i, due, True))
            else:
                write_at = max(time.time(), due - self.rng.uniform(1.5, 6.0))
                at(write_at, partial(self.write, i, due, False))
        for k in range(p.plur_posts):
            at(t0 + p.seconds * (k + 0.5) / p.plur_posts, partial(self.plur_post, queued + k))
        for fraction, kind, count in self.fault_plan() if p.faults else []:
            at(t0 + p.seconds * fraction, partial(self.inject, kind, count))
        if p.relay_outage > 0:
            down = t0 + p.seconds * 0.35
            at(down, self.relay_down)
            at(down + p.relay_outage, self.relay_up)

        def kill() -> None:
            self.kill_one()
            nxt = time.time() + self.rng.uniform(*p.kill_every)
            if nxt < end:
                at(nxt, kill)

        def op() -> None:
            self.random_op()
            nxt = time.time() + self.rng.uniform(*p.cli_every)
            if nxt < end:
                at(nxt, op)

        if p.kill_every[1] > 0:
            at(t0 + self.rng.uniform(*p.kill_every), kill)
        if p.cli_every[1] > 0:
            at(t0 + 1, op)
        last_fault_poll = 0.0
        while actions:
            now = time.time()
            while actions and actions[0][0] <= now:
                heapq.heappop(actions)[2]()
            self.poll_ops()
            self.watch_daemons()
            self.watch_mastodon()
            if now - last_fault_poll > 0.25:
                self.poll_faults()
                last_fault_poll = now
            time.sleep(0.005)
        self.say(f"chaos over: {len(self.kills)} kills, {len(self.ops)} CLI runs")
        self.finish()
        return self.report()

    def warm_up(self) -> None:
        """A post per daemon to every (platform, account), sent before the chaos starts.

        A daemon makes its clients on first use (imports, connections, a Bluesky session): the
        first seconds after a cold start are slow. Measured from a cold start, lateness would
        show that once; warmed up, it shows the steady state the chaos then disturbs. (Daemons
        restarted after a kill start cold, as they would in life.) The posts count like any
        other: each must be on its server once.
        """
        before = len(self.posts)
        for round_ in range(self.p.daemons):
            for k, (_, platforms, account) in enumerate(self.targets):
                self.write(-1 - round_ * 100 - k, 0, True, (platforms, account), "warm-up")
        wanted = sum(len(info.targets) for info in self.posts[before:])
        self.wait_until(
            lambda: self.scalar("SELECT count(*) FROM deliveries WHERE state = 'sent'") >= wanted,
            60,
            "the warm-up posts",
        )

    def watch_daemons(self) -> None:
        """A daemon that exits on its own (not killed by us) is a finding: log it, restart."""
        for slot, proc in enumerate(self.daemons):
            if proc is not None and proc.poll() is not None:
                self.say(f"plur-send in slot {slot} exited on its own with {proc.returncode}")
                self.daemon_stops.append(proc.returncode)
                self.start_daemon(slot)

    def finish(self) -> None:
        """Stop the chaos cleanly, drain with one fresh daemon, wait out held requests."""
        self.wait_until(lambda: not self.running_ops, CLI_TIMEOUT + 5, "CLI runs to end")
        self.poll_faults()
        if self.mastodon is not None:
            self.mock("DELETE", "/api/v1/_mock/faults")
        for slot, proc in enumerate(self.daemons):
            if proc is None:
                continue
            # One restarted by the last kill may still be in the interpreter's own startup,
            # where no Python code can hold a SIGTERM yet (plur-send holds it from its first
            # line on); it holds nothing, but a stop there would read as -15.
            self.wait_until(
                lambda pid=proc.pid: (
                    self.scalar("SELECT count(*) FROM heartbeats WHERE pid = ?", pid) > 0
                ),
                30,
                f"plur-send in slot {slot} to start",
            )
            self.cpu["plur-send"] += cpu_seconds(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                self.daemon_stops.append(
                    proc.wait(self.cfg.scheduling.shutdown_timeout + STOP_TIMEOUT)
                )
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.daemon_stops.append(None)
            self.daemons[slot] = None
        self.say(f"daemons stopped: exit codes {self.daemon_stops[-len(self.daemons) :]}")
        drain = subprocess.Popen(
            dies_with_parent([str(BIN / "plur-send")]),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.logs[0],
            stderr=subprocess.STDOUT,
        )
        self.daemons[0] = drain
        started = time.monotonic()
        self.wait_until(
            lambda: self.scalar("SELECT count(*) FROM heartbeats WHERE pid = ?", drain.pid) > 0,
            30,
            "the draining daemon to start",
        )
        drained = self.wait_until(
            lambda: (
                self.scalar(
                    "SELECT (SELECT count(*) FROM deliveries "
                    "        WHERE state IN ('pending', 'retry', 'sending')) "
                    "     + (SELECT count(*) FROM schedules WHERE state = 'active')"
                )
                == 0
            ),
            self.p.drain_timeout,
            "the drain",
        )
        self.cpu["plur-send"] += cpu_seconds(drain.pid)
        drain.send_signal(signal.SIGTERM)
        try:
            code: int | None = drain.wait(self.cfg.scheduling.shutdown_timeout + STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            drain.kill()
            drain.wait()
            code = None
        self.daemons[0] = None
        self.daemon_stops.append(code)
        self.say(
            f"drain {'done' if drained else 'NOT done'} in {time.monotonic() - started:.1f} s"
            f" (exit {code})"
        )
        held = [f.last_fired_ms for f in self.faults if f.kind == "timeout" and f.fired]
        if held:
            until = max(held) / 1000 + HELD_REQUEST_SECONDS + 1.5
            if until > time.time():
                self.say(f"waiting {until - time.time():.1f} s for held Mastodon requests")
                time.sleep(max(0.0, until - time.time()))

    def shutdown(self) -> None:
        """Whatever happened: end every process we started, by its own handle."""
        for op in self.running_ops:
            if op.proc is not None and op.proc.poll() is None:
                op.proc.kill()
                op.proc.wait()
        for proc in self.daemons:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for peer in (self.pds, self.mastodon, self.relay):
            if peer is not None:
                with contextlib.suppress(Exception):
                    peer.stop()
        for log in self.logs:
            log.close()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # ----------------------------------------------------------------- counting on the servers

    def observe(self) -> list[Published]:
        import nostr_sdk

        assert self.relay is not None and self.mastodon is not None
        found: list[Published] = []
        for event in self.relay.stored_events():
            account = self.nostr_pubkeys.get(event["pubkey"], f"unknown key {event['pubkey']}")
            note = nostr_sdk.EventId.parse(event["id"]).to_bech32()
            found.append(Published("nostr", account, event["content"], note))
        for account in ACCOUNTS:
            token = TOKENS[MASTODON_USERS[account]]
            for status_id, text in self.mastodon_statuses(token):
                found.append(Published("mastodon", account, text, status_id))
        if self.pds is not None:
            for account, acc in self.bsky_accounts.items():
                for record in self.pds.list_records(acc.did):
                    found.append(
                        Published("bluesky", account, record["value"]["text"], record["uri"])
                    )
        return found

    def mastodon_statuses(self, token: str) -> Iterator[tuple[str, str]]:
        """Every status of the account, 40 a page; the text from the HTML, else from /source."""
        assert self.mastodon is not None
        me = self.mock("GET", "/api/v1/accounts/verify_credentials", token=token)
        max_id = ""
        for _ in range(100_000 // 40):  # bounded: far more than any run posts
            page = self.mock(
                "GET", f"/api/v1/accounts/{me['id']}/statuses?limit=40{max_id}", token=token
            )
            if not page:
                return
            for status in page:
                inner = re.fullmatch(r"<p>(.*)</p>", status["content"], re.DOTALL)
                if inner and "<" not in inner.group(1):
                    yield str(status["id"]), html.unescape(inner.group(1))
                else:
                    source = self.mock(
                        "GET", f"/api/v1/statuses/{status['id']}/source", token=token
                    )
                    yield str(status["id"]), str(source["text"])
            max_id = f"&max_id={page[-1]['id']}"

    def report(self) -> Report:
        assert self.conn is not None
        published = self.observe()
        rows = [
            Row(*r)
            for r in self.conn.execute(
                "SELECT d.post_id, d.platform, d.account, p.content, d.state, d.remote_id, "
                "d.sent_at_ms FROM deliveries d JOIN posts p ON p.id = d.post_id"
            )
        ]
        expected: list[Expected] = []
        for info in self.posts:
            if not info.post_id:  # written by plur-post: its id is in its output, or the db
                row = self.conn.execute(
                    "SELECT id FROM posts WHERE content = ?", (info.text,)
                ).fetchone()
                info.post_id = row[0] if row else ""
                op = next(o for o in self.ops if o.text == info.text)
                if not info.post_id and op.code != 0:
                    continue  # refused before anything was written
            expected += [Expected(info.post_id, p, a, info.text) for p, a in info.targets]
        occurrences = []
        for s in self.schedules:
            fates = self.conn.execute(
                "SELECT occurrence_at_ms, fate, post_id FROM occurrences WHERE schedule_id = ?",
                (s.schedule_id,),
            ).fetchall()
            posted = {at: post_id for at, fate, post_id in fates if fate == "posted"}
            skipped = tuple(at for at, fate, _ in fates if fate == "skipped")
            occurrences.append(Occurrences(s.schedule_id, s.expected_ms, tuple(posted), skipped))
            for at in s.expected_ms:
                expected += [Expected(posted.get(at, ""), p, a, s.text) for p, a in s.targets]
        cancels: dict[str, Cancel] = {}
        for op in self.ops:
            if op.kind == "cancel" and op.code == 0 and op.post_id not in cancels:
                cancels[op.post_id] = Cancel(op.post_id, op.started_ms, op.ended_ms)
        verdict = check(expected, cancels, published, rows, occurrences)
        self.dump(verdict)
        (lateness, lateness_outage, lateness_after), lateness_all, excluded = self.lateness()
        deliveries: Counter[tuple[str, str]] = Counter((e.platform, e.account) for e in expected)
        faults: Counter[str] = Counter()
        for f in self.faults:
            faults[
                {"ratelimit": "429 Retry-After: 1", "503": "503", "timeout": "held 30 s"}[f.kind]
            ] += f.fired
        cpu: dict[str, float] = dict(self.cpu)
        for who, peer in (
            ("nostr-relay", self.relay),
            ("mastodon_mock", self.mastodon),
            ("PDS", self.pds),
        ):
            if peer is not None and peer.process is not None:
                cpu[who] = cpu.get(who, 0.0) + cpu_seconds(peer.process.pid)
        cpu["plur-queue, plur-post"] = max(
            0.0, children_cpu_seconds() - self.cpu["plur-send"] - self.waited_peer_cpu
        )
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        cpu["this harness"] = own.ru_utime + own.ru_stime
        span = time.monotonic() - self.started
        ops: Counter[tuple[str, bool]] = Counter()
        for op in self.ops:
            ops[(op.kind.removesuffix("-now"), op.code == 0)] += 1
        return Report(
            params=self.p,
            verdict=verdict,
            bluesky=self.bluesky_note,
            posts=len(self.posts),
            occurrences=sum(len(s.expected_ms) for s in self.schedules),
            deliveries=deliveries,
            kills=len(self.kills),
            kills_in_flight=sum(1 for k in self.kills if k.held),
            stranded=sum(len(k.held) for k in self.kills),
            faults=faults,
            relay_outage_s=(self.outage[1] - self.outage[0]) if self.outage else 0.0,
            ops=ops,
            hostile_cancels=sum(1 for o in self.ops if o.hostile),
            daemon_stops=self.daemon_stops,
            lateness=lateness,
            lateness_outage=lateness_outage,
            lateness_after=lateness_after,
            lateness_all=lateness_all,
            excluded=excluded,
            seconds=time.monotonic() - self.started,
            workdir=self.work,
            warm_up=sum(1 for info in self.posts if info.via == "warm-up"),
            mastodon_restarts=self.mastodon_restarts,
            cpu=cpu,
            cpu_available=span * (os.cpu_count() or 1),
        )

    def dump(self, verdict: Verdict) -> None:
        """Everything the harness did, and every problem in full, for reading after a failure."""
        record = {
            "problems": verdict.problems(),
            "ops": [
                {
                    "kind": o.kind,
                    "post_id": o.post_id,
                    "started_ms": o.started_ms,
                    "ended_ms": o.ended_ms,
                    "code": o.code,
                    "hostile": o.hostile,
                    "output": o.out[-300:],
                }
                for o in self.ops
            ],
            "kills": [{"at_ms": k.at_ms, "pid": k.pid, "held": k.held} for k in self.kills],
            "faults": [vars(f) for f in self.faults],
            "relay_outage": self.outage,
            "daemon_stops": self.daemon_stops,
        }
        (self.work / "chaos-run.json").write_text(json.dumps(record, indent=1, default=str))

    def lateness(
        self,
    ) -> tuple[tuple[list[float], list[float], list[float]], list[float], Counter[str]]:
        """sent_at − the post's time, for deliveries nothing injected got in the way of.

        Left out, and counted by reason: posts a user command touched (rescheduled — their
        time moved on purpose —, sent with `now`, a cancel tried, or published by plur-post
        itself), deliveries a fault hit (more than one attempt, or an attempt that failed),
        deliveries moved by a platform's rate-limit hold (429), deliveries a daemon held when
        it was killed, posts the harness wrote late and the warm-up. What remains is what G4
        promises: on time when the platform answers promptly.

        It is split by the relay outage, because a Nostr outage slows the *other* platforms too:
        a daemon's `max_concurrency` slots fill with Nostr attempts that each wait out the relay
        timeout, so Mastodon and Bluesky posts due meanwhile wait for a slot (see the report).
        The last figure leaves nothing out.
        """
        assert self.conn is not None
        touched: dict[str, str] = {}
        for op in self.ops:
            if op.kind == "reschedule" and op.code == 0:
                touched.setdefault(op.post_id, "rescheduled")
            elif op.kind == "now":
                touched.setdefault(op.post_id, "sent with now")
            elif op.kind == "cancel":
                touched.setdefault(op.post_id, "cancel tried")
        for info in self.posts:
            if info.via.startswith("plur-post"):
                touched.setdefault(info.post_id, "plur-post")
            elif info.via == "queue-late":
                touched.setdefault(info.post_id, "written late")
            elif info.via == "warm-up":
                touched.setdefault(info.post_id, "warm-up")
        stranded = {d for k in self.kills for d in k.held}
        outage = (
            (int(self.outage[0] * 1000), int(self.outage[1] * 1000))
            if self.outage
            else (2**62,) * 2
        )
        on_time: tuple[list[float], list[float], list[float]] = ([], [], [])
        everything: list[float] = []
        excluded: Counter[str] = Counter()
        rows = self.conn.execute(
            "SELECT d.id, d.post_id, d.sent_at_ms, d.due_at_ms, "
            "  coalesce(p.occurrence_at_ms, p.scheduled_at_ms), p.created_at_ms, "
            "  (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id), "
            "  (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id "
            "   AND a.outcome != 'sent') "
            "FROM deliveries d JOIN posts p ON p.id = d.post_id WHERE d.state = 'sent'"
        ).fetchall()
        for did, post_id, sent, due, base, created, attempts, failed in rows:
            if post_id in touched and touched[post_id] in ("sent with now", "plur-post", "warm-up"):
                excluded[touched[post_id]] += 1
                continue
            late = (sent - base) / 1000
            everything.append(late)
            if post_id in touched:
                excluded[touched[post_id]] += 1
            elif attempts != 1 or failed:
                excluded["hit by a fault"] += 1
            elif due > max(base, created):
                excluded["held by a 429"] += 1
            elif str(did) in stranded:
                excluded["held by a killed daemon"] += 1
            else:
                on_time[(base >= outage[0]) + (base >= outage[1])].append(late)
        return on_time, everything, excluded


# =========================================================================== entry points


def run_chaos(
    params: Params, workdir: Path | None = None, out: TextIO = sys.stdout, keep: bool = False
) -> Report:
    """One run; its working directory (database, logs, peers' data) is removed after a pass
    unless `keep`, and kept after a failure so the logs can be read."""
    work = workdir or Path(tempfile.mkdtemp(prefix="plurcast-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    report = Harness(params, work, out).run()
    if report.verdict.ok and not keep and workdir is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return report


def print_report(report: Report, out: TextIO = sys.stdout) -> None:
    p = report.params
    print(
        f"\nChaos run: {p.posts:,} posts over {p.seconds:g} s, {p.daemons} plur-send, "
        f"seed {p.seed}; took {report.seconds:.0f} s\n",
        file=out,
    )
    print(report.table(), file=out)
    for name, items in report.verdict.problems().items():
        print(f"\n{name} ({len(items)}), e.g.:", file=out)
        for line in items[:5]:
            print(f"  {line}", file=out)
    if not report.verdict.ok or report.workdir.exists():
        print(f"\nlogs, database, chaos-run.json and peers' data: {report.workdir}", file=out)
    small = replace(Params.small(), seed=p.seed)
    full = replace(Params(), seed=p.seed)
    if p in (small, full):
        how = ("--small " if p == small else "") + f"--seed {p.seed}"
    else:
        how = (
            f"--posts {p.posts} --seconds {p.seconds:g} --daemons {p.daemons} "
            f"--relay-outage {p.relay_outage:g} --plur-posts {p.plur_posts} --seed {p.seed}"
            + ("" if p.hostile_cancels else " --no-hostile-cancels")
            + ("" if p.kill_every[1] else " --no-kills")
            + ("" if p.cli_every[1] else " --no-cli")
            + ("" if p.faults else " --no-faults")
            + ("" if p.bluesky else " --no-bluesky")
        )
    print(f"\nreproduce: python bench/chaos.py {how}", file=out)


class _Stop(BaseException):
    """SIGTERM/SIGINT: unwind through every `finally`, so the peers and daemons are stopped."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/chaos.py",
        description="Kills, outages, faults and user edits at once; then count on the servers. "
        "Without options: the full run (2,000 posts, 60 s, 3 daemons, 10-s relay outage).",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="the run inside make test: 200 posts, 20 s, 2 daemons, 4-s outage, no hostile "
        "cancels (other options still apply on top)",
    )
    parser.add_argument("--posts", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--daemons", type=int)
    parser.add_argument("--relay-outage", type=float, metavar="SECONDS")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--plur-posts", type=int, help="posts written through plur-post")
    parser.add_argument("--drain-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--no-kills", action="store_true", help="no kill -9")
    parser.add_argument(
        "--no-hostile-cancels",
        action="store_true",
        help="cancel only posts nothing of which is prepared or due within 3 s",
    )
    parser.add_argument("--no-cli", action="store_true", help="no concurrent plur-queue runs")
    parser.add_argument("--no-faults", action="store_true", help="no Mastodon faults")
    parser.add_argument("--no-bluesky", action="store_true")
    parser.add_argument("--workdir", type=Path, help="default: a temp dir, removed after a pass")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    base = Params.small() if args.small else Params()
    numbers = ("posts", "seconds", "daemons", "relay_outage", "seed", "plur_posts", "drain_timeout")
    changes: dict[str, Any] = {
        name: value for name in numbers if (value := getattr(args, name)) is not None
    }
    if args.no_kills:
        changes["kill_every"] = (0.0, 0.0)
    if args.no_cli:
        changes["cli_every"] = (0.0, 0.0)
    if args.no_faults:
        changes["faults"] = False
    if args.no_hostile_cancels:
        changes["hostile_cancels"] = False
    if args.no_bluesky:
        changes["bluesky"] = False
    params = replace(base, **changes)
    if params.posts < params.plur_posts + 1 or params.seconds < 5 or params.daemons < 1:
        parser.error("need --posts > --plur-posts, --seconds >= 5 and --daemons >= 1")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        report = run_chaos(params, args.workdir, keep=args.keep)
    except _Stop:
        print("stopped", file=sys.stderr)
        return 2
    except (HarnessError, RuntimeError, OSError) as exc:
        import traceback

        traceback.print_exc()
        print(f"chaos: the harness could not run: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    return 0 if report.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
