"""plur-post --thread / --auto-thread / --numbered / --variant / --reply-to: the posts written,
the lines printed, and nothing written on any error."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli
from tests.helpers import ANSWER_TIMEOUT, Clock, Run, secret_file
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import InProcessRelay
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("backend")

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
THREAD = "First part.\n---\nSecond part.\n---\nThird part."


def made(db_path: Path) -> bool:
    """Whether the test's database exists (PostgreSQL: always, made by the fixture)."""
    return db_path.exists() or bool(os.environ.get("PLURCAST_DATABASE_URL"))


def rows(db_path: Path) -> list[tuple[Any, ...]]:
    """(post id, thread part, platform, text) of every delivery, in order."""
    if not made(db_path):
        return []
    return run_sql(
        db_path,
        "SELECT p.id, p.thread_part, d.platform, coalesce(d.content, p.content) "
        "FROM posts p JOIN deliveries d ON d.post_id = p.id "
        "ORDER BY p.created_at_ms, coalesce(p.thread_part, 0), d.id",
    )


def nothing_written(db_path: Path) -> bool:
    return not made(db_path) or run_sql(db_path, "SELECT count(*) FROM posts") == [(0,)]


@pytest.mark.usefixtures("configured")
def test_thread_scheduled_prints_a_line_per_part(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "--thread", "-s", "30m", input=THREAD)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, 1):
        assert re.fullmatch(rf"scheduled\[{i}\]:{UUID}:for:in 30m \(Nov 22 11:34 CET\)", line)
    ids = [line.split(":")[1] for line in lines]
    stored = rows(db_path)
    assert [(r[0], r[1], r[3]) for r in stored if r[2] == "nostr"] == [
        (ids[0], 1, "First part."),
        (ids[1], 2, "Second part."),
        (ids[2], 3, "Third part."),
    ]
    links = run_sql(
        db_path,
        "SELECT c.platform, pc.thread_part, pp.thread_part, c.blocked FROM deliveries c "
        "JOIN deliveries p ON p.id = c.parent_id JOIN posts pc ON pc.id = c.post_id "
        "JOIN posts pp ON pp.id = p.post_id WHERE p.platform = c.platform ORDER BY c.id",
    )
    assert links == [
        ("nostr", 2, 1, 1),
        ("mastodon", 2, 1, 1),
        ("nostr", 3, 2, 1),
        ("mastodon", 3, 2, 1),
    ]


@pytest.mark.usefixtures("configured")
def test_thread_json_is_an_array_with_thread_fields(run: Run, clock: Clock) -> None:
    result = run(cli, "--thread", "-s", "tomorrow 9am", "-p", "nostr", "-f", "json", input=THREAD)
    assert result.exit_code == 0, result.stderr
    items = json.loads(result.stdout)
    assert [i["thread_part"] for i in items] == [1, 2, 3]
    first = items[0]["post_id"]
    assert all(i["thread_id"] == first and i["thread_parts"] == 3 for i in items)
    assert [i["reply_to"] for i in items] == [None, first, items[1]["post_id"]]
    assert items[0] == {
        "scheduled": True,
        "post_id": first,
        "scheduled_at": 1795420800,
        "scheduled_at_iso": "2026-11-23T09:00:00+01:00",
        "scheduled_time": "Nov 23 09:00 CET",
        "platforms": ["nostr"],
        "account": "default",
        "thread_id": first,
        "thread_part": 1,
        "thread_parts": 3,
        "reply_to": None,
    }


@pytest.mark.usefixtures("configured")
def test_thread_drafts(run: Run, clock: Clock) -> None:
    result = run(cli, "--thread", "--draft", input=THREAD)
    assert result.exit_code == 0, result.stderr
    assert [re.sub(UUID, "ID", line) for line in result.stdout.splitlines()] == [
        "draft[1]:ID",
        "draft[2]:ID",
        "draft[3]:ID",
    ]
    items = json.loads(run(cli, "--thread", "-d", "-f", "json", input=THREAD).stdout)
    assert [(i["draft"], i["thread_part"]) for i in items] == [(True, 1), (True, 2), (True, 3)]


