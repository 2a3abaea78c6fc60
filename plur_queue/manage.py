"""plur-queue commands that change posts: cancel, reschedule, edit."""

from __future__ import annotations

import sys

import click

from plur_queue.common import open_session
from plurcast import changes, clikit, cliparse, queue, schedules, when
from plurcast.errors import InvalidInput
from plurcast.models import Schedule, to_ms
from plurcast.output import Format, emit_json, emit_nothing_done
from plurcast.platforms import nostr_settings
from plurcast.timefmt import format_local
from plurcast.views import queued_line, time_fields


@click.command(cls=clikit.Command)
@click.argument("post_ids", metavar="ID...", nargs=-1)
@cliparse.option("--all", "cancel_all", is_flag=True, help="Cancel every scheduled post.")
@cliparse.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@clikit.format_long_option
def cancel(post_ids: tuple[str, ...], cancel_all: bool, force: bool, fmt: Format) -> None:
    """Cancel scheduled posts or recurring schedules; what was already sent stays sent.

    Asks for confirmation on stderr unless --force. Cancelled posts stay visible
    with `plur-queue list --all`. A schedule id stops the schedule and cancels
    its posts not yet sent. A part of a thread is cancelled with the parts after it.

    \b
    Examples:
      plur-queue cancel 3f2a9c1e
      plur-queue cancel --all --force
    """
    if bool(post_ids) == cancel_all:
        raise click.UsageError("give post ids or --all (not both)")
    s = open_session()
    recurring: list[Schedule] = []
    if cancel_all:
        posts = list(queue.list_posts(s.conn))
    else:
        posts, recurring = schedules.posts_or_schedules(s.conn, post_ids)
    for post in posts:
        changes.check_cancellable(post)
    if not posts and not recurring:
        emit_nothing_done("Nothing to cancel.", fmt)
        return
    later = changes.cancelled_with(s.conn, posts)
    if not force:
        what = [f"{len(posts)} post{'s' if len(posts) != 1 else ''}"] if posts else []
        if later:
            parts = ", ".join(f"{p.id[:8]} ({p.thread_part}/{p.thread_parts})" for p in later)
            what[-1] += f" and the later parts of {'its' if len(posts) == 1 else 'their'} thread"
            what[-1] += f" ({parts})"
        if recurring:
            what.append(f"{len(recurring)} schedule{'s' if len(recurring) != 1 else ''}")
        clikit.confirm(f"Cancel {' and '.join(what)}?")
    now = clikit.now(s.conn)
    posts = [*posts, *changes.cancel(s.conn, posts, now)]
    for schedule in recurring:
        schedules.cancel(s.conn, schedule, to_ms(now))
    if fmt == "text":
        click.echo(
            "\n".join(f"cancelled:{i}" for i in [p.id for p in posts] + [x.id for x in recurring])
        )
    else:
        emit_json(
            [{"post_id": p.id, "cancelled": True} for p in posts]
            + [{"schedule_id": x.id, "cancelled": True} for x in recurring],
            fmt,
        )


