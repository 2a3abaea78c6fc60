"""plur-queue: listings, management commands, ids, prompts, hostile content and locked databases."""

from __future__ import annotations

import importlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli
from plurcast import output
from plurcast.models import to_ms
from tests.helpers import BASE_CONFIG, Clock, Run
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("configured", "backend")

FAMILY = "👨\u200d👩\u200d👧\u200d👦"


def post(run: Run, content: str, *args: str) -> str:
    result = run(post_cli, content, *args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    return str(data["post_id"])


def sql(db_path: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    return run_sql(db_path, statement, *params)


def states(db_path: Path, post_id: str) -> list[str]:
    rows = sql(db_path, "SELECT state FROM deliveries WHERE post_id = ? ORDER BY id", post_id)
    return [str(r[0]) for r in rows]


def test_empty_queue(run: Run, clock: Clock) -> None:
    result = run(cli, "list")
    assert (result.exit_code, result.stdout) == (0, "")
    assert json.loads(run(cli, "list", "-f", "json").stdout) == []
    assert run(cli, "list", "-f", "jsonl").stdout == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["cancel", "--all", "--force", "--format"], "Nothing to cancel."),
        (["failed", "clear", "--force", "-f"], "No failed posts."),
        (["failed", "retry", "--all", "-f"], "No failed posts."),
    ],
)
def test_nothing_to_act_on_is_an_empty_array_in_json(
    run: Run, clock: Clock, args: list[str], said: str
) -> None:
    # It printed nothing on stdout, which `| jq` or json.loads refuses; a listing says [].
    if args[0] == "failed":
        post(run, "queued, not failed", "-s", "1h")
    for fmt, stdout in (("json", "[]\n"), ("jsonl", ""), ("text", "")):
        result = run(cli, *args, fmt)
        assert (result.exit_code, result.stdout, result.stderr) == (0, stdout, said + "\n")


def test_list_plain_lines_in_time_order(run: Run, clock: Clock) -> None:
    late = post(run, "Later post\nsecond line", "-s", "2h")
    soon = post(run, "Soon post", "-s", "30m", "-p", "mastodon")
    post(run, "a draft", "--draft")
    result = run(cli, "list")
    assert result.stdout.splitlines() == [
        f"{soon}\t2026-11-22T11:34:43+01:00\tmastodon\tSoon post",
        f"{late}\t2026-11-22T13:04:43+01:00\tnostr,mastodon\tLater post…",
    ]


def test_list_all_adds_status_and_other_posts(run: Run, clock: Clock, db_path: Path) -> None:
    scheduled = post(run, "one", "-s", "1h")
    draft = post(run, "two", "--draft")
    gone = post(run, "three", "-s", "3h")
    assert run(cli, "cancel", gone, "--force").exit_code == 0
    lines = run(cli, "list", "--all").stdout.splitlines()
    assert [line.split("\t")[3] for line in lines] == ["scheduled", "cancelled", "draft"]
    assert [line.split("\t")[0] for line in lines] == [scheduled, gone, draft]
    assert lines[2].split("\t")[1] == "-"


def test_list_platform_filter_and_json_fields(run: Run, clock: Clock) -> None:
    post(run, "n", "-s", "1h", "-p", "nostr")
    m = post(run, "m", "-s", "2h", "-p", "mastodon", "-a", "default")
    data = json.loads(run(cli, "list", "-p", "mastodon", "-f", "json").stdout)
    assert [d["id"] for d in data] == [m]
    assert set(data[0]) == {
        "id",
        "content",
        "scheduled_at",
        "scheduled_at_iso",
        "created_at",
        "created_at_iso",
        "status",
        "platforms",
        "account",
        "schedule_id",
        "thread_id",
        "thread_part",
        "thread_parts",
        "reply_to",
    }
    assert data[0]["account"] == "default"
    assert data[0]["schedule_id"] is None
    assert [data[0][k] for k in ("thread_id", "thread_part", "thread_parts", "reply_to")] == [
        None
    ] * 4
    assert run(cli, "list", "-p", "friendster").exit_code == 3


