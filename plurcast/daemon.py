"""plur-send's loop: deliver what is due, on time, until told to stop.

It sleeps until the earliest of: the next due delivery, the next lease expiry,
the next heartbeat, the poll interval — and notices when another process changed
the database (SQLite: `PRAGMA data_version`, looked at every quarter second;
PostgreSQL: a NOTIFY, at once), so a post queued for two seconds from now is
noticed at once and sent on its second (G4). On PostgreSQL a connection that breaks
is opened again: the loop pauses and goes on, the deliveries in flight keep their
leases, and their outcomes are written once the server is back. Each platform
has its own `max_concurrency` slots: a relay, instance or PDS that is down or hangs keeps
only its own platform's posts waiting.

Signals only set flags. The first SIGTERM/SIGINT stops claiming, lets in-flight
deliveries finish within `shutdown_timeout`, gives back unfinished leases (their
payloads stay, so a re-send is the same post) and exits 0; a second one exits at
once. SIGHUP re-reads the config.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from plurcast import __version__, health, process
from plurcast.config import Config
from plurcast.engine import Engine
from plurcast.pool import Lanes, PublisherPool
from plurcast.record import Delivered
from plurcast.store import daemons
from plurcast.store import schedules as schedule_store
from plurcast.store.base import Database, DatabaseUnavailable, Watcher
from plurcast.store.claiming import Claimed
from plurcast.store.connection import transaction
from plurcast.value import Value

if TYPE_CHECKING:
    # Imported where the loop runs: a --once run that finds nothing due ends without it
    # (`finish_if_idle`), and asyncio costs more to import than the rest of such a run.
    import asyncio

log = logging.getLogger("plurcast.daemon")

WATCH_SECONDS = 0.25  # how often other processes' changes are looked for
FORGET_HEARTBEAT_MS = 86_400_000  # a daemon silent for a day is no longer listed
OUTAGE_PAUSE_SECONDS = 1.0  # the first pause when the database is unreachable; doubles
MAX_OUTAGE_PAUSE_SECONDS = 30.0


class Notifier:
    """What a supervisor hears from the daemon; the default tells no one.

    plur-send passes one that speaks sd_notify under systemd (issue #6): READY once
    the database is open and the first pass ran, STATUS as the queue changes,
    WATCHDOG from the live loop only, STOPPING when a stop begins.
    """

    @property
    def active(self) -> bool:
        """Whether anyone hears it: the daemon works out a status line only for someone."""
        return False

    def ready(self) -> None: ...

    def status(self, text: str) -> None: ...

    def watchdog(self) -> None: ...

    def stopping(self) -> None: ...


class Options(Value):
    once: bool = False
    poll_interval: float | None = None  # None: from config
    max_concurrency: int | None = None
    no_retry: bool = False
    startup_delay: float | None = None  # None: [scheduling] startup_delay (not with --once)


class RunStats:
    """What this run delivered, counted as it goes. (Neither record here is a dataclass:
    making one costs a few million instructions of every plur-send's start-up.)"""

    __slots__ = ("dead", "retried", "sent")

    def __init__(self) -> None:
        self.sent = self.retried = self.dead = 0


class Daemon:
    def __init__(
        self,
        load_config: Callable[[], Config],
        connect: Callable[[Config], Database],
        options: Options,
        *,
        clock: Callable[[], float] | None = None,
        pool_factory: Callable[[Config], PublisherPool] = PublisherPool,
        notifier: Notifier | None = None,
    ) -> None:
        self.load_config = load_config
        self.options = options
        self.clock = clock
        self.cfg = load_config()
        self.conn = connect(self.cfg)
        self.pool_factory = pool_factory
        self.notifier = notifier or Notifier()
        self.engine = Engine(
            self.cfg, self.conn, pool_factory(self.cfg), clock=clock, no_retry=options.no_retry
        )
        self.owner = self.engine.owner
        self.started_ms = self.engine.now_ms()
        self.stats = RunStats()
        self.inflight: set[asyncio.Task[Delivered]] = set()
        self.lanes = Lanes(self.max_concurrency)
        self._stopping = False
        self._reload = False
        self._wake: asyncio.Event | None = None
        self._next_beat = 0.0
        self.watcher: Watcher | None = None
        self._outages = 0
        self._started = False
        self._announced = False

    # --- what signal handlers call (flags only) ------------------------------------------

    def request_stop(self, signum: int) -> None:
        import signal  # for the name only: the loop's asyncio has it, an idle --once does not

        if self._stopping:
            log.warning("second %s: exiting at once", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: finishing in-flight deliveries, then stopping", signal.Signals(signum).name)
        self._stopping = True
        self.notifier.stopping()
        self._poke()

    def request_reload(self) -> None:
        self._reload = True
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    @property
    def poll_interval(self) -> float:
        return self.options.poll_interval or self.cfg.scheduling.poll_interval

    @property
    def startup_delay(self) -> float:
        """--startup-delay, else the config's (which a --once run, e.g. from cron, skips)."""
        if self.options.startup_delay is not None:
            return self.options.startup_delay
        return 0.0 if self.options.once else self.cfg.scheduling.startup_delay

    @property
    def max_concurrency(self) -> int:
        return self.options.max_concurrency or self.cfg.scheduling.max_concurrency

    def finish_if_idle(self) -> int | None:
        """A --once run that finds nothing due, from start to exit code: no event loop
        (asyncio costs more to import than the rest of the run) and no write (plur-send
        --once from cron mostly finds nothing, and a commit every minute costs fsyncs).
        None when there is something to do, a startup delay to wait or the database to
        wait for: `run` then goes on from here.

        It writes only what there is to write: the leases of dead processes, recovered
        (they are then due, for `run`), a due occurrence (likewise), day-old heartbeats.
        It beats no heartbeat: one says that a process holding leases still runs (to
        `plur-send status` and the other daemons), and this one holds none and would
        forget it before it exits, as `run` does when it stops."""
        if not self.options.once or self.startup_delay:
            return None
        self._announce()
        if not self._stopping:
            try:
                self.engine.recover_dead_leases()
                self._materialize()
                # Whatever claim_due could take is due by next_wake_ms too; a due delivery
                # that a rate limit then defers is left to `run`, which claims and looks again.
                if self._due_now():
                    return None
                self._forget_old_heartbeats()
            except DatabaseUnavailable:
                return None  # `run` pauses and tries again
            self.notifier.ready()
            self._tell_status()
        return self._stopped()

    def _start(self) -> None:
        """The first heartbeat (it also recovers the leases of dead processes), once."""
        if not self._started:
            self._started = True
            self._beat()
        self._announce()

    def _announce(self) -> None:
        if self._announced:
            return
        self._announced = True
        configured = [p for p in self.engine.pool.platforms if p in self.cfg.platforms]
        log.info(
            "plur-send %s started (pid %d, database %s, platforms %s)",
            __version__,
            os.getpid(),
            self.conn.describe(),
            ", ".join(configured) or "none configured",
        )

    def _give_back(self) -> None:
        try:
            released = self.engine.release()
            if released:
                log.info("gave back %d unfinished deliveries", released)
            with transaction(self.conn):
                daemons.forget_heartbeat(self.conn, self.owner)
        except DatabaseUnavailable as exc:
            log.error("could not give back leases (%s); they run out on their own", exc)

    def _stopped(self) -> int:
        log.info(
            "plur-send stopped: %d sent, %d to retry, %d given up",
            self.stats.sent,
            self.stats.retried,
            self.stats.dead,
        )
        return 1 if self.options.once and self.stats.dead else 0

    async def run(self) -> int:
        """Deliver until stopped (or, with --once, until nothing is due); the exit code."""
        import asyncio

        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.watcher = self.conn.watcher(lambda: loop.call_soon_threadsafe(self._poke))
        self._start()
        if self.startup_delay:
            log.info("waiting %g s before delivering (startup delay)", self.startup_delay)
            await self._sleep(self.startup_delay)
        ready = False
        try:
            while not self._stopping:
                try:
                    if self._reload:
                        await self._reconfigure()
                    self._claim_and_start()
                    if not ready:
                        ready = True
                        self.notifier.ready()
                        self._tell_status()
                    if self.options.once and not self.inflight and not self._due_now():
                        break
                    await self._wait()
                except DatabaseUnavailable as exc:
                    await self._outage(exc)
            await self._finish_inflight()
        finally:
            self.watcher.close()
            # Left only on an error: nothing may run on once its lease is given back below
            # (it would end in a false "taken over" line, its rate slot used for nothing).
            for task in self.inflight:
                task.cancel()
            if self.inflight:
                await asyncio.wait(self.inflight)
            self._give_back()
            await self.engine.pool.close()
        return self._stopped()

    def _claim_and_start(self) -> None:
        if not self._stopping:
            self._materialize()
        self.lanes.size = self.max_concurrency
        while not self._stopping:
            claims = self.engine.claim_due(
                self.lanes.size * len(self.engine.pool.platforms), self.lanes
            )
            if not claims:
                return
            for claim in claims:
                self._launch(claim)

    def _launch(self, claim: Claimed) -> None:
        """Put a claimed delivery on the wire in a task of its own, in a lane of its platform."""
        import asyncio

        self.lanes.take(claim.platform)
        task = asyncio.get_running_loop().create_task(self.engine.deliver(claim, self._refill))
        self.inflight.add(task)
        task.add_done_callback(functools.partial(self._done, claim.platform))

    def _refill(self) -> bool:
        """Whether a finishing delivery's record may claim the next one for its lane: not once
        a stop or a reload was asked for (those wait for the deliveries in flight)."""
        return not self._stopping and not self._reload

    def _materialize(self) -> None:
        """Recurring occurrences due now become posts. Most passes find none: the schedules
        module (time rules, validation, ids) is imported only when one is due."""
        now = self.engine.now_ms()
        if schedule_store.any_due(self.conn, now):
            from plurcast import schedules

            schedules.materialize(self.conn, now)

    def _done(self, platform: str, task: asyncio.Task[Delivered]) -> None:
        """A delivery ended. Its lane goes to the successor its record claimed, if any: in a
        burst the loop then has nothing to do, and is not woken for it."""
        self.inflight.discard(task)
        self.lanes.give(platform)
        if not task.cancelled() and task.exception() is None:
            result = task.result()
            if result.state == "sent":
                self.stats.sent += 1
            elif result.state == "retry":
                self.stats.retried += 1
            elif result.state == "dead":
                self.stats.dead += 1
            if result.successor is not None:
                self._launch(result.successor)
                # The burst goes on without the loop's passes: it is alive all the same.
                self.notifier.watchdog()
                return
        elif not task.cancelled():
            log.error("a delivery task failed: %r", task.exception())
        self._poke()

    def _next_wake_ms(self) -> int | None:
        """The earliest due delivery, lease expiry or recurring occurrence."""
        times = [
            t
            for t in (self.engine.next_wake_ms(self.lanes), schedule_store.next_run_ms(self.conn))
            if t
        ]
        return min(times) if times else None

    def _due_now(self) -> bool:
        wake = self._next_wake_ms()
        return wake is not None and wake <= self.engine.now_ms()

    async def _wait(self) -> None:
        """Sleep until something may be claimable, watching for other processes' changes."""
        import asyncio

        assert self._wake is not None
        assert self.watcher is not None
        # Cleared once, before the lanes are read for `wake`: a delivery finishing from
        # here on leaves the event set until the wait below sees it. Clearing it on each
        # pass lost the one that finished as a watch tick ended (both in one turn of the
        # event loop), and the daemon then slept until poll_interval.
        self._wake.clear()
        # The baseline comes first: a commit after it is seen below, one before it is in
        # next_wake_ms. The other order loses a post queued in between until poll_interval.
        baseline = self.watcher.mark()
        now = self.engine.now_ms()
        wake = self._next_wake_ms()
        deadline = now + int(self.poll_interval * 1000)
        # A platform with every slot busy is not in `wake`: only a finishing delivery of
        # its own (it sets _wake) can change things there.
        if wake is not None:
            deadline = min(deadline, max(wake, now))
        while not self._stopping and not self._reload:
            # Every pass, not only after a quiet tick: a finishing delivery whose lane found
            # no successor returns from here, and the loop is alive all the same (one that
            # hands its lane on pings from `_done`).
            self.notifier.watchdog()
            if time.monotonic() >= self._next_beat:
                self._beat()
                self._tell_status()
            remaining = (deadline - self.engine.now_ms()) / 1000
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(min(remaining, WATCH_SECONDS)):
                    await self._wake.wait()
                return  # a delivery finished (a slot is free) or a signal came
            except TimeoutError:
                pass
            if self.watcher.changed(baseline):
                return

    def _tell_status(self) -> None:
        """The status line, to a notifier that passes it on (counting a big queue's waiting
        deliveries reads its whole index: not for no one)."""
        if self.notifier.active:
            self.notifier.status(self._status_line())

    def _status_line(self) -> str:
        """One line for `systemctl status`: what waits, when the next is due, what failed."""
        waiting, next_due, dead = daemons.queue_summary(self.conn)
        parts = [f"{waiting} queued", f"{len(self.inflight)} sending"]
        if next_due is not None:
            wait = max(0, next_due - self.engine.now_ms()) // 1000
            parts.append(f"next in {wait} s")
        if dead:
            parts.append(f"{dead} failed")
        return ", ".join(parts)

    async def _outage(self, exc: DatabaseUnavailable) -> None:
        """The database went away: pause (a stop still stops), then try again. Deliveries in
        flight go on; their outcomes wait for the connection (see Engine.deliver)."""
        self._outages += 1
        pause = min(OUTAGE_PAUSE_SECONDS * 2 ** (self._outages - 1), MAX_OUTAGE_PAUSE_SECONDS)
        log.error("%s; trying again in %.0f s", exc, pause)
        await self._sleep(pause, beat=False)

    def _beat(self) -> None:
        now = self.engine.now_ms()
        with transaction(self.conn):
            daemons.beat(
                self.conn,
                self.owner,
                process.HOST,
                os.getpid(),
                self.started_ms,
                now,
                __version__,
            )
            daemons.forget_heartbeats_before(self.conn, now - FORGET_HEARTBEAT_MS)
        self._next_beat = time.monotonic() + health.HEARTBEAT_SECONDS
        self._outages = 0
        self.engine.recover_dead_leases()

    def _forget_old_heartbeats(self) -> None:
        """As each beat does, in a transaction of its own, and only when there are some."""
        before = self.engine.now_ms() - FORGET_HEARTBEAT_MS
        if daemons.has_heartbeats_before(self.conn, before):
            with transaction(self.conn):
                daemons.forget_heartbeats_before(self.conn, before)

    async def _sleep(self, seconds: float, *, beat: bool = True) -> None:
        import asyncio

        assert self._wake is not None
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            self._wake.clear()
            try:
                await asyncio.wait_for(
                    self._wake.wait(), min(health.HEARTBEAT_SECONDS, deadline - time.monotonic())
                )
            except TimeoutError:
                if beat:
                    self._beat()

    async def _finish_inflight(self) -> None:
        import asyncio

        if not self.inflight:
            return
        timeout = self.cfg.scheduling.shutdown_timeout
        log.info("waiting up to %g s for %d in-flight deliveries", timeout, len(self.inflight))
        _done, pending = await asyncio.wait(self.inflight, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _reconfigure(self) -> None:
        import asyncio

        self._reload = False
        try:
            cfg = self.load_config()
        except Exception as exc:
            log.error("SIGHUP: config not reloaded, keeping the old one: %s", exc)
            return
        if self.inflight:
            await asyncio.wait(self.inflight)
        await self.engine.pool.close()
        self.cfg = cfg
        self.engine.cfg = cfg
        self.engine.pool = self.pool_factory(cfg)
        log.info("SIGHUP: config reloaded from %s", cfg.path)
