"""Hostile places for our output: a pipe closed early is no error of ours, but it does not
hide one either; a disk that is full is an error, said in one line (issue 11)."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import BASE_CONFIG, BIN, DOWN_TIMEOUT, PATIENCE, many_posts, run_with_reader_gone

# The usual config, its relay not there: an immediate post fails (exit 1) at once.
DOWN = BASE_CONFIG.replace(
    'relays = ["ws://127.0.0.1:1"]\n', f'relays = ["ws://127.0.0.1:1"]\ntimeout = {DOWN_TIMEOUT}\n'
)


@pytest.mark.slow
@pytest.mark.usefixtures("configured")
def test_a_reader_that_goes_away_does_not_turn_a_failure_into_success(
    write_config: Callable[[str], Path],
) -> None:
    # `plur-post "x" | true` said 0, and left its notes out, although nothing was sent: the
    # broken pipe ended the command before its exit code and notes.
    write_config(DOWN)
    for fmt in ("text", "json"):
        done = run_with_reader_gone("plur-post", "hello", "-p", "nostr", "-f", fmt)
        assert done.returncode == 1, (fmt, done.stderr)
        assert b"Note: nostr will be retried by plur-send at " in done.stderr, done.stderr
        assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr
    done = run_with_reader_gone("plur-post", "hello", "-s", "1h")
    assert (done.returncode, done.stderr) == (0, b"")


def with_file_size_limit(limit: int) -> Callable[[], None]:
    """A child whose files may not grow past `limit` bytes: a write beyond fails with EFBIG,
    as one to a full disk fails with ENOSPC (SIGXFSZ, which would kill it, ignored)."""

    def limit_it() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_it


@pytest.mark.slow
@pytest.mark.usefixtures("configured")
def test_output_that_does_not_fit_is_an_error_not_a_success(tmp_path: Path, db_path: Path) -> None:
    # `plur-export > backup.jsonl` on a disk that filled part-way said "exported N posts",
    # exit 0, with 64 KB of the 300 written; `plur-queue list > file` said "internal error …
    # please report it"; `plur-export -o` left a truncated file in place of the backup.
    many_posts(db_path, 1000, "x" * 200)
    for command, *args in (
        ("plur-export", "-f", "jsonl"),
        ("plur-queue", "list", "-f", "json"),
        ("plur-queue", "list"),
    ):
        out = tmp_path / "out"
        with out.open("wb") as sink:
            done = subprocess.run(
                [str(BIN / command), *args],
                stdout=sink,
                stderr=subprocess.PIPE,
                preexec_fn=with_file_size_limit(64 * 1024),
                timeout=PATIENCE,
                check=False,
            )
        assert done.returncode == 1, (command, done.stderr)
        assert done.stderr.decode().splitlines()[-1] == (
            "Error: cannot write the output: File too large — make room there, or write elsewhere"
        ), command
    plan = tmp_path / "plan.jsonl"
    plan.write_text("the last backup\n")
    done = subprocess.run(
        [str(BIN / "plur-export"), "-o", str(plan)],
        stderr=subprocess.PIPE,
        preexec_fn=with_file_size_limit(64 * 1024),
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.decode().splitlines()[-1] == (
        f"Error: cannot write {plan}: File too large — make room there, or write elsewhere"
    )
    assert plan.read_text() == "the last backup\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out", "plan.jsonl"]


@pytest.mark.slow
@pytest.mark.usefixtures("configured")
def test_a_post_whose_line_cannot_be_written_says_it_is_saved(db_path: Path) -> None:
    """plur-post exits 1 when its line cannot be written, but the post is in the queue: the
    error says so, so that nobody posts it a second time."""
    with open(os.devnull, "rb") as stdin, open("/dev/full", "wb") as full:  # noqa: PTH123
        done = subprocess.run(
            [str(BIN / "plur-post"), "saved, though unsaid", "-s", "1h"],
            stdin=stdin,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=PATIENCE,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    with sqlite3.connect(db_path) as conn:
        (post_id,) = conn.execute("SELECT id FROM posts").fetchone()
        assert conn.execute("SELECT count(*) FROM posts").fetchone() == (1,)
    assert done.stderr.decode().splitlines() == [
        f"Error: cannot write the output: No space left on device — post {post_id} is saved all"
        f" the same (plur-queue show {post_id}): do not post it again; make room there, or write"
        " elsewhere"
    ]


def closing(fd: int) -> Callable[[], None]:
    return lambda: os.close(fd)


@pytest.mark.slow
@pytest.mark.usefixtures("configured")
def test_a_closed_stdout_or_stderr_is_said_or_kept_quiet_with_the_right_code(
    db_path: Path,
) -> None:
    # `plur-queue list >&-` was "internal error: AttributeError(...)"; `plur-post x -s soon
    # 2>&-` exited 1, not 3.
    many_posts(db_path, 1, "to list")
    for args in (["plur-queue", "list"], ["plur-queue", "list", "-f", "json"]):
        done = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            stderr=subprocess.PIPE,
            preexec_fn=closing(1),
            timeout=PATIENCE,
            check=False,
        )
        assert (done.returncode, done.stderr.decode()) == (
            1,
            "Error: cannot write the output: stdout is closed — give it somewhere to write, "
            "e.g. > /dev/null\n",
        ), args
    for args, code in ((["x", "-s", "soonish"], 3), (["x", "-s", "1h"], 0)):
        done = subprocess.run(
            [str(BIN / "plur-post"), *args],
            stdout=subprocess.PIPE,
            preexec_fn=closing(2),
            timeout=PATIENCE,
            check=False,
        )
        assert done.returncode == code, args
    assert done.stdout.startswith(b"scheduled:")
