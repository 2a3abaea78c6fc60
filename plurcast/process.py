"""Who holds a lease: an owner id that says which process, and whether it still lives.

An owner is `host:pid:starttime`. The start time (from /proc) tells a live process
from a later one that reuses the pid, so a daemon restarted after kill -9 can take
over its predecessor's leases at once instead of waiting for them to expire.
"""

from __future__ import annotations

import os
from pathlib import Path


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, counted after the parenthesised command name (which may hold spaces).
    return stat.rsplit(")", 1)[1].split()[19]


# PLURCAST_HOST names this host in lease owners and heartbeats when its hostname is not
# unique among the hosts that share one PostgreSQL queue (containers, cloned VMs). The
# node name is what socket.gethostname() returns, without importing socket (~2.5 ms).
HOST = os.environ.get("PLURCAST_HOST") or os.uname().nodename


def owner_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{HOST}:{pid}:{_start_time(pid) or '0'}"


def is_dead(owner: str) -> bool:
    """True only when `owner` is a process of this host that no longer runs."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid_text, started = parts
    if host != HOST or not pid_text.isdigit():
        return False
    current = _start_time(int(pid_text))
    return current is None or started not in ("0", current)
