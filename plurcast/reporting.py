"""What the foreground publishers print: one line per platform, notes, and the exit code.

Shared by plur-post (no --schedule), plur-queue now and plur-queue failed retry,
so all three print what the original plur-post printed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plurcast.errors import EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME
from plurcast.models import from_ms, to_ms
from plurcast.output import Format, discard_stdout, emit_json, emit_lines
from plurcast.publish import Published, Report
from plurcast.timefmt import format_local


def report_json(r: Report) -> dict[str, Any]:
    """The original's fields (post_id is the platform's id), plus our own post id, and where
    the post stands in its thread."""
    item: dict[str, Any] = {
        "platform": r.platform,
        "account": r.account,
        "success": r.success,
        "post_id": r.remote_id,
        "url": r.url,
        "error": r.error,
        "state": r.state,
        "id": r.post_id,
    }
    if r.thread_id is not None or r.reply_to is not None:
        item |= {
            "thread_id": r.thread_id,
            "thread_part": r.thread_part,
            "thread_parts": r.thread_parts,
            "reply_to": r.reply_to,
        }
    return item


def _text_lines(reports: Sequence[Report]) -> list[str]:
    """The platform lines, each part of a thread under `--- Thread part i/N ---`."""
    lines: list[str] = []
    current = None
    for r in reports:
        if r.thread_parts is not None and r.thread_parts > 1 and r.post_id != current:
            lines.append(f"--- Thread part {r.thread_part}/{r.thread_parts} ---")
        current = r.post_id
        lines.append(r.line)
    return lines


def emit(published: Published, fmt: Format, *, tz: ZoneInfo, now: datetime) -> int:
    """Print the reports and notes; return the exit code (0 all sent, 2 auth, 1 otherwise)."""
    reports = published.reports
    try:
        if fmt == "text":
            emit_lines(_text_lines(reports))
        else:
            emit_json([report_json(r) for r in reports], fmt)
        sys.stdout.flush()
    except BrokenPipeError:  # `plur-post "Hi" | true`: the notes and the exit code still count
        discard_stdout()
    now_ms = to_ms(now)
    retrying = [
        r
        for r in reports
        if r.due_at_ms is not None
        and not r.waiting
        and (r.state == "retry" or (r.state == "pending" and r.due_at_ms > now_ms))
    ]
    for r in retrying:
        at = format_local(from_ms(r.due_at_ms or 0), tz, now)
        what = f"{r.platform} part {r.thread_part}" if r.thread_part else r.platform
        sys.stderr.write(f"Note: {what} will be retried by plur-send at {at}.\n")
    following = [r for r in reports if r.waiting and not r.stuck]
    for platform in dict.fromkeys(r.platform for r in following):
        sys.stderr.write(f"Note: plur-send sends the rest of the thread on {platform} in order.\n")
    for platform in dict.fromkeys(r.platform for r in reports if r.stuck):
        sys.stderr.write(
            f"Note: the rest of the thread on {platform} waits for the part that gave up — "
            "fix it, then plur-queue failed retry sends it and the rest in order.\n"
        )
    if (retrying or following) and not published.daemon_alive:
        sys.stderr.write(
            "Warning: no plur-send daemon is running — start plur-send so the retry happens.\n"
        )
    if all(r.success for r in reports):
        return EXIT_OK
    if any(r.error_kind == "auth" for r in reports):
        return EXIT_CONFIG
    return EXIT_RUNTIME