def test_multibyte_and_emoji_in_every_listing(
    run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cutting at 60 code points would split the family emoji (7 code points, one character).
    text = "Grüße " + "ä" * 52 + FAMILY + "日本語🇩🇪 more"
    post_id = post(run, text, "-s", "1h", "-p", "nostr")
    shown = run(cli, "list").stdout.rstrip("\n").split("\t")[3]
    assert shown == "Grüße " + "ä" * 52 + FAMILY + "…"
    assert json.loads(run(cli, "show", post_id, "-f", "json").stdout)["content"] == text
    assert text.splitlines()[0][:20] in run(cli, "show", post_id).stdout
    assert run(cli, "stats").exit_code == 0
    monkeypatch.setattr(output, "fancy", lambda: True)
    for args in (["list"], ["list", "--all"], ["stats"], ["failed", "list"]):
        result = run(cli, *args)
        assert result.exit_code == 0, (args, result.stderr)
    assert "Grüße" in run(cli, "list").stdout


def test_show_text_and_json(run: Run, clock: Clock) -> None:
    post_id = post(run, "Show me\nall of me", "-s", "1h", "-a", "default")
    result = run(cli, "show", post_id[:8])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"id:         {post_id}",
        "status:     scheduled",
        "scheduled:  Nov 22 12:04 CET (in 1h)",
        "created:    Nov 22 11:04 CET",
        "timezone:   Europe/Berlin",
        "content:",
        "  Show me",
        "  all of me",
        "deliveries:",
        "  nostr (default): pending, attempts 0, due Nov 22 12:04 CET",
        "  mastodon (default): pending, attempts 0, due Nov 22 12:04 CET",
    ]
    data = json.loads(run(cli, "show", post_id, "-f", "json").stdout)
    assert [d["platform"] for d in data["deliveries"]] == ["nostr", "mastodon"]
    assert data["deliveries"][0]["state"] == "pending"
    assert data["deliveries"][0]["history"] == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("abc", 'Error: "abc" is not a post id — give the id or at least its first 8'),
        ("zzzzzzzzzz", 'Error: "zzzzzzzzzz" is not a post id'),
        ("00000000", 'Error: no post with id "00000000" — see plur-queue list --all'),
        ("ffffffff-ffff", 'Error: no post with id "ffffffff-ffff"'),
        ("%%%%%%%%%", 'Error: "%%%%%%%%%" is not a post id'),
    ],
)
def test_unknown_ids(run: Run, clock: Clock, given: str, message: str) -> None:
    post(run, "x", "-s", "1h")
    for args in (["show", given], ["cancel", given, "--force"], ["reschedule", given, "1h"]):
        result = run(cli, *args)
        assert result.exit_code == 3
        # cancel takes schedule ids too, so it says "no post or schedule with id"
        expected = message.replace("no post with", "no post or schedule with", 1)
        assert result.stderr.startswith(
            message if args[0] != "cancel" else expected.split(" — ")[0]
        )


def test_ambiguous_prefix(run: Run, clock: Clock, db_path: Path) -> None:
    for n, content in enumerate(("x", "y"), start=1):
        original = post(run, content, "-s", "1h")
        twin = f"abcdef01-0000-4000-8000-00000000000{n}"
        sql(
            db_path,
            "INSERT INTO posts (id, content, created_at_ms, scheduled_at_ms, timezone, "
            "metadata, updated_at_ms) SELECT ?, content, created_at_ms, scheduled_at_ms, "
            "timezone, metadata, updated_at_ms FROM posts WHERE id = ?",
            twin,
            original,
        )
        sql(db_path, "UPDATE deliveries SET post_id = ? WHERE post_id = ?", twin, original)
        sql(db_path, "DELETE FROM posts WHERE id = ?", original)
    result = run(cli, "show", "abcdef01")
    assert result.exit_code == 3
    assert result.stderr.startswith('Error: id prefix "abcdef01" matches more than one post')
    assert run(cli, "show", "abcdef01-0000-4000-8000-000000000001").exit_code == 0


def test_cancel_prompts_and_respects_the_answer(run: Run, clock: Clock, db_path: Path) -> None:
    post_id = post(run, "x", "-s", "1h")
    for answer in ("n\n", "\n", "", "maybe\n"):
        result = run(cli, "cancel", post_id, input=answer)
        assert result.exit_code == 3
        assert result.stderr.endswith(
            "Error: Cancelled by user — nothing was changed; answer y, or pass --force\n"
        )
        assert "Cancel 1 post? (y/N)" in result.stderr
        assert states(db_path, post_id) == ["pending", "pending"]
    result = run(cli, "cancel", post_id[:8], input="y\n")
    assert result.exit_code == 0
    assert result.stdout == f"cancelled:{post_id}\n"
    assert states(db_path, post_id) == ["cancelled", "cancelled"]
    result = run(cli, "cancel", post_id, "--force")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: post {post_id} is cancelled")


