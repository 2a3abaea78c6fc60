"""How posts look in output: the JSON fields (stable, snake_case) and the text cells."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from plurcast.models import Delivery, DeliveryState, Post, Schedule, WaitingOn, from_ms
from plurcast.timefmt import format_local, format_relative


def time_fields(name: str, ms: int | None, tz: ZoneInfo) -> dict[str, Any]:
    """`name` as UTC epoch seconds and `name_iso` as ISO 8601 in the user's zone."""
    if ms is None:
        return {name: None, f"{name}_iso": None}
    return {name: ms // 1000, f"{name}_iso": iso(ms, tz)}


def iso(ms: int, tz: ZoneInfo) -> str:
    """Whole seconds, as in the epoch fields: `datetime.isoformat`'s text in `tz`,
    `2026-12-01T19:45:21+01:00`.

    A listing asks for thousands (two a post), and `isoformat` is the dearest step of
    `plur-queue list -f json`: a time seen before in this zone is not made again, and a new
    one is put together from its local date and UTC offset, each made once (~40 % fewer
    instructions than `isoformat`)."""
    seconds = ms // 1000
    zone = _ZONES.get(tz) or _ZONES.setdefault(tz, _Zone(tz))
    text = zone.seen.get(seconds)
    if text is None:
        text = zone.text(seconds, ms)
    return text


_TWO_DIGITS = tuple(f"{n:02}" for n in range(60))
_SEEN_MAX = 100_000  # times kept per zone: a listing's worth; the daemon stays small


class _Zone:
    """What `iso` keeps for one zone: texts made (by epoch second), each local day's
    date and each offset's suffix."""

    __slots__ = ("days", "offsets", "seen", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.seen: dict[int, str] = {}
        self.days: dict[int, str] = {}
        self.offsets: dict[timedelta | None, str] = {}

    def text(self, seconds: int, ms: int) -> str:
        try:
            local = datetime.fromtimestamp(seconds, self.tz)
        except (OverflowError, ValueError, OSError):  # beyond datetime's years: shown clamped
            return from_ms(ms).astimezone(self.tz).replace(microsecond=0).isoformat()
        offset = local.utcoffset()
        suffix = self.offsets.get(offset)
        if suffix is None:  # "+01:00", "+00:53:28" (before 1893 in Berlin): as isoformat says
            suffix = self.offsets[offset] = local.isoformat()[19:]
        day = local.toordinal()
        date = self.days.get(day)
        if date is None:
            date = self.days[day] = local.date().isoformat()
        two = _TWO_DIGITS
        text = f"{date}T{two[local.hour]}:{two[local.minute]}:{two[local.second]}{suffix}"
        if len(self.seen) >= _SEEN_MAX:
            self.seen.clear()
            self.days.clear()
        self.seen[seconds] = text
        return text


_ZONES: dict[ZoneInfo, _Zone] = {}


def local(ms: int | None, tz: ZoneInfo, now: datetime) -> str:
    return "-" if ms is None else format_local(from_ms(ms), tz, now)


def queued_line(kind: str, name: str, at: datetime | None, tz: ZoneInfo, now: datetime) -> str:
    """The original's line for a post put in the queue: `draft:<id>` without a time, else
    `scheduled:<id>:for:in 2 hours (Tue 10:00 CET)`; `kind` says how (`scheduled[2]`,
    `rescheduled`, `would-draft`, …)."""
    if at is None:
        return f"{kind}:{name}"
    return f"{kind}:{name}:for:{format_relative(at - now)} ({format_local(at, tz, now)})"


def schedule_line(kind: str, name: str, next_ms: int | None, tz: ZoneInfo, now: datetime) -> str:
    """The line for a recurring schedule made: `schedule:<id>:next:in 2 hours (Tue 10:00
    CET)`; `kind` says how (`would-schedule` for a dry run)."""
    at = from_ms(next_ms or 0)
    return f"{kind}:{name}:next:{format_relative(at - now)} ({format_local(at, tz, now)})"


def post_json(post: Post, tz: ZoneInfo) -> dict[str, Any]:
    scheduled = post.scheduled_at_ms
    return {
        "id": post.id,
        "content": post.content,
        "scheduled_at": None if scheduled is None else scheduled // 1000,
        "scheduled_at_iso": None if scheduled is None else iso(scheduled, tz),
        "created_at": post.created_at_ms // 1000,
        "created_at_iso": iso(post.created_at_ms, tz),
        "status": post.status.value,
        "platforms": post.platforms,
        "account": post.account,
        "schedule_id": post.schedule_id,
        "thread_id": post.thread_id,
        "thread_part": post.thread_part,
        "thread_parts": post.thread_parts,
        "reply_to": post.reply_to,
    }


def delivery_json(delivery: Delivery, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "platform": delivery.platform,
        "account": delivery.account,
        "state": delivery.state.value,
        **time_fields("due_at", delivery.due_at_ms, tz),
        "attempts": delivery.attempts,
        "remote_id": delivery.remote_id,
        "url": delivery.remote_url,
        **time_fields("sent_at", delivery.sent_at_ms, tz),
        "error": delivery.last_error,
        "error_kind": delivery.error_kind,
        "waiting_on": None if not delivery.blocked else waiting_text(delivery.waiting_on),
    }


def post_detail_json(post: Post, tz: ZoneInfo) -> dict[str, Any]:
    """`show`: the post, each delivery, and each delivery's attempt history."""
    deliveries = []
    for d in post.deliveries:
        item = delivery_json(d, tz)
        item["history"] = [
            {
                "attempt": a.number,
                **time_fields("started_at", a.started_at_ms, tz),
                **time_fields("finished_at", a.finished_at_ms, tz),
                "outcome": a.outcome,
                "error": a.error,
                "error_kind": a.error_kind,
                "notes": a.notes,
            }
            for a in d.history
        ]
        item["content"] = d.content or post.content
        deliveries.append(item)
    return {**post_json(post, tz), "metadata": post.metadata, "deliveries": deliveries}


def part_label(post: Post) -> str:
    """`[2/5] ` before a thread part's text in listings; nothing for a single post."""
    if post.thread_part is None or not post.thread_parts or post.thread_parts < 2:
        return ""
    return f"[{post.thread_part}/{post.thread_parts}] "


def schedule_json(s: Schedule, tz: ZoneInfo, now: datetime) -> dict[str, Any]:
    from plurcast.schedules import rule_of

    return {
        "schedule": True,
        "schedule_id": s.id,
        "content": s.content,
        "rule": rule_of(s).describe(),
        "cron": s.cron,
        "every_seconds": s.every_seconds,
        "timezone": s.timezone,
        "state": s.state,
        **time_fields("next_run_at", s.next_run_at_ms, tz),
        "next_run_time": local(s.next_run_at_ms, tz, now),
        **time_fields("until", s.until_ms, tz),
        "count": s.max_count,
        "posted": s.posted,
        "misfire": s.misfire,
        "grace_seconds": s.grace_seconds,
        "platforms": s.platforms,
        "account": s.targets[0][1] if s.targets else None,
    }


def waiting_text(waiting: WaitingOn | None) -> str:
    """Why a blocked delivery has not gone out: `waiting on part 2 (mastodon: HTTP 422 …)`."""
    from plurcast.output import first_line

    if waiting is None:
        return "waiting on the post it answers"
    if waiting.state == "deleted" or waiting.post_id is None:
        return "waiting on a post that was deleted: it will not be sent"
    what = f"part {waiting.thread_part}" if waiting.thread_part else f"post {waiting.post_id[:8]}"
    error = first_line(waiting.error or "", 120)
    if waiting.state == DeliveryState.CANCELLED:
        return f"waiting on {what} ({waiting.platform}: cancelled)"
    if waiting.state == DeliveryState.DEAD:
        return f"waiting on {what} ({waiting.platform}: {error or 'gave up'})"
    if waiting.state == DeliveryState.RETRY and error:
        return f"waiting on {what} ({waiting.platform}: {error}; retrying)"
    return f"waiting on {what}"
