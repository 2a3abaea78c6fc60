"""plur-post: exact output lines, exit codes, and nothing written on any error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from plur_post.cli import cli
from tests.helpers import Clock, Run
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("backend")

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def count_posts(db_path: Path) -> int:
    if not db_path.exists() and not os.environ.get("PLURCAST_DATABASE_URL"):
        return 0
    return int(run_sql(db_path, "SELECT count(*) FROM posts")[0][0])


@pytest.mark.usefixtures("configured")
def test_schedule_prints_id_relative_and_local_time(run: Run, clock: Clock) -> None:
    result = run(cli, "Hello, world", "--schedule", "30m")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    line = result.stdout.strip()
    prefix, post_id, rest = line.split(":", 2)
    assert prefix == "scheduled"
    assert rest == "for:in 30m (Nov 22 11:34 CET)"
    assert len(post_id) == 36


@pytest.mark.usefixtures("configured")
def test_schedule_json(run: Run, clock: Clock) -> None:
    result = run(cli, "Hi", "-s", "tomorrow 9am", "-p", "nostr", "-f", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data == {
        "scheduled": True,
        "post_id": data["post_id"],
        "scheduled_at": 1795420800,
        "scheduled_at_iso": "2026-11-23T09:00:00+01:00",
        "scheduled_time": "Nov 23 09:00 CET",
        "platforms": ["nostr"],
        "account": "default",
    }


@pytest.mark.usefixtures("configured")
def test_tz_flag_changes_meaning_and_display(run: Run, clock: Clock) -> None:
    result = run(cli, "Hi", "-s", "tomorrow 9am", "--tz", "America/New_York", "-f", "jsonl")
    data = json.loads(result.stdout)
    assert data["scheduled_at_iso"] == "2026-11-23T09:00:00-05:00"
    assert data["scheduled_time"] == "Nov 23 09:00 EST"


@pytest.mark.usefixtures("configured")
def test_draft(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "Later maybe", "--draft")
    assert result.exit_code == 0
    assert result.stdout.startswith("draft:")
    result = run(cli, "Later maybe", "-d", "-f", "json")
    assert json.loads(result.stdout)["draft"] is True
    assert count_posts(db_path) == 2


@pytest.mark.usefixtures("configured")
def test_content_from_stdin_is_stripped(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "-s", "1h", input="from a pipe\n")
    assert result.exit_code == 0
    result = run(cli, "-", "-s", "1h", input="  dash too \n\n")
    assert result.exit_code == 0
    contents = [r[0] for r in run_sql(db_path, "SELECT content FROM posts ORDER BY content")]
    assert contents == ["dash too", "from a pipe"]


@pytest.mark.usefixtures("configured")
def test_platform_flags_repeatable_and_comma_separated(run: Run, clock: Clock) -> None:
    result = run(cli, "x", "-s", "1h", "-p", "bluesky,nostr", "-p", "mastodon", "-f", "json")
    assert json.loads(result.stdout)["platforms"] == ["bluesky", "nostr", "mastodon"]


@pytest.mark.usefixtures("configured")
def test_named_account_is_stored_on_each_delivery(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "x", "-s", "1h", "-p", "nostr", "-a", "test")
    assert result.exit_code == 0
    assert run_sql(db_path, "SELECT platform, account FROM deliveries") == [("nostr", "test")]


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["", "-s", "1h"], None, 3, "Error: content is empty — "),
        (["   ", "-s", "1h"], None, 3, "Error: content is empty — "),
        (
            ["-s", "1h"],
            b"\xff\xfe bad",
            3,
            "Error: content is not valid UTF-8 (byte 0xff at offset 0)",
        ),
        (["-s", "1h"], b"x" * 100_001, 3, "Error: content is over the limit of 100,000 bytes"),
        (["x" * 100_001, "-s", "1h"], None, 3, "Error: content is 100,001 bytes, over the limit"),
        (["x", "-s", "yesterday"], None, 3, "Error: Nov 21 11:04 CET is in the past"),
        (["x", "-s", "2026-11-22 10:00"], None, 3, "Error: Nov 22 10:00 CET is in the past"),
        (["x", "-s", "soonish"], None, 3, 'Error: cannot understand the time "soonish" — try'),
        (["x", "-s", "2027-03-28 02:30"], None, 3, "Error: 2027-03-28 02:30 does not exist"),
        (["x", "-s", "1h", "--draft"], None, 3, "Error: --schedule and --draft cannot be used"),
        (["x", "-s", "1h", "-p", "myspace"], None, 3, 'Error: unknown platform "myspace"'),
        # These posted to the default platforms, as if -p had not been given.
        (["x", "-s", "1h", "-p", ","], None, 3, 'Error: -p "," names 0 platforms — give one of'),
        (["x", "-s", "1h", "-p", ""], None, 3, 'Error: -p "" names 0 platforms — give one of'),
        (["x", "-s", "1h", "--tz", "Mars/Base"], None, 3, 'Error: unknown timezone "Mars/Base"'),
        (["x", "-s", "1h", "--tz", ""], None, 3, 'Error: unknown timezone ""'),  # was ignored
        (["x", "-s", "1h", "-a", "bad name!"], None, 3, 'Error: invalid account name "bad name!"'),
        (["x", "-s", "1h", "-a", "nope"], None, 2, 'Error: no account "nope" for nostr'),
        (["x", "-s", "1h", "--bogus"], None, 3, "Error: No such option '--bogus'."),
        (["x", "-s", "random:10s-1m"], None, 3, "Error: "),
        (["x", "-f", "xml", "-s", "1h"], None, 3, "Error: Invalid value for '-f'"),
    ],
)
@pytest.mark.usefixtures("configured")
def test_bad_input_one_line_error_right_code_nothing_written(
    run: Run,
    clock: Clock,
    db_path: Path,
    args: list[str],
    stdin: bytes | None,
    code: int,
    message: str,
) -> None:
    result = run(cli, *args, input=stdin)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert count_posts(db_path) == 0


@pytest.mark.usefixtures("configured")
def test_over_platform_limits(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "a" * 501, "-s", "1h", "-p", "mastodon")
    assert result.exit_code == 3
    assert result.stderr.startswith(
        "Error: content is 501 characters, over mastodon's limit of 500"
    )
    result = run(cli, "🇩🇪" * 301, "-s", "1h", "-p", "bluesky")
    assert result.exit_code == 3
    assert "over bluesky's limit of 300" in result.stderr
    assert run(cli, "🇩🇪" * 300, "-s", "1h", "-p", "bluesky").exit_code == 0
    assert run(cli, "a" * 5000, "-s", "1h", "-p", "nostr").exit_code == 0
    assert count_posts(db_path) == 2


def test_configured_max_chars(  # type: ignore[no-untyped-def]
    run: Run, clock: Clock, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLURCAST_MASTODON_TOKEN", "token")
    write_config('[mastodon]\ninstance = "x"\nmax_chars = 5000\n')
    assert run(cli, "a" * 4000, "-s", "1h").exit_code == 0


def test_no_platforms_configured(run: Run, clock: Clock, db_path: Path) -> None:
    result = run(cli, "hello", "-s", "1h")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: no platforms are configured — add a [nostr]")
    assert count_posts(db_path) == 0


def test_platform_not_configured(run: Run, clock: Clock, write_config) -> None:  # type: ignore[no-untyped-def]
    write_config("[nostr]\n")
    result = run(cli, "hello", "-s", "1h", "-p", "mastodon")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: mastodon is not configured — add a [mastodon]")


def test_bad_toml_exit_2_with_line(run: Run, clock: Clock, write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config("[nostr]\nenabled = yes\n")
    result = run(cli, "hello", "-s", "1h")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path}: ")
    assert "(at line 2, column 11)" in result.stderr


def test_missing_explicit_config_exit_2(
    run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PLURCAST_CONFIG", str(tmp_path / "nope.toml"))
    result = run(cli, "hello", "-s", "1h")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


@pytest.mark.sqlite_only
@pytest.mark.usefixtures("configured")
def test_env_db_path_is_honoured(
    run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_path: Path
) -> None:
    other = tmp_path / "elsewhere" / "q.db"
    monkeypatch.setenv("PLURCAST_DB_PATH", str(other))
    assert run(cli, "x", "-s", "1h").exit_code == 0
    assert count_posts(other) == 1
    assert not db_path.exists()


@pytest.mark.usefixtures("configured")
def test_random_is_placed_after_latest_pending(run: Run, clock: Clock) -> None:
    first = json.loads(run(cli, "a", "-s", "2026-11-25 12:00", "-f", "json").stdout)
    result = run(cli, "b", "-s", "random:1h-2h", "-f", "json")
    second = json.loads(result.stdout)
    assert first["scheduled_at"] + 3600 <= second["scheduled_at"] <= first["scheduled_at"] + 7200


@pytest.mark.sqlite_only
@pytest.mark.usefixtures("configured")
def test_corrupt_database_is_a_one_line_error(run: Run, clock: Clock, db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not sqlite" * 100)
    result = run(cli, "x", "-s", "1h")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: the database")
    assert "damaged or not a Plurcast database" in result.stderr
    assert result.stderr.count("\n") == 1


def test_debug_shows_traceback(run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLURCAST_DEBUG", "1")
    from plurcast.errors import ConfigError

    with pytest.raises(ConfigError):
        run(cli, "x", "-s", "1h")


def test_help_and_version(run: Run) -> None:
    result = run(cli, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert "--schedule" in result.stdout
    assert run(cli, "-h").exit_code == 0
    result = run(cli, "--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("plur-post, version ")


@pytest.mark.usefixtures("configured")
def test_nostr_key_problems_are_refused_when_scheduling(
    run: Run, clock: Clock, config_path: Path, db_path: Path
) -> None:
    key = config_path.parent / "nostr.keys"
    key.chmod(0o644)
    result = run(cli, "x", "-s", "1h", "-p", "nostr")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {key} is readable by other users — chmod 600 {key}\n"
    key.unlink()
    result = run(cli, "x", "-s", "1h", "-p", "nostr")
    assert result.exit_code == 2
    assert str(key) in result.stderr
    key.write_text("not a key at all")
    key.chmod(0o600)
    result = run(cli, "x", "-s", "1h", "-p", "nostr")
    assert result.exit_code == 2
    assert "not a key at all" not in result.stderr
    assert count_posts(db_path) == 0
    assert run(cli, "x", "-s", "1h", "-p", "nostr", "-a", "test").exit_code == 0
