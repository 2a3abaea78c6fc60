"""plur-export: the queue (or part of it) as a file that plur-import reads back."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import cast

import click

from plur_queue.common import open_session
from plurcast import clikit, cliparse, history
from plurcast.errors import InvalidInput
from plurcast.models import to_ms
from plurcast.output import write_fully, write_text_fully
from plurcast.transfer import export_images, exporter, read, write


@click.command(
    "plur-export",
    cls=clikit.Command,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-export > queue.jsonl                  the queue: scheduled posts and drafts
  plur-export -o plan.csv                    as CSV (the format from the name)
  plur-export -f markdown --status all -o everything.md
  plur-export --since 2027-01-01 --until 2027-02-01 -f csv
  plur-export | PLURCAST_DB_PATH=other.db plur-import -f jsonl -
  plur-export -o plan.jsonl                  with images: they go into plan-images/

\b
Each post is one row: key, content, schedule (ISO 8601 in the post's zone), tz,
platforms, account (and draft, visibility, nostr_pow, 21e8, reply_to, cw, label,
lang, no_card, images and their alt texts when used). Images are written as files
into a folder beside -o FILE (FILE's name + -images), named in the rows relative
to FILE's folder, where plur-import finds them; posts with images need -o.
A thread is one row too: thread true, its parts as content between --- lines, and
a variant for a platform whose parts differ. The key is the post's import key,
else its id, so importing an export — into an empty database, or back into this
one — never makes a post twice. A recurring post (plur-post --cron/--every) is a
row with cron or every, schedule its next run, until, the count still to go,
misfire and grace: it runs on in the copy from where it is (with the queue's
scheduled posts; paused ones are named on stderr and left out). A post due and
not sent yet keeps its time with overdue true (plur-import queues it due now); a
post a schedule made names that schedule's row in from_schedule.
What a row cannot carry yet is named on stderr.
Exit codes: 0 ok, 1 runtime error, 2 config error, 3 invalid input.""",
)
@cliparse.option(
    "-f",
    "--format",
    "kind",
    type=click.Choice(read.KINDS),
    help="jsonl, csv or markdown (default: from -o's name, else jsonl).",
)
@cliparse.option(
    "-o", "--output", metavar="FILE", help="Write to FILE (mode 600) instead of stdout."
)
@cliparse.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help=f"Posts of these statuses ({', '.join(exporter.STATUSES)}, or all); repeatable "
    "or comma-separated [default: scheduled,draft].",
)
@cliparse.option("--since", metavar="DATE", help="Posts scheduled from then on (as plur-history).")
@cliparse.option(
    "--until", metavar="DATE", help="Posts scheduled before then (a bare date: its whole day)."
)
@clikit.version_option("plur-export")
def cli(
    kind: str | None,
    output: str | None,
    statuses: tuple[str, ...],
    since: str | None,
    until: str | None,
) -> None:
    """Write the queue as JSON Lines, CSV or Markdown: what plur-import reads."""
    if output is not None and not output.strip():  # Path("") is ".": "  is a directory"
        raise InvalidInput("-o names no file", "give a file name, or leave -o out for stdout")
    if output is not None and Path(output).is_dir():
        raise InvalidInput(f"{output} is a directory", "give a file name")
    fmt = read.kind_of(output, kind) if output and not kind else (kind or "jsonl")
    wanted = exporter.statuses(statuses)
    s = open_session()
    result = exporter.export(
        s.conn,
        wanted=wanted,
        since_ms=None if since is None else history.parse_date(since, s.tz, s.now),
        until_ms=None if until is None else history.parse_date(until, s.tz, s.now, end=True),
        images_folder=None if output is None else f"{Path(output).stem}-images",
        now_ms=to_ms(s.now),
    )
    clikit.stderr_lines(f"Warning: {note}" for note in result.left_out)
    text = write.write(result.entries, cast(read.Kind, fmt))
    if output is None:
        write_text_fully(text)
    else:  # the images first: the file never names one that is not there
        export_images.save(s.conn, result.images, Path(output).parent)
        _write_private(Path(output), text)
    recurring = sum(1 for e in result.entries if e.cron is not None or e.every is not None)
    count = len(result.entries) - recurring
    sys.stderr.write(
        f"exported {count:,} post{'s' if count != 1 else ''}"
        + (f" and {recurring:,} recurring post{'s' if recurring != 1 else ''}" if recurring else "")
        + "\n"
    )


def _write_private(path: Path, text: str) -> None:
    """All of it or nothing: a temp file in the same directory, renamed over the target."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}", "check the folder") from None
    try:
        try:
            write_fully(fd, text.encode("utf-8"))
        except OSError as exc:  # named, for the one-line error: "cannot write plan.jsonl: …"
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        finally:
            os.close(fd)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def main() -> None:
    cli()
