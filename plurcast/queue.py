"""The queue: opening it, and reading posts from it — by id or unique prefix, in the order
given, as `plur-queue list` and `failed list` show them.

Writing new posts is `plurcast.writing`; cancelling, moving, editing and retrying queued
ones is `plurcast.changes`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime

from plurcast import validation
from plurcast.config import Config
from plurcast.errors import InvalidInput, NotFound
from plurcast.models import Post, PostStatus, from_ms
from plurcast.store import listing
from plurcast.store import open_db as open_db  # noqa: PLC0414 (re-exported: the commands use it)
from plurcast.store import posts as store
from plurcast.store.base import Database
from plurcast.store.connection import on_disk

MIN_ID_PREFIX = 8
_ID_PREFIX = r"[0-9a-f-]+"  # compiled at first use (re's cache): plur-post needs none


def writable(conn: Database, cfg: Config) -> Database:
    """`conn` from `open_db(create=False)`, or the database made now when there was none:
    for a command whose input has passed every check and that is about to write."""
    return conn if on_disk(conn) else open_db(cfg)


def pending_after(conn: Database, expression: str, moving: str = "") -> datetime | None:
    """For `random:MIN-MAX`: the latest still-pending post it goes after (other than the one
    being moved), else None (then it counts from now)."""
    if not expression.strip().lower().startswith("random:"):
        return None
    latest = store.latest_waiting_time_ms(conn, excluding=moving)
    return None if latest is None else from_ms(latest)


def is_id_prefix(key: str) -> bool:
    """Lower-case hex and dashes only: what an id can start with, and no pattern character."""
    return re.fullmatch(_ID_PREFIX, key) is not None


def resolve(conn: Database, prefix: str) -> str:
    """A full post id from a unique prefix of at least 8 characters."""
    key = prefix.strip().lower()
    if len(key) < MIN_ID_PREFIX or not is_id_prefix(key):
        raise InvalidInput(
            f'"{prefix}" is not a post id',
            f"give the id or at least its first {MIN_ID_PREFIX} characters (see plur-queue list)",
        )
    found = store.find_post_ids(conn, key)
    if not found:
        raise NotFound(f'no post with id "{prefix}"', "see plur-queue list --all")
    if len(found) > 1:
        raise InvalidInput(
            f'id prefix "{prefix}" matches more than one post', "give more characters"
        )
    return found[0]


def get(conn: Database, prefix: str, *, history: bool = False) -> Post:
    post = listing.get_posts(conn, [resolve(conn, prefix)])[0]
    if history:
        listing.load_history(conn, post)
    return post


def get_many(conn: Database, prefixes: Sequence[str]) -> list[Post]:
    """The posts the prefixes name, in the order given (each once)."""
    return in_given_order(conn, [resolve(conn, p) for p in prefixes])


def in_given_order(conn: Database, ids: Sequence[str]) -> list[Post]:
    """The posts with these ids in the order given, each once: what a command reports on
    goes in the order the user typed the ids."""
    unique = list(dict.fromkeys(ids))
    found = {post.id: post for post in listing.get_posts(conn, unique)}
    return [found[post_id] for post_id in unique]


def list_posts(
    conn: Database, *, include_all: bool = False, platform: str | None = None
) -> Iterator[Post]:
    """What `plur-queue list` shows: scheduled posts by time, or every post with --all;
    read as they are asked for (`listing.stream_posts`)."""
    if platform is not None:
        platform = validation.one_platform(platform)
    chunks = listing.stream_posts(conn, waiting_only=not include_all, platform=platform)
    if include_all:
        return (p for chunk in chunks for p in chunk)
    return (p for chunk in chunks for p in chunk if p.status == PostStatus.SCHEDULED)


def failed(conn: Database) -> list[Post]:
    """Posts with at least one delivery that gave up (failed, partial or expired), and the
    thread parts and replies blocked behind one (their parent gave up or was cancelled)."""
    dead = listing.select_posts(conn, waiting_only=False, with_dead_only=True)
    blocked = list(listing.select_posts(conn, waiting_only=False, blocked_only=True))
    if not any(is_stuck(p) for p in blocked):
        return dead
    return listing.get_posts(
        conn, list({p.id for p in dead} | {p.id for p in blocked if is_stuck(p)})
    )


def is_stuck(post: Post) -> bool:
    return any(d.waiting_on is not None and d.waiting_on.stuck for d in post.deliveries)
