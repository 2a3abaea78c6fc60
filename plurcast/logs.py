"""Logging for every tool: text, JSON or pretty lines on stderr, or journald entries with fields.

`--log-level` and `--log-format` (or PLURCAST_LOG_LEVEL / PLURCAST_LOG_FORMAT) choose them on
all the tools, as in the original; `clikit` adds the options.

Every record may carry post id, platform, account and delivery state (the engine passes them
in `extra`). In the journal they become the fields POST_ID, PLATFORM, ACCOUNT and
DELIVERY_STATE, so `journalctl --user-unit plur-send.service POST_ID=…` finds one post's story.

Under systemd (stderr is the stream named by `JOURNAL_STREAM`) the journal is used by default
when systemd-python is installed; without it, stderr lines carry a `<N>` priority prefix that
journald reads, so levels survive either way.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import sys
import time

from plurcast.errors import ConfigError
from plurcast.output import printable
from plurcast.secrets import redact

FIELDS = ("post_id", "platform", "account", "delivery_state")
_LEVEL_NUMBERS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}
SYSLOG_IDENTIFIER = "plur-send"
# logging level → syslog priority (journald's PRIORITY and its `<N>` stderr prefix).
_PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-11-22 00:41:48,057 +0100 INFO message`: local time with its UTC offset, and the
    message printable (a relay's error text cannot steer the terminal); tracebacks as they are."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(message)s") -> None:
        super().__init__(fmt)

    _second: tuple[int, str, str] = (-1, "", "")  # the last second formatted, its two parts

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, clock, offset = self._second
        if int(record.created) != second:  # a burst logs many lines a second: made once
            moment = time.localtime(record.created)
            second = int(record.created)
            clock = time.strftime("%Y-%m-%d %H:%M:%S", moment)
            offset = time.strftime("%z", moment)
            self._second = (second, clock, offset)
        return f"{clock},{int(record.msecs):03d} {offset}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


class PriorityPrefixFormatter(TextFormatter):
    """`<6>message`: journald's stream reader turns the prefix into PRIORITY (no timestamp:
    the journal keeps its own)."""

    def __init__(self) -> None:
        super().__init__("%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def journal_fields(record: logging.LogRecord) -> bool:
    """Copy the engine's `extra` fields to upper-case attributes, which journald keeps
    (JournalHandler sends every record attribute; journald drops lower-case names)."""
    for name in FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            setattr(record, name.upper(), str(value))
    return True


def journal_handler() -> logging.Handler:
    """systemd-python's JournalHandler with our fields; ConfigError when it is missing."""
    try:
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        raise ConfigError(
            "--log-format journal needs systemd-python, which is not installed",
            "pip install 'plurcast[systemd]' (it builds against libsystemd-dev and pkg-config)",
        ) from None
    handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    handler.addFilter(journal_fields)
    return handler


def stderr_is_journal_stream() -> bool:
    """True when systemd connected our stderr to journald (`JOURNAL_STREAM=dev:ino` matches).

    Checking the device and inode, not just the variable, avoids logging to the journal from a
    process that merely inherited the variable but writes its stderr elsewhere.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(part) for part in value.split(":"))
        stat = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError, io.UnsupportedOperation):
        return False
    return (stat.st_dev, stat.st_ino) == (dev, ino)


def redact_record(record: logging.LogRecord) -> bool:
    """Take every secret out of a record's message and traceback, whatever the format."""
    message = record.getMessage()
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    return True


class _Stderr(logging.Handler):
    """Whatever sys.stderr is now (the CLIs' test runner swaps it), as logging's last resort."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def foreground() -> None:
    """plur-post and plur-queue publishing in this process: the engine's warnings on stderr,
    message only (as Python's last resort would print them), printable and redacted."""
    root = logging.getLogger()
    if any(getattr(h, "plurcast", False) or isinstance(h, _Stderr) for h in root.handlers):
        return  # --log-level/--log-format set logging up already
    handler = _Stderr(logging.WARNING)
    handler.setFormatter(TextFormatter("%(message)s"))
    handler.addFilter(redact_record)
    root.addHandler(handler)


def _handler(fmt: str | None) -> logging.Handler:
    under_journald = fmt is None and stderr_is_journal_stream()
    if fmt == "journal":
        return journal_handler()
    if under_journald:
        try:
            return journal_handler()
        except ConfigError:
            pass  # not asked for explicitly: the prefixed stderr lines below do well enough
    if fmt == "pretty":
        return _pretty_handler()
    handler = _Stderr()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif under_journald:
        handler.setFormatter(PriorityPrefixFormatter())
    else:
        handler.setFormatter(TextFormatter())
    return handler


def _pretty_handler() -> logging.Handler:
    """Coloured, with where each line comes from: for reading at a terminal (rich, ~30 ms)."""
    from rich.console import Console
    from rich.logging import RichHandler

    return RichHandler(console=Console(stderr=True), show_path=True, rich_tracebacks=True)


def setup(level: str = "info", fmt: str | None = None, *, verbose: bool = False) -> None:
    """Log to stderr as `fmt` (text, json, pretty) or to the journal (None: the journal under
    systemd, else text), from `level` up; `verbose` means debug, as `-v` does."""
    name = "debug" if verbose and level != "trace" else level.lower()
    handler = _handler(fmt)
    handler.addFilter(redact_record)
    handler.plurcast = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Ours replace ours; others (a test runner's capture) stay.
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "plurcast", False)]
    root.addHandler(handler)
    root.setLevel(_LEVEL_NUMBERS[name])
    # nostr-sdk, asyncio and websockets are chatty below WARNING: only `trace` shows them.
    quiet = logging.NOTSET if name == "trace" else logging.WARNING
    for noisy in ("nostr_sdk", "asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(quiet)
