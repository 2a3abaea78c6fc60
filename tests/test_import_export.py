"""plur-import and plur-export: every row checked as plur-post checks it, all or nothing,
idempotent, slots taken in order — and export → import into an empty database reproduces
the queue, in every format."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_queue.plur_export import cli as export_cli
from plur_queue.plur_import import cli as import_cli
from tests.helpers import BASE_CONFIG, AnotherDatabase, Clock, Run, rows_in, write_file
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("configured", "backend")
UUID = "[0-9a-f-]{36}"
SLOTS = BASE_CONFIG + '\n[slots]\nall = ["mon-fri 09:00"]\n'


def posts(db_path: Path) -> list[tuple[object, ...]]:
    """(content, time, zone, platforms in delivery order, account) of every post."""
    rows = run_sql(
        db_path,
        "SELECT p.id, p.content, p.scheduled_at_ms, p.timezone, d.platform, d.account "
        "FROM posts p JOIN deliveries d ON d.post_id = p.id ORDER BY d.id",
    )
    found: dict[str, list[object]] = {}
    for post_id, text, at, zone, platform, account in rows:
        entry = found.setdefault(post_id, [text, at, zone, [], account])
        entry[3].append(platform)  # type: ignore[attr-defined]
    return sorted(
        ((t, a, z, ",".join(p), acc) for t, a, z, p, acc in found.values()),  # type: ignore[arg-type]
        key=lambda r: (r[1] is None, r[1] or 0, r[0]),
    )


def nothing_written(db_path: Path) -> bool:
    return not db_path.exists() and rows_in(db_path, "posts") == 0


PLAN = (
    "content,schedule,platforms,key\n"
    '"Hello, world",2026-11-23 09:00,"nostr,mastodon",hello\n'
    "Second post,tomorrow 3pm,nostr,\n"
    '"Third ""quoted"" post",2026-11-25T08:00:00Z,,\n'
)


# --- importing -------------------------------------------------------------------------


def test_a_csv_is_queued_as_plur_post_would(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    result = run(import_cli, write_file(tmp_path, "plan.csv", PLAN))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("scheduled:") for line in lines)
    assert lines[0].endswith(":for:in 21h 55m (Nov 23 09:00 CET)")
    assert result.stderr == "imported 3 posts\n"
    assert posts(db_path) == [
        ("Hello, world", 1795420800000, "Europe/Berlin", "nostr,mastodon", "default"),
        ("Second post", 1795442400000, "Europe/Berlin", "nostr", "default"),
        ('Third "quoted" post', 1795593600000, "Europe/Berlin", "nostr,mastodon", "default"),
    ]


def test_importing_the_same_file_again_adds_nothing(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    name = write_file(tmp_path, "plan.csv", PLAN)
    first = run(import_cli, name).stdout.splitlines()
    again = run(import_cli, name)
    assert again.exit_code == 0
    assert again.stdout.splitlines() == [f"exists:{line.split(':')[1]}" for line in first]
    assert again.stderr == "imported 0 posts; 3 already there\n"
    clock.advance(days=3)  # the rows' times are past now, and they are still the same rows
    assert run(import_cli, name).exit_code == 0
    assert rows_in(db_path, "posts") == 3


def test_every_bad_row_is_listed_and_nothing_is_written(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    text = (
        "content,schedule,platforms,key,nostr_pow\n"
        "fine,30m,,,\n"
        "too late,2020-01-01 09:00,,,\n"
        f"{'x' * 501},1h,mastodon,,\n"
        "where,1h,myspace,,\n"
        "first,2h,,same,\n"
        "second,3h,,same,\n"
        "odd time,flurb,,,\n"
        "pow,1h,nostr,,65\n"
    )
    result = run(import_cli, write_file(tmp_path, "plan.csv", text))
    assert result.exit_code == 3
    errors = result.stderr.splitlines()
    assert errors[0].startswith("Error: line 3: Jan 1 2020 09:00 CET is in the past")
    assert errors[1].startswith("Error: line 4: content is 501 characters, over mastodon's")
    assert errors[2].startswith('Error: line 5: unknown platform "myspace"')
    assert errors[3] == 'Error: line 7: key "same" is also on line 6 — give each row its own key'
    assert errors[4].startswith('Error: line 8: cannot understand the time "flurb"')
    assert errors[5].startswith("Error: line 9: nostr_pow must be a whole number from 0 to 64")
    assert errors[6] == (
        "Error: 6 problems found; nothing was imported — fix them and run plur-import again"
    )
    assert len(errors) == 7
    assert nothing_written(db_path)


@pytest.mark.sqlite_only  # nothing here reaches the database
def test_what_a_bad_row_says_is_shown_never_acted_on_by_the_terminal(
    run: Run, clock: Clock, tmp_path: Path
) -> None:
    text = '{"content": "x", "reply_to": "\\u001b[2J"}\n{"content": "y", "tz": "\\u202e"}\n'
    result = run(import_cli, write_file(tmp_path, "p.jsonl", text))
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[0].startswith('Error: line 1: cannot tell what "\\x1b[2J" is to reply to')
    assert lines[1].startswith('Error: line 2: unknown timezone "\\u202e"')
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr


@pytest.mark.sqlite_only  # nothing here reaches the database
def test_rows_with_one_hash_are_the_same_row(run: Run, clock: Clock, tmp_path: Path) -> None:
    text = '{"content": "twin", "schedule": "1h"}\n{"content": "twin", "schedule": "1H "}\n'
    result = run(import_cli, write_file(tmp_path, "p.jsonl", text))
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        "Error: line 2: the same content, time and platforms as line 1 — "
        "give the rows a key column to import both"
    )


@pytest.mark.sqlite_only  # nothing here reaches the database
@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a.csv", "Hello world,30m\nAgain,1h\n", "line 1: the first row must name the columns"),
        ("a.csv", b"content\nfine\ncaf\xe9\n", "line 3: not valid UTF-8 (byte 0xe9 at column 4)"),
        ("a.csv", "", "no posts in"),
        ("a.csv", "content,schedule\n", "no posts in"),
        ("a.txt", "content\nx\n", "cannot tell the format of"),
        ("a.jsonl", '{"content": "x", "image_url": "https://a.example/cat.png"}\n', "by URL"),
        ("a.md", "---\nschedule: 1h\n---\n", "line 1: no content"),
    ],
)
def test_hostile_files(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path, name: str, data: str, message: str
) -> None:
    result = run(import_cli, write_file(tmp_path, name, data))
    assert result.exit_code == 3
    assert message in result.stderr
    assert nothing_written(db_path)


@pytest.mark.sqlite_only  # nothing here reaches the database
def test_big_files_directories_missing_files_and_stdin(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.write(b"content\n")
        f.write(b"x" * 50_000_000)
    result = run(import_cli, str(big))
    assert result.exit_code == 3 and result.stderr.count("\n") == 1
    assert "over the limit of 16 MiB" in result.stderr
    assert "is a directory" in run(import_cli, str(tmp_path)).stderr
    assert "no such file" in run(import_cli, str(tmp_path / "nope.csv")).stderr
    assert "add --format" in run(import_cli, "-", input="content\nx\n").stderr
    piped = run(import_cli, "-f", "csv", "-", input="content,schedule\nfrom a pipe,1h\n")
    assert piped.exit_code == 0 and rows_in(db_path, "posts") == 1


def test_a_row_for_a_platform_that_is_not_configured_is_exit_2(
    run: Run, clock: Clock, tmp_path: Path, config_path: Path
) -> None:
    config_path.write_text(BASE_CONFIG.replace("[bluesky]", "[bluesky_off]"))
    result = run(import_cli, write_file(tmp_path, "p.csv", "content,platforms\nhi,bluesky\n"))
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: line 2: bluesky is not configured")


@pytest.mark.sqlite_only  # nothing here reaches the database
def test_a_key_file_others_can_read_is_named_on_every_row_it_stops(
    run: Run, clock: Clock, tmp_path: Path, config_path: Path, db_path: Path
) -> None:
    """Credentials are checked once per account for the whole file, and the verdict is
    each row's: every row that would use them is listed."""
    (config_path.parent / "nostr.keys").chmod(0o644)
    text = "content,schedule,platforms\none,1h,nostr\ntwo,2h,mastodon\nthree,3h,nostr\n"
    result = run(import_cli, write_file(tmp_path, "p.csv", text))
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert [e.split(":")[1] for e in errors[:2]] == [" line 2", " line 4"]
    assert all("chmod 600" in e for e in errors[:2]) and len(errors) == 3
    assert nothing_written(db_path)


