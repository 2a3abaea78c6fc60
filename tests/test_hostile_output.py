"""Hostile readers of our output: a pipe closed early is no error of ours, but it does not
hide one either (issue 11)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import BASE_CONFIG, DOWN_TIMEOUT, run_with_reader_gone

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
