"""Daemon logging: text or JSON lines on stderr, or journald entries with fields to filter on.

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

FIELDS = ("post_id", "platform", "account", "delivery_state")
FORMATS = ("text", "json", "journal")
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


class PriorityPrefixFormatter(logging.Formatter):
    """`<6>message`: journald's stream reader turns the prefix into PRIORITY (no timestamp:
    the journal keeps its own)."""

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


def _handler(fmt: str | None) -> logging.Handler:
    under_journald = fmt is None and stderr_is_journal_stream()
    if fmt == "journal":
        return journal_handler()
    if under_journald:
        try:
            return journal_handler()
        except ConfigError:
            pass  # not asked for explicitly: the prefixed stderr lines below do well enough
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif under_journald:
        handler.setFormatter(PriorityPrefixFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


def setup(verbose: bool, fmt: str | None = None) -> None:
    """Log to stderr as `fmt` (text, json) or to the journal; None picks by where stderr goes."""
    handler = _handler(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        # nostr-sdk and websockets libraries are chatty at INFO.
        for noisy in ("nostr_sdk", "asyncio", "websockets"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
