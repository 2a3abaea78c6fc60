"""plur-import: entries → posts, all or nothing, each row checked as plur-post checks it.

1. Each row's key is worked out: its `key`, else a hash of what it says — content, time as
   written, zone, platforms, account, thread shape, variants, reply (and its images, alt
   texts, warning, label, languages and image options, when it has any). A row whose key is
   already in the database (imported before, or an exported post's own id) is skipped —
   importing a file again makes no duplicates, even once its times are past — and two rows
   of one file with one key are an error.
2. Every other row goes through `writing.check_new_post` — or, when it has `cron` or
   `every`, `schedules.check_new` — what plur-post runs: the one
   validation path (text, targets, credentials, each platform's limits, thread parts and
   variants, the post a reply answers, images — read from their paths, relative to the
   import file's folder — alt texts, content warning, label, languages), the time
   grammar, proof of work. A past time is refused unless the row is `overdue` (plur-export
   marks a post due and not sent yet): then it keeps that time and is due now.
3. If any row is bad, every bad row is reported (`line 7: …`) and nothing is written.
4. Otherwise one BEGIN IMMEDIATE transaction re-checks the keys (another import may have
   run meanwhile), gives `next` rows their posting slots — under the write lock, as
   `plur-post -s next` does — and writes every post through `writing.insert_new_post`,
   its images into the media store inside that transaction (a recurring row: its schedule,
   through `schedules.insert`, before the posts: a `from_schedule` post is one of its
   occurrences). `--dry-run` runs the same
   transaction and rolls it back (its images are stored nowhere).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plurcast import config as config_module
from plurcast import queue, slots, writing
from plurcast.config import Config
from plurcast.errors import ConfigError, InvalidInput, PlurcastError
from plurcast.models import from_ms, to_ms
from plurcast.platforms import nostr_settings, registry
from plurcast.store import imports as store
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from plurcast.thread.plan import Compose
from plurcast.timefmt import format_local
from plurcast.transfer.fields import Entry
from plurcast.validation import Extras

if TYPE_CHECKING:  # imported when a row recurs: schedules brings logging and cron's rules
    from plurcast.schedules import NewSchedule

Target = tuple[str, str]


@dataclass
class Row:
    """One entry, and what became of it: skipped (`existing`), checked (`new`), written."""

    entry: Entry
    key: str
    existing: store.Known | None = None  # the post or schedule this key names: skipped
    new: writing.NewPost | None = None
    recurring: NewSchedule | None = None  # a row with cron or every: checked
    overdue: bool = False  # its time is past (an `overdue` row): queued due now, at it
    made_by: str | None = None  # the schedule that made the post (`from_schedule`)
    created: writing.Created | None = None  # after the write (or the dry run)

    @property
    def post_ids(self) -> list[str]:
        return [] if self.created is None else list(self.created.post_ids)

    @property
    def schedule_id(self) -> str | None:
        """The row's schedule: the one it makes (or is), else the one that made its post."""
        if self.existing is not None:
            return self.existing.id if self.existing.schedule else self.existing.made_by
        return self.made_by if self.recurring is None else self.recurring.schedule.id

    @property
    def scheduled_at(self) -> datetime | None:
        """When it goes out: the post's time (None: a draft), a schedule's next run."""
        if self.recurring is not None:
            return from_ms(self.recurring.schedule.next_run_at_ms or 0)
        if self.created is not None:
            return self.created.scheduled_at
        return None if self.new is None else self.new.scheduled_at

    @property
    def targets(self) -> list[Target]:
        if self.recurring is not None:
            return list(self.recurring.schedule.targets)
        return [] if self.new is None else list(self.new.checked.targets)

    @property
    def text(self) -> str:
        if self.recurring is not None:
            return self.recurring.schedule.content
        return self.entry.content if self.new is None else self.new.checked.text


class Refused(PlurcastError):
    """Some rows are bad: each problem names its row; nothing was written.

    Exit 3 (invalid input), or 2 when a row needs configuration that is missing or wrong
    (a platform not configured, a key file others can read)."""

    def __init__(self, problems: Sequence[str], *, config: bool) -> None:
        self.problems = list(problems)
        self.exit_code = 2 if config else 3
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} found; nothing was imported",
            "fix them and run plur-import again",
        )


