"""The daemon's loop on a stepped clock: it wakes for a post's time — not before, not after.

The real Daemon, engine and Nostr adapter run in-process, publishing to nostr-sdk's
in-process relay, while time is moved by the test instead of the machine: G4's lateness is
measured on that clock and is zero, however busy the machine is — on SQLite, whose commits
the daemon sees through PRAGMA data_version, and on PostgreSQL, through NOTIFY. (The lateness
on the machine's own clock, and how it holds under load, is measured by `make bench`.)
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import queue
from plurcast.daemon import Daemon, Notifier, Options
from tests.helpers import PATIENCE, Clock, add_post, row
from tests.peers.nostr import InProcessRelay


class Watched(Notifier):
    """Counts the loop's passes: the daemon pings the watchdog on every one."""

    def __init__(self) -> None:
        self.ready_seen = False
        self.passes = 0

    def ready(self) -> None:
        self.ready_seen = True

    def watchdog(self) -> None:
        self.passes += 1


class PlanningDaemon(Daemon):
    """The real daemon, remembering each wake-up time it planned."""

    planned: list[int | None]

    def _next_wake_ms(self) -> int | None:
        wake = super()._next_wake_ms()
        self.planned = [*getattr(self, "planned", []), wake]
        return wake


async def until(check: Callable[[], bool], what: str) -> None:
    """Let the daemon's loop run until `check` holds; past PATIENCE, a hang."""
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}: a hang"
        await asyncio.sleep(0.01)


@pytest.mark.usefixtures("backend")
def test_a_post_written_while_the_daemon_sleeps_is_sent_on_its_second(
    write_config: Callable[[str], Path], nostr_key: Path, inprocess_relay: InProcessRelay
) -> None:
    """G4: asleep until a post due in an hour (it polls only hourly), the daemon notices a
    post written meanwhile for 2 s from now, plans to wake then, does nothing a second
    early, and sends it at exactly its time."""
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
        f'relays = ["{inprocess_relay.url}"]\ntimeout = 30\n'
        "[scheduling]\npoll_interval = 3600\n"
    )
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    clock = Clock(math.floor(time.time()))  # near the real time: relays check created_at
    start_ms = int(clock() * 1000)
    add_post(conn, cfg, "in an hour", clock() + 3600, now=clock())
    watched = Watched()

    async def scenario() -> str:
        daemon = PlanningDaemon(
            config_module.load,
            queue.open_db,
            Options(poll_interval=3600),
            clock=clock,
            notifier=watched,
        )
        running = asyncio.create_task(daemon.run())
        await until(lambda: watched.ready_seen, "the daemon's first pass")
        assert daemon.planned[-1] == start_ms + 3_600_000  # asleep for the hour
        post_id = add_post(conn, cfg, "on its second", clock() + 2, now=clock())
        await until(lambda: daemon.planned[-1] == start_ms + 2000, "the new wake-up time")
        clock.advance(1)
        passes = watched.passes
        await until(lambda: watched.passes >= passes + 2, "two looks at the clock")
        assert row(conn, post_id).state == "pending", "sent a second early"
        clock.advance(1)
        await until(lambda: row(conn, post_id).state == "sent", "the post sent")
        daemon.request_stop(signal.SIGTERM)
        assert await running == 0
        return post_id

    post_id = asyncio.run(scenario())
    sent_at, due_at = conn.execute(
        "SELECT sent_at_ms, due_at_ms FROM deliveries WHERE post_id = ?", (post_id,)
    ).fetchone()
    assert sent_at == due_at == start_ms + 2000  # lateness 0, on the daemon's own clock
    assert inprocess_relay.count_by_content("on its second") == 1
    assert inprocess_relay.count_by_content("in an hour") == 0


class PokedAtTheTick:
    """The daemon's watcher, with a delivery finishing just as the first watch tick ends:
    its done-callback (the daemon's poke) runs in the same turn of the event loop as the
    tick's timeout, before the daemon's next pass. Under load that turn comes now and then;
    here it comes on the first tick."""

    def __init__(self, daemon: Daemon) -> None:
        assert daemon.watcher is not None
        self.daemon, self.real = daemon, daemon.watcher
        self.ticks = 0

    def mark(self) -> object:
        return self.real.mark()

    def changed(self, token: object) -> bool:
        self.ticks += 1
        if self.ticks == 1:
            self.daemon._poke()  # what Daemon._done does for a finished delivery
        return self.real.changed(token)

    def close(self) -> None:
        self.real.close()


@pytest.mark.usefixtures("backend")
def test_a_delivery_finishing_as_a_watch_tick_ends_wakes_the_daemon(
    write_config: Callable[[str], Path], nostr_key: Path, inprocess_relay: InProcessRelay
) -> None:
    """G3/G4: a finished delivery frees its slot and the daemon looks again at once. A poke
    that lands as a watch tick ends is not lost: the daemon must not go on watching until
    poll_interval (here an hour) while a retry of that delivery comes due."""
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
        f'relays = ["{inprocess_relay.url}"]\ntimeout = 30\n'
        "[scheduling]\npoll_interval = 3600\n"
    )
    watched = Watched()

    async def scenario() -> None:
        daemon = PlanningDaemon(
            config_module.load, queue.open_db, Options(poll_interval=3600), notifier=watched
        )
        running = asyncio.create_task(daemon.run())
        await until(lambda: watched.ready_seen, "the daemon's first pass")
        watcher = PokedAtTheTick(daemon)
        daemon.watcher = watcher
        passes = len(daemon.planned)
        await until(
            lambda: len(daemon.planned) > passes or watcher.ticks > 1, "the poke or a next tick"
        )
        assert watcher.ticks == 1, "the poke was lost: the daemon went on watching"
        daemon.request_stop(signal.SIGTERM)
        assert await running == 0

    asyncio.run(scenario())
