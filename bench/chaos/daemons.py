"""The plur-send processes: started, killed -9 and restarted, stopped, and the last drain."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from bench.chaos.context import BIN, STOP_TIMEOUT, Context, now_ms

# wait_until(check, timeout, what) -> whether check held in time (the harness's, which keeps
# the users' commands and mastodon_mock's health watched while it waits).
Wait = Callable[[Callable[[], bool], float, str], bool]


@dataclass
class Kill:
    """A kill -9, and the deliveries (ids) the victim held: they wait for recovery."""

    at_ms: int
    pid: int
    held: list[str]
    held_posts: list[str] = field(default_factory=list)


class Daemons:
    """`ctx.p.daemons` slots, each a plur-send process logging to its own file."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.slots: list[subprocess.Popen[Any] | None] = []
        self.logs: list[IO[bytes]] = []
        self.kills: list[Kill] = []
        self.stops: list[int | None] = []  # exit codes after SIGTERM (None: had to be killed)

    def start_all(self) -> None:
        logs = self.ctx.work / "logs"
        logs.mkdir(exist_ok=True)
        self.logs = [(logs / f"plur-send-{i}.log").open("ab") for i in range(self.ctx.p.daemons)]
        self.slots = [None] * self.ctx.p.daemons
        for slot in range(self.ctx.p.daemons):
            self.start(slot)

    def start(self, slot: int) -> subprocess.Popen[Any]:
        proc = self.ctx.procs.start(
            "plur-send",
            [str(BIN / "plur-send")],
            env=self.ctx.env,
            stdin=subprocess.DEVNULL,
            stdout=self.logs[slot],
            stderr=subprocess.STDOUT,
        )
        self.slots[slot] = proc
        return proc

    def holds_leases(self, owner: str) -> bool:
        sql = "SELECT count(*) FROM deliveries WHERE state = 'sending' AND lease_owner = ?"
        return self.ctx.scalar(sql, owner) > 0

    def kill_one(self) -> Kill | None:
        """kill -9 a random live daemon, note what it held, restart it at once.

        A kill that tests G1 must find deliveries on the wire, and that is not left to chance:
        until one kill has, every kill goes to a daemon holding leases when one does; after
        that, half of them do.
        """
        rng = self.ctx.rng
        live = self._live()
        if not live:
            return None
        busy = [i for i, owner in live.items() if self.holds_leases(owner)]
        in_flight_yet = any(k.held for k in self.kills)
        chosen = busy if busy and (not in_flight_yet or rng.random() < 0.5) else sorted(live)
        slot = rng.choice(chosen)
        return self._kill(slot, live[slot])

    def kill_holder(self, owner: str) -> Kill | None:
        """kill -9 the live daemon whose lease owner id is `owner` (one holding a thread's
        later part, between its parts), and restart it; None when it is gone already."""
        for slot, found in self._live().items():
            if found == owner:
                return self._kill(slot, owner)
        return None

    def _live(self) -> dict[int, str]:
        """Slot → lease owner id of the daemons alive now."""
        from plurcast import process

        return {
            i: process.owner_id(d.pid)
            for i, d in enumerate(self.slots)
            if d is not None and self.ctx.procs.poll(d) is None
        }

    def _kill(self, slot: int, owner: str) -> Kill:
        proc = self.slots[slot]
        assert proc is not None
        self.ctx.procs.kill(proc)
        held = self.ctx.db.execute(
            "SELECT id, post_id FROM deliveries WHERE state = 'sending' AND lease_owner = ?",
            (owner,),
        ).fetchall()
        kill = Kill(now_ms(), proc.pid, [str(r[0]) for r in held], [str(r[1]) for r in held])
        self.kills.append(kill)
        self.start(slot)
        return kill

    def watch(self) -> None:
        """A daemon that exits on its own (not killed by us) is a finding: log it, restart."""
        for slot, proc in enumerate(self.slots):
            if proc is not None and self.ctx.procs.poll(proc) is not None:
                self.ctx.say(f"plur-send in slot {slot} exited on its own with {proc.returncode}")
                self.stops.append(proc.returncode)
                self.start(slot)

    def _started(self, pid: int) -> Callable[[], bool]:
        return lambda: self.ctx.scalar("SELECT count(*) FROM heartbeats WHERE pid = ?", pid) > 0

    def _terminate(self, proc: subprocess.Popen[Any]) -> int | None:
        """SIGTERM, then its exit code; None when it had to be killed."""
        proc.send_signal(signal.SIGTERM)
        try:
            return self.ctx.procs.wait(
                proc, self.ctx.cfg.scheduling.shutdown_timeout + STOP_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            self.ctx.procs.kill(proc)
            return None

    def stop_all(self, wait_until: Wait) -> None:
        """SIGTERM to each, once it is past its start-up."""
        for slot, proc in enumerate(self.slots):
            if proc is None:
                continue
            # One restarted by the last kill may still be in the interpreter's own startup,
            # where no Python code can hold a SIGTERM yet (plur-send holds it from its first
            # line on); it holds nothing, but a stop there would read as -15.
            wait_until(self._started(proc.pid), 30, f"plur-send in slot {slot} to start")
            self.stops.append(self._terminate(proc))
            self.slots[slot] = None
        self.ctx.say(f"daemons stopped: exit codes {self.stops[-len(self.slots) :]}")

    def drain(self, wait_until: Wait) -> None:
        """One fresh daemon sends what is left (or until the drain timeout), then stops."""
        drain = self.start(0)
        started = time.monotonic()
        wait_until(self._started(drain.pid), 30, "the draining daemon to start")
        drained = wait_until(
            lambda: (
                self.ctx.scalar(
                    "SELECT (SELECT count(*) FROM deliveries "
                    "        WHERE state IN ('pending', 'retry', 'sending')) "
                    "     + (SELECT count(*) FROM schedules WHERE state = 'active')"
                )
                == 0
            ),
            self.ctx.p.drain_timeout,
            "the drain",
        )
        code = self._terminate(drain)
        self.slots[0] = None
        self.stops.append(code)
        self.ctx.say(
            f"drain {'done' if drained else 'NOT done'} in {time.monotonic() - started:.1f} s"
            f" (exit {code})"
        )

    def stop(self) -> None:
        """Whatever happened: end every daemon still running, by its own handle."""
        for proc in self.slots:
            if proc is not None:
                self.ctx.procs.kill(proc)
        for log in self.logs:
            log.close()
