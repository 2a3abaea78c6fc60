"""plur-export's recurring schedules: which are written (`chosen`), and each as the entry
that makes it again (`entry`) — its cron or interval, `schedule` its next run, `until`,
the `count` still to post, its misfire policy and grace, running on from where it is."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from plurcast import recurrence
from plurcast.models import PostStatus, Schedule
from plurcast.store import schedules as schedule_store
from plurcast.store.base import Database
from plurcast.transfer.export_fields import WRITTEN, content_and_variants, iso, shared
from plurcast.transfer.fields import Entry

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def chosen(
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


def entry(s: Schedule, key: str, now_ms: int, left_out: list[str]) -> Entry | None:
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
        missed = iso(s.next_run_at_ms or 0, zone)
        at = rule.next_after(now_ms)
        if s.until_ms is not None and at > s.until_ms:
            left_out.append(
                f"{what}: its runs from {missed} to its end ({iso(s.until_ms, zone)}) were "
                "missed; nothing of it is left to export"
            )
            return None
        left_out.append(
            f"{what}: its run at {missed} was missed; the export starts at the next one "
            f"({iso(at, zone)})"
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
    text, variants = content_and_variants(per_target, targets, s.content, what, left_out)
    remaining = None if s.max_count is None else s.max_count - s.posted
    return Entry(
        where="",
        content=text,
        key=key,
        schedule=iso(at, zone),
        tz=s.timezone,
        cron=s.cron,
        every=None if s.every_seconds is None else _duration(s.every_seconds),
        until=None if s.until_ms is None else iso(s.until_ms, zone),
        count=remaining,
        misfire=None if s.misfire == recurrence.MISFIRE_POLICIES[0] else s.misfire,
        grace=(
            None
            if s.grace_seconds == recurrence.DEFAULT_GRACE_SECONDS
            else _duration(s.grace_seconds)
        ),
        thread=any(len(texts) > 1 for texts in per_target.values()),  # on some platform
        variants=variants,
        **shared(what, targets, s.metadata, WRITTEN | {schedules.THREAD_KEY}, left_out),
    )


def _duration(seconds: int) -> str:
    """Whole seconds as --every and --grace read them, exactly: `1d`, `6h`, `1h30m`."""
    out = ""
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            out += f"{count}{unit}"
    return out or "0s"
