"""plur-history: the local posting history, with the original's flags, lines and CSV header."""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import click

from plur_queue.common import open_session
from plurcast import clikit, cliparse, history, validation
from plurcast.output import Format, emit_json, printable
from plurcast.views import time_fields

CSV_HEADER = "post_id,timestamp,platform,success,platform_post_id,error,content"


@click.command(
    "plur-history",
    cls=clikit.Command,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-history                                   the last 20 posts
  plur-history --limit 50 --platform nostr
  plur-history --since 2025-10-01 --until 2025-10-05
  plur-history --since 7d --search "release"
  plur-history -f json | jq '.[] | select(.platforms[].success == false)'
  plur-history -f csv > posts.csv
  plur-history --platform nostr -f csv | grep ",true,"

\b
Text: one line per post, `<time> | <post id> | <first 60 characters>`, then
`  ✓ nostr: note1…` or `  ✗ mastodon: <error>` for each platform, then a blank line.
CSV header: post_id,timestamp,platform,success,platform_post_id,error,content
(one row per platform; timestamp is when it went out, in Unix seconds).
Exit codes: 0 ok (also when nothing matches), 1 runtime error, 2 config error,
3 invalid input.""",
)
@cliparse.option(
    "-p", "--platform", metavar="PLATFORM", help="Only this platform (nostr, mastodon, bluesky)."
)
@cliparse.option(
    "--since",
    metavar="DATE",
    help="Posts that went out from then on: Unix seconds, YYYY-MM-DD, ISO 8601, or 7d (ago).",
)
@cliparse.option(
    "--until",
    metavar="DATE",
    help="Posts that went out before then (a bare date includes that whole day).",
)
@cliparse.option("-s", "--search", metavar="TERM", help="Only posts containing TERM (any case).")
@cliparse.option(
    "-l",
    "--limit",
    type=click.IntRange(min=1),
    default=history.DEFAULT_LIMIT,
    show_default=True,
    metavar="N",
    help="At most N posts, newest first.",
)
@cliparse.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "jsonl", "csv"]),
    default="text",
    show_default=True,
    help="text, json (an array), jsonl (one post a line) or csv (one platform a row).",
)
@clikit.version_option("plur-history")
def cli(
    platform: str | None,
    since: str | None,
    until: str | None,
    search: str | None,
    limit: int,
    fmt: str,
) -> None:
    """Query the local posting history: what went out, where, and what failed."""
    s = open_session()
    entries = history.query(
        s.conn,
        platform=None if platform is None else validation.one_platform(platform),
        since_ms=None if since is None else history.parse_date(since, s.tz, s.now),
        until_ms=None if until is None else history.parse_date(until, s.tz, s.now, end=True),
        search=search,
        limit=limit,
    )
    if fmt == "csv":
        sys.stdout.write(csv_text(entries))
    elif fmt in ("json", "jsonl"):
        emit_json([entry_json(e, s.tz) for e in entries], cast(Format, fmt))
    else:
        sys.stdout.write(text(entries, s.tz, details=clikit.verbose_requested()))


def entry_json(e: history.Entry, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "post_id": e.post_id,
        "content": e.content,
        "created_at": e.created_at_ms // 1000,
        **time_fields("posted_at", e.posted_at_ms, tz),
        "platforms": [
            {
                "platform": p.platform,
                "account": p.account,
                "success": p.success,
                "platform_post_id": p.platform_post_id,
                "url": p.url,
                "error": p.error,
                **time_fields("posted_at", p.at_ms, tz),
            }
            for p in e.platforms
        ],
    }


def csv_text(entries: list[history.Entry]) -> str:
    """The original's CSV, with every field quoted where it must be (its errors were not)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    lines = [CSV_HEADER + "\n"]
    for e in entries:
        content = '"' + e.content.replace('"', '""') + '"'
        for p in e.platforms:
            out.seek(0)
            out.truncate()
            row = [
                e.post_id,
                p.at_ms // 1000,
                p.platform,
                "true" if p.success else "false",
                p.platform_post_id or "",
                p.error or "",
            ]
            writer.writerow(row)
            lines.append(out.getvalue().removesuffix("\n") + "," + content + "\n")
    return "".join(lines)


def text(entries: list[history.Entry], tz: ZoneInfo, *, details: bool) -> str:
    """The original's lines, each made printable: a post's text and a server's error are
    shown, never acted on by the terminal."""
    lines: list[str] = []
    for e in entries:
        when = datetime.fromtimestamp(e.posted_at_ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when} | {e.post_id} | {_preview(e.content)}")
        for p in e.platforms:
            mark = "✓" if p.success else "✗"
            name = f"{p.platform} ({p.account})" if details else p.platform
            said = p.platform_post_id if p.success else (p.error or p.platform_post_id)
            lines.append(f"  {mark} {name}: {said}" if said else f"  {mark} {name}")
            if details and p.url:
                lines.append(f"    {p.url}")
        lines.append("")
    return "".join(printable(line) + "\n" for line in lines)


def _preview(content: str, width: int = 60) -> str:
    """The first 60 characters of the first line, `...` when there is more (as the original;
    whole characters, where it cut bytes)."""
    import regex

    line, _, rest = content.partition("\n")
    clusters = regex.findall(r"\X", line)
    if len(clusters) > width:
        return "".join(clusters[:width]) + "..."
    return line + ("..." if rest else "")


def main() -> None:
    cli()
