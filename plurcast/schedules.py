"""Recurring schedules: writing them, and turning their due occurrences into posts (G5).

`materialize` runs in one BEGIN IMMEDIATE transaction: it decides every due
occurrence (posted or skipped, and why), inserts the posts, and advances each
schedule's cursor. An occurrence's fate is a row keyed by (schedule, occurrence),
and a post's (schedule_id, occurrence_at_ms) is unique, so however many daemons
run, no occurrence is ever enqueued twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from plurcast import queue, recurrence, validation, when, writing
from plurcast.config import Config
from plurcast.errors import InvalidInput, NotFound
from plurcast.models import Post, Schedule, to_ms
from plurcast.recurrence import Rule
from plurcast.store import listing
from plurcast.store import posts as post_store
from plurcast.store import schedules as store
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from plurcast.thread import plan as thread_plan
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.media.store import MediaStore

log = logging.getLogger("plurcast.schedules")

# Where a recurring thread keeps its parts: each occurrence posts them as they were cut.
THREAD_KEY = "thread"

# More posts than a once-a-minute schedule makes in two years is a typo, not a plan.
MAX_COUNT = 1_000_000


def rule_of(s: Schedule) -> Rule:
    return Rule(s.cron, s.every_seconds, ZoneInfo(s.timezone), s.anchor_ms)


class Recurring(Value):
    cron: str | None = None
    every: str | None = None
    first: str | None = None  # --schedule: the first run (interval) or the start (cron)
    until: str | None = None
    count: int | None = None
    misfire: str = "latest"
    grace: str | None = None


def create(
    conn: Database,
    cfg: Config,
    text: str,
    spec: Recurring,
    *,
    platforms: Sequence[str],
    account: str | None,
    tz: ZoneInfo,
    now: datetime,
    metadata: dict[str, object] | None = None,
    compose: thread_plan.Compose | None = None,
    extras: validation.Extras | None = None,
    warn: Callable[[str], None] | None = None,
) -> Schedule:
    """check_new, then write."""
    new = check_new(
        cfg,
        text,
        spec,
        platforms=platforms,
        account=account,
        tz=tz,
        now=now,
        metadata=metadata,
        compose=compose,
        extras=extras,
        warn=warn,
    )
    write(conn, new)
    return new.schedule


class NewSchedule(Value):
    """A schedule that passed every check, and its post's extras ready to store."""

    schedule: Schedule
    extras: validation.CheckedExtras


def check_new(
    cfg: Config,
    text: str,
    spec: Recurring,
    *,
    platforms: Sequence[str],
    account: str | None,
    tz: ZoneInfo,
    now: datetime,
    metadata: dict[str, object] | None = None,
    compose: thread_plan.Compose | None = None,
    extras: validation.Extras | None = None,
    warn: Callable[[str], None] | None = None,
) -> NewSchedule:
    """A new schedule that passed every check (content, targets, extras, rule, zone, end),
    unwritten; `warn` hears what is allowed but unwise (an image without alt text).

    A thread (`compose`) is cut into its parts now, as for a post written now; each
    occurrence then posts those parts, in order (G6).
    """
    if (spec.cron is None) == (spec.every is None):
        raise InvalidInput(
            "give either --cron or --every", "e.g. --cron '0 9 * * 1-5' or --every 6h"
        )
    if spec.misfire not in recurrence.MISFIRE_POLICIES:
        raise InvalidInput(f'unknown misfire policy "{spec.misfire}"', "use latest, skip or all")
    if spec.until is not None and spec.count is not None:
        raise InvalidInput("--until and --count cannot be used together", "choose one end")
    if spec.count is not None and not 1 <= spec.count <= MAX_COUNT:
        raise InvalidInput(
            f"--count must be from 1 to {MAX_COUNT:,}", "or end the schedule with --until WHEN"
        )
    checked = validation.check_post(
        cfg, text, platforms=platforms, account=account, compose=compose, extras=extras
    )
    for warning in checked.extras.warnings:
        if warn is not None:
            warn(warning)
    metadata = dict(metadata or {})
    if compose is not None and compose.shaped:
        metadata[THREAD_KEY] = thread_plan.to_json(checked.parts, compose.variants)
    now_ms = to_ms(now)
    first_ms = to_ms(when.parse_when(spec.first, now=now, tz=tz)) if spec.first else None
    if spec.cron is not None:
        cron = recurrence.validate_cron(spec.cron, tz, now)
        rule = Rule(cron, None, tz, first_ms or now_ms + 1)
    else:
        interval = when.parse_duration(
            spec.every or "", minimum_seconds=recurrence.MIN_INTERVAL_SECONDS
        )
        every = int(interval.total_seconds())
        rule = Rule(None, every, tz, first_ms or now_ms + every * 1000)
    next_run = rule.next_after(rule.anchor_ms - 1)
    until_ms = to_ms(when.parse_when(spec.until, now=now, tz=tz)) if spec.until else None
    if until_ms is not None and next_run > until_ms:
        raise InvalidInput("--until is before the first occurrence", "choose a later end")
    grace = (
        int(when.parse_duration(spec.grace).total_seconds())
        if spec.grace
        else recurrence.DEFAULT_GRACE_SECONDS
    )
    schedule = Schedule(
        id=str(uuid.uuid4()),
        content=checked.text,
        targets=checked.targets,
        metadata=metadata,
        cron=rule.cron,
        every_seconds=rule.every_seconds,
        timezone=tz.key,
        anchor_ms=rule.anchor_ms,
        until_ms=until_ms,
        max_count=spec.count,
        posted=0,
        next_run_at_ms=next_run,
        misfire=spec.misfire,
        grace_seconds=grace,
        state="active",
        created_at_ms=now_ms,
        last_run_at_ms=None,
    )
    return NewSchedule(schedule, checked.extras)


