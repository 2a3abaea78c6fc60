"""The chaos report's CPU line counts this run's processes only (issue 10 item 7), and the
PostgreSQL server's when the queue lives there.

It read `RUSAGE_CHILDREN` once, which holds every child the test process ever reaped: in
`make test`, every earlier test's ("plur-queue, plur-post 144 s" for a run of 8). Now
`bench.chaos.context.Processes` books each child's own rusage as it reaps it. The proof
compares CPU seconds, never wall-clock time, so a busy machine cannot change the verdict.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from bench.chaos.context import Processes, proc_cpu_seconds
from tests.helpers import wait_until
from tests.peers.postgres import SUPERUSER, PostgresCluster

BURN = 0.3  # CPU seconds an earlier child spends: far more than a bare interpreter's start
_BURNER = f"import time\nwhile time.process_time() < {BURN}:\n    pass\n"


def ticks(seconds: float) -> int:
    """CPU seconds read from /proc as the clock ticks they were counted in: the sums compare
    exactly (0.56 + 0.3 is 0.8600000000000001 in floats, above the 0.86 of 86 ticks)."""
    return round(seconds * os.sysconf("SC_CLK_TCK"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_an_earlier_child_of_the_process_is_not_booked_to_this_run() -> None:
    subprocess.run([sys.executable, "-c", _BURNER], check=True)  # an earlier test's child
    before = _children_cpu()
    assert before >= BURN  # what RUSAGE_CHILDREN would have put into the report

    procs = Processes()
    proc = procs.start("plur-queue", [sys.executable, "-c", "pass"])
    assert procs.wait(proc) == 0

    booked = procs.cpu["plur-queue"]
    assert 0 < booked < BURN
    assert set(procs.cpu) == {"plur-queue"}


def test_the_postgresql_server_is_booked_with_its_backends(
    postgres_cluster: PostgresCluster,
) -> None:
    """With --database postgresql the CPU line counts the server, and most of its CPU is in
    a backend per connection: live ones are counted from their own stat (the postmaster's
    does not hold them yet), and one that ended from the postmaster's, which reaped it."""
    import psycopg

    assert postgres_cluster.process is not None
    server = postgres_cluster.process.pid
    before = proc_cpu_seconds(server)
    with psycopg.connect(postgres_cluster.url(user=SUPERUSER), autocommit=True) as conn:
        [(backend,)] = conn.execute("SELECT pg_backend_pid()").fetchall()
        while (burnt := proc_cpu_seconds(backend)) < BURN:
            conn.execute("SELECT count(*) FROM generate_series(1, 1000000)")
        live = Processes()
        live.peer("PostgreSQL", server)
        assert ticks(live.cpu["PostgreSQL"]) >= ticks(before) + ticks(burnt)
    wait_until(lambda: not Path(f"/proc/{backend}").exists(), "the backend reaped")
    ended = Processes()
    ended.peer("PostgreSQL", server)
    assert ticks(ended.cpu["PostgreSQL"]) >= ticks(before) + ticks(burnt)
    assert ticks(proc_cpu_seconds(server)) >= ticks(before) + ticks(burnt)
