"""Issue 10's promise: a fourth platform is one new module and one registry entry.

`tests/microblog.py` is that module (its adapter, standard library only) with its entry;
no other file of plurcast names it. With the entry registered, the real console scripts
take it end to end — plur-post queues a post for it, plur-queue shows it, plur-send
delivers it to a real server (mastodon_mock, through Mastodon's statuses API) — on SQLite
and on PostgreSQL, whose schemas name no platform since migration 8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import PATIENCE, secret_file
from tests.microblog import NAME
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("backend")

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """A console script in a fresh interpreter, with the fourth entry in its registry."""
    return subprocess.run(
        [sys.executable, "-m", "tests.microblog", *argv],
        env={**os.environ, "PLURCAST_DEBUG": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


def test_a_fourth_platform_goes_from_plur_post_through_the_queue_to_its_server(
    write_config: Callable[[str], Path],
    tmp_path: Path,
    db_path: Path,
    mastodon_server: MastodonMock,
) -> None:
    token = secret_file(tmp_path / "microblog.token", TOKENS["alice"])
    write_config(
        f'timezone = "UTC"\n[{NAME}]\nserver = "{mastodon_server.url}"\ntoken_file = "{token}"\n'
    )
    text = "Hello from a platform plurcast never heard of"

    posted = run("plur-post", text, "-p", NAME, "--schedule", "now", "-f", "json")
    assert posted.returncode == 0, posted.stderr
    post_id = json.loads(posted.stdout)["post_id"]

    listed = run("plur-queue", "list", "-f", "json")
    assert listed.returncode == 0, listed.stderr
    (queued,) = json.loads(listed.stdout)
    assert queued["id"] == post_id
    assert (queued["platforms"], queued["status"]) == ([NAME], "scheduled")

    sent = run("plur-send", "--once")
    assert sent.returncode == 0, sent.stderr
    (status,) = mastodon_server.statuses()
    assert status["text"] == text
    assert run_sql(db_path, "SELECT platform, state, remote_id FROM deliveries") == [
        (NAME, "sent", str(status["id"]))
    ]

    shown = run("plur-queue", "show", post_id)
    assert shown.returncode == 0, shown.stderr
    assert NAME in shown.stdout and "sent" in shown.stdout

    # Nothing outside the new module knows the platform.
    for package in ("plurcast", "plur_post", "plur_queue", "plur_send"):
        for path in (ROOT / package).rglob("*.py"):
            assert NAME not in path.read_text(), path
