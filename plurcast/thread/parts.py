"""A thread's parts in the queue: the parts after a part, which stop and move with it.

Cancelling a part cancels the parts after it (they would wait for it forever); moving a part
moves the parts after it by as much, and no part may go before the part it follows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

from plurcast.errors import InvalidInput
from plurcast.models import UNSENT, WAITING, DeliveryState, Post
from plurcast.store import listing
from plurcast.store import posts as store
from plurcast.store.base import Database


def later_parts(conn: Database, posts: Sequence[Post]) -> list[Post]:
    """The parts of these posts' threads after them, not among them, in order: what goes
    (or stops, or moves) with a part."""
    given = {p.id for p in posts}
    later: list[str] = []
    for post in posts:
        if post.thread_id is not None and post.thread_part is not None:
            for found in store.thread_post_ids(conn, post.thread_id, post.thread_part + 1):
                if found not in given and found not in later:
                    later.append(found)
    return listing.get_posts(conn, later)


def move(
    conn: Database,
    post: Post,
    new_ms: int,
    now_ms: int,
    check_movable: Callable[[Post], None],
) -> None:
    """Move a post, and the later parts of its thread by as much (a draft's: to the same
    time), under the caller's write lock. No part goes before the part it follows."""
    current = listing.get_posts(conn, [post.id])[0]
    check_movable(current)
    if current.thread_id and current.thread_part and current.thread_part > 1:
        before = store.thread_part_id(conn, current.thread_id, current.thread_part - 1)
        parent = listing.get_posts(conn, [before])[0] if before else None
        if parent is not None and (parent.scheduled_at_ms or 0) > new_ms:
            from plurcast.views import iso

            raise InvalidInput(
                f"part {current.thread_part} cannot go before part {parent.thread_part} of "
                f"its thread ({iso(parent.scheduled_at_ms or 0, ZoneInfo(parent.timezone))})",
                f"move part {parent.thread_part} first: plur-queue reschedule {parent.id[:8]} …",
            )
    shift = None if current.scheduled_at_ms is None else new_ms - current.scheduled_at_ms
    store.set_schedule(conn, post.id, new_ms, now_ms)
    for part in later_parts(conn, [current]):
        if not any(d.state in WAITING for d in part.deliveries):
            continue
        if part.scheduled_at_ms is None or shift is None:
            store.set_schedule(conn, part.id, new_ms, now_ms)
        else:
            store.set_schedule(conn, part.id, part.scheduled_at_ms + shift, now_ms)


def unsent_later_parts(
    conn: Database, posts: Sequence[Post], check_cancellable: Callable[[Post], None]
) -> list[Post]:
    """The later parts cancelled with these posts: those with something unsent (a part sent
    everywhere stays as it is); each must be cancellable too."""
    later = [p for p in later_parts(conn, posts) if any(d.state in UNSENT for d in p.deliveries)]
    for part in later:
        check_cancellable(part)
    return later


def check_not_waiting(post: Post) -> None:
    """A part whose parent is not sent cannot be sent before it (G6): InvalidInput saying
    what it waits on, and what to do."""
    waiting = [d for d in post.deliveries if d.state in WAITING]
    if not waiting or not all(d.blocked for d in waiting):
        return
    from plurcast.views import waiting_text

    cause = waiting[0].waiting_on
    hint = None
    if cause is not None and cause.post_id and cause.stuck:
        hint = f"fix that, then: plur-queue failed retry {cause.post_id[:8]}"
    elif cause is not None and cause.post_id:
        hint = f"send it first: plur-queue now {cause.post_id[:8]}"
    raise InvalidInput(f"post {post.id} is {waiting_text(cause)}", hint)


def gave_up_before(conn: Database, post: Post) -> list[Post]:
    """The posts a blocked post waits on that gave up (retrying them resumes it); none when
    it is not blocked. InvalidInput when what it waits on was cancelled or deleted."""
    causes = [d.waiting_on for d in post.deliveries if d.waiting_on and d.waiting_on.stuck]
    found: list[str] = []
    for cause in causes:
        if cause.state != DeliveryState.DEAD or cause.post_id is None:
            from plurcast.views import waiting_text

            raise InvalidInput(
                f"post {post.id} is {waiting_text(cause)}", "it cannot be sent any more"
            )
        found.append(cause.post_id)
    return listing.get_posts(conn, list(dict.fromkeys(found)))
