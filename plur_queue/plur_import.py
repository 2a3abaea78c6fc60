"""plur-import: queue a whole plan — a CSV, JSON Lines or Markdown file — in one go."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import click

from plurcast import clikit, cliparse
from plurcast import config as config_module
from plurcast.errors import InvalidInput
from plurcast.models import to_ms
from plurcast.output import Format, emit_json, emit_lines
from plurcast.transfer import importer, read
from plurcast.transfer.rows import Refused, Row
from plurcast.views import queued_line, schedule_line, time_fields


@click.command(
    "plur-import",
    cls=clikit.Command,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-import plan.csv                       a spreadsheet saved as CSV (UTF-8)
  plur-import posts.jsonl --dry-run          what would be queued; nothing is written
  plur-import drafts/*.md                    Markdown, one post a file (or many, +++ between)
  plur-export -f csv | plur-import -f csv -  a queue copied into another database
  plur-import plan.csv --report json | jq -r '.[] | select(.status == "imported") | .post_id'

\b
Fields (CSV columns, JSON keys, front matter), named after plur-post's options:
  content (required), schedule (any --schedule time, or "next": the next free slot of
  [slots]; empty: "next" when there are slots), tz (empty: the config's zone),
  platforms ("nostr,mastodon"), account, draft (true/false), visibility,
  nostr_pow (0-64), 21e8, thread (true: --- lines separate the parts; or a list),
  auto_thread, numbered, variant ({"bluesky": "Short"}, or bluesky=Short lines),
  reply_to, images (paths, relative to the file's folder; a list, or one a line),
  alt (each image's alt text, in order), fit, keep_metadata, cw, label, lang
  ("en,de"), no_card, key (what makes a row the same row when imported again;
  without one, a hash of what the row says). A recurring post: cron or every,
  with until, count, misfire and grace as plur-post takes them (schedule: its
  first run or start). What plur-export writes for a queue that is behind:
  overdue (true: the schedule, ISO 8601 with offset, is past and the post not
  sent yet: it is queued due now) and from_schedule (the key of the recurring
  row whose schedule made the post).

\b
All or nothing: if any row is bad, every bad row is listed (`line 7: …`) and
nothing is written; a past time is a bad row, unless the row says overdue.
Importing the same file again adds nothing: rows already there print
`exists:<id>`; new ones print what plur-post prints.
Exit codes: 0 ok, 1 runtime error, 2 config error, 3 invalid rows or input.""",
)
@click.argument("files", metavar="FILE...|-", nargs=-1, required=True)
@cliparse.option(
    "-f",
    "--format",
    "kind",
    type=click.Choice(read.KINDS),
    help="jsonl, csv or markdown (default: from the file name; needed for stdin).",
)
@cliparse.option("--dry-run", is_flag=True, help="Check everything and say what would be queued.")
@cliparse.option(
    "--report",
    type=click.Choice(["text", "json", "jsonl"]),
    default="text",
    show_default=True,
    help="How to print what became of each row.",
)
@clikit.version_option("plur-import")
def cli(files: tuple[str, ...], kind: str | None, dry_run: bool, report: str) -> None:
    """Queue every post of FILE (or stdin): JSON Lines, CSV with a header, or Markdown."""
    cfg = config_module.load()
    sources = [_source(name, len(files)) for name in files]
    tz = cfg.timezone
    try:
        rows, now = importer.run(
            cfg, sources, clikit.now, kind=kind, dry_run=dry_run, warn=clikit.warn
        )
    except Refused as exc:
        clikit.stderr_lines(f"Error: {problem}" for problem in exc.problems)
        raise
    if report != "text":
        emit_json([_row_json(r, tz, dry_run) for r in rows], cast(Format, report))
    else:
        emit_lines(line for r in rows for line in _lines(r, tz, now, dry_run))
    new = sum(1 for r in rows if r.existing is None and r.recurring is None)
    recurring = sum(1 for r in rows if r.existing is None and r.recurring is not None)
    there = len(rows) - new - recurring
    verb = "would import" if dry_run else "imported"
    sys.stderr.write(
        f"{verb} {new:,} post{'s' if new != 1 else ''}"
        + (f" and {recurring:,} recurring post{'s' if recurring != 1 else ''}" if recurring else "")
        + (f"; {there:,} already there" if there else "")
        + "\n"
    )


def _source(name: str, count: int) -> importer.Source:
    if name == "-":
        if count > 1:
            raise InvalidInput("- (stdin) cannot be given with files", "import them apart")
        data = sys.stdin.buffer.read(read.MAX_BYTES + 1)
        return importer.Source("stdin", data)
    path = Path(name)
    if path.is_dir():
        raise InvalidInput(f"{name} is a directory", f"give its files, e.g. {name}/*.md")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            data = f.read(read.MAX_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput(f"{name}: no such file", "check the name") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}: {exc.strerror}") from None
    return importer.Source(name, data, size)


def _lines(r: Row, tz: ZoneInfo, now: datetime, dry_run: bool) -> list[str]:
    """What plur-post prints for a new post (`scheduled[i]:…` for each part of a thread);
    `exists:<id>` for a row already there; a dry run names the row instead of an id
    (`would-scheduled:line-3:for:…`)."""
    if r.existing is not None:
        return [f"exists:{r.existing.id}"]
    prefix = "would-" if dry_run else ""
    if r.recurring is not None:  # what plur-post --cron/--every prints
        name = r.entry.where.replace(" ", "-") if dry_run else r.recurring.schedule.id
        next_ms = r.recurring.schedule.next_run_at_ms
        return [schedule_line(prefix + "schedule", name, next_ms, tz, now)]
    names = [r.entry.where.replace(" ", "-")] if dry_run else r.post_ids
    lines = []
    for number, name in enumerate(names, start=1):
        kind = "draft" if r.scheduled_at is None else "scheduled"
        if len(names) > 1:
            kind += f"[{number}]"
        lines.append(queued_line(prefix + kind, name, r.scheduled_at, tz, now))
    return lines


def _row_json(r: Row, tz: ZoneInfo, dry_run: bool) -> dict[str, Any]:
    """A row's fate: its post (`post_id`, every part in `post_ids`) or its schedule
    (`schedule_id`; for a post, the schedule that made it), new or already there."""
    status = "exists" if r.existing else ("would_import" if dry_run else "imported")
    if r.existing is not None:
        ids = [] if r.existing.schedule else [r.existing.id]
    else:
        ids = [] if dry_run else r.post_ids
    return {
        "where": r.entry.where,
        "status": status,
        "key": r.key,
        "post_id": ids[0] if ids else None,
        "post_ids": ids,
        "schedule_id": None if dry_run and r.existing is None else r.schedule_id,
        "draft": r.existing is None and r.scheduled_at is None,
        "overdue": r.overdue,
        **time_fields(
            "scheduled_at", None if r.scheduled_at is None else to_ms(r.scheduled_at), tz
        ),
        "platforms": [p for p, _ in r.targets],
        "account": r.targets[0][1] if r.targets else None,
        "content": r.text,
    }


def main() -> None:
    cli()
