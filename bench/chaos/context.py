"""What every part of a chaos run shares: its shape, its files, its clock and its processes."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from plurcast.store.base import Database
from tests.peers.process import dies_with_parent

BIN = Path(sys.executable).parent
ACCOUNTS = ("default", "alt")
MASTODON_USERS = {"default": "alice", "alt": "bob"}
CLI_TIMEOUT = 60.0  # a plur-queue / plur-post still running after this is killed
# SIGTERM → exit, beyond the config's shutdown_timeout: only a daemon that hangs reaches it.
STOP_TIMEOUT = 30.0


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
    threads: int = 40  # threads of 3–6 parts besides the posts (and one timed into the outage)
    # Also cancel posts that a killed daemon held, or that are retrying after a held request:
    # the cancels most likely to race a send (what users do when a post seems stuck).
    hostile_cancels: bool = True
    faults: bool = True  # Mastodon 429 / 503 / held requests
    bluesky: bool = True  # when tests/peers/bluesky.py and the engine's adapter are there
    # How long the last daemon may take to send what is left. Only a run that hangs reaches
    # it (the drain takes seconds), so it is the same for the small run on a busy machine.
    drain_timeout: float = 120.0
    database: str = "sqlite"  # or "postgresql": the queue on a throwaway server (issue #14)

    @classmethod
    def small(cls, **changes: Any) -> Params:
        """The version inside `make test`: ~45 s on a 2-core machine."""
        base = cls(
            posts=200,
            seconds=20.0,
            daemons=2,
            relay_outage=4.0,
            plur_posts=3,
            threads=8,
            hostile_cancels=False,
        )
        return replace(base, **changes)


class HarnessError(RuntimeError):
    """The harness could not do its part (a peer would not start ...): no verdict."""


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name ([] once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process and of the children it reaped (0 once it is gone)."""
    fields = _stat(pid)
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def tree_cpu_seconds(pid: int) -> float:
    """`proc_cpu_seconds` of a live process and of every live process under it. A server
    that forks (PostgreSQL: a backend per connection, and its checkpointer, WAL writer,
    autovacuum ... for as long as it runs) spends CPU in processes it has not reaped yet,
    which its own stat does not count; what it reaped, it does, so nothing counts twice."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)):
            children[int(fields[1])].append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += proc_cpu_seconds(current)
        todo += children.get(current, [])
    return total


class Processes:
    """Every process the harness starts, reaped here, and the CPU each party used.

    Only this run's processes count: a child's CPU is its own rusage, read when it is reaped
    (`os.wait4`) — not `RUSAGE_CHILDREN`, which holds every child the calling process ever
    waited for (in `make test`, every earlier test's). The peers are started and reaped by
    tests/peers; theirs is read from /proc before they stop, with every live process under
    them (`peer`: most of PostgreSQL's CPU is its backends').
    """

    def __init__(self) -> None:
        self.cpu: defaultdict[str, float] = defaultdict(float)  # seconds, by party
        self._party: dict[int, str] = {}

    def start(self, party: str, argv: list[str], **popen: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen(dies_with_parent(argv), **popen)
        self._party[proc.pid] = party
        return proc

    def poll(self, proc: subprocess.Popen[Any]) -> int | None:
        """Its exit status once it ended (reaping it), else None."""
        if proc.returncode is not None or proc.pid not in self._party:
            return proc.poll()
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.cpu[self._party.pop(proc.pid)] += usage.ru_utime + usage.ru_stime
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode

    def wait(self, proc: subprocess.Popen[Any], timeout: float | None = None) -> int:
        """Its exit status; `subprocess.TimeoutExpired` when it runs on past `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll(proc)) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout or 0.0)
            time.sleep(0.01)
        return code

    def kill(self, proc: subprocess.Popen[Any]) -> int:
        if self.poll(proc) is None:
            proc.kill()
        return self.wait(proc)

    def peer(self, party: str, pid: int) -> None:
        """Book a peer's CPU and its live descendants', read just before it stops."""
        self.cpu[party] += tree_cpu_seconds(pid)


class Context:
    """One run's shape, working directory, random source, database and narrator."""

    def __init__(self, params: Params, work: Path, out: TextIO) -> None:
        self.p = params
        self.work = work
        self.out = out
        self.rng = random.Random(params.seed)
        self.run_id = f"{params.seed:x}{os.urandom(2).hex()}"
        self.started = time.monotonic()
        self.procs = Processes()
        self.env: dict[str, str] = {}
        self.cfg: Any = None
        self.conn: Database | None = None

    @property
    def db(self) -> Database:
        assert self.conn is not None, "the database is opened once the config is written"
        return self.conn

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", file=self.out, flush=True)

    def scalar(self, sql: str, *args: object) -> int:
        return int(self.db.execute(sql, args).fetchone()[0] or 0)


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """plurcast.config reads the environment: point it at the run's files (None: unset it),
    then restore."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