def test_slots_fill_in_order_and_a_dry_run_writes_nothing(
    run: Run, clock: Clock, tmp_path: Path, config_path: Path, db_path: Path
) -> None:
    config_path.write_text(SLOTS)
    text = "content,schedule\none,\ntwo,next\nthree,\nfixed,2026-11-24 09:00\n"
    name = write_file(tmp_path, "slots.csv", text)
    dry = run(import_cli, name, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would-scheduled:line-2:for:in 21h 55m (Nov 23 09:00 CET)",
        "would-scheduled:line-3:for:in 2d 21h (Nov 25 09:00 CET)",  # the 24th is taken by …
        "would-scheduled:line-4:for:in 3d 21h (Nov 26 09:00 CET)",
        "would-scheduled:line-5:for:in 1d 21h (Nov 24 09:00 CET)",  # … this row
    ]
    assert dry.stderr == "would import 4 posts\n"
    assert nothing_written(db_path)
    real = run(import_cli, name, "--report", "json")
    data = json.loads(real.stdout)
    assert [d["scheduled_at_iso"][:10] for d in data] == [
        "2026-11-23",
        "2026-11-25",
        "2026-11-26",
        "2026-11-24",
    ]
    assert {d["status"] for d in data} == {"imported"}
    more = run(import_cli, write_file(tmp_path, "more.csv", "content\nfour\n"))
    assert more.stdout.endswith("(Nov 27 09:00 CET)\n")