def row_key(entry: Entry, cfg: Config) -> str:
    """The row's `key`, else a hash of what it says (before anything is resolved, so the
    same row is the same key tomorrow — `tomorrow 9am` stays `tomorrow 9am`)."""
    if entry.key is not None:
        return entry.key
    when = "draft" if entry.draft else " ".join((entry.schedule or "").lower().split())
    material: list[Any] = [
        entry.content.strip(),
        when,
        entry.tz or cfg.timezone.key,
        sorted({p.lower() for p in entry.platforms}),
        entry.account or "",
        [entry.thread, entry.auto_thread, entry.numbered],
        list(entry.variants),
        entry.reply_to or "",
    ]
    extras = _extras_material(entry)
    if extras:  # only then: the keys of rows without them stay what they were
        material.append(extras)
    recurring = _recurring_material(entry)
    if recurring:  # the same: a row that does not recur keeps its key
        material.append(recurring)
    digest = hashlib.sha256(json.dumps(material, ensure_ascii=False).encode()).hexdigest()
    return "sha256:" + digest[:32]


def _extras_material(entry: Entry) -> dict[str, Any]:
    """What a row says besides its text and time, for its key: what it sets, nothing else."""
    values: dict[str, Any] = {
        "images": list(entry.images),
        "alt": list(entry.alts),
        "cw": entry.cw,
        "label": entry.label,
        "lang": list(entry.langs),
        "no_card": entry.no_card,
        "fit": entry.fit,
        "keep_metadata": entry.keep_metadata,
    }
    return {name: value for name, value in values.items() if value not in (None, False, [])}


def _recurring_material(entry: Entry) -> dict[str, Any]:
    """A recurring row's rule and end, as written, for its key."""
    values: dict[str, Any] = {
        "cron": " ".join((entry.cron or "").split()),
        "every": " ".join((entry.every or "").lower().split()),
        "until": " ".join((entry.until or "").lower().split()),
        "count": entry.count,
        "misfire": entry.misfire,
        "grace": " ".join((entry.grace or "").lower().split()),
    }
    return {name: value for name, value in values.items() if value not in (None, "")}


@dataclass
class Plan:
    rows: list[Row]
    problems: list[tuple[int, str]]  # (entry index, message naming the row)
    config_problem: bool = False  # some row needs configuration that is missing or wrong
    warnings: list[str] = field(default_factory=list)  # "line 3: image 1 (…) has no alt text"


def plan(
    conn: Database,
    cfg: Config,
    entries: Sequence[Entry],
    now: datetime,
    folders: Sequence[Path] = (),
) -> Plan:
    """Check every entry; the rows to write, or the problem of each bad one. An entry's
    relative image paths are in its folder (`folders[i]`; default: the current one)."""
    problems: list[tuple[int, str]] = []
    warnings: list[str] = []
    config_problem = False
    rows = [Row(e, row_key(e, cfg)) for e in entries]
    known = store.existing(conn, [r.key for r in rows])
    seen: dict[str, str] = {}
    for index, row in enumerate(rows):
        try:
            _once(seen, row)
            if row.key in known:
                row.existing = known[row.key]
            else:
                folder = folders[index] if index < len(folders) else Path()
                said: list[str] = []
                if row.entry.cron is not None or row.entry.every is not None:
                    row.recurring = _check_recurring(cfg, row.entry, now, folder, said.append)
                else:
                    row.new = _check(conn, cfg, row.entry, now, folder, said.append)
                    at = row.new.scheduled_at
                    row.overdue = row.entry.overdue and at is not None and at <= now
                warnings += [f"{row.entry.where}: {warning}" for warning in said]
        except PlurcastError as exc:
            config_problem |= isinstance(exc, ConfigError)
            problems.append((index, f"{row.entry.where}: {exc}"))
    problems += _check_made(conn, rows)
    return Plan(rows, problems, config_problem, warnings)


