"""The queue's rules: what may be written, cancelled, moved or edited, and when.

The CLIs call these and render what comes back; every check happens before the
first write, and every change is one transaction, so an error leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from plurcast import slots, validation
from plurcast.config import Config
from plurcast.errors import InvalidInput, NotFound
from plurcast.models import UNSENT, WAITING, DeliveryState, Post, PostStatus, from_ms, to_ms
from plurcast.store import deliveries as delivery_store
from plurcast.store import open_db as open_db  # noqa: PLC0414 (re-exported: the commands use it)
from plurcast.store import posts as store
from plurcast.store.base import Database
from plurcast.store.connection import on_disk, transaction
from plurcast.store.deliveries import Claimed
from plurcast.thread import parts as thread_parts
from plurcast.thread import plan as thread_plan
from plurcast.thread.plan import Compose

if TYPE_CHECKING:  # read with --reply-to only: its patterns cost start-up time
    from plurcast.media.store import MediaStore
    from plurcast.thread import replyto

MIN_ID_PREFIX = 8
_ID_PREFIX = re.compile(r"[0-9a-f-]+")


def writable(conn: Database, cfg: Config) -> Database:
    """`conn` from `open_db(create=False)`, or the database made now when there was none:
    for a command whose input has passed every check and that is about to write."""
    return conn if on_disk(conn) else open_db(cfg)


class Created(NamedTuple):
    post_id: str  # the first part's, when a thread
    scheduled_at: datetime | None
    targets: list[tuple[str, str]]
    timezone: ZoneInfo
    claims: Sequence[Claimed] = ()  # leased to this process: publish now
    post_ids: Sequence[str] = ()  # every part, in order
    reply_to: str | None = None  # our post's id, or the reference, that the first part answers
    note: str | None = None  # for stderr (targets a --reply-to left out)


class NewPost(NamedTuple):
    """A post that passed every check and is not written yet."""

    checked: validation.CheckedPost
    scheduled_at: datetime | None  # None: a draft, or a slot taken when it is written
    slot: bool  # --schedule next: the first free slot, taken under the write lock
    now: bool  # due now: the caller publishes it at once
    timezone: ZoneInfo
    metadata: dict[str, Any]
    compose: Compose = Compose()
    reply_to: str | None = None  # --reply-to as given
    answering: replyto.Resolved | None = None  # what it resolved to


def check_new_post(
    conn: Database,
    cfg: Config,
    text: str,
    *,
    schedule: str | None,
    draft: bool,
    platforms: Sequence[str],
    account: str | None,
    tz: ZoneInfo,
    now: datetime,
    metadata: dict[str, Any] | None = None,
    compose: Compose | None = None,
    reply_to: str | None = None,
    extras: validation.Extras | None = None,
    warn: Callable[[str], None] | None = None,
) -> NewPost:
    """Everything a new post must pass, before anything is written (`conn` is only read:
    `random:` goes after the latest pending post, `--reply-to` one of ours is looked up).

    With `compose` (--thread, --auto-thread, --numbered, --variant) the text may become a
    thread of several posts; `reply_to` makes the first one answer a post of ours or
    someone else's (and may leave targets out: a reply to a Nostr event goes to Nostr).
    `warn` hears what is allowed but unwise (an image without alt text)."""
    if draft and schedule is not None:
        raise InvalidInput("--schedule and --draft cannot be used together", "choose one")
    compose = compose or Compose()
    answering: replyto.Resolved | None = None

    def narrow(targets: list[tuple[str, str]]) -> list[tuple[str, str]]:
        nonlocal answering
        if reply_to is None:
            return targets
        found = _answering(conn, cfg, reply_to, targets)
        answering = found
        return found.targets

    checked = validation.check_post(
        cfg,
        text,
        platforms=platforms,
        account=account,
        compose=compose,
        narrow=narrow,
        extras=extras,
    )
    for warning in checked.extras.warnings:
        if warn is not None:
            warn(warning)
    scheduled_at: datetime | None = None
    slot = slots.is_slot(schedule)
    if slot:
        slots.check(cfg, checked.targets)
    elif schedule is not None:
        from plurcast import when  # the time grammar, for writing commands only

        pending_after = _pending_after(conn, schedule)
        scheduled_at = when.parse_when(schedule, now=now, tz=tz, pending_after=pending_after)
    elif not draft:
        scheduled_at = now
    due_now = schedule is None and not draft
    metadata = dict(metadata or {})
    if answering is not None:
        metadata["reply_to"] = answering.reply_to
    return NewPost(checked, scheduled_at, slot, due_now, tz, metadata, compose, reply_to, answering)


def _answering(
    conn: Database, cfg: Config, reply_to: str, targets: list[tuple[str, str]]
) -> replyto.Resolved:
    from plurcast.thread import replyto

    return replyto.resolve(cfg, reply_to, targets, find_post=lambda p: get(conn, p))


def _pending_after(conn: Database, expression: str, moving: str = "") -> datetime | None:
    """For `random:MIN-MAX`: the latest still-pending post it goes after (other than the one
    being moved), else None (then it counts from now)."""
    if not expression.strip().lower().startswith("random:"):
        return None
    latest = store.latest_waiting_time_ms(conn, excluding=moving)
    return None if latest is None else from_ms(latest)


def write_post(
    conn: Database,
    cfg: Config,
    new: NewPost,
    now: datetime,
    claim: Callable[[str], list[Claimed]] | None = None,
) -> Created:
    """Write a checked post and its deliveries in one transaction.

    A post due now is leased to the caller by `claim` inside that same transaction, so
    no daemon can take it between the write and the publish. The post's images are copied
    into the media store inside that transaction too (plurcast.media.store).
    """
    with transaction(conn):
        return insert_new_post(conn, cfg, new, now, claim=claim)


def insert_new_post(
    conn: Database,
    cfg: Config,
    new: NewPost,
    now: datetime,
    *,
    claim: Callable[[str], list[Claimed]] | None = None,
    slot_at: datetime | None = None,
    media: MediaStore | None = None,
) -> Created:
    """write_post's work, inside the caller's write transaction (plur-import writes a whole
    file in one). A `--schedule next` post takes `slot_at` when given (the caller chose it
    under this same lock), else the first free slot. Its images go into `media` (default:
    the queue's own store; a dry run gives one that keeps nothing)."""
    post_id = str(uuid.uuid4())
    claims: list[Claimed] = []
    scheduled_at = new.scheduled_at
    if new.slot:  # chosen under the write lock: two writers never take one slot
        scheduled_at = slot_at or slots.take(conn, cfg, new.checked.targets, now)
    data = {**new.metadata, **extras_metadata(conn, new.checked.extras, media)}
    record = store.NewPost(
        id=post_id,
        content=new.checked.text,
        created_at_ms=to_ms(now),
        scheduled_at_ms=None if scheduled_at is None else to_ms(scheduled_at),
        timezone=new.timezone.key,
        targets=new.checked.targets,
        metadata=json.dumps(data, ensure_ascii=False),
        media=media_files(data),
    )
    parents = None
    if new.reply_to is not None:  # again under the lock: the post answered may have changed
        parents = _answering(conn, cfg, new.reply_to, new.checked.targets).parents
    inserted = thread_plan.insert(
        conn,
        new.checked.parts,
        record,
        variants=new.compose.variants,
        first_parents=parents,
    )
    if claim is not None and new.now:
        claims = claim(post_id)
    answering = new.answering
    return Created(
        post_id,
        scheduled_at,
        new.checked.targets,
        new.timezone,
        claims,
        inserted.post_ids,
        None if answering is None else answering.reply_to,
        None if answering is None else answering.note,
    )


def extras_metadata(
    conn: Database, extras: validation.CheckedExtras, media: MediaStore | None = None
) -> dict[str, Any]:
    """The extras' metadata keys; their images stored (in `media`, default the queue's
    store), inside the caller's transaction."""
    if not extras.images:
        return dict(extras.options)
    if media is None:
        from plurcast.media import store as media_store

        media = media_store.for_database(conn)
    return extras.metadata(media)


def media_files(metadata: dict[str, Any]) -> list[str]:
    """The sha256 of every image file a post's (or schedule's) metadata refers to."""
    entries = metadata.get("images")
    if not entries:
        return []
    from plurcast.media import attach

    return attach.digests(entries)


def create_post(
    conn: Database,
    cfg: Config,
    text: str,
    *,
    schedule: str | None,
    draft: bool,
    platforms: Sequence[str],
    account: str | None,
    tz: ZoneInfo,
    now: datetime,
    claim: Callable[[str], list[Claimed]] | None = None,
    metadata: dict[str, Any] | None = None,
    compose: Compose | None = None,
    reply_to: str | None = None,
    extras: validation.Extras | None = None,
    warn: Callable[[str], None] | None = None,
) -> Created:
    """check_new_post, then write_post."""
    new = check_new_post(
        conn,
        cfg,
        text,
        schedule=schedule,
        draft=draft,
        platforms=platforms,
        account=account,
        tz=tz,
        now=now,
        metadata=metadata,
        compose=compose,
        reply_to=reply_to,
        extras=extras,
        warn=warn,
    )
    return write_post(conn, cfg, new, now, claim)


def is_id_prefix(key: str) -> bool:
    """Lower-case hex and dashes only: what an id can start with, and no pattern character."""
    return _ID_PREFIX.fullmatch(key) is not None


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
    post = store.get_posts(conn, [resolve(conn, prefix)])[0]
    if history:
        store.load_history(conn, post)
    return post


def get_many(conn: Database, prefixes: Sequence[str]) -> list[Post]:
    """The posts the prefixes name, in the order given (each once)."""
    return in_given_order(conn, [resolve(conn, p) for p in prefixes])


def in_given_order(conn: Database, ids: Sequence[str]) -> list[Post]:
    """The posts with these ids in the order given, each once: what a command reports on
    goes in the order the user typed the ids."""
    unique = list(dict.fromkeys(ids))
    found = {post.id: post for post in store.get_posts(conn, unique)}
    return [found[post_id] for post_id in unique]


def list_posts(
    conn: Database, *, include_all: bool = False, platform: str | None = None
) -> list[Post]:
    """What `plur-queue list` shows: scheduled posts by time, or every post with --all."""
    if platform is not None:
        platform = validation.one_platform(platform)
    posts = store.select_posts(conn, waiting_only=not include_all, platform=platform)
    if include_all:
        return posts
    return [p for p in posts if p.status == PostStatus.SCHEDULED]


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
        fresh = store.get_posts(conn, ids)
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
            _check_movable(store.get_posts(conn, [post.id])[0])
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
        pending_after = _pending_after(conn, expression, moving=post.id)
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


class Edited(NamedTuple):
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
        current = store.get_posts(conn, [post.id])[0]
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
        current = store.get_posts(conn, [post.id])[0]
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


def failed(conn: Database) -> list[Post]:
    """Posts with at least one delivery that gave up (failed, partial or expired), and the
    thread parts and replies blocked behind one (their parent gave up or was cancelled)."""
    dead = store.select_posts(conn, waiting_only=False, with_dead_only=True)
    blocked = list(store.select_posts(conn, waiting_only=False, blocked_only=True))
    if not any(_stuck(p) for p in blocked):
        return dead
    return store.get_posts(conn, list({p.id for p in dead} | {p.id for p in blocked if _stuck(p)}))


def _stuck(post: Post) -> bool:
    return any(d.waiting_on is not None and d.waiting_on.stuck for d in post.deliveries)


def delete_failed(conn: Database, posts: Sequence[Post]) -> list[Post]:
    """Remove failed posts and their history; anything else must be cancelled instead.
    The later parts of a thread go with a part (they could never be sent without it); they
    are returned."""
    for post in posts:
        if not any(d.state == DeliveryState.DEAD for d in post.deliveries) and not _stuck(post):
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
            delivery_store.retry_dead(conn, [p.id for p in retried], to_ms(now))
    return retried