def test_markdown_files_and_front_matter(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    one = write_file(
        tmp_path,
        "launch.md",
        "---\nschedule: 2026-11-23 09:00\nplatforms: [mastodon]\nvisibility: unlisted\n---\n"
        "We launch today.\n\nRead more: https://example.org\n+++\n"
        "---\ndraft: true\n---\nA draft for later\n",
    )
    two = write_file(tmp_path, "note.md", "---\nschedule: 2h\nnostr_pow: 12\n---\nMined\n")
    result = run(import_cli, one, two)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("draft:")
    listed = json.loads(run(queue_cli, "list", "--all", "-f", "json").stdout)
    assert [(p["content"].split("\n")[0], p["status"], p["platforms"]) for p in listed] == [
        ("Mined", "scheduled", ["nostr", "mastodon"]),
        ("We launch today.", "scheduled", ["mastodon"]),
        ("A draft for later", "draft", ["nostr", "mastodon"]),
    ]
    shown = json.loads(run(queue_cli, "show", listed[1]["id"], "-f", "json").stdout)
    assert shown["metadata"] == {"visibility": "unlisted"}
    mined = json.loads(run(queue_cli, "show", listed[0]["id"], "-f", "json").stdout)
    assert mined["metadata"] == {"nostr": {"pow_difficulty": 12}}
    bad_md = "---\nschedule: 1h\n---\nok\n+++\n---\ncolour: red\n---\nx\n"
    bad = run(import_cli, write_file(tmp_path, "bad.md", bad_md), one)
    assert bad.stderr.startswith(f'Error: {tmp_path}/bad.md:6: "colour" is not a field')
    assert bad.stderr.count("\n") == 2


def test_threads_variants_and_replies(
    run: Run, clock: Clock, tmp_path: Path, db_path: Path
) -> None:
    answered = run(post_cli, "Earlier post", "-s", "1h", "-p", "nostr").stdout.split(":")[1]
    text = (
        '{"thread": ["First part", "Second part"], "schedule": "2h", "platforms": "nostr"}\n'
        f'{{"content": "Reply", "schedule": "3h", "reply_to": "{answered}",'
        ' "platforms": "nostr"}\n'
        '{"content": "Long text", "variant": {"bluesky": "@short"}, "schedule": "4h",'
        ' "platforms": ["mastodon", "bluesky"]}\n'
    )
    result = run(import_cli, write_file(tmp_path, "threads.jsonl", text))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "scheduled[1]",
        "scheduled[2]",
        "scheduled",
        "scheduled",
    ]
    first, second, reply, varied = (line.split(":")[1] for line in lines)
    query = "SELECT thread_id, thread_part FROM posts WHERE id = ?"
    assert run_sql(db_path, query, second) == [(first, 2)]
    [(meta,)] = run_sql(db_path, "SELECT metadata FROM posts WHERE id = ?", reply)
    assert json.loads(meta)["reply_to"] == answered
    query = "SELECT content FROM deliveries WHERE post_id = ? AND platform = 'bluesky'"
    assert run_sql(db_path, query, varied) == [("@short",)]  # the text itself, not a file
    bad = run(
        import_cli,
        write_file(
            tmp_path,
            "bad.jsonl",
            '{"content": "x", "schedule": "1h", "numbered": true}\n'
            '{"content": "x", "schedule": "1h", "variant": {"bluesky": "b"},'
            ' "platforms": "nostr"}\n'
            '{"content": "x", "schedule": "1h", "reply_to": "deadbeef-0000"}\n',
        ),
    )
    assert bad.exit_code == 3
    errors = bad.stderr.splitlines()
    assert errors[0].startswith("Error: line 1: --numbered goes with --thread or --auto-thread")
    assert errors[1].startswith("Error: line 2: --variant bluesky=… is for a platform")
    assert errors[2].startswith("Error: line 3: ")


