"""A test run killed from outside (a CI timeout's SIGTERM or SIGKILL) leaves nothing running.

A pytest of its own runs one tiny test that starts a plur-send through the `daemons` fixture
(on PostgreSQL: connected to the session's cluster, which that pytest starts), says so, and
sleeps. A supervisor kills that pytest and waits for what it had started to end: Linux signals
each child when its starter dies (`tests.peers.process.dies_with_parent`). The supervisor is
the orphans' "subreaper", so it can reap them and tell how each ended (PID 1 on this VM never
reaps). Nothing here bounds a time: the supervisor polls, and only a hang reaches PATIENCE.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PATIENCE
from tests.peers import nostr
from tests.peers.postgres import POSTGRESQL_BACKEND, SQLITE_BACKEND, pg_bin_dir

ROOT = Path(__file__).resolve().parents[1]

_INNER_TEST = """\
import json, os, time
from pathlib import Path

import pytest

from tests.helpers import PATIENCE, wait_until


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("backend", [os.environ["INNER_BACKEND"]], indirect=True)
def test_a_daemon_runs(backend, daemons):
    daemon = daemons.start()
    wait_until(lambda: " started (pid " in daemons.log(daemon), "the daemon's start")
    pids = {"daemon": daemon.pid}
    ready = Path(os.environ["INNER_READY"])
    if backend.is_postgresql:
        pids["postgres"] = backend.cluster.process.pid
        ready.with_name("cluster-dir").write_text(str(backend.cluster.base))
    ready.with_suffix(".tmp").write_text(json.dumps(pids))
    ready.with_suffix(".tmp").rename(ready)
    time.sleep(PATIENCE)  # killed here
"""

# argv: the ready file, the signal to kill pytest with, patience, then pytest's command line.
# Prints {name: exit status} of what the test had started ("survived" if still running).
_SUPERVISOR = """\
import ctypes, json, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
ready, kill_with, patience, *cmd = sys.argv[1:]
deadline = time.monotonic() + float(patience)  # a hang guard only
run = subprocess.Popen(cmd, stdout=sys.stderr)  # our stdout is the verdict alone
while not os.path.exists(ready):
    if run.poll() is not None or time.monotonic() > deadline:
        run.kill()
        sys.exit(f"the inner test never got its daemon running (pytest: {run.wait()})")
    time.sleep(0.05)
pids = json.loads(open(ready).read())
run.send_signal(int(kill_with))
run.wait()
ended = {}
while len(ended) < len(pids) and time.monotonic() < deadline:
    for name, pid in pids.items():
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not reparented to us yet, or already reaped
            got = 0
        if got:
            ended[name] = os.waitstatus_to_exitcode(status)
    time.sleep(0.05)
for name, pid in pids.items():
    if name not in ended:
        os.kill(pid, signal.SIGKILL)
        ended[name] = "survived"
print(json.dumps(ended, sort_keys=True))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize(
    ("backend_name", "kill_with", "expected"),
    [
        # The daemon is SIGKILLed (-9): a test daemon has nothing to finish once its run is gone.
        pytest.param(SQLITE_BACKEND, signal.SIGKILL, {"daemon": -9}, id="sqlite-SIGKILL"),
        # The cluster gets SIGINT, its fast shutdown: it cuts the daemon off rather than wait
        # for it (SIGTERM's smart shutdown would), and exits 0.
        pytest.param(
            POSTGRESQL_BACKEND,
            signal.SIGTERM,
            {"daemon": -9, "postgres": 0},
            id="postgresql-SIGTERM",
        ),
    ],
)
def test_a_killed_pytest_leaves_no_daemon_and_no_cluster_running(
    tmp_path: Path, backend_name: str, kill_with: signal.Signals, expected: dict[str, int]
) -> None:
    if backend_name == POSTGRESQL_BACKEND and pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    inner = tmp_path / "inner" / "test_inner.py"
    inner.parent.mkdir()
    inner.write_text(_INNER_TEST)
    ready = tmp_path / "ready.json"
    inner_run = [
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
        *("-p", "tests.conftest", "-c", str(ROOT / "pyproject.toml")),
        *("--basetemp", str(tmp_path / "inner-tmp"), str(inner)),
    ]
    supervisor = subprocess.run(
        [
            sys.executable,
            "-c",
            _SUPERVISOR,
            str(ready),
            str(int(kill_with)),
            str(PATIENCE),
            *inner_run,
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "INNER_BACKEND": backend_name,
            "INNER_READY": str(ready),
            # HOME is a temp dir in tests: point the inner run at the real peers' cache.
            "PLURCAST_PEERS_DIR": str(nostr.PEERS_DIR),
        },
        capture_output=True,
        text=True,
        timeout=3 * PATIENCE,
        check=False,
    )
    cluster_dir = tmp_path / "cluster-dir"  # a killed run leaves its cluster's files: ours go
    if cluster_dir.exists():
        shutil.rmtree(cluster_dir.read_text(), ignore_errors=True)
    assert supervisor.returncode == 0, supervisor.stdout + supervisor.stderr
    assert json.loads(supervisor.stdout.splitlines()[-1]) == expected, supervisor.stdout
