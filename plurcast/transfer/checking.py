"""One import row checked as plur-post checks the same flags: a post through
`writing.check_new_post`, a recurring row (`cron`, `every`) through `schedules.check_new` —
its fields as plur-post's options, its images read relative to the import file's folder.
A past time is refused, as plur-post refuses it, unless the row is `overdue`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plurcast import config as config_module
from plurcast import slots, writing
from plurcast.config import Config
from plurcast.errors import InvalidInput
from plurcast.platforms import nostr_settings
from plurcast.store.base import Database
from plurcast.thread.plan import Compose
from plurcast.timefmt import format_local
from plurcast.transfer.fields import Entry
from plurcast.validation import Extras

if TYPE_CHECKING:  # imported when a row recurs: schedules brings logging and cron's rules
    from plurcast.schedules import NewSchedule


def check_post(
    conn: Database,
    cfg: Config,
    entry: Entry,
    now: datetime,
    folder: Path = Path(),
    warn: Callable[[str], None] | None = None,
) -> writing.NewPost:
    """What plur-post checks, for one row (its fields as plur-post's options)."""
    zone = config_module.zone(entry.tz) if entry.tz else cfg.timezone
    if entry.draft and entry.schedule:
        raise InvalidInput("a draft has no schedule", "leave schedule empty, or draft false")
    if any(v is not None for v in (entry.until, entry.count, entry.misfire, entry.grace)):
        raise InvalidInput(
            "until, count, misfire and grace go with cron or every",
            "give cron or every, or leave them empty",
        )
    if entry.draft and entry.from_schedule is not None:
        raise InvalidInput("a schedule makes no drafts", "leave from_schedule out, or draft")
    schedule = entry.schedule
    overdue_at = _overdue_at(entry) if entry.overdue else None
    due = overdue_at is not None and overdue_at <= now  # checked as due now, then given its time
    if due:
        schedule = None
    timeless = schedule is None and not entry.draft and not cfg.slots and not due
    if schedule is None and not entry.draft and cfg.slots and not due:
        schedule = slots.WORD  # Buffer's way: a row without a time takes the next slot
    new = writing.check_new_post(
        conn,
        cfg,
        entry.content,
        schedule=schedule,
        draft=entry.draft or timeless,  # checked as plur-post checks, text and targets first
        platforms=entry.platforms,
        account=entry.account,
        tz=zone,
        now=now,
        metadata=_metadata(cfg, entry),
        compose=_compose(entry),
        reply_to=entry.reply_to,
        extras=_extras(entry, folder),
        warn=warn,
    )
    if timeless:
        raise InvalidInput(
            "no schedule",
            'give a time such as "2027-01-05 09:00", "next" (a posting slot), or draft = true',
        )
    if due and overdue_at is not None:
        if warn is not None:
            shown = format_local(overdue_at, zone, now)
            warn(f"it was due at {shown} and is not sent yet (overdue): it is queued due now")
        return new._replace(scheduled_at=overdue_at, now=False)
    return new


def _overdue_at(entry: Entry) -> datetime:
    """An `overdue` row's time: the instant plur-export wrote (ISO 8601 with its offset) —
    so that only a time known to be past is queued as due, never a mistyped one."""
    if entry.draft or entry.schedule is None:
        raise InvalidInput(
            "overdue goes with the schedule the post was due at",
            "give its schedule, or leave overdue out",
        )
    try:
        at = datetime.fromisoformat(entry.schedule)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise InvalidInput(
            f"an overdue row's schedule must be a time with its offset, as plur-export writes "
            f'it (2026-11-22T09:00:00+01:00), not "{entry.schedule}"',
            "give that time, or leave overdue out",
        )
    return at


def check_recurring(
    cfg: Config,
    entry: Entry,
    now: datetime,
    folder: Path = Path(),
    warn: Callable[[str], None] | None = None,
) -> NewSchedule:
    """What plur-post --cron/--every checks, for a row with `cron` or `every`; its
    `schedule` is the first run (every) or when it starts (cron), as --schedule is."""
    from plurcast import schedules

    zone = config_module.zone(entry.tz) if entry.tz else cfg.timezone
    if entry.draft:
        raise InvalidInput("a draft cannot recur", "leave draft empty, or cron and every")
    if entry.overdue or entry.from_schedule is not None:
        raise InvalidInput(
            "a recurring row is neither overdue nor made by a schedule",
            "leave overdue and from_schedule out (its schedule is its next run)",
        )
    if entry.reply_to is not None:
        raise InvalidInput(
            "a recurring post cannot be a reply",
            "reply once, or schedule the replies one by one",
        )
    spec = schedules.Recurring(
        entry.cron,
        entry.every,
        entry.schedule,
        entry.until,
        entry.count,
        entry.misfire or "latest",
        entry.grace,
    )
    return schedules.check_new(
        cfg,
        entry.content,
        spec,
        platforms=entry.platforms,
        account=entry.account,
        tz=zone,
        now=now,
        metadata=_metadata(cfg, entry),
        compose=_compose(entry),
        extras=_extras(entry, folder),
        warn=warn,
    )


def _metadata(cfg: Config, entry: Entry) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if entry.visibility:
        metadata["visibility"] = entry.visibility
    metadata.update(
        nostr_settings.pow_metadata(cfg, entry.account, entry.nostr_pow, entry.pow_21e8)
    )
    return metadata


def _compose(entry: Entry) -> Compose:
    # A variant's text is the text itself: `@…` is not a file to read, as it is for plur-post.
    variants = [f"{p}={'@' + t if t.startswith('@') else t}" for p, t in entry.variants]
    return Compose.from_args(entry.thread, entry.auto_thread, entry.numbered, variants)


def _extras(entry: Entry, folder: Path) -> Extras:
    """A row's images, alt texts, warning, label and languages as plur-post's options; a
    relative image path is in the import file's folder (`~` is the home directory)."""
    from plurcast.media.attach import ImageSpec

    images = [
        ImageSpec(str(folder / Path(path).expanduser()), alt or None)
        for path, alt in zip(entry.images, entry.alts, strict=True)
    ]
    return Extras(
        images=images,
        fit=entry.fit,
        keep_metadata=entry.keep_metadata,
        warning=entry.cw,
        label=entry.label,
        languages=entry.langs or None,
        card=not entry.no_card,
    )
