"""Publishing in the foreground: plur-post without --schedule, plur-queue now and failed retry."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import config as config_module
from plurcast import publish, queue
from plurcast.config import Config
from plurcast.engine import Engine
from plurcast.models import Delivery, DeliveryState
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from tests.helpers import ANSWER_TIMEOUT, DOWN_TIMEOUT, T0, Clock, Run, add_post, free_port
from tests.peers.nostr import InProcessRelay
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def relay_config(write_config: Callable[[str], Path], nostr_key: Path) -> Callable[[str], Path]:
    def write(url: str, extra: str = "", timeout: float = ANSWER_TIMEOUT) -> Path:
        """`timeout`: long for a relay that is up, so a busy machine never turns its answer
        into a failure; short where nothing listens, since the command waits it out."""
        return write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{url}"]\n'
            f'timeout = {timeout:g}\n[mastodon]\ninstance = "m.example"\n{extra}'
        )

    return write


def states(db_path: Path) -> list[tuple[str, str, int]]:
    return run_sql(db_path, "SELECT platform, state, attempts FROM deliveries ORDER BY id")


def test_publish_now_prints_the_note_and_exits_0(
    run: Run,
    clock: Clock,
    relay_config: Callable[[str], Path],
    inprocess_relay: InProcessRelay,
    db_path: Path,
) -> None:
    relay_config(inprocess_relay.url)
    result = run(post_cli, "Hello, relay 👋", "-p", "nostr")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("nostr:note1")
    assert result.stdout.count("\n") == 1
    assert result.stderr == ""
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["Hello, relay 👋"]
    assert states(db_path) == [("nostr", "sent", 1)]


def test_publish_now_json(
    run: Run,
    clock: Clock,
    relay_config: Callable[[str], Path],
    inprocess_relay: InProcessRelay,
) -> None:
    relay_config(inprocess_relay.url)
    result = run(post_cli, "as json", "-p", "nostr", "-f", "json")
    [item] = json.loads(result.stdout)
    assert item["platform"] == "nostr"
    assert item["account"] == "default"
    assert item["success"] is True
    assert item["post_id"].startswith("note1")
    assert item["error"] is None
    assert len(item["id"]) == 36


def test_relay_down_queues_a_retry_and_says_so(
    run: Run, clock: Clock, relay_config: Callable[[str], Path], db_path: Path
) -> None:
    relay_config(f"ws://127.0.0.1:{free_port()}", timeout=DOWN_TIMEOUT)
    result = run(post_cli, "into the void", "-p", "nostr")
    assert result.exit_code == 1
    assert result.stdout.startswith("nostr:error:")
    assert "Note: nostr will be retried by plur-send at " in result.stderr
    assert "Warning: no plur-send daemon is running" in result.stderr
    assert states(db_path) == [("nostr", "retry", 1)]


def test_queue_now_sends_a_scheduled_post_once(
    run: Run,
    clock: Clock,
    relay_config: Callable[[str], Path],
    inprocess_relay: InProcessRelay,
) -> None:
    relay_config(inprocess_relay.url)
    post_id = json.loads(
        run(post_cli, "later, or now", "-s", "1d", "-p", "nostr", "-f", "json").stdout
    )["post_id"]
    result = run(queue_cli, "now", post_id[:8])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("nostr:note1")
    again = run(queue_cli, "now", post_id)
    assert again.exit_code == 3
    assert again.stderr.startswith(f"Error: post {post_id} is already posted")
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["later, or now"]


def test_failed_retry_resends_only_what_is_dead(
    run: Run,
    clock: Clock,
    relay_config: Callable[[str], Path],
    inprocess_relay: InProcessRelay,
    db_path: Path,
) -> None:
    relay_config(inprocess_relay.url, "[scheduling]\nmax_retries = 0\n")
    bad = f"ws://127.0.0.1:{free_port()}"
    post_id = json.loads(
        run(post_cli, "second chance", "-s", "1h", "-p", "nostr", "-f", "json").stdout
    )["post_id"]
    relay_config(bad, "[scheduling]\nmax_retries = 0\n", timeout=DOWN_TIMEOUT)
    result = run(queue_cli, "now", post_id)
    assert result.exit_code == 1
    assert states(db_path) == [("nostr", "dead", 1)]
    assert run(queue_cli, "failed", "list").stdout.startswith(
        f"{post_id}\tfailed\tnostr(default): "
    )
    relay_config(inprocess_relay.url)
    result = run(queue_cli, "failed", "retry", post_id)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("nostr:note1")
    assert states(db_path) == [("nostr", "sent", 1)]
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["second chance"]
    assert run(queue_cli, "failed", "retry", post_id).exit_code == 3


def test_no_warning_when_a_daemon_is_alive_to_retry(
    run: Run, clock: Clock, relay_config: Callable[[str], Path], db_path: Path
) -> None:
    relay_config(f"ws://127.0.0.1:{free_port()}", timeout=DOWN_TIMEOUT)
    run(post_cli, "first, to make the database", "-s", "1h", "-p", "nostr")
    beat = int(time.time() * 1000) - 2000  # the engine's clock is the real one
    run_sql(db_path, "INSERT INTO heartbeats VALUES ('h:1', 'h', 1, ?, ?, '0.1.0')", beat, beat)
    result = run(post_cli, "into the void", "-p", "nostr")
    assert result.exit_code == 1
    assert "Note: nostr will be retried by plur-send at " in result.stderr
    assert "Warning" not in result.stderr


def held_by_another_process() -> tuple[Config, Database, str]:
    """A scheduled post whose one delivery another (live) process is sending."""
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "busy elsewhere", T0 + 3600)
    with transaction(conn):
        conn.execute(
            "UPDATE deliveries SET state = 'sending', lease_owner = 'elsewhere:1', "
            "lease_expires_at_ms = ?",
            ((T0 + 7200) * 1000,),
        )
    return cfg, conn, post_id


def test_publish_now_waits_for_another_process_and_reports_its_result(
    relay_config: Callable[[str], Path], db_path: Path
) -> None:
    relay_config(f"ws://127.0.0.1:{free_port()}", timeout=DOWN_TIMEOUT)
    cfg, conn, post_id = held_by_another_process()

    def the_other_process_finishes() -> None:
        run_sql(
            db_path,
            "UPDATE deliveries SET state = 'sent', remote_id = 'note1elsewhere', "
            "lease_owner = NULL",
        )

    finishing = threading.Timer(0.3, the_other_process_finishes)
    finishing.start()
    try:
        published = publish.publish_now(Engine(cfg, conn), [post_id])
    finally:
        finishing.join()
    [report] = published.reports
    assert (report.state, report.line) == ("sent", "nostr:note1elsewhere")
    assert published.daemon_alive is False


def test_publish_now_says_what_another_process_is_still_sending(
    relay_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    relay_config(f"ws://127.0.0.1:{free_port()}", timeout=DOWN_TIMEOUT)
    cfg, conn, post_id = held_by_another_process()
    monkeypatch.setattr(publish, "WAIT_FOR_OTHERS_SECONDS", 0.0)
    [report] = publish.publish_now(Engine(cfg, conn), [post_id]).reports
    assert report.state == "sending"
    assert report.line == "nostr:error:still being sent by another process"


@pytest.mark.parametrize(
    ("state", "remote_id", "error", "line"),
    [
        ("sent", "note1abc", None, "nostr:note1abc"),
        ("retry", None, "ws://x: timeout", "nostr:error:ws://x: timeout"),
        ("dead", None, "ws://x: blocked: spam", "nostr:error:ws://x: blocked: spam"),
        ("cancelled", None, None, "nostr:error:cancelled"),
        ("sending", None, None, "nostr:error:still being sent by another process"),
        ("pending", None, None, "nostr:error:not sent (pending)"),
    ],
)
def test_report_line(state: str, remote_id: str | None, error: str | None, line: str) -> None:
    d = Delivery(1, "nostr", "default", DeliveryState(state), None, 1, remote_id, None, None,
                 error, None)  # fmt: skip
    assert publish.report_line(d) == line
