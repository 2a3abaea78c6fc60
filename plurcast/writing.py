"""Writing new posts: everything a post must pass (`check_new_post`), then one transaction
(`write_post`) — so an error leaves nothing behind; `create_post` is both.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from plurcast import queue, slots, validation
from plurcast.config import Config
from plurcast.errors import InvalidInput
from plurcast.models import to_ms
from plurcast.store import posts as store
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from plurcast.thread import plan as thread_plan
from plurcast.thread.plan import Compose
from plurcast.value import Value

if TYPE_CHECKING:  # read with --reply-to only: its patterns cost start-up time
    from plurcast.media.store import MediaStore
    from plurcast.store.claiming import Claimed  # publishing only: not a scheduling path
    from plurcast.thread import replyto


class Created(Value):
    post_id: str  # the first part's, when a thread
    scheduled_at: datetime | None
    targets: list[tuple[str, str]]
    timezone: ZoneInfo
    claims: Sequence[Claimed] = ()  # leased to this process: publish now
    post_ids: Sequence[str] = ()  # every part, in order
    reply_to: str | None = None  # our post's id, or the reference, that the first part answers
    note: str | None = None  # for stderr (targets a --reply-to left out)


class NewPost(Value):
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

        pending_after = queue.pending_after(conn, schedule)
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

    return replyto.resolve(cfg, reply_to, targets, find_post=lambda p: queue.get(conn, p))


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
    schedule_id: str | None = None,
) -> Created:
    """write_post's work, inside the caller's write transaction (plur-import writes a whole
    file in one). A `--schedule next` post takes `slot_at` when given (the caller chose it
    under this same lock), else the first free slot. Its images go into `media` (default:
    the queue's own store; a dry run gives one that keeps nothing). `schedule_id`: the
    recurring schedule that made it (an exported post imported again), its time the
    occurrence."""
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
        metadata=json.dumps(data, ensure_ascii=False) if data else "{}",
        media=media_files(data),
        schedule_id=schedule_id,
        occurrence_at_ms=None
        if schedule_id is None or scheduled_at is None
        else to_ms(scheduled_at),
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
