"""plur-export: the queue as entries that plur-import reads back into the same queue.

Each post becomes one entry: its text, its time (ISO 8601 in the post's own zone, with the
offset), that zone, its platforms and account, draft or not, its visibility and proof of
work — and a key: the one it was imported under, else its own id, so that importing an
export (into an empty database, or back into this one) never makes a post twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from plurcast.config import DEFAULT_ACCOUNT
from plurcast.errors import InvalidInput
from plurcast.models import DeliveryState, Post, PostStatus
from plurcast.platforms import nostr_pow
from plurcast.store import imports as keys_store
from plurcast.store import posts as post_store
from plurcast.store.base import Database
from plurcast.transfer.fields import Entry

STATUSES = tuple(s.value for s in PostStatus)
DEFAULT_STATUSES = (PostStatus.SCHEDULED.value, PostStatus.DRAFT.value)  # the queue
# What an entry carries; anything else in a post's metadata cannot be written yet.
_WRITTEN = {"visibility", nostr_pow.METADATA_KEY}


@dataclass(frozen=True)
class Exported:
    entries: list[Entry]
    left_out: list[str]  # "post <id>: its images cannot be exported yet" …


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
) -> Exported:
    """The posts of these statuses (scheduled within [since, until) when given), in time
    order, drafts last."""
    chosen = []
    for post in post_store.select_posts(conn, waiting_only=False):
        if post.status.value not in wanted:
            continue
        at = post.scheduled_at_ms
        if (since_ms is not None or until_ms is not None) and at is None:
            continue
        if at is not None and (
            (since_ms is not None and at < since_ms) or (until_ms is not None and at >= until_ms)
        ):
            continue
        chosen.append(post)
    keys = keys_store.keys_of(conn, [p.id for p in chosen])
    left_out: list[str] = []
    entries = [_entry(p, keys.get(p.id, p.id), left_out) for p in chosen]
    return Exported(entries, left_out)


def _entry(post: Post, key: str, left_out: list[str]) -> Entry:
    zone = ZoneInfo(post.timezone)
    schedule = None
    if post.scheduled_at_ms is not None:
        schedule = datetime.fromtimestamp(post.scheduled_at_ms / 1000, zone).isoformat()
    live = [d for d in post.deliveries if d.state != DeliveryState.CANCELLED] or post.deliveries
    platforms = tuple(dict.fromkeys(d.platform for d in live))
    accounts = {d.account for d in live}
    account = accounts.pop() if len(accounts) == 1 else None
    wanted_pow = nostr_pow.requested(post.metadata)
    for extra in sorted(set(post.metadata) - _WRITTEN):
        left_out.append(f"post {post.id}: its {extra} cannot be exported by this version")
    return Entry(
        where="",
        content=post.content,
        key=key,
        schedule=schedule,
        tz=post.timezone,
        platforms=platforms,
        account=None if account == DEFAULT_ACCOUNT else account,
        draft=post.scheduled_at_ms is None,
        visibility=post.metadata.get("visibility"),
        nostr_pow=wanted_pow.difficulty if wanted_pow else None,
        pow_21e8=bool(wanted_pow and wanted_pow.pattern_21e8),
    )
