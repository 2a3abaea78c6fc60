"""Changing queued posts: cancel, reschedule, edit, their metadata, and what gave up
(retry, delete). Each checks first, then again inside its one write transaction: a daemon
may have sent the post meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plurcast import queue, slots, validation
from plurcast.config import Config
from plurcast.errors import InvalidInput
from plurcast.models import UNSENT, WAITING, DeliveryState, Post, PostStatus, from_ms, to_ms
from plurcast.store import listing, recording
from plurcast.store import posts as store
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from plurcast.thread import parts as thread_parts
from plurcast.value import Value


def check_cancellable(post: Post) -> None:
    """A post can be cancelled while nothing of it can have gone out.

    A delivery whose payload is stored may already be published — its send timed
    out, or its sender died before recording — so "cancelled" could be a lie; such a
    post is refused as a whole and will be delivered (exactly once) and recorded.
    """
    status = post.status
    maybe_out = [d.platform for d in post.deliveries if d.state in UNSENT and d.has_payload]
    if maybe_out:
        raise InvalidInput(
            f"post {post.id} may already be out on {', '.join(maybe_out)}; it can no longer "
            "be cancelled",
            "it will be delivered once and recorded — see plur-queue show",
        )
    if status in (PostStatus.POSTED, PostStatus.PARTIAL):
        raise InvalidInput(f"post {post.id} is already posted", "nothing left to cancel")
    if not any(d.state in UNSENT for d in post.deliveries):
        raise InvalidInput(f"post {post.id} is {status}", "nothing left to cancel")


def cancel(conn: Database, posts: Sequence[Post], now: datetime) -> list[Post]:
    """Cancel every delivery not yet sent; sent ones stay as the record of what went out.
    A thread's part is cancelled with every part after it: they would wait for it forever.
    Returns the later parts cancelled with the posts given.

    The check is repeated inside the write transaction, so a daemon that sent the
    post a moment ago is seen.
    """
    for post in posts:
        check_cancellable(post)
    if not posts:
        return []
    later = thread_parts.unsent_later_parts(conn, posts, check_cancellable)
    ids = [p.id for p in [*posts, *later]]
    with transaction(conn):
        fresh = listing.get_posts(conn, ids)
        for post in fresh:
            check_cancellable(post)
        store.cancel_unsent(conn, ids, to_ms(now))
    _collect(conn, posts)
    return later


def cancelled_with(conn: Database, posts: Sequence[Post]) -> list[Post]:
    """What `cancel` would cancel besides these posts (for its question)."""
    return thread_parts.unsent_later_parts(conn, posts, check_cancellable)


def _collect(conn: Database, posts: Sequence[Post]) -> None:
    """The images these posts had that nothing needs any more leave the media store."""
    from plurcast.media import store as media_store

    media_store.collect_after(conn, (p.metadata for p in posts))


def _check_movable(post: Post) -> None:
    status = post.status
    if status not in (PostStatus.SCHEDULED, PostStatus.DRAFT):
        hint = "see plur-queue failed retry" if status == PostStatus.FAILED else None
        raise InvalidInput(f"post {post.id} is {status}; only scheduled posts can be moved", hint)


def reschedule(
    conn: Database,
    cfg: Config,
    post: Post,
    expression: str,
    *,
    tz: ZoneInfo,
    now: datetime,
) -> datetime:
    """Move a scheduled (or retrying) post, or give a draft its time (`next`: a free slot)."""
    from plurcast import when

    _check_movable(post)
    if slots.is_slot(expression):
        targets = [(d.platform, d.account) for d in post.deliveries]
        slots.check(cfg, targets)
        with transaction(conn):
            _check_movable(listing.get_posts(conn, [post.id])[0])
            new_time = slots.take(conn, cfg, targets, now, moving=post.id)
            thread_parts.move(conn, post, to_ms(new_time), to_ms(now), _check_movable)
        return new_time
    if when.is_relative_shift(expression):
        if post.scheduled_at_ms is None:
            raise InvalidInput(
                f"post {post.id} is a draft with no time to shift",
                "give an absolute time, e.g. 'tomorrow 9am'",
            )
        new_time = when.shift(
            expression, base=from_ms(post.scheduled_at_ms), now=now.astimezone(tz)
        )
    else:
        pending_after = queue.pending_after(conn, expression, moving=post.id)
        new_time = when.parse_when(expression, now=now, tz=tz, pending_after=pending_after)
    with transaction(conn):
        thread_parts.move(conn, post, to_ms(new_time), to_ms(now), _check_movable)
    return new_time


def _check_editable(post: Post, platform: str | None = None) -> None:
    live = [
        d
        for d in post.deliveries
        if d.state != DeliveryState.CANCELLED and platform in (None, d.platform)
    ]
    if platform is not None and not live:
        raise InvalidInput(f"post {post.id} does not go to {platform}", "see plur-queue show")
    if not live or any(d.state != DeliveryState.PENDING or d.prepared for d in live):
        where = "" if platform is None else f" on {platform}"
        raise InvalidInput(
            f"post {post.id} is {post.status}{where}; only posts not yet sent can be edited",
            "cancel it and write a new one",
        )


class Edited(Value):
    text: str
    warnings: list[str]  # for stderr: an image left without alt


def edit(
    conn: Database,
    cfg: Config,
    post: Post,
    text: str | None,
    now: datetime,
    platform: str | None = None,
    *,
    alts: dict[int, str] | None = None,
) -> Edited:
    """Replace the text and/or the alt texts (image number → text) of a post nothing of
    which has been sent or prepared yet — or, with `platform`, its text there alone (as
    --variant gave it). A platform with a text of its own keeps it when the post's text is
    edited."""
    if platform is not None:
        platform = validation.one_platform(platform)
    _check_editable(post, platform)
    live = [
        (d.platform, d.account)
        for d in post.deliveries
        if d.state != DeliveryState.CANCELLED
        and (platform == d.platform if platform else d.content is None)
    ]
    if text is not None:
        text = validation.check_text(cfg, text, live, post.metadata)
    warnings: list[str] = []
    if alts:
        every = [
            (d.platform, d.account) for d in post.deliveries if d.state != DeliveryState.CANCELLED
        ]
        warnings = validation.check_alt_texts(cfg, _with_alts(post, alts), every)
    with transaction(conn):
        current = listing.get_posts(conn, [post.id])[0]
        _check_editable(current, platform)
        if text is not None and platform is None:
            store.set_content(conn, post.id, text, to_ms(now))
        elif text is not None and platform is not None:
            own = None if text == post.content else text
            store.set_delivery_content(conn, post.id, platform, own, to_ms(now))
        if alts:  # onto the metadata as it is now: another change may have come meanwhile
            metadata = {**current.metadata, "images": _with_alts(current, alts)}
            store.set_metadata(conn, post.id, json.dumps(metadata, ensure_ascii=False), to_ms(now))
    return Edited(post.content if text is None else text, warnings)


def update_metadata(
    conn: Database,
    post: Post,
    change: Callable[[Post, dict[str, Any]], dict[str, Any]],
    now: datetime,
) -> None:
    """Change how a post not yet prepared goes out (e.g. its Nostr proof of work): `change`
    gets the post and its metadata and returns the new metadata, or raises InvalidInput."""
    _check_editable(post)
    change(post, dict(post.metadata))  # refuse before taking the write lock
    with transaction(conn):
        current = listing.get_posts(conn, [post.id])[0]
        _check_editable(current)
        metadata = change(current, dict(current.metadata))
        store.set_metadata(conn, post.id, json.dumps(metadata, ensure_ascii=False), to_ms(now))


def _with_alts(post: Post, alts: dict[int, str]) -> list[dict[str, Any]]:
    """The post's images with the alt texts of `alts` (image number → text) replaced."""
    images = [dict(entry) for entry in post.metadata.get("images", [])]
    for number, alt in alts.items():
        if not 1 <= number <= len(images):
            have = f"has {len(images)} image{'s' if len(images) != 1 else ''}"
            raise InvalidInput(
                f"post {post.id} {have}; there is no image {number}",
                "number the images from 1, as plur-queue show lists them",
            )
        images[number - 1]["alt"] = alt.strip()
    return images


