"""Hostile post text: what no platform can take is refused when the post is written.

A NUL character is the case here: PostgreSQL's text cannot hold it, so a post carrying one was
queued on SQLite and failed on PostgreSQL with the database's own complaint; Mastodon and
Bluesky drop or refuse it too. Each way text comes in (argument, stdin, a file to import, an
edit) is refused alike, exit 3 and nothing written, on both backends.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_queue.plur_import import cli as import_cli
from tests.helpers import Clock, Run, write_file
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("configured", "backend")

NUL_ERROR = (
    "Error: content contains a NUL character (at character 6) — remove it; no platform "
    "can show one\n"
)


def posts_stored(db_path: Path) -> int:
    return int(str(run_sql(db_path, "SELECT count(*) FROM posts")[0][0]))


def test_a_nul_in_the_text_is_refused_however_it_comes(
    run: Run, clock: Clock, db_path: Path, tmp_path: Path
) -> None:
    kept = json.loads(run(post_cli, "kept", "-s", "1h", "-f", "json").stdout)["post_id"]
    text = "hello\x00world"
    for args, given in (
        ((post_cli, text, "-s", "1h"), None),
        ((post_cli, "-", "-s", "1h"), text.encode()),
        ((post_cli, "--draft"), text),
        ((queue_cli, "edit", kept, text), None),
        ((queue_cli, "edit", kept, "-"), text),
    ):
        result = run(*args, input=given)
        assert (result.exit_code, result.stderr) == (3, NUL_ERROR), args
    plan = write_file(tmp_path, "plan.jsonl", json.dumps({"content": text, "schedule": "2h"}))
    result = run(import_cli, plan)
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: line 1: content contains a NUL character"), (
        result.stderr
    )
    assert posts_stored(db_path) == 1
    shown = json.loads(run(queue_cli, "show", kept, "-f", "json").stdout)
    assert shown["content"] == "kept"
