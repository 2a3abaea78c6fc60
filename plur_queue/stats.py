"""plur-queue stats: the queue at a glance, and whether a daemon is there to send it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from plur_queue.common import Session, open_session, when_cell
from plurcast import clikit, health, stats
from plurcast.output import Format, emit_json, emit_lines, fancy, first_line, one_line, rich_text
from plurcast.schedules import rule_of
from plurcast.views import iso, local, post_json, schedule_json

_BUCKET_NAMES = {
    "overdue": "overdue",
    "next_hour": "next hour",
    "today": "later today",
    "this_week": "this week",
    "later": "later",
}


@click.command("stats", cls=clikit.Command)
@clikit.format_option
def stats_cmd(fmt: Format) -> None:
    """Counts by status, platform and time; the next posts; daemon health.

    On a terminal it also draws posts per day for the next 14 days.
    """
    s = open_session()
    result = stats.compute(s.conn, s.now, s.tz)
    warning = result.overdue_warning()
    if warning:
        sys.stderr.write(warning + "\n")
    if fmt != "text":
        emit_json(_as_json(result, s), fmt)
    elif fancy():
        _draw(result, s)
    else:
        emit_lines("\t".join(map(one_line, fields)) for fields in _plain(result, s))


def _as_json(r: stats.QueueStats, s: Session) -> dict[str, Any]:
    return {
        "total": r.total,
        "by_status": r.by_status,
        "by_platform": r.by_platform,
        "by_time_bucket": r.by_time_bucket,
        "upcoming": [post_json(p, s.tz) for p in r.upcoming],
        "per_day": [{"date": day, "count": n} for day, n in r.per_day],
        "daemon": health.daemon_json(r.daemon, s.tz),
        "daemons": [health.daemon_json(d, s.tz) for d in r.daemons],
        "schedules": [schedule_json(x, s.tz, s.now) for x in r.next_occurrences],
        "threads": _threads_json(r.threads),
    }


def _threads_json(progress: Sequence[stats.ThreadProgress]) -> dict[str, Any]:
    """How many threads are complete, on their way or stopped — a thread counts as stopped
    when it stopped on any platform — and where each one not complete stands."""
    states: dict[str, set[str]] = {}
    for t in progress:
        states.setdefault(t.thread_id, set()).add(t.state)
    overall = [
        "stopped" if "stopped" in x else "in_progress" if "in_progress" in x else "complete"
        for x in states.values()
    ]
    return {
        "total": len(states),
        **{state: overall.count(state) for state in ("complete", "in_progress", "stopped")},
        "not_complete": [
            {
                "thread_id": t.thread_id,
                "platform": t.platform,
                "account": t.account,
                "sent": t.sent,
                "parts": t.parts,
                "state": t.state,
                "stopped_at_part": t.stopped_at,
                "error": t.error,
            }
            for t in progress
            if t.state != "complete"
        ],
    }


def _thread_line(t: stats.ThreadProgress) -> list[str]:
    where = f"{t.platform}({t.account})"
    line = ["thread", t.thread_id, where, f"{t.sent}/{t.parts}", t.state]
    if t.stopped_at is not None:
        line.append(f"stopped at part {t.stopped_at}: {first_line(t.error or '', 120)}")
    return line


def _plain(r: stats.QueueStats, s: Session) -> list[list[str]]:
    rows = [["total", str(r.total)]]
    rows += [[f"status.{k}", str(v)] for k, v in r.by_status.items() if v]
    rows += [[f"platform.{k}", str(v)] for k, v in r.by_platform.items()]
    rows += [[f"bucket.{k}", str(v)] for k, v in r.by_time_bucket.items()]
    rows += [
        ["upcoming", p.id, iso(p.scheduled_at_ms or 0, s.tz), first_line(p.content)]
        for p in r.upcoming
    ]
    rows += [
        ["recurring", x.id, iso(x.next_run_at_ms or 0, s.tz), first_line(x.content)]
        for x in r.next_occurrences
    ]
    rows += [_thread_line(t) for t in r.threads if t.state != "complete"]
    rows += [["daemon", health.daemon_text(d, s.now)] for d in r.every_daemon]
    return rows


def _draw(r: stats.QueueStats, s: Session) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{r.total}[/] scheduled post{'s' if r.total != 1 else ''}")
    counts = Table(show_header=False, box=None, pad_edge=False)
    for key, n in r.by_time_bucket.items():
        style = "red" if key == "overdue" and n else None
        counts.add_row(_BUCKET_NAMES[key], f"[{style}]{n}[/]" if style else str(n))
    for platform, n in r.by_platform.items():
        counts.add_row(platform, str(n))
    console.print(counts)
    if r.upcoming:
        upcoming = Table(title="Next up", show_edge=False, header_style="bold")
        for header in ("ID", "When", "Platforms", "Content"):
            upcoming.add_column(header)
        for p in r.upcoming:
            upcoming.add_row(
                p.id[:8], when_cell(p, s), ",".join(p.platforms), rich_text(first_line(p.content))
            )
        console.print(upcoming)
    if r.next_occurrences:
        recurring = Table(title="Recurring, next", show_edge=False, header_style="bold")
        for header in ("ID", "Next", "Rule", "Content"):
            recurring.add_column(header)
        for x in r.next_occurrences:
            recurring.add_row(
                x.id[:8],
                local(x.next_run_at_ms, s.tz, s.now),
                rule_of(x).describe(),
                rich_text(first_line(x.content)),
            )
        console.print(recurring)
    peak = max((n for _, n in r.per_day), default=0) or 1
    console.print("[bold]Next 14 days[/]")
    for day, n in r.per_day:
        bar = "█" * max(1 if n else 0, round(24 * n / peak))
        console.print(f"  {day[5:]}  [cyan]{bar:<24}[/] {n}")
    unfinished = [t for t in r.threads if t.state != "complete"]
    if unfinished:
        threads = Table(title="Threads not complete", show_edge=False, header_style="bold")
        for header in ("Thread", "Platform", "Sent", "State"):
            threads.add_column(header)
        for t in unfinished:
            line = _thread_line(t)
            threads.add_row(t.thread_id[:8], line[2], line[3], rich_text(" ".join(line[4:])))
        console.print(threads)
    for d in r.every_daemon:
        console.print(rich_text(f"daemon: {health.daemon_text(d, s.now)}"))


COMMANDS = (stats_cmd,)