def test_cancel_all_and_json(run: Run, clock: Clock, db_path: Path) -> None:
    a = post(run, "a", "-s", "1h")
    b = post(run, "b", "-s", "2h")
    draft = post(run, "c", "--draft")
    result = run(cli, "cancel", "--all", "-f", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"post_id": a, "cancelled": True},
        {"post_id": b, "cancelled": True},
    ]
    assert states(db_path, draft) == ["pending", "pending"]
    assert run(cli, "cancel").exit_code == 3
    assert run(cli, "cancel", a, "--all").exit_code == 3


def test_cancel_refuses_posted_and_keeps_sent_part(run: Run, clock: Clock, db_path: Path) -> None:
    posted = post(run, "done", "-s", "1h")
    sql(db_path, "UPDATE deliveries SET state = 'sent' WHERE post_id = ?", posted)
    result = run(cli, "cancel", posted, "--force")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: post {posted} is already posted")
    half = post(run, "half", "-s", "1h")
    sql(
        db_path,
        "UPDATE deliveries SET state = 'sent' WHERE post_id = ? AND platform = 'nostr'",
        half,
    )
    assert run(cli, "cancel", half, "--force").exit_code == 0
    assert states(db_path, half) == ["sent", "cancelled"]


def test_reschedule_absolute_and_relative(run: Run, clock: Clock, db_path: Path) -> None:
    post_id = post(run, "x", "-s", "2h")
    result = run(cli, "reschedule", post_id, "-30m")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"rescheduled:{post_id}:for:in 1h 30m (Nov 22 12:34 CET)\n"
    result = run(cli, "reschedule", post_id, "+1h", "-f", "json")
    assert json.loads(result.stdout)["scheduled_time"] == "Nov 22 13:34 CET"
    result = run(cli, "reschedule", post_id, "tomorrow", "9am")
    assert result.stdout == f"rescheduled:{post_id}:for:in 21h 55m (Nov 23 09:00 CET)\n"
    due = sql(db_path, "SELECT DISTINCT due_at_ms FROM deliveries WHERE post_id = ?", post_id)
    assert due == [(1795420800000,)]


def test_reschedule_errors_write_nothing(run: Run, clock: Clock, db_path: Path) -> None:
    post_id = post(run, "x", "-s", "1h")
    before = sql(db_path, "SELECT * FROM deliveries")
    result = run(cli, "reschedule", post_id, "-2h")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: Nov 22 10:04 CET is in the past")
    assert run(cli, "reschedule", post_id, "whenever").exit_code == 3
    assert run(cli, "reschedule", post_id).exit_code == 3
    result = run(cli, "reschedule", post_id, "2h", "--tz", "")  # an empty zone was ignored
    assert (result.exit_code, result.stderr.split(" — ")[0]) == (3, 'Error: unknown timezone ""')
    assert sql(db_path, "SELECT * FROM deliveries") == before
    run(cli, "cancel", post_id, "--force")
    result = run(cli, "reschedule", post_id, "1h")
    assert result.exit_code == 3
    assert "only scheduled posts can be moved" in result.stderr


def test_reschedule_gives_a_draft_its_time(run: Run, clock: Clock) -> None:
    draft = post(run, "x", "--draft")
    result = run(cli, "reschedule", draft, "+1h")
    assert result.exit_code == 3
    assert "is a draft with no time to shift" in result.stderr
    assert run(cli, "reschedule", draft, "1h").exit_code == 0
    assert [line.split("\t")[0] for line in run(cli, "list").stdout.splitlines()] == [draft]


def test_edit(run: Run, clock: Clock, db_path: Path) -> None:
    post_id = post(run, "old text", "-s", "1h")
    result = run(cli, "edit", post_id, "new text")
    assert (result.exit_code, result.stdout) == (0, f"edited:{post_id}\n")
    assert run(cli, "edit", post_id, "-", input="from stdin\n").exit_code == 0
    assert sql(db_path, "SELECT content FROM posts") == [("from stdin",)]
    result = run(cli, "edit", post_id, "a" * 501)
    assert result.exit_code == 3
    assert "over mastodon's limit of 500" in result.stderr
    assert run(cli, "edit", post_id, "  ").exit_code == 3
    assert sql(db_path, "SELECT content FROM posts") == [("from stdin",)]
    sql(db_path, "UPDATE deliveries SET state = 'sent' WHERE platform = 'nostr'")
    result = run(cli, "edit", post_id, "too late")
    assert result.exit_code == 3
    assert "only posts not yet sent can be edited" in result.stderr