def delete_failed(conn: Database, posts: Sequence[Post]) -> list[Post]:
    """Remove failed posts and their history; anything else must be cancelled instead.
    The later parts of a thread go with a part (they could never be sent without it); they
    are returned."""
    for post in posts:
        if not any(d.state == DeliveryState.DEAD for d in post.deliveries) and not queue.is_stuck(
            post
        ):
            raise InvalidInput(
                f"post {post.id} is {post.status}, not failed", "use plur-queue cancel instead"
            )
    later = thread_parts.later_parts(conn, posts)
    for part in later:
        if any(d.state in UNSENT and d.has_payload for d in part.deliveries):
            check_cancellable(part)  # refuses: it may be out, and keeps its record
    if posts:
        with transaction(conn):
            store.delete_posts(conn, [p.id for p in [*posts, *later]])
        _collect(conn, posts)
    return later


def check_sendable(post: Post) -> None:
    """`now` sends what is waiting; a post with nothing waiting has nothing to send, and a
    part whose parent is not sent cannot go before it (G6)."""
    thread_parts.check_not_waiting(post)
    if any(d.state in WAITING for d in post.deliveries):
        return
    if post.status in (PostStatus.POSTED, PostStatus.PARTIAL):
        raise InvalidInput(f"post {post.id} is already posted", "nothing left to send")
    if post.status == PostStatus.SENDING:
        return
    hint = "see plur-queue failed retry" if post.status == PostStatus.FAILED else None
    raise InvalidInput(f"post {post.id} is {post.status}; nothing to send", hint)


def retry_failed(
    conn: Database, posts: Sequence[Post], now: datetime, *, every: bool = False
) -> list[Post]:
    """Queue the deliveries that gave up again, now; what was sent stays sent. A thread part
    blocked behind one that gave up retries that one: the rest follows it in order (G6).
    With `every` (failed retry --all), a post blocked behind one that can never be sent is
    passed over instead of refused. Returns the posts retried."""
    retried: list[Post] = []
    for post in posts:
        if any(d.state == DeliveryState.DEAD for d in post.deliveries):
            retried.append(post)
            continue
        try:
            culprits = thread_parts.gave_up_before(conn, post)
        except InvalidInput:
            if every:
                continue
            raise
        if not culprits:
            raise InvalidInput(f"post {post.id} is {post.status}, not failed", "nothing to retry")
        retried += culprits
    retried = list({p.id: p for p in retried}.values())
    if retried:
        with transaction(conn):
            recording.retry_dead(conn, [p.id for p in retried], to_ms(now))
    return retried
