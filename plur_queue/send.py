"""plur-queue commands that publish in the foreground: now, failed retry."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from plur_queue.common import Session, open_session
from plurcast import changes, clikit, cliparse, queue
from plurcast.models import Post
from plurcast.output import Format, emit_nothing_done
from plurcast.thread.parts import later_parts


def publish_posts(s: Session, posts: Sequence[Post], fmt: Format) -> int:
    """Deliver each post's waiting deliveries in this process, and the later parts of a
    thread in order after them; print like plur-post."""
    # Imported here: the engine brings asyncio, which listing commands should not pay for.
    from plurcast import publish, reporting
    from plurcast.engine import Engine

    posts = [*posts, *later_parts(s.conn, posts)]
    engine = Engine(s.cfg, s.conn)
    published = publish.publish_now(engine, [post.id for post in posts])
    return reporting.emit(published, fmt, tz=s.tz, now=s.now)


@click.command(cls=clikit.Command)
@click.argument("post_id", metavar="ID")
@clikit.format_option
def now(post_id: str, fmt: Format) -> None:
    """Publish a queued post right now, whatever its time (a thread's part: with the parts
    after it, in order).

    Safe while plur-send runs: a delivery is sent by one process only. Prints what
    plur-post prints: one line per platform.
    """
    s = open_session()
    post = queue.get(s.conn, post_id)
    changes.check_sendable(post)
    sys.exit(publish_posts(s, [post], fmt))


@click.command("retry", cls=clikit.Command)
@click.argument("post_ids", metavar="ID...", nargs=-1)
@cliparse.option("--all", "retry_all", is_flag=True, help="Retry every failed post.")
@clikit.format_option
def retry(post_ids: tuple[str, ...], retry_all: bool, fmt: Format) -> None:
    """Send the deliveries that gave up again, now; what was sent is not sent twice.

    A thread goes on after the part retried, in order; an id of a part blocked behind one
    that gave up retries that one."""
    if bool(post_ids) == retry_all:
        raise click.UsageError("give post ids or --all (not both)")
    s = open_session()
    posts = queue.failed(s.conn) if retry_all else queue.get_many(s.conn, post_ids)
    if not posts:
        emit_nothing_done("No failed posts.", fmt)
        return
    sys.exit(publish_posts(s, changes.retry_failed(s.conn, posts, s.now, every=retry_all), fmt))


COMMANDS = (now,)