# --- exporting, and the round trip -----------------------------------------------------


LONG = " ".join(f"word{i}" for i in range(120))  # ~950 characters: three Bluesky posts


def make_queue(run: Run) -> None:
    for args in (
        ["Part one\n---\nPart two\n---\nPart three", "-s", "2026-11-29 12:00", "--thread"],
        [LONG, "-s", "2026-11-30 12:00", "--auto-thread", "--numbered", "-p", "nostr,bluesky"],
        [
            "Long for Mastodon",
            "-s",
            "2026-12-01 12:00",
            "-p",
            "mastodon,bluesky",
            "--variant",
            "bluesky=@@short for Bluesky",
        ],
        ["Morning note ☀", "-s", "2026-11-23 09:00"],
        ["Mastodon only,\nwith a second line", "-s", "tomorrow 3pm", "-p", "mastodon"],
        ["New York time", "-s", "2026-11-24 08:00", "--tz", "America/New_York"],
        ["Quiet", "-s", "2026-11-25 12:00", "--visibility", "unlisted", "-p", "mastodon"],
        ["Mined", "-s", "2026-11-26 12:00", "-p", "nostr", "--nostr-pow", "16"],
        ["Test account", "-s", "2026-11-27 12:00", "-p", "nostr", "-a", "test"],
        ['+++\n---\nA tricky "body", with commas', "-s", "2026-11-28 12:00"],
        ["Not ready yet", "--draft"],
    ):
        assert run(post_cli, *args).exit_code == 0
    gone = run(post_cli, "Cancelled", "-s", "3h").stdout.split(":")[1]
    assert run(queue_cli, "cancel", gone, "-f").exit_code == 0


def queue_view(run: Run, db_path: Path) -> list[dict[str, object]]:
    """The queue as plur-queue shows it, with each delivery's own text and its parent — post
    ids replaced by their place in the listing (a copy has new ids)."""
    listed = sorted(  # parts of a thread share a time; their order in a listing is the ids'
        (
            item
            for item in json.loads(run(queue_cli, "list", "--all", "-f", "json").stdout)
            if item["status"] != "cancelled"  # the queue: cancelled posts are not exported
        ),
        key=lambda i: (i["scheduled_at"] or 2**40, i["thread_part"] or 0, i["content"]),
    )
    place = {item["id"]: f"#{n}" for n, item in enumerate(listed)}
    own = {
        (post, platform): (text, parent)
        for post, platform, text, parent in run_sql(
            db_path,
            "SELECT d.post_id, d.platform, d.content, p.post_id FROM deliveries d "
            "LEFT JOIN deliveries p ON p.id = d.parent_id",
        )
    }
    view = []
    for item in listed:
        shown = json.loads(run(queue_cli, "show", item["id"], "-f", "json").stdout)
        fields = {
            k: place.get(v, v) if isinstance(v, str) else v
            for k, v in shown.items()
            if k not in ("id", "created_at", "created_at_iso")
        }
        fields["deliveries"] = [
            (
                d["platform"],
                d["account"],
                d["state"],
                own[(item["id"], d["platform"])][0],
                place.get(own[(item["id"], d["platform"])][1]),
            )
            for d in shown["deliveries"]
        ]
        view.append(fields)
    return view


