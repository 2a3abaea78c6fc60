"""plur-queue on threads: a part cancels, moves and sends with the parts after it, and a thread
stopped on one platform shows as such in list, show, stats and failed list."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli
from tests.helpers import ANSWER_TIMEOUT, Clock, Run, secret_file
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("backend")

THREAD = "One.\n---\nTwo.\n---\nThree."


def thread(run: Run, *args: str, text: str = THREAD) -> list[str]:
    result = run(post_cli, "--thread", *args, "-f", "json", input=text)
    assert result.exit_code == 0, result.stderr
    return [item["post_id"] for item in json.loads(result.stdout)]


def states(db_path: Path, post_id: str) -> list[str]:
    rows = run_sql(db_path, "SELECT state FROM deliveries WHERE post_id = ? ORDER BY id", post_id)
    return [str(r[0]) for r in rows]


def times(db_path: Path, ids: list[str]) -> list[int | None]:
    found = dict(run_sql(db_path, "SELECT id, scheduled_at_ms FROM posts"))
    return [found[i] for i in ids]  # type: ignore[misc]


def give_up(db_path: Path, post_id: str, platform: str, error: str) -> None:
    """As if the platform refused the part for good."""
    run_sql(
        db_path,
        "UPDATE deliveries SET state = 'dead', last_error = ?, error_kind = 'permanent', "
        "attempts = 1 WHERE post_id = ? AND platform = ?",
        error,
        post_id,
        platform,
    )


@pytest.mark.usefixtures("configured")
def test_cancel_of_a_part_cancels_the_later_parts_and_asks_about_them(
    run: Run, clock: Clock, db_path: Path
) -> None:
    ids = thread(run, "-s", "1h")
    result = run(cli, "cancel", ids[1][:8], input="y\n")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"Cancel 1 post and the later parts of its thread ({ids[2][:8]} (3/3))? (y/N) "
    )
    assert result.stdout.splitlines() == [f"cancelled:{ids[1]}", f"cancelled:{ids[2]}"]
    assert states(db_path, ids[0]) == ["pending", "pending"]
    assert states(db_path, ids[1]) == states(db_path, ids[2]) == ["cancelled", "cancelled"]
    assert run(cli, "cancel", ids[2], "--force").exit_code == 3  # nothing left there


@pytest.mark.usefixtures("configured")
def test_declined_cancel_of_a_part_changes_nothing(run: Run, clock: Clock, db_path: Path) -> None:
    ids = thread(run, "-s", "1h")
    assert run(cli, "cancel", ids[0], input="n\n").exit_code == 3
    assert {s for i in ids for s in states(db_path, i)} == {"pending"}


@pytest.mark.usefixtures("configured")
def test_reschedule_moves_the_later_parts_by_as_much(run: Run, clock: Clock, db_path: Path) -> None:
    ids = thread(run, "-s", "1h")
    before = times(db_path, ids)
    result = run(cli, "reschedule", ids[1], "+2h")
    assert result.exit_code == 0, result.stderr
    hour = 3_600_000
    assert times(db_path, ids) == [before[0], before[1] + 2 * hour, before[2] + 2 * hour]
    due = run_sql(db_path, "SELECT DISTINCT due_at_ms FROM deliveries WHERE post_id = ?", ids[2])
    assert due == [(before[2] + 2 * hour,)]
    result = run(cli, "reschedule", ids[2], "30m")  # before part 2, now at +3h
    assert result.exit_code == 3
    assert "part 3 cannot go before part 2 of its thread" in result.stderr
    assert result.stderr.count("\n") == 1
    assert times(db_path, ids)[2] == before[2] + 2 * hour


@pytest.mark.usefixtures("configured")
def test_a_draft_thread_gets_its_time_all_at_once(run: Run, clock: Clock, db_path: Path) -> None:
    ids = thread(run, "--draft")
    assert run(cli, "reschedule", ids[0], "tomorrow 9am").exit_code == 0
    assert len(set(times(db_path, ids))) == 1
    assert times(db_path, ids)[0] == 1795420800000


@pytest.mark.usefixtures("configured")
def test_list_labels_the_parts(run: Run, clock: Clock) -> None:
    ids = thread(run, "-s", "1h", "-p", "nostr")
    lines = run(cli, "list").stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ids
    assert [line.split("\t")[3] for line in lines] == ["[1/3] One.", "[2/3] Two.", "[3/3] Three."]


def stop_at_part_2_on_mastodon(db_path: Path, ids: list[str]) -> None:
    """A thread complete on Nostr, stopped at part 2 on Mastodon (part 3 blocked behind it)."""
    for i, post_id in enumerate(ids):
        run_sql(
            db_path,
            "UPDATE deliveries SET state = 'sent', remote_id = ?, blocked = 0 "
            "WHERE post_id = ? AND platform = 'nostr'",
            f"note1fake{i}",
            post_id,
        )
    run_sql(
        db_path,
        "UPDATE deliveries SET state = 'sent', remote_id = '101' "
        "WHERE post_id = ? AND platform = 'mastodon'",
        ids[0],
    )
    run_sql(db_path, "UPDATE deliveries SET blocked = 0 WHERE post_id = ?", ids[1])
    give_up(db_path, ids[1], "mastodon", "HTTP 422 Unprocessable Entity: Validation failed")


@pytest.mark.usefixtures("configured")
def test_a_thread_stopped_on_one_platform_shows_as_such_everywhere(
    run: Run, clock: Clock, db_path: Path
) -> None:
    """Complete on Nostr, stopped at part 2 on Mastodon."""
    ids = thread(run, "-s", "1h")
    stop_at_part_2_on_mastodon(db_path, ids)

    listed = run(cli, "list", "--all").stdout.splitlines()
    assert [line.split("\t")[3] for line in listed] == ["posted", "partial", "blocked"]
    assert run(cli, "list").stdout == ""  # nothing on its way: blocked is not scheduled

    shown = run(cli, "show", ids[2]).stdout
    assert f"thread:     part 3 of 3 ({ids[0]})" in shown
    assert f"reply to:   {ids[1]}" in shown
    assert "waiting on part 2 (mastodon: HTTP 422 Unprocessable Entity: Validation failed)" in shown
    detail = json.loads(run(cli, "show", ids[2], "-f", "json").stdout)
    assert (detail["status"], detail["thread_part"], detail["reply_to"]) == ("blocked", 3, ids[1])
    mastodon = next(d for d in detail["deliveries"] if d["platform"] == "mastodon")
    assert mastodon["waiting_on"].startswith("waiting on part 2 (mastodon: HTTP 422")

    failed = run(cli, "failed", "list").stdout.splitlines()
    assert [line.split("\t")[:2] for line in failed] == [[ids[1], "partial"], [ids[2], "blocked"]]
    assert "mastodon(default): waiting on part 2 (mastodon: HTTP 422" in failed[1]

    stats = json.loads(run(cli, "stats", "-f", "json").stdout)
    assert stats["by_status"]["blocked"] == 1
    assert stats["threads"] == {
        "total": 1,
        "complete": 0,
        "in_progress": 0,
        "stopped": 1,
        "not_complete": [
            {
                "thread_id": ids[0],
                "platform": "mastodon",
                "account": "default",
                "sent": 1,
                "parts": 3,
                "state": "stopped",
                "stopped_at_part": 2,
                "error": "HTTP 422 Unprocessable Entity: Validation failed",
            }
        ],
    }
    plain = run(cli, "stats").stdout
    assert (
        f"thread\t{ids[0]}\tmastodon(default)\t1/3\tstopped\tstopped at part 2: HTTP 422" in plain
    )


@pytest.mark.usefixtures("configured")
def test_a_part_blocked_behind_a_part_read_in_an_earlier_chunk_is_still_blocked(
    run: Run, clock: Clock, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing reads posts a chunk at a time (store.listing.stream_posts); what a blocked
    delivery waits on is found whichever chunk holds its parent."""
    from plurcast.store import listing

    ids = thread(run, "-s", "1h")
    stop_at_part_2_on_mastodon(db_path, ids)
    monkeypatch.setattr(listing, "CHUNK", 1)
    listed = run(cli, "list", "--all", "-f", "jsonl").stdout.splitlines()
    assert [json.loads(line)["status"] for line in listed] == ["posted", "partial", "blocked"]
    assert run(cli, "list", "-f", "json").stdout == "[]\n"
    failed = run(cli, "failed", "list").stdout.splitlines()
    assert "mastodon(default): waiting on part 2 (mastodon: HTTP 422" in failed[1]


