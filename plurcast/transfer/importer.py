"""plur-import: entries → posts, all or nothing, each row checked as plur-post checks it.

1. Every entry goes through what plur-post does: the one validation path (text, targets,
   credentials, limits), the time grammar, proof of work — and its key is worked out: the
   row's `key`, else a hash of its content, time as written, zone and targets. A row whose
   key is already in the database (imported before, or an exported post's own id) is
   skipped, so importing a file again makes no duplicates; two rows of one file with one
   key are an error.
2. If any row is bad, every bad row is reported (`line 7: …`) and nothing is written.
3. Otherwise one BEGIN IMMEDIATE transaction re-checks the keys (another import may have
   run meanwhile), gives `next` rows their posting slots — under the write lock, as
   `plur-post -s next` does — and writes every post. `--dry-run` runs the same transaction
   and rolls it back.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plurcast import config as config_module
from plurcast import content, slots, validation
from plurcast.config import Config
from plurcast.errors import ConfigError, InvalidInput, PlurcastError
from plurcast.models import from_ms, to_ms
from plurcast.platforms import nostr
from plurcast.store import imports as store
from plurcast.store import posts as post_store
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from plurcast.transfer.fields import Entry

Target = tuple[str, str]


@dataclass
class Row:
    """An entry that passed every check, as it will be written."""

    entry: Entry
    key: str
    text: str
    targets: list[Target]
    zone: ZoneInfo
    scheduled_at: datetime | None  # None: a draft, or a slot still to take
    slot: bool
    metadata: dict[str, Any]
    existing: str | None = None  # the post this key already names: skipped
    post_id: str = field(default_factory=lambda: str(uuid.uuid4()))


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


def row_key(entry: Entry, text: str, zone: ZoneInfo, targets: Sequence[Target]) -> str:
    """The row's `key`, else a hash of what makes it this post: its content, its time as
    written (so `tomorrow 9am` stays the same row tomorrow), its zone and its targets."""
    if entry.key is not None:
        return entry.key
    when = "draft" if entry.draft else " ".join((entry.schedule or "").lower().split())
    material = json.dumps([text, when, zone.key, sorted(targets)], ensure_ascii=False)
    return "sha256:" + hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass
class Plan:
    rows: list[Row]
    problems: list[tuple[int, str]]  # (entry index, message naming the row)
    config_problem: bool = False  # some row needs configuration that is missing or wrong


def plan(conn: Database, cfg: Config, entries: Sequence[Entry], now: datetime) -> Plan:
    """Check every entry; the rows to write, or the problem of each bad one."""
    problems: list[tuple[int, str]] = []
    config_problem = False
    found: dict[int, Row] = {}
    seen: dict[str, str] = {}
    known = store.existing(conn, [e.key for e in entries if e.key is not None])
    targets = _Targets(cfg)
    for index, entry in enumerate(entries):
        try:
            if entry.key is not None and entry.key in known:
                found[index] = _skipped(entry, known[entry.key])
                _once(seen, entry.key, entry, "key")
                continue
            row = _identify(cfg, entry, targets)
            _once(seen, row.key, entry, "key" if entry.key else "hash")
            found[index] = row
        except PlurcastError as exc:
            config_problem |= isinstance(exc, ConfigError)
            problems.append((index, f"{entry.where}: {exc}"))
    hashed = store.existing(conn, [r.key for r in found.values() if r.entry.key is None])
    latest = post_store.latest_waiting_time_ms(conn)
    pending_after = None if latest is None else from_ms(latest)
    for index in sorted(found):
        row = found[index]
        if row.existing is not None:
            continue
        if row.key in hashed:
            row.existing = hashed[row.key]
            continue
        try:
            _check(cfg, row, now, pending_after)
        except PlurcastError as exc:
            config_problem |= isinstance(exc, ConfigError)
            problems.append((index, f"{row.entry.where}: {exc}"))
            continue
        if row.scheduled_at is not None and not row.slot:
            pending_after = max(pending_after or row.scheduled_at, row.scheduled_at)
    rows = [found[i] for i in sorted(found)]
    return Plan(rows, problems, config_problem)


def _once(seen: dict[str, str], key: str, entry: Entry, kind: str) -> None:
    if key in seen:
        if kind == "key":
            raise InvalidInput(f'key "{key}" is also on {seen[key]}', "give each row its own key")
        raise InvalidInput(
            f"the same content, time and platforms as {seen[key]}",
            "give the rows a key column to import both",
        )
    seen[key] = entry.where


def _skipped(entry: Entry, post_id: str) -> Row:
    """A row whose key names a post already there: not checked, not written."""
    return Row(entry, entry.key or "", entry.content, [], ZoneInfo("UTC"), None, False, {}, post_id)


class _Targets:
    """validation.check_post, with each (platforms, account)'s targets resolved once: their
    config and credential checks (a key file read, its mode checked) are the same for every
    row that names them — 10,000 rows need not read a key file 20,000 times."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._resolved: dict[tuple[tuple[str, ...], str | None], list[Target] | Exception] = {}

    def check(self, entry: Entry) -> tuple[str, list[Target]]:
        text = content.normalise(entry.content)  # check_post's order: the text first
        wanted = (entry.platforms, entry.account)
        if wanted not in self._resolved:
            try:
                self._resolved[wanted] = validation.resolve_targets(
                    self.cfg, entry.platforms, entry.account
                )
            except PlurcastError as exc:
                self._resolved[wanted] = exc
        targets = self._resolved[wanted]
        if isinstance(targets, Exception):
            raise targets
        return validation.check_text(self.cfg, text, targets), targets


