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

Here: the plan, the write and the whole run. Beside it: `keys` (1, a row's key),
`checking` (2, one row as plur-post checks it), `made` (posts a schedule made, named by
`from_schedule`), `rows` (Row, Plan, Refused).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from plurcast import queue, slots, writing
from plurcast.config import Config
from plurcast.errors import ConfigError, InvalidInput, PlurcastError
from plurcast.models import to_ms
from plurcast.platforms import registry
from plurcast.store import imports as store
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from plurcast.transfer import checking, made
from plurcast.transfer.fields import Entry
from plurcast.transfer.keys import row_key
from plurcast.transfer.rows import Plan, Refused, Row
from plurcast.value import Value


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
                    row.recurring = checking.check_recurring(
                        cfg, row.entry, now, folder, said.append
                    )
                else:
                    row.new = checking.check_post(conn, cfg, row.entry, now, folder, said.append)
                    at = row.new.scheduled_at
                    row.overdue = row.entry.overdue and at is not None and at <= now
                warnings += [f"{row.entry.where}: {warning}" for warning in said]
        except PlurcastError as exc:
            config_problem |= isinstance(exc, ConfigError)
            problems.append((index, f"{row.entry.where}: {exc}"))
    problems += made.check(conn, rows)
    return Plan(rows, problems, config_problem, warnings)


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
            named = made.schedules_named(conn, rows)
            for r in fresh:
                if r.existing is None and r.new is not None:
                    at = picker.take(r.new.checked.targets) if r.new.slot else None
                    r.made_by = named.get(r.entry.from_schedule or "", (None,))[0]
                    r.created = writing.insert_new_post(
                        conn, cfg, r.new, now, slot_at=at, media=media, schedule_id=r.made_by
                    )
                    store.remember(conn, r.key, r.created.post_id, to_ms(now))
                    if r.made_by is not None and r.created.scheduled_at is not None:
                        made.record_run(conn, r.made_by, r.created, now)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return list(rows)


# --- the whole import ------------------------------------------------------------------


class Source(Value):
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
