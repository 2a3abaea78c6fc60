"""The chaos report's CPU line counts this run's processes only (issue 10 item 7).

It read `RUSAGE_CHILDREN` once, which holds every child the test process ever reaped: in
`make test`, every earlier test's ("plur-queue, plur-post 144 s" for a run of 8). Now
`bench.chaos.context.Processes` books each child's own rusage as it reaps it. The proof
compares CPU seconds, never wall-clock time, so a busy machine cannot change the verdict.
"""

from __future__ import annotations

import resource
import subprocess
import sys

from bench.chaos.context import Processes

BURN = 0.3  # CPU seconds an earlier child spends: far more than a bare interpreter's start
_BURNER = f"import time\nwhile time.process_time() < {BURN}:\n    pass\n"


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