def _identify(cfg: Config, entry: Entry, targets: _Targets) -> Row:
    """What plur-post checks first — the zone, the text and the targets — and the key
    they give: enough to tell whether the row is already there."""
    zone = config_module.zone(entry.tz) if entry.tz else cfg.timezone
    if entry.draft and entry.schedule:
        raise InvalidInput("a draft has no schedule", "leave schedule empty, or draft false")
    text, resolved = targets.check(entry)
    key = row_key(entry, text, zone, resolved)
    return Row(entry, key, text, resolved, zone, None, False, {})


def _check(cfg: Config, row: Row, now: datetime, pending_after: datetime | None) -> None:
    """The rest of what plur-post checks, for a row to be written: proof of work, the time
    (a slot to take later, or the time grammar; a past time is refused)."""
    entry = row.entry
    if entry.visibility:
        row.metadata["visibility"] = entry.visibility
    row.metadata.update(nostr.pow_metadata(cfg, entry.account, entry.nostr_pow, entry.pow_21e8))
    if entry.draft:
        return
    if entry.schedule is None or slots.is_slot(entry.schedule):
        if entry.schedule is None and not _has_slots(cfg, row.targets):
            raise InvalidInput(
                "no schedule",
                'give a time such as "2027-01-05 09:00", "next" (a posting slot), or draft = true',
            )
        slots.check(cfg, row.targets)
        row.slot = True
        return
    from plurcast import when

    random = entry.schedule.strip().lower().startswith("random:")
    row.scheduled_at = when.parse_when(
        entry.schedule, now=now, tz=row.zone, pending_after=pending_after if random else None
    )


def _has_slots(cfg: Config, targets: Sequence[Target]) -> bool:
    try:
        slots.check(cfg, targets)
    except ConfigError:
        return False
    return True


def write(
    conn: Database, cfg: Config, rows: Sequence[Row], now: datetime, *, dry_run: bool
) -> list[Row]:
    """Write every row that is not there yet, in one transaction (rolled back for a dry
    run); slots are taken here, under the write lock. The rows, with what became of each."""

    class _DryRun(Exception):
        pass

    try:
        with transaction(conn):
            fresh = [r for r in rows if r.existing is None]
            present = store.existing(conn, [r.key for r in fresh])
            picker = slots.Picker(conn, cfg, now)
            for r in fresh:
                if r.key in present:  # another import wrote it meanwhile
                    r.existing = present[r.key]
                elif r.scheduled_at is not None:
                    picker.hold(r.targets, r.scheduled_at)
            for r in fresh:
                if r.existing is None:
                    if r.slot:
                        r.scheduled_at = picker.take(r.targets)
                    _insert(conn, r, now)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return list(rows)


def _insert(conn: Database, r: Row, now: datetime) -> None:
    post_store.insert_post(
        conn,
        post_store.NewPost(
            id=r.post_id,
            content=r.text,
            created_at_ms=to_ms(now),
            scheduled_at_ms=None if r.scheduled_at is None else to_ms(r.scheduled_at),
            timezone=r.zone.key,
            targets=r.targets,
            metadata=json.dumps(r.metadata, ensure_ascii=False),
        ),
    )
    store.remember(conn, r.key, r.post_id, to_ms(now))


# --- the whole import ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    name: str  # a path, or "stdin"
    data: bytes  # at most read.MAX_BYTES + 1: enough to know it is too big
    size: int | None = None  # the file's size, for the message when it is too big


def run(
    cfg: Config,
    sources: Sequence[Source],
    now: datetime,
    *,
    kind: str | None = None,
    dry_run: bool = False,
) -> list[Row]:
    """Read every source, check every row, then write them all or nothing (see above).

    A database that does not exist yet is created only to write: bad rows, or a dry run,
    leave no file behind."""
    from plurcast import queue
    from plurcast.store.connection import on_disk
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
    if not entries and not problems:
        names = ", ".join(s.name for s in sources)
        raise InvalidInput(f"no posts in {names}", "give each post a row (CSV: after the header)")
    conn = queue.open_db(cfg, create=False)  # none yet: an empty stand-in, no file made
    checked = plan(conn, cfg, entries, now)
    problems += [(source_of[i], entries[i].line, msg) for i, msg in checked.problems]
    if problems:
        raise Refused([msg for *_, msg in sorted(problems)], config=checked.config_problem)
    if not dry_run:
        conn = queue.writable(conn, cfg)
    elif not on_disk(conn):  # the stand-in takes the dry run's writes, then rolls them back
        conn.execute("PRAGMA query_only = OFF")
    return write(conn, cfg, checked.rows, now, dry_run=dry_run)
