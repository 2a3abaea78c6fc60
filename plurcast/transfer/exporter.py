"""plur-export: the queue as entries that plur-import reads back into the same queue.

Each post becomes one entry: its text, its time (ISO 8601 in the post's own zone, with the
offset), that zone, its platforms and account, draft or not, its visibility and proof of
work, its content warning, label and languages, its images with their alt texts — and a
key: the one it was imported under, else its own id, so that importing an export (into an
empty database, or back into this one) never makes a post twice.

Images are files beside the export (`export_images`): `<folder>/<sha256 prefix>/<name>`,
the paths in the entries relative to the export's own folder, which is where plur-import
looks.

A recurring schedule (with the queue, `scheduled`) is one entry too: its cron or interval,
`schedule` its next run, `until`, the `count` still to post, its misfire policy and grace —
what `plur-post --cron/--every` takes to make it again, running on from where it is.

A queue that is behind (no daemon ran) comes back as it is: a post whose time is past and
that is not sent yet is written at that time with `overdue` (plur-import, which refuses a
past time, queues such a row due now), and a post a schedule made names that schedule's
key in `from_schedule`, so that the copy's post belongs to the copy's schedule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plurcast import recurrence
from plurcast.config import DEFAULT_ACCOUNT
from plurcast.errors import InvalidInput
from plurcast.models import DeliveryState, Post, PostStatus, Schedule
from plurcast.platforms import nostr_pow
from plurcast.store import imports as keys_store
from plurcast.store import listing
from plurcast.store import schedules as schedule_store
from plurcast.store.base import Database
from plurcast.transfer import export_images
from plurcast.transfer.fields import Entry

STATUSES = tuple(s.value for s in PostStatus)
DEFAULT_STATUSES = (PostStatus.SCHEDULED.value, PostStatus.DRAFT.value)  # the queue
# What an entry carries; anything else in a post's metadata cannot be written yet.
_WRITTEN = {
    "visibility",
    nostr_pow.METADATA_KEY,
    "reply_to",
    "images",
    "cw",
    "label",
    "langs",
    "card",
}
_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


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
    recurring = _recurring(conn, wanted, since_ms, until_ms, left_out)
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
            made = _schedule_entry(schedule, keys.get(schedule.id, schedule.id), now, left_out)
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


def _recurring(
    conn: Database,
    wanted: set[str],
    since_ms: int | None,
    until_ms: int | None,
    left_out: list[str],
) -> list[Schedule]:
    """The active schedules to export (with the queue's `scheduled` posts), by next run."""
    if PostStatus.SCHEDULED.value not in wanted:
        return []
    chosen = []
    for s in schedule_store.all_schedules(conn):
        at = s.next_run_at_ms
        if s.state not in ("active", "paused") or at is None:
            continue  # finished or cancelled: it makes no more posts
        if (since_ms is not None and at < since_ms) or (until_ms is not None and at >= until_ms):
            continue
        if s.state == "paused":
            left_out.append(
                f"schedule {s.id}: paused schedules cannot be exported by this version "
                "(resume it with plur-queue resume to export it)"
            )
            continue
        chosen.append(s)
    return sorted(chosen, key=lambda s: (s.next_run_at_ms or 0, s.content, s.id))


def _entry(thread: Sequence[Post], key: str, left_out: list[str]) -> Entry:
    """One post — or a thread, its parts in order — as the row that makes it again."""
    post = thread[0]
    zone = ZoneInfo(post.timezone)
    schedule = None
    if post.scheduled_at_ms is not None:
        schedule = datetime.fromtimestamp(post.scheduled_at_ms / 1000, zone).isoformat()
    live = [d for d in post.deliveries if d.state != DeliveryState.CANCELLED] or post.deliveries
    targets = list(dict.fromkeys((d.platform, d.account) for d in live))
    if post.status in (PostStatus.SCHEDULED, PostStatus.BLOCKED):
        targets = _still_to_send(thread, targets, f"post {post.id}", left_out)
    per_target: dict[tuple[str, str], list[str]] = {}
    for part in thread:
        for d in part.deliveries:
            if (d.platform, d.account) in targets:
                per_target.setdefault((d.platform, d.account), []).append(d.content or part.content)
    text, variants = _texts(per_target, targets, post.content, f"post {post.id}", left_out)
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
        **_shared(f"post {post.id}", targets, post.metadata, _WRITTEN, left_out),
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


def _schedule_entry(s: Schedule, key: str, now_ms: int, left_out: list[str]) -> Entry | None:
    """A recurring schedule as the row that makes it again, from its next run on (the
    next one after now, when that run was missed: an import cannot start in the past);
    None when every run it had left was missed."""
    from plurcast import schedules
    from plurcast.thread import plan

    zone = ZoneInfo(s.timezone)
    what = f"schedule {s.id}"
    rule = schedules.rule_of(s)
    at = s.next_run_at_ms or now_ms
    if at <= now_ms:
        missed = _iso(s.next_run_at_ms or 0, zone)
        at = rule.next_after(now_ms)
        if s.until_ms is not None and at > s.until_ms:
            left_out.append(
                f"{what}: its runs from {missed} to its end ({_iso(s.until_ms, zone)}) were "
                "missed; nothing of it is left to export"
            )
            return None
        left_out.append(
            f"{what}: its run at {missed} was missed; the export starts at the next one "
            f"({_iso(at, zone)})"
        )
    targets = list(s.targets)
    per_target: dict[tuple[str, str], list[str]] = {}
    parts_kept = s.metadata.get(schedules.THREAD_KEY)
    if parts_kept:
        parts, _ = plan.from_json(parts_kept)
        for part in parts:
            for target in targets:
                if target in part:
                    per_target.setdefault(target, []).append(part[target])
    text, variants = _texts(per_target, targets, s.content, what, left_out)
    remaining = None if s.max_count is None else s.max_count - s.posted
    return Entry(
        where="",
        content=text,
        key=key,
        schedule=_iso(at, zone),
        tz=s.timezone,
        cron=s.cron,
        every=None if s.every_seconds is None else _duration(s.every_seconds),
        until=None if s.until_ms is None else _iso(s.until_ms, zone),
        count=remaining,
        misfire=None if s.misfire == recurrence.MISFIRE_POLICIES[0] else s.misfire,
        grace=(
            None
            if s.grace_seconds == recurrence.DEFAULT_GRACE_SECONDS
            else _duration(s.grace_seconds)
        ),
        thread=any(len(texts) > 1 for texts in per_target.values()),  # on some platform
        variants=variants,
        **_shared(what, targets, s.metadata, _WRITTEN | {schedules.THREAD_KEY}, left_out),
    )


def _shared(
    what: str,
    targets: Sequence[tuple[str, str]],
    metadata: Mapping[str, Any],
    written: set[str],
    left_out: list[str],
) -> dict[str, Any]:
    """The fields a post and a schedule write alike: targets, and what the metadata says."""
    accounts = {account for _, account in targets}
    account = accounts.pop() if len(accounts) == 1 else None
    wanted_pow = nostr_pow.requested(metadata)
    for extra in sorted(set(metadata) - written):
        left_out.append(f"{what}: its {extra} cannot be exported by this version")
    langs = metadata.get("langs") or ()
    return {
        "platforms": tuple(dict.fromkeys(p for p, _ in targets)),
        "account": None if account == DEFAULT_ACCOUNT else account,
        "visibility": metadata.get("visibility"),
        "nostr_pow": wanted_pow.difficulty if wanted_pow else None,
        "pow_21e8": bool(wanted_pow and wanted_pow.pattern_21e8),
        "cw": metadata.get("cw"),
        "label": metadata.get("label"),
        "langs": tuple(str(lang) for lang in langs),
        "no_card": metadata.get("card") is False,
    }


def _iso(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).isoformat()


def _duration(seconds: int) -> str:
    """Whole seconds as --every and --grace read them, exactly: `1d`, `6h`, `1h30m`."""
    out = ""
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            out += f"{count}{unit}"
    return out or "0s"


def _texts(
    per_target: Mapping[tuple[str, str], list[str]],
    targets: Sequence[tuple[str, str]],
    plain: str,
    what: str,
    left_out: list[str],
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The content and the variants that make these parts again: each target's parts
    (its own text where it has one) joined by `---` lines, as --thread reads them; the
    first target's are the content, any other platform's that differ a variant."""
    threaded = any(len(texts) > 1 for texts in per_target.values())
    if threaded and any(_cut(t) for texts in per_target.values() for t in texts):
        left_out.append(f"{what}: a part has a line of --- in it, where plur-import will cut")
    lists = [per_target.get(t, [plain]) for t in targets]
    variants = {
        platform: "\n---\n".join(texts)
        for (platform, _), texts in zip(targets, lists, strict=True)
        if texts != lists[0]
    }
    return "\n---\n".join(lists[0]) if lists else plain, tuple(sorted(variants.items()))


def _cut(text: str) -> bool:
    """Whether --thread would cut this part's own text into more than one."""
    from plurcast.thread.split import explicit_parts

    try:
        return len(explicit_parts(text)) > 1
    except InvalidInput:
        return True