class _ShiftCommand(clikit.Command):
    """Reads `reschedule ID -30m` without `--`.

    click would take `-2h` as the options `-2 -h` (help!), so signed durations are
    moved behind a `--` before click parses; options around them still work.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            shifts = [a for a in args if when.is_relative_shift(a)]
            if shifts:
                args = [a for a in args if a not in shifts] + ["--", *shifts]
        return super().parse_args(ctx, args)


@click.command(cls=_ShiftCommand)
@click.argument("post_id", metavar="ID")
@click.argument("expression", metavar="WHEN", nargs=-1, required=True)
@cliparse.option(
    "--tz", metavar="ZONE", help="IANA zone for WHEN and the output (default: config)."
)
@clikit.format_option
def reschedule(post_id: str, expression: tuple[str, ...], tz: str | None, fmt: Format) -> None:
    """Move a scheduled post (or give a draft its time).

    WHEN is any time plur-post --schedule accepts, a shift of the post's current
    time: +2h, -30m (no `--` needed), or `next`: the earliest posting slot of [slots]
    that no other queued post of the same platforms holds.

    \b
    Examples:
      plur-queue reschedule 3f2a9c1e "tomorrow 9am"
      plur-queue reschedule 3f2a9c1e -30m
      plur-queue reschedule 3f2a9c1e next
    """
    s = open_session(tz)
    post = queue.get(s.conn, post_id)
    new_time = changes.reschedule(s.conn, s.cfg, post, " ".join(expression), tz=s.tz, now=s.now)
    if fmt == "text":
        click.echo(queued_line("rescheduled", post.id, new_time, s.tz, s.now))
        return
    shown = format_local(new_time, s.tz, s.now)
    emit_json(
        {
            "post_id": post.id,
            **time_fields("scheduled_at", to_ms(new_time), s.tz),
            "scheduled_time": shown,
        },
        fmt,
    )


@click.command(cls=clikit.Command)
@click.argument("post_id", metavar="ID")
@click.argument("content", required=False)
@cliparse.option(
    "-p",
    "--platform",
    metavar="PLATFORM",
    help="Edit the text for this platform only (as plur-post --variant set it).",
)
@cliparse.option(
    "--alt",
    "alts",
    nargs=2,
    multiple=True,
    metavar="N TEXT",
    help="The new alt text of image N (as plur-queue show numbers them); repeatable.",
)
def edit(
    post_id: str, content: str | None, platform: str | None, alts: tuple[tuple[str, str], ...]
) -> None:
    """Replace the text, or the alt texts of the images, of a post that has not been sent.

    CONTENT is the new text; `-` (or a pipe) reads it from stdin; with neither,
    $EDITOR opens the current text. With --platform, only the text there changes; a
    platform with a text of its own keeps it when the post's text is edited. With --alt
    alone the text stays as it is.

    \b
    Examples:
      plur-queue edit 3f2a9c1e "Fixed a typo"
      plur-queue edit 3f2a9c1e --alt 1 "A red kite over a field"
    """
    s = open_session()
    post = queue.get(s.conn, post_id)
    numbered = _alt_texts(alts)
    current = post.content
    if platform is not None:
        own = [d.content for d in post.deliveries if d.platform == platform.strip().lower()]
        current = next((c for c in own if c is not None), post.content)
    text: str | None
    if content is None and numbered:
        text = None
    elif content is None and sys.stdin.isatty():
        edited = _edited(current)
        if edited is None or edited.strip() == current:
            sys.stderr.write("No change.\n")
            return
        text = edited
    else:
        text = clikit.read_content(content)
    done = changes.edit(s.conn, s.cfg, post, text, clikit.now(s.conn), platform, alts=numbered)
    for warning in done.warnings:
        clikit.warn(warning)
    click.echo(f"edited:{post.id}")


def _edited(text: str) -> str | None:
    """`click.edit`, ended by a hang-up or a stop (the terminal closed, `kill`) as by Ctrl-C:
    the temporary file that holds the post's text is deleted on the way out (click's own
    `finally`), where the signal's default action left it in the temp folder. Exit 128 + the
    signal's number, the post unchanged."""
    import signal
    from types import FrameType

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        return click.edit(text)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _alt_texts(alts: tuple[tuple[str, str], ...]) -> dict[int, str]:
    """`--alt 2 "…"` pairs as {2: "…"}; N must be a whole number from 1."""
    numbered: dict[int, str] = {}
    for number, text in alts:
        if not number.isdigit() or int(number) < 1:
            raise InvalidInput(
                f'--alt "{number}": not an image number', 'write --alt 1 "what image 1 shows"'
            )
        numbered[int(number)] = text
    return numbered


@click.command(cls=clikit.Command)
@click.argument("post_id", metavar="ID")
@cliparse.option(
    "--nostr-pow",
    type=int,
    metavar="DIFFICULTY",
    help="Nostr proof of work (NIP-13) difficulty, 0-64 (0: none).",
)
@clikit.format_option
def update(post_id: str, nostr_pow: int | None, fmt: Format) -> None:
    """Change how a post not yet sent goes out: its Nostr proof of work.

    \b
    Example:
      plur-queue update 3f2a9c1e --nostr-pow 28
    """
    if nostr_pow is None:
        raise click.UsageError(
            "No update options provided. Use --nostr-pow to update Nostr PoW difficulty."
        )
    s = open_session()
    post = queue.get(s.conn, post_id)
    changes.update_metadata(s.conn, post, nostr_settings.with_pow(nostr_pow), clikit.now(s.conn))
    if fmt == "text":
        click.echo(f"Updated Nostr PoW difficulty to: {nostr_pow}")
        click.echo(f"✓ Post {post.id} updated successfully")
    else:
        emit_json({"post_id": post.id, "updated": True, "nostr_pow": nostr_pow}, fmt)


COMMANDS = (cancel, reschedule, edit, update)