@pytest.mark.usefixtures("configured")
def test_auto_thread_splits_each_platform_by_its_own_limit(
    run: Run, clock: Clock, db_path: Path
) -> None:
    """700 characters: one note on Nostr, two statuses on Mastodon, three posts on Bluesky."""
    sentences = [f"Sentence number {i:02} is exactly forty-seven chars." for i in range(14)]
    text = " ".join(sentences)  # 14 × 47 + 13 = 671
    result = run(cli, "--auto-thread", "-s", "1h", "-p", "nostr,mastodon,bluesky", input=text)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    stored = rows(db_path)
    by_platform: dict[str, list[str]] = {}
    for _, _, platform, part in stored:
        by_platform.setdefault(platform, []).append(part)
    assert by_platform["nostr"] == [text]
    assert len(by_platform["mastodon"]) == 2
    assert len(by_platform["bluesky"]) == 3
    for platform, limit in (("mastodon", 500), ("bluesky", 300)):
        assert all(len(p) <= limit and p.endswith(".") for p in by_platform[platform])
        assert " ".join(by_platform[platform]) == text
    assert [r[2] for r in stored if r[1] == 3] == ["bluesky"]  # part 3 goes to Bluesky only


@pytest.mark.usefixtures("configured")
def test_numbered_parts(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "--thread", "--numbered", "-s", "1h", "-p", "nostr", input=THREAD)
    assert result.exit_code == 0, result.stderr
    assert [r[3] for r in rows(db_path)] == [
        "First part. 1/3",
        "Second part. 2/3",
        "Third part. 3/3",
    ]


@pytest.mark.usefixtures("configured")
def test_variant_replaces_the_text_for_one_platform(
    run: Run, clock: Clock, db_path: Path, tmp_path: Path
) -> None:
    short = tmp_path / "bluesky.txt"
    short.write_text("Short for Bluesky\n")
    result = run(
        cli,
        "The long version for everyone else",
        "-s",
        "1h",
        "-p",
        "nostr,bluesky",
        "--variant",
        f"bluesky=@{short}",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("scheduled:")
    assert [(r[2], r[3]) for r in rows(db_path)] == [
        ("nostr", "The long version for everyone else"),
        ("bluesky", "Short for Bluesky"),
    ]
    assert run_sql(db_path, "SELECT content FROM posts") == [
        ("The long version for everyone else",)
    ]


@pytest.mark.usefixtures("configured")
def test_double_at_starts_a_variant_with_at(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "Hi all", "-s", "1h", "--variant", "mastodon=@@alice@example.social hi")
    assert result.exit_code == 0, result.stderr
    assert ("mastodon", "@alice@example.social hi") in [(r[2], r[3]) for r in rows(db_path)]


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--thread"], "one\n---\n---\ntwo", "part 2 of the thread is empty"),
        (["--thread"], "\n---\n".join(["x"] * 101), "101 parts, over the limit of 100"),
        (["--auto-thread"], " ".join(["word"] * 12_000), "more than 100 parts on"),
        (
            ["--thread"],
            "short\n---\n" + "a" * 501,
            "part 2 is 501 characters, over mastodon's limit of 500",
        ),
        (["--variant", "bluesky=x"], "hi", "--variant bluesky=… is for a platform"),
        (["--variant", "myspace=x"], "hi", 'unknown platform "myspace"'),
        (["--variant", "nostr"], "hi", "is not PLATFORM=TEXT"),
        (["--variant", "nostr=a", "--variant", "nostr=b"], "hi", "--variant nostr is given twice"),
        (["--variant", "nostr=@/nonexistent/file"], "hi", "cannot read it"),
        (["--variant", "nostr=  "], "hi", "content is empty"),
        (["--numbered"], "hi", "--numbered goes with --thread or --auto-thread"),
        (["--reply-to", "deadbeef"], "hi", 'no post with id "deadbeef"'),
        (["--reply-to", "not a ref"], "hi", 'cannot tell what "not a ref" is'),
        (["--reply-to", "at://alice.test/app.bsky.feed.post/3k"], "hi", "goes to nostr, mastodon"),
        (
            ["--reply-to", "https://elsewhere.social/@bob/1234"],
            "hi",
            "the status to reply to is on elsewhere.social",
        ),
        (["--thread", "--cron", "0 9 * * *"], "\n", "content is empty"),
        (["--reply-to", "12345", "--every", "1d"], "hi", "--reply-to cannot be used with --cron"),
    ],
)
def test_bad_input_exits_3_and_writes_nothing(
    run: Run, clock: Clock, db_path: Path, args: list[str], stdin: str, message: str
) -> None:
    recurring = "--cron" in args or "--every" in args
    result = run(cli, *args, input=stdin) if recurring else run(cli, "-s", "1h", *args, input=stdin)
    assert result.exit_code == 3, result.stdout
    assert message in result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert nothing_written(db_path)


@pytest.mark.usefixtures("configured")
def test_reply_to_a_platform_post_narrows_with_a_note(
    run: Run, clock: Clock, db_path: Path
) -> None:
    import nostr_sdk

    event = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "x").finalize(nostr_sdk.Keys.generate())
    note = event.id().to_bech32()
    result = run(cli, "Agreed", "-s", "1h", "--reply-to", note, "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "Note: replying to a Nostr post: posting to nostr only, not to mastodon.\n"
    )
    data = json.loads(result.stdout)
    assert (data["platforms"], data["reply_to"]) == (["nostr"], note)
    assert [r[2] for r in rows(db_path)] == ["nostr"]