@pytest.mark.parametrize("kind", ["jsonl", "csv", "markdown"])
def test_export_then_import_into_an_empty_database_reproduces_the_queue(
    run: Run,
    clock: Clock,
    db_path: Path,
    another_database: AnotherDatabase,
    kind: str,
) -> None:
    make_queue(run)
    before = queue_view(run, db_path)
    stored = [p for p in posts(db_path) if p[0] != "Cancelled"]
    exported = run(export_cli, "-f", kind)
    assert exported.exit_code == 0, exported.stderr
    assert exported.stderr == "exported 11 posts\n"  # a thread is one row
    with another_database() as copy:
        imported = run(import_cli, "-f", kind, "-", input=exported.stdout)
        assert imported.exit_code == 0, imported.stderr
        assert len(before) == 15 and queue_view(run, copy) == before
        assert posts(copy) == stored  # zones too
        # and the export of the copy is the export of the original
        assert run(export_cli, "-f", kind).stdout == exported.stdout


def test_importing_an_export_back_changes_nothing(run: Run, clock: Clock, db_path: Path) -> None:
    make_queue(run)
    exported = run(export_cli).stdout
    result = run(import_cli, "-f", "jsonl", "-", input=exported)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 11 and all(line.startswith("exists:") for line in lines)
    assert rows_in(db_path, "posts") == 16


def test_export_options(run: Run, clock: Clock, tmp_path: Path) -> None:
    make_queue(run)
    target = tmp_path / "plan.csv"
    result = run(export_cli, "-o", str(target), "--since", "2026-11-24", "--until", "2026-11-25")
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    lines = target.read_text().splitlines()
    assert lines[0] == "key,content,schedule,tz,platforms,account,visibility"
    assert [line.split(",")[1] for line in lines[1:]] == ["New York time", "Quiet"]
    everything = run(export_cli, "--status", "all").stdout.splitlines()
    assert len(everything) == 12
    cancelled = run(export_cli, "--status", "cancelled").stdout
    assert json.loads(cancelled)["content"] == "Cancelled"
    assert "unknown status" in run(export_cli, "--status", "lost").stderr
    assert "cannot tell the format of" in run(export_cli, "-o", str(tmp_path / "x.txt")).stderr
    assert not (tmp_path / "x.txt").exists()
    assert "is a directory" in run(export_cli, "-o", str(tmp_path)).stderr
    for blank in ("", " "):
        result = run(export_cli, "-o", blank)
        assert (result.exit_code, result.stderr) == (
            3,
            "Error: -o names no file — give a file name, or leave -o out for stdout\n",
        )


@pytest.mark.sqlite_only  # a SQLite file that does not exist yet
def test_exporting_a_queue_not_made_yet_to_a_file_writes_an_empty_export(
    run: Run, db_path: Path, tmp_path: Path
) -> None:
    """It said "a database in memory has no media store for images" and exited 1, and wrote
    nothing, though stdout got the empty export."""
    for name, content in (
        ("plan.jsonl", ""),
        ("plan.csv", "key,content,schedule,tz,platforms,account\n"),
    ):
        target = tmp_path / name
        result = run(export_cli, "-o", str(target))
        assert (result.exit_code, result.stderr) == (0, "exported 0 posts\n")
        assert target.read_text() == run(export_cli, "-f", target.suffix[1:]).stdout == content
    assert not db_path.exists()


@pytest.mark.sqlite_only  # nothing here reaches the database
def test_help_of_the_new_commands_has_examples(run: Run) -> None:
    for cli in (import_cli, export_cli):
        text = run(cli, "--help").stdout
        assert "Examples:" in text and "--log-level" in text