def write(conn: Database, new: NewSchedule) -> None:
    """Write a schedule that check_new returned; its images are stored once, and every post
    it makes refers to them."""
    with transaction(conn):
        insert(conn, new)


def insert(conn: Database, new: NewSchedule, media: MediaStore | None = None) -> None:
    """write's work, inside the caller's write transaction (plur-import writes a whole file
    in one); the images go into `media` (default: the queue's store)."""
    schedule = new.schedule
    schedule.metadata.update(writing.extras_metadata(conn, new.extras, media))
    store.insert(conn, schedule, schedule.created_at_ms, writing.media_files(schedule.metadata))


def materialize(conn: Database, now_ms: int) -> list[str]:
    """Decide every due occurrence and advance each schedule, atomically; the new post ids."""
    if not store.any_due(conn, now_ms):
        return []  # the common case: a read, no write lock
    created: list[str] = []
    with transaction(conn):
        for s in store.due(conn, now_ms):
            created += _materialize_one(conn, s, now_ms)
    return created


def _materialize_one(conn: Database, s: Schedule, now_ms: int) -> list[str]:
    rule = rule_of(s)
    assert s.next_run_at_ms is not None
    # Only the newest misses matter to any policy; older ones are summed up in one line.
    missed: deque[int] = deque(maxlen=recurrence.MAX_RECORDED_MISSES)
    dropped = 0
    t: int | None = s.next_run_at_ms
    while t is not None and t <= now_ms and (s.until_ms is None or t <= s.until_ms):
        if len(missed) == missed.maxlen:
            dropped += 1
        missed.append(t)
        t = rule.next_after(t)
    if dropped:
        store.record_occurrence(
            conn,
            s.id,
            s.next_run_at_ms,
            now_ms,
            "skipped",
            None,
            f"{dropped} occurrences from here on were missed while no daemon ran",
        )
    created: list[str] = []
    finished = False
    for decision in recurrence.decide(list(missed), now_ms, s.misfire, s.grace_seconds):
        if s.max_count is not None and s.posted + len(created) >= s.max_count:
            finished = True
            break
        if not decision.post:
            store.record_occurrence(
                conn, s.id, decision.occurrence_ms, now_ms, "skipped", None, decision.reason
            )
            log.info("schedule %s: occurrence skipped: %s", s.id, decision.reason)
            continue
        post_id = str(uuid.uuid4())
        metadata = {k: v for k, v in s.metadata.items() if k != THREAD_KEY}
        record = post_store.NewPost(
            id=post_id,
            content=s.content,
            created_at_ms=now_ms,
            scheduled_at_ms=decision.occurrence_ms,
            timezone=s.timezone,
            targets=s.targets,
            metadata=json.dumps(metadata, ensure_ascii=False),
            schedule_id=s.id,
            occurrence_at_ms=decision.occurrence_ms,
            due_at_ms=max(decision.occurrence_ms, now_ms),
            media=writing.media_files(metadata),
        )
        if THREAD_KEY in s.metadata:
            parts, variants = thread_plan.from_json(s.metadata[THREAD_KEY])
            thread_plan.insert(conn, parts, record, variants=variants)
        else:
            post_store.insert_post(conn, record)
        store.record_occurrence(conn, s.id, decision.occurrence_ms, now_ms, "posted", post_id, None)
        created.append(post_id)
        log.info("schedule %s: occurrence posted as %s", s.id, post_id)
    done_by_count = s.max_count is not None and s.posted + len(created) >= s.max_count
    done_by_time = t is None or (s.until_ms is not None and t > s.until_ms)
    if finished or done_by_count or done_by_time:
        store.advance(conn, s.id, None, len(created), "finished", now_ms)
    else:
        store.advance(conn, s.id, t, len(created), "active", now_ms)
    return created