@pytest.mark.usefixtures("configured")
def test_now_on_a_part_waiting_for_its_parent_says_which_to_send(
    run: Run, clock: Clock, db_path: Path
) -> None:
    ids = thread(run, "-s", "1h", "-p", "nostr")
    result = run(cli, "now", ids[1])
    assert result.exit_code == 3
    assert f"is waiting on part 1 — send it first: plur-queue now {ids[0][:8]}" in result.stderr
    give_up(db_path, ids[0], "nostr", "blocked: spam")
    result = run(cli, "now", ids[2])
    assert result.exit_code == 3
    assert "waiting on part 1 (nostr: blocked: spam)" in result.stderr
    assert f"plur-queue failed retry {ids[0][:8]}" in result.stderr


@pytest.mark.usefixtures("configured")
def test_edit_one_platforms_text(run: Run, clock: Clock, db_path: Path) -> None:
    ids = thread(run, "-s", "1h", "--variant", "mastodon=A\n---\nB\n---\nC")
    assert run(cli, "edit", ids[1], "B, better", "--platform", "mastodon").exit_code == 0
    texts = run_sql(
        db_path,
        "SELECT d.platform, coalesce(d.content, p.content) FROM deliveries d "
        "JOIN posts p ON p.id = d.post_id WHERE p.id = ? ORDER BY d.id",
        ids[1],
    )
    assert texts == [("nostr", "Two."), ("mastodon", "B, better")]
    assert run(cli, "edit", ids[1], "Two, better").exit_code == 0  # the post's, not Mastodon's
    texts = run_sql(
        db_path,
        "SELECT coalesce(d.content, p.content) FROM deliveries d "
        "JOIN posts p ON p.id = d.post_id WHERE p.id = ? ORDER BY d.id",
        ids[1],
    )
    assert texts == [("Two, better",), ("B, better",)]
    result = run(cli, "edit", ids[1], "x" * 501, "-p", "mastodon")
    assert result.exit_code == 3
    assert "over mastodon's limit of 500" in result.stderr
    assert run(cli, "edit", ids[1], "x", "-p", "bluesky").exit_code == 3
    result = run(cli, "edit", ids[1], "x", "-p", ",")  # no platform at all: not a crash
    assert (result.exit_code, result.stderr.count("\n")) == (3, 1)
    assert result.stderr.startswith('Error: -p "," names 0 platforms — give one of')


