"""plur-post: parse arguments, call plurcast.queue, print what happened."""

from __future__ import annotations

import sys

import click

from plurcast import __version__, clikit, queue
from plurcast import config as config_module
from plurcast.output import Format, emit_json
from plurcast.timefmt import format_local, format_relative
from plurcast.views import time_fields


@click.command(
    cls=clikit.Command,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-post "Hello, open social web" --schedule "tomorrow 9am"
  plur-post "Reminder" -s 30m -p nostr,mastodon
  plur-post "Launch day" -s "2027-01-01 10:00" --tz Europe/Berlin
  echo "from a pipe" | plur-post -s random:1h-2h
  plur-post "Not ready yet" --draft

\b
Exit codes: 0 ok, 1 platform/runtime error, 2 auth/config error, 3 invalid input.""",
)
@click.argument("content", required=False)
@click.option(
    "-s",
    "--schedule",
    metavar="WHEN",
    help='Queue for a time: "30m", "tomorrow 9am", "fri 15:30", "2027-01-01 10:00", '
    '"random:1h-2h" … (see the README for the full grammar).',
)
@click.option("-d", "--draft", is_flag=True, help="Save as a draft: queued for no time.")
@click.option(
    "-p",
    "--platform",
    "platforms",
    multiple=True,
    metavar="PLATFORM",
    help="nostr, mastodon or bluesky; repeatable or comma-separated. "
    "Default: [defaults] platforms, else every enabled platform.",
)
@click.option(
    "-a", "--account", metavar="NAME", help="A named account from [accounts.<platform>.NAME]."
)
@click.option("--tz", metavar="ZONE", help="IANA zone for WHEN and for output (default: config).")
@click.option(
    "--visibility",
    type=click.Choice(["public", "unlisted", "private", "direct"]),
    help="Mastodon visibility for this post (default: [mastodon] visibility, else public).",
)
@clikit.format_option
@click.version_option(__version__, "-V", "--version", prog_name="plur-post")
def cli(
    content: str | None,
    schedule: str | None,
    draft: bool,
    platforms: tuple[str, ...],
    account: str | None,
    tz: str | None,
    visibility: str | None,
    fmt: Format,
) -> None:
    """Write a post and publish it to Nostr, Mastodon and Bluesky — or queue it for later.

    CONTENT is the text; give `-` or pipe it on stdin to read it from there.
    Without --schedule or --draft it is published now: one line per platform,
    `nostr:note1…`, or `nostr:error:<reason>` (a passing failure is retried by
    plur-send).
    """
    cfg = config_module.load()
    zone = config_module.zone(tz) if tz else cfg.timezone
    text = clikit.read_content(content)
    now = clikit.now()
    conn = queue.open_db(cfg)
    engine = None
    if schedule is None and not draft:
        # Only publishing now needs the engine (and asyncio): queueing stays fast.
        from plurcast.engine import Engine

        engine = Engine(cfg, conn)
    created = queue.create_post(
        conn,
        cfg,
        text,
        schedule=schedule,
        draft=draft,
        platforms=platforms,
        account=account,
        tz=zone,
        now=now,
        claim=engine.claim_post_locked if engine else None,
        metadata={"visibility": visibility} if visibility else None,
    )
    if engine is not None:
        from plurcast import publish, reporting

        delivered = publish.deliver(engine, created.claims)
        reports = publish.report(conn, created.post_id, delivered, engine.pool.platforms)
        alive = publish.daemon_alive(conn, engine.now_ms())
        sys.exit(reporting.emit(reports, fmt, tz=zone, now=now, daemon_alive=alive))
    names = [platform for platform, _ in created.targets]
    if created.scheduled_at is None:
        if fmt == "text":
            click.echo(f"draft:{created.post_id}")
        else:
            emit_json({"draft": True, "post_id": created.post_id, "platforms": names}, fmt)
        return
    shown = format_local(created.scheduled_at, zone, now)
    if fmt == "text":
        relative = format_relative(created.scheduled_at - now)
        click.echo(f"scheduled:{created.post_id}:for:{relative} ({shown})")
        return
    emit_json(
        {
            "scheduled": True,
            "post_id": created.post_id,
            **time_fields("scheduled_at", int(created.scheduled_at.timestamp() * 1000), zone),
            "scheduled_time": shown,
            "platforms": names,
            "account": created.targets[0][1],
        },
        fmt,
    )


def main() -> None:
    cli()
