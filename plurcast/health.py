"""Is a plur-send daemon alive? Its heartbeat read one way, and shown one way.

A daemon beats every HEARTBEAT_SECONDS; one silent for HEARTBEAT_STALE_MS is gone. The
foreground publishers (a warning when a retry waits for no one), plur-queue stats and
plur-send status and health all ask `daemon_health`, and show the answer with
`daemon_json` and `daemon_text`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plurcast import process
from plurcast.models import from_ms
from plurcast.store import daemons
from plurcast.store.base import Database
from plurcast.value import Value

HEARTBEAT_SECONDS = 5.0
# Six beats missed: the daemon is gone (or its machine is too busy to be of use).
HEARTBEAT_STALE_MS = 30_000


# Heartbeats looked at: enough for every daemon that may share a database, and the dead ones
# that `kill -9` left behind.
_BEATS_READ = 16


class Daemon(Value):
    running: bool
    host: str | None = None
    pid: int | None = None
    last_heartbeat_ms: int | None = None
    gone: bool = False  # its heartbeat is fresh, but its process on this host is not there


def daemon_health(conn: Database, now_ms: int) -> Daemon:
    """The latest daemon that beat recently enough and whose process still runs, else the one
    that beat last, not running.

    A daemon of this host whose pid is gone (`kill -9`, a crash) is not running, however
    fresh its last beat; one on another host is judged by its beat alone.
    """
    beats = daemons.latest_heartbeats(conn, _BEATS_READ)
    for owner, host, pid, beat_ms in beats:
        if now_ms - beat_ms >= HEARTBEAT_STALE_MS:
            break
        if not process.is_dead(owner):
            return Daemon(True, host, pid, beat_ms)
    if not beats:
        return Daemon(running=False)
    owner, host, pid, beat_ms = beats[0]
    gone = now_ms - beat_ms < HEARTBEAT_STALE_MS
    return Daemon(False, host, pid, beat_ms, gone=gone)


def all_daemons(conn: Database, now_ms: int) -> list[Daemon]:
    """Every daemon with a heartbeat on this queue, on every host (PostgreSQL lets daemons on
    several hosts share one), the one that beat last first."""
    return [
        Daemon(now_ms - beat_ms < HEARTBEAT_STALE_MS, host, pid, beat_ms)
        for host, pid, beat_ms in daemons.heartbeats(conn)
    ]


def daemon_json(daemon: Daemon, tz: ZoneInfo) -> dict[str, Any]:
    from plurcast.views import time_fields  # showing only: the daemon itself needs no views

    return {
        "running": daemon.running,
        "host": daemon.host,
        "pid": daemon.pid,
        **time_fields("last_heartbeat", daemon.last_heartbeat_ms, tz),
    }


def heartbeat_text(daemon: Daemon, now: datetime) -> str:
    """`pid 4242 on host-a, last heartbeat 2s ago` (for a daemon that has beaten)."""
    from plurcast.timefmt import format_relative  # likewise

    assert daemon.last_heartbeat_ms is not None
    ago = format_relative(from_ms(daemon.last_heartbeat_ms) - now)
    return f"pid {daemon.pid} on {daemon.host}, last heartbeat {ago}"


def daemon_text(daemon: Daemon, now: datetime) -> str:
    """`running, pid 4242 on host-a, last heartbeat 2s ago`, or `not running`."""
    state = "running" if daemon.running else "not running"
    if daemon.gone:
        state += " (its process has ended)"
    if daemon.last_heartbeat_ms is None:
        return state
    return f"{state}, {heartbeat_text(daemon, now)}"


def absence_text(daemon: Daemon, now: datetime) -> str:
    """Why no daemon counts as running: never seen, gone, or silent."""
    if daemon.last_heartbeat_ms is None:
        return "no plur-send daemon has run on this database"
    if daemon.gone:
        return f"plur-send is gone: {heartbeat_text(daemon, now)}, but its process has ended"
    return f"no heartbeat from plur-send: {heartbeat_text(daemon, now)}"