@pytest.mark.parametrize("signal_name", ["SIGHUP", "SIGTERM"])
def test_an_edit_whose_terminal_closes_leaves_no_copy_of_the_post_behind(
    run: Run, db_path: Path, tmp_path: Path, signal_name: str
) -> None:
    """click.edit keeps the text in a temp file while $EDITOR runs, deleted in a `finally`
    that a hang-up's default action skipped: the post's text stayed in /tmp."""
    import contextlib
    import os
    import pty
    import signal

    from tests.helpers import BIN, PATIENCE, wait_until

    post_id = post(run, "private until it is out", "-s", "1h")
    temp, started = tmp_path / "tmp", tmp_path / "editor-started"
    temp.mkdir()
    editor = tmp_path / "editor.sh"
    editor.write_text(f"#!/bin/sh\ntouch {started}\nsleep 600\n")
    editor.chmod(0o700)
    leader, terminal = pty.openpty()  # `edit` opens $EDITOR only for a terminal
    with subprocess.Popen(
        [str(BIN / "plur-queue"), "edit", post_id],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "EDITOR": str(editor), "TMPDIR": str(temp)},
        start_new_session=True,
    ) as editing:
        os.close(terminal)
        try:
            wait_until(started.exists, "the editor to start")
            assert len(list(temp.iterdir())) == 1  # the text, as the editor sees it
            editing.send_signal(getattr(signal, signal_name))
            editing.wait(PATIENCE)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the editor, in its session
                os.killpg(editing.pid, signal.SIGKILL)
            os.close(leader)
    assert editing.returncode == 128 + getattr(signal, signal_name)
    assert list(temp.iterdir()) == []
    assert sql(db_path, "SELECT content FROM posts") == [("private until it is out",)]


