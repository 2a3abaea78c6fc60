"""plur-history: the original's flags, text lines, JSON fields and CSV header, on the
deliveries' own outcomes."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.plur_history import cli
from tests.helpers import NOW, Clock, Run
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("configured", "backend")
HOUR = 3_600_000
T = int(NOW.timestamp() * 1000)


def draft(run: Run, text: str, *args: str) -> str:
    result = run(post_cli, text, "--draft", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip().removeprefix("draft:")


def outcome(
    db_path: Path,
    post_id: str,
    platform: str,
    state: str,
    at_ms: int,
    remote: str | None = None,
    error: str | None = None,
) -> None:
    """What the engine would have recorded for that delivery."""
    run_sql(
        db_path,
        "UPDATE deliveries SET state = ?, attempts = 1, remote_id = ?, last_error = ?, "
        "sent_at_ms = CASE WHEN ? = 'sent' THEN ? END, updated_at_ms = ?, "
        "remote_url = CASE WHEN ? = 'mastodon' THEN 'https://m.example/@a/' || ? END "
        "WHERE post_id = ? AND platform = ?",
        state,
        remote,
        error,
        state,
        at_ms,
        at_ms,
        platform,
        remote,
        post_id,
        platform,
    )


@pytest.fixture
def posted(run: Run, clock: Clock, db_path: Path) -> dict[str, str]:
    """Three posts that went out at different times, one that is still only queued."""
    old = draft(run, "Old news")
    outcome(db_path, old, "nostr", "sent", T - 48 * HOUR, "note1old")
    outcome(db_path, old, "mastodon", "sent", T - 48 * HOUR + 1000, "111")
    mixed = draft(run, 'Multi-platform post about "Rust", with commas\nand a second line')
    outcome(db_path, mixed, "nostr", "sent", T - 24 * HOUR, "note1mixed")
    outcome(
        db_path, mixed, "mastodon", "dead", T - 24 * HOUR + 5, error="HTTP 422: too long, sorry"
    )
    new = draft(run, "Grüße aus Berlin " + "x" * 60, "-p", "nostr")
    outcome(db_path, new, "nostr", "retry", T - HOUR, error="relay not connected")
    draft(run, "never sent")
    return {"old": old, "mixed": mixed, "new": new}


def test_text_lines_newest_first(run: Run, posted: dict[str, str]) -> None:
    result = run(cli)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split("\n") == [
        f"2026-11-22 10:04:43 | {posted['new']} | Grüße aus Berlin {'x' * 43}...",
        "  ✗ nostr: relay not connected",
        "",
        f"2026-11-21 11:04:43 | {posted['mixed']} | "
        'Multi-platform post about "Rust", with commas...',
        "  ✓ nostr: note1mixed",
        "  ✗ mastodon: HTTP 422: too long, sorry",
        "",
        f"2026-11-20 11:04:43 | {posted['old']} | Old news",
        "  ✓ nostr: note1old",
        "  ✓ mastodon: 111",
        "",
        "",
    ]
    verbose = run(cli, "-v", "-p", "mastodon").stdout.splitlines()
    assert verbose[1:3] == ["  ✗ mastodon (default): HTTP 422: too long, sorry", ""]
    assert "    https://m.example/@a/111" in verbose


def test_csv_has_the_originals_header_and_quotes_what_needs_it(
    run: Run, posted: dict[str, str]
) -> None:
    out = run(cli, "-f", "csv").stdout
    lines = out.splitlines()
    assert lines[0] == "post_id,timestamp,platform,success,platform_post_id,error,content"
    assert (
        lines[-1]
        == f'{posted["old"]},{(T - 48 * HOUR + 1000) // 1000},mastodon,true,111,,"Old news"'
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["platform"], r["success"]) for r in rows] == [
        ("nostr", "false"),
        ("nostr", "true"),
        ("mastodon", "false"),
        ("nostr", "true"),
        ("mastodon", "true"),
    ]
    assert rows[2]["error"] == "HTTP 422: too long, sorry"
    assert rows[2]["content"].endswith('"Rust", with commas\nand a second line')
    assert [
        r["platform"]
        for r in csv.DictReader(io.StringIO(run(cli, "-f", "csv", "-p", "nostr").stdout))
    ] == ["nostr"] * 3


def test_json_fields(run: Run, posted: dict[str, str]) -> None:
    data = json.loads(run(cli, "-f", "json", "-l", "1", "-s", "RUST").stdout)
    assert data == [
        {
            "post_id": posted["mixed"],
            "content": data[0]["content"],
            "created_at": int(NOW.timestamp()),
            "posted_at": (T - 24 * HOUR) // 1000,
            "posted_at_iso": "2026-11-21T11:04:43+01:00",
            "platforms": [
                {
                    "platform": "nostr",
                    "account": "default",
                    "success": True,
                    "platform_post_id": "note1mixed",
                    "url": None,
                    "error": None,
                    "posted_at": (T - 24 * HOUR) // 1000,
                    "posted_at_iso": "2026-11-21T11:04:43+01:00",
                },
                {
                    "platform": "mastodon",
                    "account": "default",
                    "success": False,
                    "platform_post_id": None,
                    "url": None,
                    "error": "HTTP 422: too long, sorry",
                    "posted_at": (T - 24 * HOUR + 5) // 1000,
                    "posted_at_iso": "2026-11-21T11:04:43+01:00",
                },
            ],
        }
    ]
    lines = run(cli, "-f", "jsonl").stdout.splitlines()
    assert [json.loads(line)["post_id"] for line in lines] == [
        posted["new"],
        posted["mixed"],
        posted["old"],
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--limit", "2"], ["new", "mixed"]),
        (["-p", "mastodon"], ["mixed", "old"]),
        (["--search", "GRÜSSE"], ["new"]),  # any case, as Unicode folds it: ß is ss
        (["--search", "rust"], ["mixed"]),
        (["--search", "nothing like it"], []),
        (["--since", "2026-11-21"], ["new", "mixed"]),
        (["--until", "2026-11-21"], ["mixed", "old"]),  # a bare date: through its end
        (["--since", "2026-11-21T00:00:00Z", "--until", "2026-11-21T23:00"], ["mixed"]),
        (["--since", str((T - 25 * HOUR) // 1000)], ["new", "mixed"]),
        (["--since", "30h"], ["new", "mixed"]),
        (["--since", "2h ago"], ["new"]),
        (["--since", "0001-01-01", "--until", "9999-12-31"], ["new", "mixed", "old"]),  # all
    ],
)
def test_filters(run: Run, posted: dict[str, str], args: list[str], expected: list[str]) -> None:
    lines = run(cli, "-f", "jsonl", *args).stdout.splitlines()
    assert [json.loads(line)["post_id"] for line in lines] == [posted[k] for k in expected]


def test_text_lines_show_a_posts_text_and_a_servers_error_never_act_on_the_terminal(
    run: Run, db_path: Path
) -> None:
    hostile = draft(run, "red \x1b[31mALERT\x07 \u202eevil")
    outcome(db_path, hostile, "nostr", "dead", T - HOUR, error="relay: \x1b]0;title\x07 no")
    out = run(cli).stdout
    assert out.splitlines()[0].endswith("| red \\x1b[31mALERT\\x07 \\u202eevil")
    assert "  ✗ nostr: relay: \\x1b]0;title\\x07 no" in out.splitlines()
    assert "\x1b" not in out and "\u202e" not in out
    exact = run(cli, "-f", "jsonl").stdout  # JSON (and CSV) stay exact
    assert json.loads(exact)["content"] == "red \x1b[31mALERT\x07 \u202eevil"


def test_nothing_yet_is_no_output_and_exit_0(run: Run, clock: Clock) -> None:
    for fmt, out in (("text", ""), ("json", "[]\n"), ("jsonl", "")):
        result = run(cli, "-f", fmt)
        assert (result.exit_code, result.stdout) == (0, out)
    assert run(cli, "-f", "csv").stdout == (
        "post_id,timestamp,platform,success,platform_post_id,error,content\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday-ish"], 'Error: invalid date "last tuesday-ish" — use a Unix'),
        (["--until", "2025-02-30"], 'Error: invalid date "2025-02-30": day is out of range'),
        (["-p", "myspace"], 'Error: unknown platform "myspace"'),
        (["-p", ","], 'Error: -p "," names 0 platforms — give one of nostr, mastodon, bluesky'),
        (["-l", "0"], "Error: Invalid value for '-l' / '--limit'"),
        (["-f", "xml"], "Error: Invalid value for '-f' / '--format'"),
    ],
)
def test_bad_input_is_one_line_and_exit_3(
    run: Run, clock: Clock, args: list[str], message: str
) -> None:
    result = run(cli, *args)
    assert result.exit_code == 3
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1


def test_help_has_examples_and_the_log_flags(run: Run) -> None:
    text = run(cli, "--help").stdout
    for words in (
        "Examples:",
        "plur-history -f csv",
        "--log-level",
        "--since DATE",
        "-s, --search",
    ):
        assert words in text


def test_entry_time_is_shown_in_the_users_zone() -> None:
    from plur_queue.plur_history import text
    from plurcast.history import Entry, PlatformResult

    at = int(datetime(2026, 7, 1, 12, tzinfo=UTC).timestamp() * 1000)
    entry = Entry(
        "id", "summer", at, at, [PlatformResult("nostr", "default", True, "n", None, None, at)]
    )
    from zoneinfo import ZoneInfo

    assert text([entry], ZoneInfo("Europe/Berlin"), details=False).startswith(
        "2026-07-01 14:00:00 | id | summer\n"
    )