@pytest.mark.usefixtures("configured")
def test_failed_delete_of_a_part_deletes_the_later_parts(
    run: Run, clock: Clock, db_path: Path
) -> None:
    ids = thread(run, "-s", "1h", "-p", "nostr")
    give_up(db_path, ids[0], "nostr", "invalid: no")
    result = run(cli, "failed", "delete", ids[0])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"deleted:{i}" for i in ids]
    assert run_sql(db_path, "SELECT count(*) FROM posts") == [(0,)]


# --- against mastodon_mock -----------------------------------------------------------------


@pytest.fixture
def mastodon_only(
    write_config: Callable[[str], Path], isolated_home: Path, mastodon_server: MastodonMock
) -> Path:
    token = secret_file(isolated_home / "alice.token", TOKENS["alice"])
    return write_config(
        f'timezone = "UTC"\n[mastodon]\ninstance = "{mastodon_server.url}"\n'
        f'token_file = "{token}"\ntimeout = {ANSWER_TIMEOUT:g}\n'
    )


@pytest.mark.usefixtures("mastodon_only")
def test_failed_retry_of_the_part_that_gave_up_sends_the_rest_in_order(
    run: Run, mastodon_server: MastodonMock
) -> None:
    mastodon_server.add_fault({"type": "status", "status": 422}, count=1)
    result = run(post_cli, "--thread", input=THREAD)
    assert result.exit_code == 1
    assert mastodon_server.statuses() == []
    ids = run(cli, "failed", "list").stdout.splitlines()
    assert [line.split("\t")[1] for line in ids] == ["failed", "blocked", "blocked"]
    blocked = ids[2].split("\t")[0]
    result = run(cli, "failed", "retry", blocked)  # retries part 1, which it waits on
    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("---")] == [
        "--- Thread part 1/3 ---",
        "--- Thread part 2/3 ---",
        "--- Thread part 3/3 ---",
    ]
    statuses = mastodon_server.statuses()
    assert [s["text"] for s in statuses] == ["One.", "Two.", "Three."]
    assert [s["in_reply_to_id"] for s in statuses] == [None, statuses[0]["id"], statuses[1]["id"]]
    assert run(cli, "failed", "list").stdout == ""


@pytest.mark.usefixtures("mastodon_only")
def test_now_on_the_first_part_sends_the_whole_thread_in_order(
    run: Run, mastodon_server: MastodonMock
) -> None:
    result = run(post_cli, "--thread", "-s", "2h", "-f", "json", input=THREAD)
    first = json.loads(result.stdout)[0]["post_id"]
    result = run(cli, "now", first)
    assert result.exit_code == 0, result.stderr
    statuses = mastodon_server.statuses()
    assert [s["text"] for s in statuses] == ["One.", "Two.", "Three."]
    assert [s["in_reply_to_id"] for s in statuses] == [None, statuses[0]["id"], statuses[1]["id"]]
