"""The CLIs on a host whose clock is ten minutes off, sharing a PostgreSQL queue: daemon
health, the queue's time buckets and a new post's due time are judged on the server's clock,
the one every daemon judges heartbeats, leases and due times by. Each command runs as a real
console script whose time.time() and datetime.now() are moved (tests/helpers.clock_ahead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import clock_ahead
from tests.peers.postgres import PostgresCluster, run_sql

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
AHEAD = 600.0  # this host's clock, ten minutes fast


@pytest.fixture
def queue_url(
    configured: Path, postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    with postgres_cluster.database() as url:
        monkeypatch.setenv("PLURCAST_DATABASE_URL", url)
        yield url


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def skewed(queue_url: str, tmp_path: Path) -> Cli:
    """Run a console script on a host whose clock is AHEAD seconds fast (or `ahead=`)."""

    def run(*argv: str, ahead: float = AHEAD) -> subprocess.CompletedProcess[str]:
        env = clock_ahead(dict(os.environ), tmp_path, ahead)
        return subprocess.run(
            [str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, check=False
        )

    return run


def server_ms(db_path: Path) -> int:
    return int(run_sql(db_path, "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)")[0][0])


def beat(db_path: Path, host: str, ms_ago: int) -> None:
    """A heartbeat of a daemon on another host, written on the server's clock."""
    now = server_ms(db_path)
    run_sql(
        db_path,
        "INSERT INTO heartbeats (owner, host, pid, started_at_ms, beat_at_ms, version) "
        "VALUES (?, ?, 4242, ?, ?, 'test')",
        f"{host}:4242:1",
        host,
        now - 60_000,
        now - ms_ago,
    )


def test_health_and_status_judge_heartbeats_on_the_servers_clock(
    skewed: Cli, db_path: Path
) -> None:
    """A daemon on host-b beat a second ago. By this host's clock, ten minutes fast, that
    beat is ten minutes old — `plur-send health` must still say ok, and a beat 40 s old by
    the server is stale however this host's clock reads it."""
    beat(db_path, "host-b", 1000)
    health = skewed("plur-send", "health")
    assert (health.returncode, health.stderr) == (0, "")
    assert health.stdout.startswith("ok: plur-send pid 4242 on host-b, last heartbeat ")
    status = json.loads(skewed("plur-send", "status", "-f", "json").stdout)
    assert [d["running"] for d in status["daemons"]] == [True]
    run_sql(db_path, "DELETE FROM heartbeats")
    beat(db_path, "host-b", 40_000)
    behind = skewed("plur-send", "health", ahead=-AHEAD)  # ten minutes slow: the beat is "ahead"
    assert behind.returncode == 1
    assert "no heartbeat from plur-send" in behind.stderr


def test_stats_buckets_and_overdue_warning_use_the_servers_clock(
    skewed: Cli, db_path: Path
) -> None:
    """A post due in five minutes by the server is not overdue on a host ten minutes fast:
    no warning, the next-hour bucket, and the daemon on host-b counts as running."""
    post = skewed("plur-post", "soon", "-s", "5m", ahead=0)
    assert post.returncode == 0, post.stderr
    stats = skewed("plur-queue", "stats", "-f", "json")
    assert stats.returncode == 0, stats.stderr
    assert stats.stderr == ""  # no "overdue and no daemon" warning
    data = json.loads(stats.stdout)
    assert (data["by_time_bucket"]["overdue"], data["by_time_bucket"]["next_hour"]) == (0, 1)
    beat(db_path, "host-b", 1000)
    data = json.loads(skewed("plur-queue", "stats", "-f", "json").stdout)
    assert data["daemon"]["running"] is True


def test_a_relative_time_is_from_the_servers_now(skewed: Cli, db_path: Path) -> None:
    """`-s 5m` on a host ten minutes fast is due five minutes from the server's now — not
    fifteen — and its creation time is the server's too."""
    before = server_ms(db_path)
    result = skewed("plur-post", "five minutes", "-s", "5m", "-f", "json")
    after = server_ms(db_path)
    assert result.returncode == 0, result.stderr
    [(created, scheduled)] = run_sql(db_path, "SELECT created_at_ms, scheduled_at_ms FROM posts")
    assert before // 1000 * 1000 <= int(created) <= after  # type: ignore[call-overload]
    assert int(scheduled) - int(created) == 300_000  # type: ignore[call-overload]


def test_an_imported_relative_time_is_from_the_servers_now(
    skewed: Cli, db_path: Path, tmp_path: Path
) -> None:
    """plur-import, too: a row due in `5m` on a host ten minutes slow is five minutes from the
    server's now, not a time the server calls past."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"content": "imported", "schedule": "5m"}\n')
    before = server_ms(db_path)
    result = skewed("plur-import", str(rows), ahead=-AHEAD)
    after = server_ms(db_path)
    assert result.returncode == 0, result.stderr
    [(created, scheduled)] = run_sql(db_path, "SELECT created_at_ms, scheduled_at_ms FROM posts")
    assert before // 1000 * 1000 <= int(created) <= after  # type: ignore[call-overload]
    assert int(scheduled) - int(created) == 300_000  # type: ignore[call-overload]
