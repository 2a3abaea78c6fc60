"""plur-queue: the command group and the read-only views (list, show)."""

from __future__ import annotations

from typing import Any

import click

from plur_queue.common import Session, open_session, plain_time, post_columns, when_cell
from plurcast import clikit, cliparse, queue
from plurcast.models import WAITING, Post
from plurcast.output import Format, emit_json, emit_lines, emit_rows, first_line
from plurcast.views import local, part_label, post_detail_json, post_json, waiting_text

# The other commands, by the module that holds them (imported when one is run).
LAZY = {
    **dict.fromkeys(("cancel", "reschedule", "edit", "update"), "plur_queue.manage"),
    "now": "plur_queue.send",
    "stats": "plur_queue.stats",
    "slots": "plur_queue.slots",
    "failed": "plur_queue.failed",
    **dict.fromkeys(("schedules", "pause", "resume", "history"), "plur_queue.recurring"),
}


@click.group(
    cls=clikit.LazyGroup,
    lazy=LAZY,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-queue list
  plur-queue list --all -f json
  plur-queue show 3f2a9c1e
  plur-queue reschedule 3f2a9c1e -30m
  plur-queue reschedule 3f2a9c1e next      the next free posting slot
  plur-queue slots
  plur-queue cancel 3f2a9c1e --force
  plur-queue stats

\b
Post ids may be shortened to any unique prefix of 8 or more characters.
Exit codes: 0 ok, 1 platform/runtime error, 2 auth/config error, 3 invalid input.""",
)
@clikit.version_option("plur-queue")
def cli() -> None:
    """Look at and manage the queue of scheduled posts."""


@cli.command("list")
@cliparse.option("-p", "--platform", metavar="PLATFORM", help="Only posts for this platform.")
@cliparse.option(
    "--all", "include_all", is_flag=True, help="Also drafts, sending, posted, failed, cancelled."
)
@clikit.format_option
def list_cmd(platform: str | None, include_all: bool, fmt: Format) -> None:
    """List scheduled posts, soonest first.

    \b
    Piped, each post is one tab-separated line:
      <id>  <time ISO 8601>  <platforms>  <first line of content>
    with --all, the status comes before the content.
    """
    s = open_session()
    posts = queue.list_posts(s.conn, include_all=include_all, platform=platform)

    def plain(p: Post) -> list[str]:
        fields = [p.id, plain_time(p, s), ",".join(p.platforms)]
        if include_all:
            fields.append(p.status.value)
        return [*fields, part_label(p) + first_line(p.content)]

    emit_rows(
        posts,
        fmt,
        to_json=lambda p: post_json(p, s.tz),
        plain=plain,
        columns=post_columns(s, status=include_all),
        empty="The queue is empty." if not include_all else "No posts.",
    )


@cli.command()
@click.argument("post_id", metavar="ID")
@clikit.format_option
def show(post_id: str, fmt: Format) -> None:
    """Show one post: its text, each platform's delivery, and every attempt."""
    s = open_session()
    post = queue.get(s.conn, post_id, history=True)
    if fmt != "text":
        emit_json(post_detail_json(post, s.tz), fmt)
        return
    emit_lines(_detail_lines(post, s))


def _detail_lines(post: Post, s: Session) -> list[str]:
    lines = [
        f"id:         {post.id}",
        f"status:     {post.status.value}",
        f"scheduled:  {when_cell(post, s)}",
        f"created:    {local(post.created_at_ms, s.tz, s.now)}",
        f"timezone:   {post.timezone}",
    ]
    if post.schedule_id:
        lines.append(f"schedule:   {post.schedule_id}")
    if post.thread_id and post.thread_parts and post.thread_parts > 1:
        lines.append(
            f"thread:     part {post.thread_part} of {post.thread_parts} ({post.thread_id})"
        )
    if post.reply_to:
        lines.append(f"reply to:   {post.reply_to}")
    lines += _option_lines(post.metadata)
    lines.append("content:")
    lines += [f"  {line}" for line in post.content.splitlines()]
    lines += _image_lines(post.metadata)
    lines.append("deliveries:")
    for d in post.deliveries:
        summary = f"  {d.platform} ({d.account}): {d.state.value}, attempts {d.attempts}"
        if d.sent_at_ms is not None:
            summary += f", sent {local(d.sent_at_ms, s.tz, s.now)}"
        elif d.due_at_ms is not None and d.state in WAITING:
            summary += f", due {local(d.due_at_ms, s.tz, s.now)}"
        lines.append(summary)
        if d.blocked and d.state.value in ("pending", "retry"):
            lines.append(f"    {waiting_text(d.waiting_on)}")
        if d.content is not None:
            lines.append("    its own text:")
            lines += [f"      {line}" for line in d.content.splitlines()]
        if d.remote_url or d.remote_id:
            lines.append(f"    {d.remote_url or d.remote_id}")
        if d.last_error:
            lines.append(
                f"    error ({d.error_kind or 'unknown'}): {first_line(d.last_error, 200)}"
            )
        for a in d.history:
            error = f": {first_line(a.error, 200)}" if a.error else ""
            lines.append(
                f"    #{a.number} {local(a.started_at_ms, s.tz, s.now)} {a.outcome}{error}"
            )
            lines += [f"       {key}: {first_line(note, 200)}" for key, note in a.notes.items()]
    return lines


def _option_lines(metadata: dict[str, Any]) -> list[str]:
    lines = []
    if metadata.get("cw"):
        lines.append(f"warning:    {first_line(metadata['cw'], 200)}")
    if metadata.get("label"):
        lines.append(f"label:      {metadata['label']}")
    if metadata.get("langs"):
        lines.append(f"languages:  {', '.join(metadata['langs'])}")
    if metadata.get("card") is False:
        lines.append("link card:  off")
    return lines


def _image_lines(metadata: dict[str, Any]) -> list[str]:
    """Each image: its number (for `edit --alt N`), name, type, size, dimensions, alt text."""
    images = metadata.get("images") or []
    if not images:
        return []
    lines = ["images:"]
    for number, image in enumerate(images, start=1):
        lines.append(
            f"  {number}. {image.get('name') or image['sha256'][:12]}: {image['mime']}, "
            f"{image['size']:,} bytes, {image['width']}×{image['height']}"
        )
        alt = image.get("alt")
        lines.append(f"     alt: {first_line(alt, 200)}" if alt else "     alt: (none)")
        for platform, fitted in sorted(image.get("fitted", {}).items()):
            lines.append(
                f"     {platform}: re-encoded to {fitted['size']:,} bytes, "
                f"{fitted['width']}×{fitted['height']}"
            )
    return lines


def main() -> None:
    cli()