@pytest.mark.usefixtures("configured")
def test_reply_to_our_post_links_each_platform(run: Run, clock: Clock, db_path: Path) -> None:
    first = run(cli, "Question", "-s", "1h").stdout.split(":")[1]
    result = run(cli, "Answer", "-s", "2h", "--reply-to", first[:8], "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["reply_to"] == first
    links = run_sql(
        db_path,
        "SELECT c.platform, p.post_id, c.blocked FROM deliveries c "
        "JOIN deliveries p ON p.id = c.parent_id ORDER BY c.id",
    )
    assert links == [("nostr", first, 1), ("mastodon", first, 1)]


@pytest.mark.usefixtures("configured")
def test_reply_to_our_post_refuses_a_platform_it_never_went_to(
    run: Run, clock: Clock, db_path: Path
) -> None:
    first = run(cli, "Nostr only", "-s", "1h", "-p", "nostr").stdout.split(":")[1]
    result = run(cli, "Answer", "-s", "2h", "--reply-to", first)
    assert result.exit_code == 3
    assert f"post {first} cannot be replied to on mastodon: it was never sent there" in (
        result.stderr
    )
    assert "-p nostr" in result.stderr
    assert len(rows(db_path)) == 1
    result = run(cli, "Answer", "-s", "2h", "-p", "nostr", "--reply-to", first)
    assert result.exit_code == 0, result.stderr


# --- published now ---------------------------------------------------------------------------


@pytest.fixture
def live_config(
    write_config: Callable[[str], Path],
    isolated_home: Path,
    nostr_key: Path,
    inprocess_relay: InProcessRelay,
    mastodon_server: MastodonMock,
) -> Path:
    token = secret_file(isolated_home / "alice.token", TOKENS["alice"])
    return write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
        f'relays = ["{inprocess_relay.url}"]\ntimeout = {ANSWER_TIMEOUT:g}\n'
        f'[mastodon]\ninstance = "{mastodon_server.url}"\ntoken_file = "{token}"\n'
        f"timeout = {ANSWER_TIMEOUT:g}\n"
        '[defaults]\nplatforms = ["nostr", "mastodon"]\n'
    )


@pytest.mark.usefixtures("live_config")
def test_a_thread_published_now_prints_each_part_under_its_header(
    run: Run, inprocess_relay: InProcessRelay, mastodon_server: MastodonMock
) -> None:
    result = run(cli, "--thread", input=THREAD)
    assert result.exit_code == 0, result.stderr
    shape = [re.sub(r":(note1\w+|\d+)$", ":ID", line) for line in result.stdout.splitlines()]
    assert shape == [
        "--- Thread part 1/3 ---",
        "nostr:ID",
        "mastodon:ID",
        "--- Thread part 2/3 ---",
        "nostr:ID",
        "mastodon:ID",
        "--- Thread part 3/3 ---",
        "nostr:ID",
        "mastodon:ID",
    ]
    statuses = mastodon_server.statuses()
    assert [s["text"] for s in statuses] == THREAD.split("\n---\n")
    assert [s["in_reply_to_id"] for s in statuses] == [None, statuses[0]["id"], statuses[1]["id"]]
    assert len(inprocess_relay.fetch_events()) == 3


@pytest.mark.usefixtures("live_config")
def test_a_part_that_fails_leaves_the_rest_waiting_never_standalone(
    run: Run, inprocess_relay: InProcessRelay, mastodon_server: MastodonMock
) -> None:
    """The original sent part 2 standalone where part 1 failed: here Mastodon's parts 2 and 3
    wait (blocked) while Nostr's whole thread goes out."""
    mastodon_server.add_fault({"type": "status", "status": 422}, count=1)
    result = run(cli, "--thread", "-f", "json", input=THREAD)
    assert result.exit_code == 1
    items = json.loads(result.stdout)
    mastodon = [i for i in items if i["platform"] == "mastodon"]
    assert [i["state"] for i in mastodon] == ["dead", "pending", "pending"]
    assert mastodon[0]["error"].startswith("HTTP 422")
    assert [i["success"] for i in items if i["platform"] == "nostr"] == [True] * 3
    assert mastodon_server.statuses() == []
    assert "the rest of the thread on mastodon waits for the part that gave up" in result.stderr
    text = run(cli, "--thread", "-p", "mastodon", input="a\n---\nb").stdout
    assert text.splitlines()[0] == "--- Thread part 1/2 ---"
