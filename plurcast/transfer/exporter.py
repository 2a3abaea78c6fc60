"""plur-export: the queue as entries that plur-import reads back into the same queue.

Each post becomes one entry: its text, its time (ISO 8601 in the post's own zone, with the
offset), that zone, its platforms and account, draft or not, its visibility and proof of
work, its content warning, label and languages, its images with their alt texts — and a
key: the one it was imported under, else its own id, so that importing an export (into an
empty database, or back into this one) never makes a post twice.

Images are files beside the export (`export_images`): `<folder>/<sha256 prefix>/<name>`,
the paths in the entries relative to the export's own folder, which is where plur-import
looks.

A recurring schedule (with the queue, `scheduled`) is one entry too (`export_schedules`):
what `plur-post --cron/--every` takes to make it again, running on from where it is. What
both kinds of entry write alike is in `export_fields`.

A queue that is behind (no daemon ran) comes back as it is: a post whose time is past and
that is not sent yet is written at that time with `overdue` (plur-import, which refuses a
past time, queues such a row due now), and a post a schedule made names that schedule's
key in `from_schedule`, so that the copy's post belongs to the copy's schedule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from plurcast.errors import InvalidInput
from plurcast.models import DeliveryState, Post, PostStatus
from plurcast.store import imports as keys_store
from plurcast.store import listing
from plurcast.store.base import Database
from plurcast.transfer import export_images, export_schedules
from plurcast.transfer.export_fields import WRITTEN, content_and_variants, iso, shared
from plurcast.transfer.fields import Entry

STATUSES = tuple(s.value for s in PostStatus)
DEFAULT_STATUSES = (PostStatus.SCHEDULED.value, PostStatus.DRAFT.value)  # the queue


@dataclass(frozen=True)
class Exported:
    entries: list[Entry]
    left_out: list[str]  # "post <id>: its … cannot be exported by this version" …
    # Each image file to write beside the export: its path there → its sha256 in the store.
    images: dict[str, str] = field(default_factory=dict)


def statuses(values: Sequence[str]) -> set[str]:
    """`--status scheduled,draft` (repeatable), or `all`."""
    chosen: set[str] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if name == "all":
                chosen.update(STATUSES)
            elif name in STATUSES:
                chosen.add(name)
            elif name:
                raise InvalidInput(f'unknown status "{name}"', f"use {', '.join(STATUSES)} or all")
    return chosen or set(DEFAULT_STATUSES)


def export(
    conn: Database,
    *,
    wanted: set[str],
    since_ms: int | None = None,
    until_ms: int | None = None,
    images_folder: str | None = None,
    now_ms: int | None = None,
) -> Exported:
    """The posts of these statuses (scheduled within [since, until) when given), in time
    order, drafts last; then, with `scheduled`, the active recurring schedules (their next
    run within [since, until)), in the order of their next runs. Their images go into
    `images_folder` (relative to the export's own folder); without one, posts with images
    are refused (InvalidInput), nothing written. `now_ms`: the database's now (default:
    asked), from which a schedule whose next run was missed runs on, and by which a post
    is overdue."""
    now = conn.now_ms() if now_ms is None else now_ms
    chosen = []
    every = listing.select_posts(conn, waiting_only=False)
    parts: dict[str, list[Post]] = {}
    for post in every:
        if post.thread_id is not None:
            parts.setdefault(post.thread_id, []).append(post)
    left_out: list[str] = []
    for post in every:
        if post.thread_id is not None and post.thread_id != post.id:
            continue  # a later part of a thread: it goes with the first
        if post.status.value not in wanted:
            _later_parts_left(post, parts.get(post.id, ()), wanted, left_out)
            continue
        at = post.scheduled_at_ms
        if (since_ms is not None or until_ms is not None) and at is None:
            continue
        if at is not None and (
            (since_ms is not None and at < since_ms) or (until_ms is not None and at >= until_ms)
        ):
            continue
        chosen.append(post)
    recurring = export_schedules.chosen(conn, wanted, since_ms, until_ms, left_out)
    with_images = [
        m for m in [p.metadata for p in chosen] + [r.metadata for r in recurring] if m.get("images")
    ]
    if with_images and images_folder is None:
        count = len(with_images)
        raise InvalidInput(
            f"{count} post{'s have' if count != 1 else ' has'} images, which plur-export "
            "writes as files beside its output",
            "give -o FILE (the images go into a folder beside FILE)",
        )
    images: dict[str, str] = {}
    later: list[Entry] = []
    schedule_keys: dict[str, str] = {}  # schedule id → its row's key, for each one written
    if recurring:
        keys = keys_store.schedule_keys_of(conn, [r.id for r in recurring])
        for schedule in recurring:
            made = export_schedules.entry(
                schedule, keys.get(schedule.id, schedule.id), now, left_out
            )
            if made is not None and made.key is not None:
                later.append(
                    export_images.with_images(made, schedule.metadata, images_folder or "", images)
                )
                schedule_keys[schedule.id] = made.key
    keys = keys_store.keys_of(conn, [p.id for p in chosen])
    entries = []
    overdue = 0
    for post in chosen:
        thread = sorted(parts.get(post.id, [post]), key=lambda p: p.thread_part or 0)
        entry = _entry(thread, keys.get(post.id, post.id), left_out)
        if post.status == PostStatus.SCHEDULED and (post.scheduled_at_ms or 0) <= now:
            entry = dataclasses.replace(entry, overdue=True)
            overdue += 1
        if post.schedule_id is not None:
            entry = _made_by(entry, post, schedule_keys, left_out)
        entries.append(export_images.with_images(entry, post.metadata, images_folder or "", images))
    if overdue:
        left_out.append(
            f"{overdue} post{'s are' if overdue != 1 else ' is'} due and not sent yet (no "
            "daemon ran?): written with overdue, which plur-import queues due now"
        )
    return Exported(entries + later, left_out, images)


def _later_parts_left(
    first: Post, thread: Sequence[Post], wanted: set[str], left_out: list[str]
) -> None:
    """A thread goes with its first part: when that one is not exported (sent, say) but a
    later part would be (still to go), the row cannot say it — its parts would have to
    answer posts already out — so the thread is named, never dropped silently."""
    waiting = [p for p in thread if p.id != first.id and p.status.value in wanted]
    if waiting:
        left_out.append(
            f"thread {first.id}: its first part is {first.status.value} and {len(waiting)} "
            f"later part{'s are' if len(waiting) != 1 else ' is'} "
            f"{'/'.join(sorted({p.status.value for p in waiting}))}; a thread begun cannot "
            "be exported by this version (its parts stay in this queue)"
        )


def _made_by(
    entry: Entry, post: Post, schedule_keys: Mapping[str, str], left_out: list[str]
) -> Entry:
    """A post a recurring schedule made: the entry names the schedule's row, when written."""
    key = schedule_keys.get(post.schedule_id or "")
    if key is None:
        left_out.append(
            f"post {post.id}: schedule {post.schedule_id}, which made it, is not exported; "
            "the post comes back on its own"
        )
        return entry
    return dataclasses.replace(entry, from_schedule=key)