def _check_made(conn: Database, rows: Sequence[Row]) -> list[tuple[int, str]]:
    """Each `from_schedule` post: its key names a schedule (a recurring row of this import,
    or one in the queue), and the post is one of that schedule's past runs — before its
    next run, a run no other post is — so that no run of the schedule makes it again."""
    named = _schedules_named(conn, rows)
    problems: list[tuple[int, str]] = []
    runs: dict[tuple[str, int], int] = {}  # (schedule, occurrence) → the row's index
    for index, row in enumerate(rows):
        wanted = row.entry.from_schedule
        if wanted is None or row.new is None:
            continue
        try:
            if wanted not in named:
                raise InvalidInput(
                    f'from_schedule "{wanted}" is the key of no recurring row of this import '
                    "and of no schedule in the queue",
                    "import the post with the row of its schedule, or leave from_schedule out",
                )
            schedule_id, next_ms = named[wanted]
            if row.new.scheduled_at is None:
                raise InvalidInput(
                    "a post a schedule made has its own time", "give its schedule, not next"
                )
            at = to_ms(row.new.scheduled_at)
            if next_ms is not None and at >= next_ms:
                raise InvalidInput(
                    f'it is not before the next run of schedule "{wanted}" '
                    f"({format_local(from_ms(next_ms), row.new.timezone, row.new.scheduled_at)})"
                    ": a post a schedule made is one of its past runs",
                    "give the time of that run, or leave from_schedule out",
                )
            first = runs.setdefault((schedule_id, at), index)
            if first != index:
                raise InvalidInput(
                    f'{rows[first].entry.where} is the same run of schedule "{wanted}"',
                    "keep one of them",
                )
        except InvalidInput as exc:
            problems.append((index, f"{row.entry.where}: {exc}"))
    for run in sorted(store.runs_taken(conn, list(runs))):
        index = runs[run]
        entry = rows[index].entry
        taken = InvalidInput(
            f'a post in the queue already is that run of schedule "{entry.from_schedule}"',
            "leave from_schedule out to import it on its own",
        )
        problems.append((index, f"{rows[index].entry.where}: {taken}"))
    return problems


def _schedules_named(conn: Database, rows: Sequence[Row]) -> dict[str, tuple[str, int | None]]:
    """`from_schedule` key → the schedule it names, and its next run: a recurring row of
    this import (made by it, or there already), else a schedule in the queue. Keys of
    posts, or of nothing, are left out."""
    from plurcast.store import schedules as schedule_store

    wanted = {r.entry.from_schedule for r in rows if r.new is not None} - {None}
    found: dict[str, tuple[str, int | None]] = {}
    there: dict[str, str] = {}  # key → a schedule already in the queue
    for r in rows:
        if r.key in wanted and r.recurring is not None and r.existing is None:
            found[r.key] = (r.recurring.schedule.id, r.recurring.schedule.next_run_at_ms)
        elif r.key in wanted and r.existing is not None and r.existing.schedule:
            there[r.key] = r.existing.id
    rest = [key for key in wanted if key is not None and key not in found and key not in there]
    if rest:
        there.update((key, k.id) for key, k in store.existing(conn, rest).items() if k.schedule)
    for key, schedule_id in there.items():
        found[key] = (schedule_id, schedule_store.get(conn, schedule_id).next_run_at_ms)
    return found


def _once(seen: dict[str, str], row: Row) -> None:
    where = seen.setdefault(row.key, row.entry.where)
    if where == row.entry.where:
        return
    if row.entry.key is not None:
        raise InvalidInput(f'key "{row.key}" is also on {where}', "give each row its own key")
    raise InvalidInput(
        f"the same content, time and platforms as {where}",
        "give the rows a key column to import both",
    )