def test_stats_json_buckets_and_overdue_warning(run: Run, clock: Clock) -> None:
    post(run, "in 10 minutes", "-s", "10m", "-p", "nostr")
    post(run, "later today", "-s", "5h")
    post(run, "this week", "-s", "2026-11-22 23:30")
    post(run, "next week", "-s", "2026-11-24 10:00", "-p", "bluesky")
    post(run, "far", "-s", "2027-01-05 10:00")
    post(run, "draft", "--draft")
    result = run(cli, "stats", "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["total"] == 5
    assert data["by_time_bucket"] == {
        "overdue": 0,
        "next_hour": 1,
        "today": 2,
        "this_week": 0,
        "later": 2,
    }
    assert data["by_platform"] == {"bluesky": 1, "mastodon": 3, "nostr": 4}
    assert data["by_status"]["draft"] == 1
    assert [p["content"] for p in data["upcoming"]] == [
        "in 10 minutes",
        "later today",
        "this week",
        "next week",
        "far",
    ]
    assert len(data["per_day"]) == 14
    assert data["per_day"][0] == {"date": "2026-11-22", "count": 3}
    assert data["daemon"]["running"] is False
    clock.advance(minutes=20)
    result = run(cli, "stats", "-f", "json")
    assert json.loads(result.stdout)["by_time_bucket"]["overdue"] == 1
    assert result.stderr.startswith("Warning: 1 post is overdue and no plur-send daemon is running")


def test_stats_sees_a_live_daemon(run: Run, clock: Clock, db_path: Path) -> None:
    post(run, "x", "-s", "10m")
    clock.advance(minutes=20)
    run(cli, "list")
    beat = to_ms(clock.now) - 2000
    sql(db_path, "INSERT INTO heartbeats VALUES ('h:1', 'h', 1, ?, ?, '0.1.0')", beat, beat)
    result = run(cli, "stats", "-f", "json")
    assert result.stderr == ""
    assert json.loads(result.stdout)["daemon"]["running"] is True
    plain = run(cli, "stats").stdout.splitlines()
    assert "total\t1" in plain
    assert "bucket.overdue\t1" in plain
    assert plain[-1] == "daemon\trunning, pid 1 on h, last heartbeat 2s ago"
    other = beat - 60_000
    sql(db_path, "INSERT INTO heartbeats VALUES ('k:9', 'k', 9, ?, ?, '0.1.0')", other, other)
    daemons = json.loads(run(cli, "stats", "-f", "json").stdout)["daemons"]
    assert [(d["host"], d["pid"], d["running"]) for d in daemons] == [
        ("h", 1, True),
        ("k", 9, False),
    ]
    assert run(cli, "stats").stdout.splitlines()[-2:] == [
        "daemon\trunning, pid 1 on h, last heartbeat 2s ago",
        "daemon\tnot running, pid 9 on k, last heartbeat 1m 2s ago",
    ]


@pytest.fixture
def failed_post(run: Run, clock: Clock, db_path: Path) -> Iterator[str]:
    post_id = post(run, "doomed", "-s", "1h", "-p", "nostr,mastodon")
    sql(
        db_path,
        "UPDATE deliveries SET state = 'dead', last_error = 'HTTP 401 Unauthorized', "
        "error_kind = 'auth' WHERE post_id = ? AND platform = 'mastodon'",
        post_id,
    )
    sql(
        db_path,
        "UPDATE deliveries SET state = 'sent', remote_id = 'note1x' "
        "WHERE post_id = ? AND platform = 'nostr'",
        post_id,
    )
    yield post_id


def test_failed_list_shows_each_platforms_error(run: Run, failed_post: str) -> None:
    post(run, "fine", "-s", "1h")
    result = run(cli, "failed", "list")
    assert result.stdout == (
        f"{failed_post}\tpartial\tmastodon(default): HTTP 401 Unauthorized\tdoomed\n"
    )
    data = json.loads(run(cli, "failed", "list", "-f", "json").stdout)
    assert data[0]["status"] == "partial"
    assert [(d["platform"], d["state"], d["error"]) for d in data[0]["deliveries"]] == [
        ("nostr", "sent", None),
        ("mastodon", "dead", "HTTP 401 Unauthorized"),
    ]


def test_failed_delete_and_clear(run: Run, failed_post: str, db_path: Path) -> None:
    scheduled = post(run, "fine", "-s", "1h")
    result = run(cli, "failed", "delete", scheduled)
    assert result.exit_code == 3
    assert "not failed" in result.stderr
    result = run(cli, "failed", "clear", input="n\n")
    assert result.exit_code == 3
    assert sql(db_path, "SELECT count(*) FROM posts") == [(2,)]
    result = run(cli, "failed", "clear", input="yes\n")
    assert result.stdout == f"deleted:{failed_post}\n"
    assert sql(db_path, "SELECT count(*) FROM posts") == [(1,)]
    assert sql(db_path, "SELECT count(*) FROM deliveries") == [(2,)]


@pytest.mark.sqlite_only
def test_locked_database_is_exit_1_and_nothing_changes(
    run: Run, clock: Clock, db_path: Path, write_config
) -> None:  # type: ignore[no-untyped-def]
    write_config(BASE_CONFIG + "\n[database]\nbusy_timeout = 0.2\n")
    post_id = post(run, "x", "-s", "1h")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = run(cli, "cancel", post_id, "--force")
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: the database is locked by another process")
        result = run(post_cli, "y", "-s", "1h")
        assert result.exit_code == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert states(db_path, post_id) == ["pending", "pending"]
    assert sql(db_path, "SELECT count(*) FROM posts") == [(1,)]


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


def test_each_lazy_command_is_in_the_module_named_for_it() -> None:
    from plur_queue.cli import LAZY

    found = {
        command.name: module
        for module in set(LAZY.values())
        for command in importlib.import_module(module).COMMANDS
    }
    assert found == LAZY


def test_list_imports_none_of_the_other_commands_modules() -> None:
    code = (
        "import sys\nfrom plur_queue.cli import cli\n"
        "try:\n    cli(['list', '-f', 'json'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('plur_queue.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "['plur_queue.cli', 'plur_queue.common']"


def test_every_command_has_help(run: Run) -> None:
    names = []
    for name, command in _commands(cli):
        names.append(name)
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts}"
        result = run(cli, *name.split(), "--help")
        assert result.exit_code == 0
    assert {"list", "show", "cancel", "reschedule", "edit", "stats", "failed list"} <= set(names)


def test_no_subcommand_and_unknown_subcommand(run: Run) -> None:
    assert run(cli).exit_code == 3
    result = run(cli, "frobnicate")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: No such command 'frobnicate'")
