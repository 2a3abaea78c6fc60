"""plur-queue commands for recurring schedules: schedules, pause, resume, history."""

from __future__ import annotations

import click

from plur_queue.common import open_session
from plurcast import clikit, schedules
from plurcast.models import Schedule, to_ms
from plurcast.output import Column, Format, emit_rows, first_line
from plurcast.schedules import rule_of
from plurcast.views import iso, local, schedule_json, time_fields


@click.command("schedules", cls=clikit.Command)
@clikit.format_option
def list_schedules(fmt: Format) -> None:
    """List recurring schedules: active first, by next occurrence.

    Piped: <id>  <state>  <rule>  <zone>  <next ISO 8601 or ->  <first line of content>
    """
    s = open_session()
    items = schedules.all_schedules(s.conn)

    def next_cell(x: Schedule) -> str:
        return "-" if x.next_run_at_ms is None else iso(x.next_run_at_ms, s.tz)

    emit_rows(
        items,
        fmt,
        to_json=lambda x: schedule_json(x, s.tz, s.now),
        plain=lambda x: [
            x.id,
            x.state,
            rule_of(x).describe(),
            x.timezone,
            next_cell(x),
            first_line(x.content),
        ],
        columns=[
            Column("ID", lambda x: x.id[:8], style="cyan"),
            Column("State", lambda x: x.state),
            Column("Rule", lambda x: f"{rule_of(x).describe()} ({x.timezone})"),
            Column("Next", lambda x: local(x.next_run_at_ms, s.tz, s.now)),
            Column("Posted", lambda x: str(x.posted)),
            Column("Content", lambda x: first_line(x.content)),
        ],
        empty="No recurring schedules.",
    )


@click.command(cls=clikit.Command)
@click.argument("schedule_id", metavar="ID")
def pause(schedule_id: str) -> None:
    """Stop a schedule's occurrences until it is resumed."""
    s = open_session()
    schedule = schedules.get(s.conn, schedule_id)
    schedules.pause(s.conn, schedule, to_ms(s.now))
    click.echo(f"paused:{schedule.id}")


@click.command(cls=clikit.Command)
@click.argument("schedule_id", metavar="ID")
def resume(schedule_id: str) -> None:
    """Resume a paused schedule; occurrences missed meanwhile follow its misfire policy."""
    s = open_session()
    schedule = schedules.get(s.conn, schedule_id)
    schedules.resume(s.conn, schedule, to_ms(s.now))
    click.echo(f"resumed:{schedule.id}")


@click.command(cls=clikit.Command)
@click.argument("schedule_id", metavar="ID")
@clikit.format_option
def history(schedule_id: str, fmt: Format) -> None:
    """Every occurrence of a schedule and its fate: posted, failed, skipped — and why.

    Piped: <occurrence ISO 8601>  <fate>  <post id or ->  <reason or error>
    """
    s = open_session()
    schedule = schedules.get(s.conn, schedule_id)
    entries = schedules.history(s.conn, schedule)
    emit_rows(
        entries,
        fmt,
        to_json=lambda o: {
            **time_fields("occurrence_at", o.at_ms, s.tz),
            **time_fields("decided_at", o.decided_ms, s.tz),
            "fate": o.fate,
            "post_id": o.post_id,
            "reason": o.reason,
        },
        plain=lambda o: [iso(o.at_ms, s.tz), o.fate, o.post_id or "-", o.reason or ""],
        columns=[
            Column("Occurrence", lambda o: local(o.at_ms, s.tz, s.now)),
            Column("Fate", lambda o: o.fate),
            Column("Post", lambda o: (o.post_id or "-")[:8], style="cyan"),
            Column("Why", lambda o: o.reason or ""),
        ],
        empty="No occurrences yet.",
    )
    if fmt == "text" and not entries and schedule.next_run_at_ms is not None:
        click.echo(f"next: {local(schedule.next_run_at_ms, s.tz, s.now)}", err=True)


COMMANDS = (list_schedules, pause, resume, history)
