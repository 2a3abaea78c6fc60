"""plur-post: parse arguments, call plurcast.queue, print what happened."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from plur_post.media import ImageOrderCommand, media_options
from plur_post.threads import ThreadArgs, emit_queued, thread_options
from plurcast import clikit, cliparse, queue, validation, writing
from plurcast import config as config_module
from plurcast.errors import InvalidInput
from plurcast.models import Schedule, to_ms
from plurcast.output import Format, emit_json
from plurcast.platforms import nostr_settings, registry
from plurcast.timefmt import format_local
from plurcast.views import queued_line, schedule_json, schedule_line, time_fields

if TYPE_CHECKING:
    from plurcast.store.base import Database


@click.command(
    cls=ImageOrderCommand,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-post "Hello, open social web" --schedule "tomorrow 9am"
  plur-post "Reminder" -s 30m -p nostr,mastodon
  plur-post "Launch day" -s "2027-01-01 10:00" --tz Europe/Berlin
  echo "from a pipe" | plur-post -s random:1h-2h
  plur-post "Weekly tip" -s next            the next free slot of [slots]
  plur-post "Not ready yet" --draft
  plur-post "Mined for relays that want it" -p nostr --nostr-pow 20
  plur-post --thread -s 9am < thread.md    parts separated by lines of ---
  plur-post --auto-thread --numbered "$(cat essay.txt)"
  plur-post "Agreed!" --reply-to https://bsky.app/profile/alice.bsky.social/post/3kx…
  plur-post "Kites" --image kite.jpg --alt "A red kite over a field" --lang en
  plur-post "Ending inside" --cw "film spoilers" -p mastodon,bluesky

\b
Exit codes: 0 ok, 1 platform/runtime error, 2 auth/config error, 3 invalid input.""",
)
@click.argument("content", required=False)
@cliparse.option(
    "-s",
    "--schedule",
    metavar="WHEN",
    help='Queue for a time: "30m", "tomorrow 9am", "fri 15:30", "2027-01-01 10:00", '
    '"random:1h-2h" … (see the README for the full grammar), or "next": the earliest '
    "free posting slot of [slots] in the config.",
)
@cliparse.option("-d", "--draft", is_flag=True, help="Save as a draft: queued for no time.")
@cliparse.option(
    "-p",
    "--platform",
    "platforms",
    multiple=True,
    metavar="PLATFORM",
    help=f"{', '.join(registry.NAMES[:-1])} or {registry.NAMES[-1]}; repeatable or "
    "comma-separated. Default: [defaults] platforms, else every enabled platform.",
)
@cliparse.option(
    "-a", "--account", metavar="NAME", help="A named account from [accounts.<platform>.NAME]."
)
@cliparse.option(
    "--tz", metavar="ZONE", help="IANA zone for WHEN and for output (default: config)."
)
@cliparse.option(
    "--cron", metavar="EXPR", help='Repeat on a cron schedule: "0 9 * * 1-5" (in --tz).'
)
@cliparse.option(
    "--every", metavar="DURATION", help="Repeat at a fixed interval: 6h, 1d, 90m (>= 1m)."
)
@cliparse.option(
    "--until", metavar="WHEN", help="With --cron/--every: no occurrences after this time."
)
@cliparse.option("--count", type=int, metavar="N", help="With --cron/--every: stop after N posts.")
@cliparse.option(
    "--misfire",
    type=click.Choice(["latest", "skip", "all"]),
    default="latest",
    show_default=True,
    help="Missed occurrences (daemon down): post the latest within --grace, skip them, "
    "or post all (at most 10).",
)
@cliparse.option(
    "--grace", metavar="DURATION", help="With --misfire latest: how late is too late (1h)."
)
@cliparse.option(
    "--visibility",
    type=click.Choice(["public", "unlisted", "private", "direct"]),
    help="Mastodon visibility for this post (default: [mastodon] visibility, else public).",
)
@cliparse.option(
    "--nostr-pow",
    type=int,
    metavar="DIFFICULTY",
    help="Proof of Work difficulty for Nostr events (NIP-13), 0-64: the note is mined "
    "when it is sent. Recommended: 20-25 (seconds of CPU; each step doubles the work). "
    "Only applies when posting to Nostr. Default: [nostr] default_pow_difficulty.",
)
@cliparse.option("--21e8", "pow_21e8", is_flag=True, hidden=True)
@thread_options
@media_options
@clikit.format_option
@clikit.version_option("plur-post")
def cli(
    content: str | None,
    schedule: str | None,
    draft: bool,
    platforms: tuple[str, ...],
    account: str | None,
    tz: str | None,
    cron: str | None,
    every: str | None,
    until: str | None,
    count: int | None,
    misfire: str,
    grace: str | None,
    visibility: str | None,
    nostr_pow: int | None,
    pow_21e8: bool,
    threading: ThreadArgs,
    extras: validation.Extras,
    fmt: Format,
) -> None:
    """Write a post and publish it to Nostr, Mastodon and Bluesky — or queue it for later.

    CONTENT is the text; give `-` or pipe it on stdin to read it from there.
    Without --schedule or --draft it is published now: one line per platform,
    `nostr:note1…`, or `nostr:error:<reason>` (a passing failure is retried by
    plur-send).
    """
    cfg = config_module.load()
    zone = cfg.timezone if tz is None else config_module.zone(tz)
    pow_metadata = nostr_settings.pow_metadata(cfg, account, nostr_pow, pow_21e8)
    text = clikit.read_content(content)
    # Read only, and nothing made on disk, until the input has passed every check.
    conn = clikit.closed_at_end(queue.open_db(cfg, create=False))
    now = clikit.now(conn)
    metadata: dict[str, object] | None = {"visibility": visibility} if visibility else None
    if pow_metadata:
        metadata = {**(metadata or {}), **pow_metadata}
    if cron is not None or every is not None:
        if draft:
            raise InvalidInput("--draft cannot be used with --cron or --every", "choose one")
        if threading.reply_to is not None:
            raise InvalidInput(
                "--reply-to cannot be used with --cron or --every",
                "reply once, or schedule the replies one by one",
            )
        # Recurring posts only: schedules brings logging and the rules of cron and intervals.
        from plurcast import schedules

        spec = schedules.Recurring(cron, every, schedule, until, count, misfire, grace)
        created_schedule = schedules.check_new(
            cfg,
            text,
            spec,
            platforms=platforms,
            account=account,
            tz=zone,
            now=now,
            metadata=metadata,
            compose=threading.compose,
            extras=extras,
            warn=clikit.warn,
        )
        schedules.write(_writable(conn, cfg), created_schedule)
        _show_schedule(created_schedule.schedule, zone, now, fmt)
        return
    if until is not None or count is not None or grace is not None:
        raise InvalidInput("--until, --count and --grace go with --cron or --every")
    new = writing.check_new_post(
        conn,
        cfg,
        text,
        schedule=schedule,
        draft=draft,
        platforms=platforms,
        account=account,
        tz=zone,
        now=now,
        metadata=metadata,
        compose=threading.compose,
        reply_to=threading.reply_to,
        extras=extras,
        warn=clikit.warn,
    )
    conn = _writable(conn, cfg)
    engine = None
    if new.now:
        # Only publishing now needs the engine (and asyncio): queueing stays fast.
        from plurcast.engine import Engine

        engine = Engine(cfg, conn)
    created = writing.write_post(
        conn, cfg, new, now, claim=engine.claim_post_locked if engine else None
    )
    if created.note:
        sys.stderr.write(created.note + "\n")
    clikit.done_already(_kept(created))
    if engine is not None:
        from plurcast import publish, reporting

        published = publish.publish_now(engine, created.post_ids, created.claims)
        sys.exit(reporting.emit(published, fmt, tz=zone, now=now))
    if len(created.post_ids) > 1:
        emit_queued(created, queue.get_many(conn, created.post_ids), fmt, zone=zone, now=now)
        return
    reply = {"reply_to": created.reply_to} if created.reply_to else {}
    names = [platform for platform, _ in created.targets]
    if created.scheduled_at is None:
        if fmt == "text":
            click.echo(queued_line("draft", created.post_id, None, zone, now))
        else:
            emit_json({"draft": True, "post_id": created.post_id, "platforms": names, **reply}, fmt)
        return
    if fmt == "text":
        click.echo(queued_line("scheduled", created.post_id, created.scheduled_at, zone, now))
        return
    shown = format_local(created.scheduled_at, zone, now)
    emit_json(
        {
            "scheduled": True,
            "post_id": created.post_id,
            **time_fields("scheduled_at", to_ms(created.scheduled_at), zone),
            "scheduled_time": shown,
            "platforms": names,
            "account": created.targets[0][1],
            **reply,
        },
        fmt,
    )


def _kept(created: writing.Created) -> str:
    """What plur-post has stored once write_post returns, for a failure to say it that
    follows (clikit.done_already)."""
    first = created.post_ids[0]
    what = f"post {first}" if len(created.post_ids) == 1 else f"thread {first}…"
    return f"{what} is saved all the same (plur-queue show {first}): do not post it again"


def _writable(conn: Database, cfg: config_module.Config) -> Database:
    """queue.writable, the database it may make now closed at the end as well."""
    made = queue.writable(conn, cfg)
    return made if made is conn else clikit.closed_at_end(made)


def _show_schedule(s: Schedule, zone: ZoneInfo, now: datetime, fmt: Format) -> None:
    if fmt == "text":
        click.echo(schedule_line("schedule", s.id, s.next_run_at_ms, zone, now))
        return
    emit_json(schedule_json(s, zone, now), fmt)


def main() -> None:
    cli()