def next_run_ms(conn: Database) -> int | None:
    return store.next_run_ms(conn)


def resolve(conn: Database, prefix: str) -> str:
    key = prefix.strip().lower()
    valid = len(key) >= queue.MIN_ID_PREFIX and queue.is_id_prefix(key)
    found = store.find_ids(conn, key) if valid else []
    if not found:
        raise NotFound(f'no schedule with id "{prefix}"', "see plur-queue schedules")
    if len(found) > 1:
        raise InvalidInput(
            f'id prefix "{prefix}" matches more than one schedule', "give more characters"
        )
    return found[0]


def posts_or_schedules(
    conn: Database, prefixes: Sequence[str]
) -> tuple[list[Post], list[Schedule]]:
    """Ids given to `cancel`: each names a post or, failing that, a schedule."""
    post_ids: list[str] = []
    found: list[Schedule] = []
    for prefix in prefixes:
        try:
            post_ids.append(queue.resolve(conn, prefix))
        except NotFound:
            try:
                found.append(get(conn, prefix))
            except NotFound:
                raise NotFound(
                    f'no post or schedule with id "{prefix}"', "see plur-queue list --all"
                ) from None
    return queue.in_given_order(conn, post_ids), found


def get(conn: Database, prefix: str) -> Schedule:
    return store.get(conn, resolve(conn, prefix))


def pause(conn: Database, s: Schedule, now_ms: int) -> None:
    if s.state != "active":
        raise InvalidInput(f"schedule {s.id} is {s.state}; only an active one can be paused")
    with transaction(conn):
        store.set_state(conn, s.id, "paused", now_ms)


def resume(conn: Database, s: Schedule, now_ms: int) -> None:
    """Active again; occurrences missed while paused are decided by its misfire policy."""
    if s.state != "paused":
        raise InvalidInput(f"schedule {s.id} is {s.state}; only a paused one can be resumed")
    with transaction(conn):
        store.set_state(conn, s.id, "active", now_ms)


def cancel(conn: Database, s: Schedule, now_ms: int) -> None:
    """No more occurrences, and its posts not yet sent are cancelled too."""
    if s.state in ("cancelled", "finished"):
        raise InvalidInput(f"schedule {s.id} is {s.state}", "nothing left to cancel")
    with transaction(conn):
        store.set_state(conn, s.id, "cancelled", now_ms, clear_next=True)
        waiting = store.waiting_post_ids(conn, s.id)
        if waiting:
            post_store.cancel_unsent(conn, waiting, now_ms)
    from plurcast.media import store as media_store

    media_store.collect_after(conn, [s.metadata])


class Occurrence(Value):
    at_ms: int
    decided_ms: int
    fate: str  # skipped, or the post's status: posted, failed, partial, scheduled …
    post_id: str | None
    reason: str | None


def history(conn: Database, s: Schedule) -> list[Occurrence]:
    rows = store.occurrences(conn, s.id)
    posts = {p.id: p for p in listing.get_posts(conn, [r[3] for r in rows if r[3]])}
    result = []
    for at, decided, fate, post_id, reason in rows:
        post = posts.get(post_id or "")
        outcome, why = fate, reason
        if fate == "posted" and post is not None:
            outcome = post.status.value
            why = "; ".join(d.last_error for d in post.deliveries if d.last_error) or None
        result.append(Occurrence(at, decided, outcome, post_id, why))
    return result


def all_schedules(conn: Database) -> list[Schedule]:
    return store.all_schedules(conn)
