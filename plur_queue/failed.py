"""plur-queue failed: posts whose deliveries gave up, and cleaning them out."""

from __future__ import annotations

import click

from plur_queue import send
from plur_queue.common import open_session, when_cell
from plurcast import changes, clikit, cliparse, queue
from plurcast.models import DeliveryState, Post
from plurcast.output import Column, Format, emit_json, emit_nothing_done, emit_rows, first_line
from plurcast.store.base import Database
from plurcast.views import delivery_json, part_label, post_json, waiting_text


def _errors(post: Post) -> str:
    return "; ".join(
        f"{d.platform}({d.account}): {first_line(d.last_error or 'gave up', 120)}"
        if d.state == DeliveryState.DEAD
        else f"{d.platform}({d.account}): {waiting_text(d.waiting_on)}"
        for d in post.deliveries
        if d.state == DeliveryState.DEAD or (d.waiting_on is not None and d.waiting_on.stuck)
    )


@click.group(cls=clikit.Group)
def failed() -> None:
    """Posts that a platform refused or that ran out of retries."""


@failed.command("list")
@clikit.format_option
def failed_list(fmt: Format) -> None:
    """Failed and partly-sent posts with each platform's error.

    Piped: <id>  <status>  <platform(account): error; …>  <first line of content>
    """
    s = open_session()
    posts = queue.failed(s.conn)
    emit_rows(
        posts,
        fmt,
        to_json=lambda p: {
            **post_json(p, s.tz),
            "deliveries": [delivery_json(d, s.tz) for d in p.deliveries],
        },
        plain=lambda p: [p.id, p.status.value, _errors(p), part_label(p) + first_line(p.content)],
        columns=[
            Column("ID", lambda p: p.id[:8], style="cyan"),
            Column("When", lambda p: when_cell(p, s)),
            Column("Status", lambda p: p.status.value),
            Column("Errors", _errors, style="red"),
            Column("Content", lambda p: part_label(p) + first_line(p.content)),
        ],
        empty="No failed posts.",
    )


def _delete(conn: Database, posts: list[Post], fmt: Format) -> None:
    posts = [*posts, *changes.delete_failed(conn, posts)]
    if fmt == "text":
        click.echo("\n".join(f"deleted:{p.id}" for p in posts))
    else:
        emit_json([{"post_id": p.id, "deleted": True} for p in posts], fmt)


@failed.command()
@cliparse.option("--force", is_flag=True, help="Do not ask for confirmation.")
@clikit.format_option
def clear(force: bool, fmt: Format) -> None:
    """Delete every post listed by `failed list` (their history goes with them)."""
    conn = open_session().conn
    posts = queue.failed(conn)
    if not posts:
        emit_nothing_done("No failed posts.", fmt)
        return
    if not force:
        clikit.confirm(f"Delete {len(posts)} failed post{'s' if len(posts) != 1 else ''}?")
    _delete(conn, posts, fmt)


@failed.command()
@click.argument("post_ids", metavar="ID...", nargs=-1, required=True)
@clikit.format_option
def delete(post_ids: tuple[str, ...], fmt: Format) -> None:
    """Delete failed posts by id (a thread's part: with the parts after it)."""
    conn = open_session().conn
    _delete(conn, queue.get_many(conn, post_ids), fmt)


failed.add_command(send.retry)

COMMANDS = (failed,)
