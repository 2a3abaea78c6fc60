"""What a run did, in figures: the one table (markdown, for the README as printed)."""

from __future__ import annotations

import sqlite3
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from bench.chaos.checker import Verdict, percentile
from bench.chaos.context import Params
from bench.chaos.daemons import Kill
from bench.chaos.users import CliOp
from bench.chaos.workload import PostInfo


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
    planned_ops: Counter[tuple[str, bool]] = field(default_factory=Counter)  # of `ops`
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_available: float = 0.0
    threads: int = 0
    thread_parts: int = 0
    thread_kills: int = 0  # kill -9 of a daemon holding a thread's part 2 or later
    later_parts_failed: int = 0  # deliveries of part 2+ with a failed attempt
    images: int = 0  # images attached to the posts (each one, on each delivery, checked)
    image_posts: int = 0

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

        def tally(ops: Counter[tuple[str, bool]], kinds: Sequence[str]) -> str:
            return ", ".join(
                f"{kind} {ops[(kind, True)]}/{ops[(kind, True)] + ops[(kind, False)]}"
                for kind in kinds
            )

        ops = tally(self.ops, ("cancel", "reschedule", "now", "plur-post"))
        planned = tally(self.planned_ops, ("cancel", "reschedule", "now"))
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
            (
                "threads (3–6 parts)",
                f"{self.threads} ({self.thread_parts} parts); {self.later_parts_failed} "
                f"later-part deliveries hit by a fault or the outage; {self.thread_kills} "
                "kill -9 between parts",
            ),
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
                f"{ops} (planned: {planned})"
                + (f"; {self.hostile_cancels} hostile cancels" if p.hostile_cancels else ""),
            ),
            ("**lost**", n(v.lost)),
            ("**duplicated**", n(v.duplicated)),
            ("**stuck** (sending or waiting after the drain)", n(v.stuck)),
            ("cancelled (exit 0), yet published", cancelled),
            ("gave up (dead)", n(v.gave_up)),
            ("database `sent` ≠ servers", n(v.disagree)),
            ("unexpected posts on a server", n(v.unexpected)),
            ("recurring occurrences not exactly once", n(v.occurrences)),
            (
                "thread parts out of order, standalone or not pointing at their parent",
                n(v.threads),
            ),
            (
                f"images ({self.images} on {self.image_posts} posts): not there exactly once "
                "with their alt text",
                n(v.attachments),
            ),
            ("image copies left in the media store after the drain", n(v.media_left)),
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


def lateness(
    conn: sqlite3.Connection,
    ops: Sequence[CliOp],
    posts: Sequence[PostInfo],
    kills: Sequence[Kill],
    outage: tuple[int, int],
) -> tuple[tuple[list[float], list[float], list[float]], list[float], Counter[str]]:
    """sent_at − the post's time, for deliveries nothing injected got in the way of.

    Left out, and counted by reason: posts a user command touched (rescheduled — their
    time moved on purpose —, sent with `now`, a cancel tried, or published by plur-post
    itself), deliveries a fault hit (more than one attempt, or an attempt that failed),
    deliveries moved by a platform's rate-limit hold (429), deliveries a daemon held when
    it was killed, a thread's parts after the first (each waits for the one before it, G6),
    posts the harness wrote late or kept for a planned command, and the warm-up. What
    remains is what G4 promises: on time when the platform answers promptly.

    It is split by the relay outage (`outage`, epoch ms), because a Nostr outage used to slow
    the *other* platforms too, when all platforms shared a daemon's `max_concurrency` slots:
    the split shows whether it still does. The last figure leaves nothing out.
    """
    touched: dict[str, str] = {}
    for op in ops:
        if op.kind == "reschedule" and op.code == 0:
            touched.setdefault(op.post_id, "rescheduled")
        elif op.kind == "now":
            touched.setdefault(op.post_id, "sent with now")
        elif op.kind == "cancel":
            touched.setdefault(op.post_id, "cancel tried")
    for info in posts:
        if info.via.startswith("plur-post"):
            touched.setdefault(info.post_id, "plur-post")
        elif info.via == "queue-late":
            touched.setdefault(info.post_id, "written late")
        elif info.via == "warm-up":
            touched.setdefault(info.post_id, "warm-up")
        elif info.via == "kept":
            touched.setdefault(info.post_id, "kept for a planned command")
    stranded = {d for k in kills for d in k.held}
    on_time: tuple[list[float], list[float], list[float]] = ([], [], [])
    everything: list[float] = []
    excluded: Counter[str] = Counter()
    rows = conn.execute(
        "SELECT d.id, d.post_id, d.sent_at_ms, d.due_at_ms, "
        "  coalesce(p.occurrence_at_ms, p.scheduled_at_ms), p.created_at_ms, "
        "  (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id), "
        "  (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id "
        "   AND a.outcome != 'sent'), coalesce(p.thread_part, 1) "
        "FROM deliveries d JOIN posts p ON p.id = d.post_id WHERE d.state = 'sent'"
    ).fetchall()
    for did, post_id, sent, due, base, created, attempts, failed, part in rows:
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
        elif part > 1:
            excluded["a thread's later part (it waits for the part before)"] += 1
        else:
            on_time[(base >= outage[0]) + (base >= outage[1])].append(late)
    return on_time, everything, excluded


def print_report(report: Report, out: TextIO = sys.stdout) -> None:
    p = report.params
    print(
        f"\nChaos run: {p.posts:,} posts over {p.seconds:g} s, {p.daemons} plur-send, "
        f"database {p.database}, seed {p.seed}; took {report.seconds:.0f} s\n",
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
            f"--relay-outage {p.relay_outage:g} --plur-posts {p.plur_posts} "
            f"--threads {p.threads} --seed {p.seed}"
            + ("" if p.hostile_cancels else " --no-hostile-cancels")
            + ("" if p.kill_every[1] else " --no-kills")
            + ("" if p.cli_every[1] else " --no-cli")
            + ("" if p.faults else " --no-faults")
            + ("" if p.bluesky else " --no-bluesky")
            + ("" if p.database == "sqlite" else f" --database {p.database}")
        )
    print(f"\nreproduce: python -m bench.chaos {how}", file=out)
