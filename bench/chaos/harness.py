"""One chaos run: the timeline of posts, kills, faults and user commands, then the count."""

from __future__ import annotations

import heapq
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TextIO

from bench.chaos.checker import Cancel, Expected, Occurrences, Row, Thread, Verdict, check
from bench.chaos.context import CLI_TIMEOUT, Context, HarnessError, Params, iso
from bench.chaos.daemons import Daemons
from bench.chaos.faults import MastodonFaults, RelayOutage
from bench.chaos.report import Report, lateness
from bench.chaos.servers import Servers
from bench.chaos.users import KEPT_PAST_THE_END, PLANNED, Users
from bench.chaos.workload import Workload
from plurcast.store.base import Database
from plurcast.store.connection import transaction

THREAD_KILLS = 2  # kill -9s aimed between a thread's parts
# What the harness makes happen (a thread part sent into the outage, a daemon killed holding
# a later part) it waits for, however long a loaded machine takes — up to this hang guard,
# which fails the run (HarnessError) rather than letting it go on without the chaos.
HANG_GUARD = 120.0


def media_left(conn: Database) -> list[str]:
    """The sha256 of every image still in the queue's media store: the rows of `media` on
    PostgreSQL (where the images live in the database), else the files beside SQLite's."""
    from plurcast.media import store as media_store

    store = media_store.for_database(conn)
    if isinstance(store, media_store.FileStore):
        folder = store.directory
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    return sorted(str(row[0]) for row in conn.execute("SELECT sha256 FROM media"))


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Harness:
    """One chaos run in `work`; `run()` returns the report, and always stops what it started.

    Single-threaded on purpose: peers are started with PR_SET_PDEATHSIG tied to the starting
    thread (so nothing outlives a killed harness), and one loop of timed actions keeps the
    order of events easy to reason about.
    """

    def __init__(self, params: Params, work: Path, out: TextIO = sys.stdout) -> None:
        self.ctx = Context(params, work, out)
        self.servers = Servers(self.ctx)
        self.daemons = Daemons(self.ctx)
        self.faults = MastodonFaults(self.ctx, self.servers)
        self.outage = RelayOutage(self.ctx, self.servers)
        self.workload: Workload | None = None
        self.users: Users | None = None
        self.thread_kills = 0
        self.outage_thread_ids: list[str] = []  # the thread whose middle meets the outage
        self.outage_due_ms = 0
        self.kill_thread_ids: list[str] = []  # the thread whose part 2 is held and killed
        self.kill_due_ms = 0
        self.cpu_before = _cpu_self()  # in make test, the process has run other tests

    def run(self) -> Report:
        try:
            self.servers.start()
            self.servers.write_config()
            self.workload = Workload(self.ctx, self.servers)
            self.users = Users(self.ctx, self.workload)
            return self._run(self.workload, self.users)
        finally:
            self.shutdown()

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> bool:
        """Whether `check` held within `timeout`; the users and mastodon_mock are watched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            if self.users is not None:
                self.users.poll()
            self.servers.watch_mastodon()
            time.sleep(0.05)
        self.ctx.say(f"timed out after {timeout:g} s waiting for {what}")
        return False

    def _run(self, workload: Workload, users: Users) -> Report:
        ctx, p = self.ctx, self.ctx.p
        self.daemons.start_all()
        if not self.wait_until(
            lambda: ctx.scalar("SELECT count(*) FROM heartbeats") >= p.daemons, 30, "daemons"
        ):
            raise HarnessError("the daemons did not start; see " + str(ctx.work / "logs"))
        wanted = workload.warm_up()
        sent = "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        self.wait_until(lambda: ctx.scalar(sent) >= wanted, 60, "the warm-up posts")
        t0 = math.ceil(time.time()) + 1
        end = t0 + p.seconds
        workload.create_schedules(t0)
        if p.threads and p.kill_every[1] > 0:
            self.kill_thread(workload, end)  # its first part goes out while the daemons idle
        ctx.say(f"chaos for {p.seconds:g} s: {p.posts:,} posts, {p.daemons} daemons")
        actions: list[tuple[float, int, Callable[[], object]]] = []
        seq = iter(range(10**9))

        def at(when: float, action: Callable[[], object]) -> None:
            heapq.heappush(actions, (when, next(seq), action))

        queued = p.posts - p.plur_posts  # written through the queue code; the rest plur-post
        kept = len(PLANNED) if p.cli_every[1] > 0 else 0
        if kept:
            users.keep_posts(queued - kept, end + KEPT_PAST_THE_END)
        timed = queued - kept
        span = max(1, int(p.seconds) - 2)
        for i in range(timed):
            due = t0 + 2 + (span * i) // timed
            if ctx.rng.random() < 0.1:
                at(due, partial(workload.write, i, due, True))
            else:
                write_at = max(time.time(), due - ctx.rng.uniform(1.5, 6.0))
                at(write_at, partial(workload.write, i, due, False))
        for k in range(p.plur_posts):
            at(t0 + p.seconds * (k + 0.5) / p.plur_posts, partial(users.plur_post, queued + k))
        for k in range(p.threads):
            due = t0 + 2 + (span * k) // max(1, p.threads)
            parts = ctx.rng.randint(3, 6)
            write_at = max(time.time(), due - ctx.rng.uniform(1.5, 6.0))
            at(write_at, partial(workload.write_thread, k, parts, due))
        outage_at = t0 + p.seconds * 0.35
        if p.threads and p.relay_outage > 0:
            at(t0 + 1, partial(self.outage_thread, workload, t0, end))

        def inject(kind: str, count: int) -> None:
            if not self.faults.inject(kind, count) and time.time() + 1 < end:
                at(time.time() + 1, partial(inject, kind, count))

        for fraction, kind, count in self.faults.plan() if p.faults else []:
            at(t0 + p.seconds * fraction, partial(inject, kind, count))

        def guarded(what: str, since: float) -> None:
            if time.time() - since > HANG_GUARD:
                raise HarnessError(f"gave up after {HANG_GUARD:g} s waiting for {what}")

        def relay_down(since: float) -> None:
            # The outage thread's first part must be out on Nostr first, so that its middle
            # parts meet the outage — on a loaded machine the daemons may be seconds behind.
            if self.outage_thread_ids and not self.part_sent(self.outage_thread_ids[0], "nostr"):
                guarded("the outage thread's first part on Nostr", since)
                at(time.time() + 0.05, partial(relay_down, since))
                return
            self.outage.down()  # the outage lasts from the relay's stop, however long it took
            self._release(self.outage_thread_ids[1:], self.outage_due_ms)
            at(time.time() + p.relay_outage, partial(relay_up, time.time()))

        def relay_up(since: float) -> None:
            # Not before the outage thread's second part was tried on the relay that is down
            # (it was held back until the relay went down: any attempt of it met the outage).
            if len(self.outage_thread_ids) > 1 and not self.part_tried(
                self.outage_thread_ids[1], "nostr"
            ):
                guarded("the outage thread's middle part to meet the outage", since)
                at(time.time() + 0.05, partial(relay_up, since))
                return
            self.outage.up()

        if p.relay_outage > 0:
            at(outage_at, partial(relay_down, outage_at))

        def kill_held_part(since: float) -> None:
            """The kill thread's first part is out: hold every Mastodon status on the server,
            let its later parts go, and kill -9 the daemon that takes one — while it provably
            holds it (the send cannot end while the hold is in, but by the client's timeout,
            and then the part is sent again into the same hold)."""
            ids = self.kill_thread_ids
            guarded("a daemon to hold the kill thread's part 2", since)
            if not self.faults.holding:
                if self.part_sent(ids[0], "mastodon") and self.faults.hold():
                    self._release(ids[1:], self.kill_due_ms)  # due first: taken at once
                    ctx.say("mastodon holds every status; the kill thread's part 2 is due")
            elif self.kill_holding(ids[1:]):
                self.faults.unhold()
                ctx.say("kill -9 of the daemon holding the kill thread's part 2; hold out")
                return
            at(time.time() + 0.05, partial(kill_held_part, since))

        if p.threads and p.kill_every[1] > 0:
            at(t0, partial(kill_held_part, t0))

        def kill_between_parts() -> None:
            """Besides the held one: kill -9 a daemon found sending another thread's later
            part, when the polling catches one before the end."""
            if self.kill_mid_thread():
                self.thread_kills += 1
            if self.thread_kills < THREAD_KILLS and time.time() + 0.05 < end:
                at(time.time() + 0.05, kill_between_parts)

        if p.threads and p.kill_every[1] > 0:
            at(t0 + 1, kill_between_parts)

        def kill() -> None:
            victim = self.daemons.kill_one()
            if victim and victim.held_posts and p.hostile_cancels and ctx.rng.random() < 0.5:
                users.cancel_hostile(ctx.rng.choice(victim.held_posts))
            nxt = time.time() + ctx.rng.uniform(*p.kill_every)
            if nxt < end:
                at(nxt, kill)

        def op() -> None:
            users.random_op()
            nxt = time.time() + ctx.rng.uniform(*p.cli_every)
            if nxt < end:
                at(nxt, op)

        if p.kill_every[1] > 0:
            at(t0 + ctx.rng.uniform(*p.kill_every), kill)
        if p.cli_every[1] > 0:
            at(t0 + 1, op)
            for fraction, kind, post_id in users.planned():
                at(t0 + p.seconds * fraction, partial(users.run_planned, kind, post_id))
        last_fault_poll = 0.0
        while actions:
            now = time.time()
            while actions and actions[0][0] <= now:
                heapq.heappop(actions)[2]()
            users.poll()
            self.daemons.watch()
            self.servers.watch_mastodon()
            if now - last_fault_poll > 0.25:
                self.faults.poll()
                last_fault_poll = now
            time.sleep(0.005)
        ctx.say(f"chaos over: {len(self.daemons.kills)} kills, {len(users.ops)} CLI runs")
        self.finish(users)
        return self.report(workload, users)

    def outage_thread(self, workload: Workload, t0: float, end: float) -> None:
        """A thread due near the start whose parts after the first are held back until the
        relay is down (`_release`): its middle parts meet the outage on Nostr,
        every time, however far behind a loaded machine keeps the daemons."""
        thread = workload.write_thread(
            len(workload.threads) + 900, 4, t0 + 2, (workload.platforms, "default"), "outage"
        )
        self.outage_thread_ids = thread.post_ids
        self.outage_due_ms = int((t0 + 2) * 1000)
        self._move(thread.post_ids[1], end + 600)  # the later parts move with it

    def kill_thread(self, workload: Workload, end: float) -> None:
        """A Mastodon thread whose parts after the first are held back until the harness
        holds Mastodon's statuses (`kill_held_part`): a daemon is killed while it holds one."""
        due = time.time()
        thread = workload.write_thread(950, 3, due, (("mastodon",), "default"), "kill")
        self.kill_thread_ids, self.kill_due_ms = thread.post_ids, int(due * 1000)
        self._move(thread.post_ids[1], end + 600)  # the later parts move with it

    def _release(self, post_ids: list[str], due_ms: int) -> None:
        """The held-back later parts of a thread are due again at `due_ms` — for the outage
        thread its first time, early, so that even daemons far behind take them before what
        came due later. (No command moves a post into the past, so the harness puts back its
        own move.)"""
        if post_ids:
            marks = ",".join("?" * len(post_ids))
            with transaction(self.ctx.db):
                self.ctx.db.execute(
                    f"UPDATE deliveries SET due_at_ms = ? WHERE state = 'pending' "
                    f"AND post_id IN ({marks})",
                    [due_ms, *post_ids],
                )

    def part_sent(self, post_id: str, platform: str) -> bool:
        sql = "SELECT count(*) FROM deliveries WHERE post_id = ? AND platform = ? AND state = ?"
        return self.ctx.scalar(sql, post_id, platform, "sent") > 0

    def part_tried(self, post_id: str, platform: str) -> bool:
        """Whether an attempt of the part on `platform` has ended (it is in `attempts`)."""
        return (
            self.ctx.scalar(
                "SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
                "WHERE d.post_id = ? AND d.platform = ?",
                post_id,
                platform,
            )
            > 0
        )

    def kill_holding(self, post_ids: list[str]) -> bool:
        """kill -9 the daemon holding one of these posts' deliveries; whether it was done."""
        marks = ",".join("?" * len(post_ids))
        found = self.ctx.db.execute(
            f"SELECT id, lease_owner FROM deliveries WHERE state = 'sending' "
            f"AND lease_owner IS NOT NULL AND post_id IN ({marks}) LIMIT 1",
            post_ids,
        ).fetchone()
        if found is None:
            return False
        kill = self.daemons.kill_holder(found[1])
        if kill is None or str(found[0]) not in kill.held:
            return False
        self.thread_kills += 1
        return True

    def _move(self, post_id: str, when: float) -> None:
        from datetime import UTC, datetime

        from plurcast import changes, queue

        ctx = self.ctx
        post = queue.get(ctx.db, post_id)
        changes.reschedule(
            ctx.db, ctx.cfg, post, iso(when), tz=ctx.cfg.timezone, now=datetime.now(UTC)
        )

    def kill_mid_thread(self) -> bool:
        """kill -9 a daemon that holds a thread's part 2 or later; whether one was found."""
        # Not the outage thread: its middle parts are to fail on the relay, not with a daemon;
        # not the kill thread: `kill_held_part` kills its holder while the hold is in.
        found = self.ctx.db.execute(
            "SELECT d.lease_owner FROM deliveries d JOIN posts p ON p.id = d.post_id "
            "WHERE d.state = 'sending' AND p.thread_part >= 2 AND d.lease_owner IS NOT NULL "
            "AND coalesce(p.thread_id, '') NOT IN (?, ?) LIMIT 1",
            (
                self.outage_thread_ids[0] if self.outage_thread_ids else "",
                self.kill_thread_ids[0] if self.kill_thread_ids else "",
            ),
        ).fetchone()
        return found is not None and self.daemons.kill_holder(found[0]) is not None

    def finish(self, users: Users) -> None:
        """Stop the chaos cleanly, drain with one fresh daemon, wait out held requests."""
        self.wait_until(lambda: not users.running, CLI_TIMEOUT + 5, "CLI runs to end")
        self.faults.clear()
        self.daemons.stop_all(self.wait_until)
        self.daemons.drain(self.wait_until)
        until = self.faults.held_until()
        if until is not None and until > time.time():
            self.ctx.say(f"waiting {until - time.time():.1f} s for held Mastodon requests")
            time.sleep(max(0.0, until - time.time()))

    def shutdown(self) -> None:
        """Whatever happened: end every process we started, by its own handle."""
        if self.users is not None:
            self.users.stop()
        self.daemons.stop()
        self.servers.stop()
        if self.ctx.conn is not None:
            self.ctx.conn.close()
            self.ctx.conn = None
        self.servers.stop_database()

    # ----------------------------------------------------------------- the count

    def report(self, workload: Workload, users: Users) -> Report:
        ctx = self.ctx
        conn = ctx.db
        published = self.servers.observe()
        rows = [
            Row(*r)
            for r in conn.execute(
                "SELECT d.post_id, d.platform, d.account, p.content, d.state, d.remote_id, "
                "d.sent_at_ms FROM deliveries d JOIN posts p ON p.id = d.post_id"
            )
        ]
        expected: list[Expected] = []
        for info in workload.posts:
            if not info.post_id:  # written by plur-post: its id is in its output, or the db
                found = conn.execute(
                    "SELECT id FROM posts WHERE content = ?", (info.text,)
                ).fetchone()
                info.post_id = found[0] if found else ""
                op = next(o for o in users.ops if o.text == info.text)
                if not info.post_id and op.code != 0:
                    continue  # refused before anything was written
            expected += [
                Expected(info.post_id, p, a, info.text, info.alts) for p, a in info.targets
            ]
        occurrences = []
        for s in workload.schedules:
            fates = conn.execute(
                "SELECT occurrence_at_ms, fate, post_id FROM occurrences WHERE schedule_id = ?",
                (s.schedule_id,),
            ).fetchall()
            posted = {at: post_id for at, fate, post_id in fates if fate == "posted"}
            skipped = tuple(at for at, fate, _ in fates if fate == "skipped")
            occurrences.append(Occurrences(s.schedule_id, s.expected_ms, tuple(posted), skipped))
            for at in s.expected_ms:
                expected += [Expected(posted.get(at, ""), p, a, s.text) for p, a in s.targets]
        cancels: dict[str, Cancel] = {}
        for op in users.ops:
            if op.kind == "cancel" and op.code == 0 and op.post_id not in cancels:
                cancels[op.post_id] = Cancel(op.post_id, op.started_ms, op.ended_ms)
        threads = [Thread(tuple(t.post_ids), t.targets) for t in workload.threads]
        # Every post is sent or cancelled: no image is needed any more.
        verdict = check(expected, cancels, published, rows, occurrences, threads, media_left(conn))
        self.dump(verdict, users)
        kills = self.daemons.kills
        (late, late_outage, late_after), late_all, excluded = lateness(
            conn, users.ops, workload.posts, kills, self.outage.ms()
        )
        self.servers.book_cpu()
        cpu = dict(ctx.procs.cpu)
        cpu["this harness"] = _cpu_self() - self.cpu_before
        span = time.monotonic() - ctx.started
        ops: Counter[tuple[str, bool]] = Counter()
        planned: Counter[tuple[str, bool]] = Counter()
        for op in users.ops:
            ops[(op.kind.removesuffix("-now"), op.code == 0)] += 1
            if op.planned:
                planned[(op.kind, op.code == 0)] += 1
        return Report(
            params=ctx.p,
            verdict=verdict,
            bluesky=self.servers.bluesky_note,
            posts=len(workload.posts),
            occurrences=sum(len(s.expected_ms) for s in workload.schedules),
            deliveries=Counter((e.platform, e.account) for e in expected),
            kills=len(kills),
            kills_in_flight=sum(1 for k in kills if k.held),
            stranded=sum(len(k.held) for k in kills),
            faults=self.faults.hits(),
            relay_outage_s=self.outage.seconds,
            ops=ops,
            hostile_cancels=sum(1 for o in users.ops if o.hostile),
            daemon_stops=self.daemons.stops,
            lateness=late,
            lateness_outage=late_outage,
            lateness_after=late_after,
            lateness_all=late_all,
            excluded=excluded,
            seconds=span,
            workdir=ctx.work,
            warm_up=sum(1 for info in workload.posts if info.via == "warm-up"),
            mastodon_restarts=self.servers.mastodon_restarts,
            planned_ops=planned,
            cpu=cpu,
            cpu_available=span * (os.cpu_count() or 1),
            threads=len(workload.threads),
            thread_parts=sum(len(t.post_ids) for t in workload.threads),
            thread_kills=self.thread_kills,
            later_parts_failed=self.later_parts_failed(),
            images=sum(len(info.alts) * len(info.targets) for info in workload.posts),
            image_posts=sum(1 for info in workload.posts if info.alts),
        )

    def later_parts_failed(self) -> int:
        """Deliveries of a thread's part 2 or later that a fault or the outage hit: an attempt
        that failed, or one started while the relay was down (G6 had to hold the rest)."""
        down, up = self.outage.ms()
        return self.ctx.scalar(
            "SELECT count(DISTINCT a.delivery_id) FROM attempts a "
            "JOIN deliveries d ON d.id = a.delivery_id JOIN posts p ON p.id = d.post_id "
            "WHERE p.thread_part >= 2 AND (a.outcome != 'sent' OR (d.platform = 'nostr' "
            "AND a.started_at_ms BETWEEN ? AND ?))",
            down,
            up,
        )

    def dump(self, verdict: Verdict, users: Users) -> None:
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
                    "planned": o.planned,
                    "output": o.out[-300:],
                }
                for o in users.ops
            ],
            "kills": [{"at_ms": k.at_ms, "pid": k.pid, "held": k.held} for k in self.daemons.kills],
            "faults": [vars(f) for f in self.faults.faults],
            "relay_outage": self.outage.span,
            "daemon_stops": self.daemons.stops,
        }
        (self.ctx.work / "chaos-run.json").write_text(json.dumps(record, indent=1, default=str))


def run_chaos(
    params: Params, workdir: Path | None = None, out: TextIO = sys.stdout, keep: bool = False
) -> Report:
    """One run; its working directory (database, logs, peers' data) is removed after a pass
    unless `keep`, and kept after a failure so the logs can be read."""
    work = workdir or Path(tempfile.mkdtemp(prefix="plurcast-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    report = Harness(params, work, out).run()
    if report.verdict.ok and not keep and workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return report