def _entry(thread: Sequence[Post], key: str, left_out: list[str]) -> Entry:
    """One post — or a thread, its parts in order — as the row that makes it again."""
    post = thread[0]
    schedule = None
    if post.scheduled_at_ms is not None:
        schedule = iso(post.scheduled_at_ms, ZoneInfo(post.timezone))
    live = [d for d in post.deliveries if d.state != DeliveryState.CANCELLED] or post.deliveries
    targets = list(dict.fromkeys((d.platform, d.account) for d in live))
    if post.status in (PostStatus.SCHEDULED, PostStatus.BLOCKED):
        targets = _still_to_send(thread, targets, f"post {post.id}", left_out)
    per_target: dict[tuple[str, str], list[str]] = {}
    for part in thread:
        for d in part.deliveries:
            if (d.platform, d.account) in targets:
                per_target.setdefault((d.platform, d.account), []).append(d.content or part.content)
    text, variants = content_and_variants(
        per_target, targets, post.content, f"post {post.id}", left_out
    )
    reply_to = post.metadata.get("reply_to")
    return Entry(
        where="",
        content=text,
        key=key,
        schedule=schedule,
        tz=post.timezone,
        draft=post.scheduled_at_ms is None,
        thread=len(thread) > 1,
        variants=variants,
        reply_to=reply_to if isinstance(reply_to, str) else None,
        **shared(f"post {post.id}", targets, post.metadata, WRITTEN, left_out),
    )


def _still_to_send(
    thread: Sequence[Post],
    targets: Sequence[tuple[str, str]],
    what: str,
    left_out: list[str],
) -> list[tuple[str, str]]:
    """The targets of a post in the queue that it has not reached yet: a platform that has
    it already (every part, for a thread) is left out of the row, so that importing the
    row into another database does not post it there twice. A platform that has only some
    of a thread's parts cannot be written so: named."""
    states: dict[tuple[str, str], list[bool]] = {t: [] for t in targets}
    for part in thread:
        for d in part.deliveries:
            if (d.platform, d.account) in states:
                states[(d.platform, d.account)].append(d.state == DeliveryState.SENT)
    done = [t for t in targets if all(states[t])]
    for platform, _ in (t for t in targets if any(states[t]) and not all(states[t])):
        left_out.append(
            f"{what}: part of its thread is already on {platform}, and its row carries the "
            "whole thread: imported into another database, those parts go out again"
        )
    if not done or len(done) == len(targets):
        return list(targets)
    rest = [t for t in targets if t not in done]
    left_out.append(
        f"{what}: already sent to {', '.join(p for p, _ in done)}; its row carries the rest "
        f"({', '.join(p for p, _ in rest)})"
    )
    return rest