def _check(
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


def _check_recurring(
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


def write(
    conn: Database, cfg: Config, rows: Sequence[Row], now: datetime, *, dry_run: bool
) -> list[Row]:
    """Write every row that is not there yet, in one transaction (rolled back for a dry
    run); slots are taken here, under the write lock. The rows, with what became of each."""

    class _DryRun(Exception):
        pass

    media = None
    if dry_run:  # images checked, stored nowhere
        from plurcast.media.store import Rehearsal

        media = Rehearsal()
    try:
        with transaction(conn):
            fresh = [r for r in rows if r.existing is None and (r.new or r.recurring) is not None]
            present = store.existing(conn, [r.key for r in fresh])
            picker = slots.Picker(conn, cfg, now)
            for r in fresh:
                if r.key in present:  # another import wrote it meanwhile
                    r.existing = present[r.key]
                elif r.new is not None and r.new.scheduled_at is not None and not r.new.slot:
                    picker.hold(r.new.checked.targets, r.new.scheduled_at)
            for r in fresh:  # the schedules first: the posts they made name them
                if r.existing is None and r.recurring is not None:
                    from plurcast import schedules

                    schedules.insert(conn, r.recurring, media)
                    store.remember_schedule(conn, r.key, r.recurring.schedule.id, to_ms(now))
            made_by = _schedules_named(conn, rows)
            for r in fresh:
                if r.existing is None and r.new is not None:
                    at = picker.take(r.new.checked.targets) if r.new.slot else None
                    r.made_by = made_by.get(r.entry.from_schedule or "", (None,))[0]
                    r.created = writing.insert_new_post(
                        conn, cfg, r.new, now, slot_at=at, media=media, schedule_id=r.made_by
                    )
                    store.remember(conn, r.key, r.created.post_id, to_ms(now))
                    if r.made_by is not None and r.created.scheduled_at is not None:
                        _occurred(conn, r.made_by, r.created, now)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return list(rows)


def _occurred(conn: Database, schedule_id: str, created: writing.Created, now: datetime) -> None:
    """A post a schedule made, imported: its occurrence is in the schedule's history."""
    from plurcast.store import schedules as schedule_store

    assert created.scheduled_at is not None
    at = to_ms(created.scheduled_at)
    schedule_store.record_occurrence(
        conn, schedule_id, at, to_ms(now), "posted", created.post_id, None
    )


# --- the whole import ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    name: str  # a path, or "stdin"
    data: bytes  # at most read.MAX_BYTES + 1: enough to know it is too big
    size: int | None = None  # the file's size, for the message when it is too big


def run(
    cfg: Config,
    sources: Sequence[Source],
    clock: Callable[[Database], datetime],
    *,
    kind: str | None = None,
    dry_run: bool = False,
    warn: Callable[[str], None] | None = None,
) -> tuple[list[Row], datetime]:
    """Read every source, check every row, then write them all or nothing (see above):
    the rows, and the time they were checked at — `clock(db)`, the database's "now" (on
    PostgreSQL the server's, which relative times count from and due times are judged by).

    A database that does not exist yet is created only to write: bad rows, or a dry run,
    leave no file behind."""
    from plurcast.store.connection import rehearse_on
    from plurcast.transfer import read

    total = sum(len(s.data) for s in sources)
    if len(sources) > 1 and total > read.MAX_BYTES:
        raise InvalidInput(
            f"the files are {total / 1e6:.1f} MB together, over the limit of "
            f"{read.MAX_BYTES // 2**20} MiB",
            "import them in smaller batches",
        )
    several = len(sources) > 1
    problems: list[tuple[int, int, str]] = []  # (source, line, message)
    entries: list[Entry] = []
    source_of: list[int] = []
    folders: list[Path] = []
    for index, source in enumerate(sources):
        label = source.name if several else ""
        text, undecodable = read.decode(source.data, source.name, source.size)
        if undecodable:
            problems += [(index, line, msg) for line, msg in read.labelled(undecodable, label)]
            continue
        if not text.strip():
            continue  # an empty file: nothing to import from it
        name = "-" if source.name == "stdin" and source.size is None else source.name
        parsed = read.parse(text, read.kind_of(name, kind), label)
        problems += [(index, line, msg) for line, msg in parsed.problems]
        entries += parsed.entries
        source_of += [index] * len(parsed.entries)
        stdin = source.name == "stdin" and source.size is None
        folders += [Path() if stdin else Path(source.name).parent] * len(parsed.entries)
    if not entries and not problems:
        names = ", ".join(s.name for s in sources)
        raise InvalidInput(f"no posts in {names}", "give each post a row (CSV: after the header)")
    conn = queue.open_db(cfg, create=False)  # none yet: an empty stand-in, no file made
    now = clock(conn)
    with registry.checking_once():
        checked = plan(conn, cfg, entries, now, folders)
    problems += [(source_of[i], entries[i].line, msg) for i, msg in checked.problems]
    if problems:
        raise Refused([msg for *_, msg in sorted(problems)], config=checked.config_problem)
    if warn is not None:
        for warning in checked.warnings:
            warn(warning)
    if not dry_run:
        conn = queue.writable(conn, cfg)
    else:
        rehearse_on(conn)
    return write(conn, cfg, checked.rows, now, dry_run=dry_run), now
