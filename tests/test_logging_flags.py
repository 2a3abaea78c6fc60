"""The original's logging flags on every tool: --log-level, --log-format text|json|pretty,
-v, PLURCAST_LOG_LEVEL / PLURCAST_LOG_FORMAT; and plur-send --startup-delay."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_send.cli import cli as send_cli
from plurcast import logs
from tests.helpers import BASE_CONFIG, Clock, Run

FAILED = "to nostr/default failed (ws://127.0.0.1:1: "


@pytest.fixture(autouse=True)
def config(configured: Path) -> Path:
    """The usual config, with a relay that is down and a short Nostr timeout."""
    configured.write_text(
        BASE_CONFIG.replace(
            'relays = ["ws://127.0.0.1:1"]', 'relays = ["ws://127.0.0.1:1"]\ntimeout = 1'
        )
    )
    return configured


def publish(run: Run, *args: str) -> str:
    """Publish now to a relay that is down: the engine logs a warning about the retry."""
    result = run(post_cli, "Hello", "-p", "nostr", *args)
    assert result.exit_code == 1, result.stderr
    return result.stderr


def test_without_flags_logging_is_left_alone(run: Run, clock: Clock) -> None:
    """plur-post and plur-queue then print warnings as Python does: bare lines."""
    publish(run)
    assert not [h for h in logging.getLogger().handlers if getattr(h, "plurcast", False)]


def test_json_log_lines_with_the_posts_fields(run: Run, clock: Clock) -> None:
    stderr = publish(run, "--log-format", "json")
    [entry] = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert entry["level"] == "warning" and FAILED in entry["msg"]
    assert entry["platform"] == "nostr" and entry["account"] == "default"
    assert entry["delivery_state"] == "retry" and len(entry["post_id"]) == 36


def test_levels_and_text_format(run: Run, clock: Clock) -> None:
    assert FAILED not in publish(run, "--log-level", "error")
    text = publish(run, "--log-level", "WARN", "--log-format", "text")
    assert any(" WARNING post " in line and FAILED in line for line in text.splitlines())


def test_text_lines_carry_each_records_own_time() -> None:
    """The date and zone of a second are made once (a burst logs hundreds of lines in one):
    each line still shows its own second and milliseconds, going back a second too."""
    formatter = logs.TextFormatter("%(asctime)s")

    def line(created: float) -> str:
        record = logging.LogRecord("plurcast.engine", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, int(created * 1000) % 1000
        return formatter.format(record)

    for created in (1796236986.25, 1796236986.75, 1796236987.0, 1796236986.5, 1780000000.5):
        moment = time.localtime(created)
        clock, zone = time.strftime("%Y-%m-%d %H:%M:%S", moment), time.strftime("%z", moment)
        assert line(created) == f"{clock},{int(created * 1000) % 1000:03d} {zone}"


def test_environment_variables_and_flags_that_win_over_them(
    run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLURCAST_LOG_FORMAT", "json")
    assert any(line.startswith("{") for line in publish(run).splitlines())
    monkeypatch.setenv("PLURCAST_LOG_LEVEL", "error")
    assert FAILED not in publish(run)
    assert FAILED in publish(run, "--log-level", "info")


def test_pretty_is_coloured_lines_from_rich(run: Run, clock: Clock) -> None:
    stderr = publish(run, "--log-format", "pretty")
    assert "WARNING" in stderr and "outcomes.py" in stderr  # level and where it came from


@pytest.mark.parametrize(
    ("variable", "value", "option"),
    [("PLURCAST_LOG_LEVEL", "loud", "--log-level"), ("PLURCAST_LOG_FORMAT", "xml", "--log-format")],
)
def test_a_bad_value_in_the_environment_is_exit_3(
    run: Run,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    db_path: Path,
    variable: str,
    value: str,
    option: str,
) -> None:
    monkeypatch.setenv(variable, value)
    result = run(post_cli, "Hello", "-s", "1h")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: Invalid value for '{option}' (env var: '{variable}')")
    assert result.stderr.count("\n") == 1
    assert not db_path.exists()


def test_queue_takes_them_before_or_after_its_command(run: Run, clock: Clock) -> None:
    for args in (
        ["--log-level", "debug", "list"],
        ["list", "--log-level", "debug", "--log-format", "json"],
        ["-v", "failed", "list", "--log-format", "text"],
    ):
        result = run(queue_cli, *args)
        assert result.exit_code == 0, (args, result.stderr)
    assert logging.getLogger().level == logging.DEBUG
    assert "--log-format FORMAT" in run(queue_cli, "stats", "--help").stdout


def test_plur_send_log_level_format_and_startup_delay(run: Run, clock: Clock) -> None:
    quiet = run(send_cli, "--once", "--log-level", "warn")
    assert quiet.exit_code == 0 and "started" not in quiet.stderr
    loud = run(send_cli, "--once", "--log-format", "json", "--startup-delay", "0.01")
    assert loud.exit_code == 0, loud.stderr
    messages = [json.loads(line)["msg"] for line in loud.stderr.splitlines()]
    assert any(m.startswith("plur-send 0.1.0 started") for m in messages)
    assert "waiting 0.01 s before delivering (startup delay)" in messages
    refused = run(send_cli, "--startup-delay", "5", "status")
    assert refused.exit_code == 3 and "--startup-delay runs the daemon" in refused.stderr
    assert run(send_cli, "--startup-delay", "-1", "--once").exit_code == 3
