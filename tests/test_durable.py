"""A SQLite commit is on disk before the command that made it says so (synchronous = FULL).

In WAL mode with synchronous = NORMAL a commit reaches the disk only at a checkpoint. The
last connection's close checkpoints, so a plur-post run alone looked durable; but while
plur-send holds the database open — the usual case — plur-post printed `scheduled:…` for a
post that a power cut would have taken back. The system calls show it: strace records the
WAL's writes, its fdatasyncs and the command's output, in order.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from plurcast import config
from plurcast.store import connect
from tests.helpers import BIN

STRACE = shutil.which("strace")
CALLS = "openat,pwrite64,write,fdatasync,fsync"
pytestmark = pytest.mark.skipif(STRACE is None, reason="needs strace (.ci/run installs it)")


def traced(argv: list[str], trace: Path) -> subprocess.CompletedProcess[str]:
    assert STRACE is not None
    return subprocess.run(
        [STRACE, "-f", "-qq", "-o", str(trace), "-e", f"trace={CALLS}", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wal_synced_before_output(trace: Path, wal: Path) -> tuple[int, int, int]:
    """In the trace's order: the line of the WAL's last write, of its last sync, and of the
    command's first line on stdout."""
    wal_fds: set[str] = set()
    last_write = last_sync = output = -1
    for number, line in enumerate(trace.read_text().splitlines()):
        call = line.split(maxsplit=1)[1]  # after the pid column, however wide strace makes it
        opened = re.match(r'openat\(AT_FDCWD, "([^"]+)", .*\) = (\d+)$', call)
        if opened and opened.group(1) == str(wal):
            wal_fds.add(opened.group(2))
        used = re.match(r"(pwrite64|fdatasync|fsync|write)\((\d+)", call)
        if used is None:
            continue
        name, fd = used.groups()
        if fd in wal_fds and name == "pwrite64":
            last_write = number
        elif fd in wal_fds and name in ("fdatasync", "fsync"):
            last_sync = number
        elif fd == "1" and name == "write" and output < 0 and not call.endswith("= 0"):
            output = number
    return last_write, last_sync, output


def test_a_queued_post_is_on_disk_before_plur_post_prints_its_id(
    configured: Path, tmp_path: Path
) -> None:
    db = config.load().db_path
    connect(db).close()
    daemon = sqlite3.connect(db)  # as plur-send holds it: plur-post's close is not the last
    try:
        daemon.execute("SELECT count(*) FROM posts").fetchone()
        trace = tmp_path / "trace"
        done = traced([str(BIN / "plur-post"), "x", "--schedule", "30m"], trace)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("scheduled:")
        last_write, last_sync, output = wal_synced_before_output(trace, Path(f"{db}-wal"))
        assert last_write >= 0, "the post went to the WAL"
        assert output > last_write
        assert last_write < last_sync < output, "the WAL was not synced before the output"
    finally:
        daemon.close()
