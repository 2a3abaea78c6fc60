"""plur-queue slots: the coming posting slots and the posts that fill them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from plur_queue.common import open_session
from plurcast import clikit, cliparse, slots, validation
from plurcast.config import DEFAULT_ACCOUNT, validate_account_name
from plurcast.models import Post, to_ms
from plurcast.output import Column, Format, emit_json, emit_rows, first_line
from plurcast.timefmt import format_local, format_relative
from plurcast.views import iso, time_fields

Row = tuple[datetime, Post | None]


@click.command("slots", cls=clikit.Command)
@cliparse.option(
    "-p",
    "--platform",
    "platforms",
    multiple=True,
    metavar="PLATFORM",
    help="The slots of these platforms (repeatable or comma-separated; default: the "
    "platforms plur-post would use).",
)
@cliparse.option("-a", "--account", metavar="NAME", help="The slots of this account's posts.")
@cliparse.option(
    "-n",
    "--count",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    metavar="N",
    help="How many coming slots to show.",
)
@clikit.format_option
def slots_cmd(platforms: tuple[str, ...], account: str | None, count: int, fmt: Format) -> None:
    """Show the coming posting slots of [slots] and the posts that fill them.

    `plur-post --schedule next` and `plur-queue reschedule ID next` take the first
    free one. Piped, each slot is one line (one per post when several hold it):
      <time ISO 8601>  <post id, or "free">  <platforms>  <first line of content>

    \b
    Examples:
      plur-queue slots
      plur-queue slots -p mastodon -n 20
      plur-queue slots -f json | jq '[.[] | select(.free)] | length'
    """
    s = open_session()
    names = validation.split_platforms(platforms) or list(
        s.cfg.default_platforms or s.cfg.enabled_platforms()
    )
    if not names:
        raise click.UsageError("no platforms are configured: name them with -p")
    who = validate_account_name(account) if account else DEFAULT_ACCOUNT
    coming = slots.coming(s.conn, s.cfg, [(p, who) for p in names], s.now, count)
    shared = ",".join(names)
    if fmt != "text":
        emit_json([_slot_json(item, names, s.tz) for item in coming], fmt)
        return
    rows: list[Row] = [row for t, posts in coming for row in _rows(t, posts)]

    def plain(row: Row) -> list[str]:
        at, post = row
        if post is None:
            return [iso(to_ms(at), s.tz), "free", shared, ""]
        return [iso(to_ms(at), s.tz), post.id, ",".join(post.platforms), first_line(post.content)]

    emit_rows(
        rows,
        fmt,
        to_json=dict,
        plain=plain,
        columns=[
            Column(
                "When",
                lambda r: f"{format_local(r[0], s.tz, s.now)} ({format_relative(r[0] - s.now)})",
            ),
            Column("Post", lambda r: r[1].id[:8] if r[1] else "free", style="cyan"),
            Column("Platforms", lambda r: ",".join(r[1].platforms) if r[1] else shared),
            Column("Content", lambda r: first_line(r[1].content) if r[1] else ""),
        ],
        title=f"Posting slots: {shared}",
    )


def _rows(at: datetime, posts: list[Post]) -> list[Row]:
    return [(at, p) for p in posts] if posts else [(at, None)]


def _slot_json(item: tuple[datetime, list[Post]], names: list[str], tz: ZoneInfo) -> dict[str, Any]:
    at, posts = item
    return {
        **time_fields("slot_at", to_ms(at), tz),
        "platforms": names,
        "free": not posts,
        "posts": [
            {"id": p.id, "platforms": p.platforms, "status": p.status.value, "content": p.content}
            for p in posts
        ],
    }


COMMANDS = (slots_cmd,)
