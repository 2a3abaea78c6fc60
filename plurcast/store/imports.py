"""The SQL of plur-import and plur-export: which import keys name which posts and which
recurring schedules (one key names one of them: `existing` looks in both)."""

from __future__ import annotations

from collections.abc import Sequence

from plurcast.store.base import Database
from plurcast.value import Value

_BATCH = 200  # values per IN (...), four lists a query: well inside every SQLite's limit


class Known(Value):
    """What an import key already names: a post (and the schedule that made it, if one
    did), or a recurring schedule."""

    id: str
    schedule: bool
    made_by: str | None = None


def existing(conn: Database, keys: Sequence[str]) -> dict[str, Known]:
    """key → the post or schedule it names, for keys already imported — or that are a
    post's or a schedule's own id (an export carries that id as its key, so importing an
    export back changes nothing)."""
    found: dict[str, Known] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _BATCH):
        batch = unique[start : start + _BATCH]
        marks = ",".join("?" * len(batch))
        rows = conn.execute(
            "SELECT k.key, k.post_id, 0, p.schedule_id FROM import_keys k "
            f"LEFT JOIN posts p ON p.id = k.post_id WHERE k.key IN ({marks}) "
            f"UNION ALL SELECT id, id, 0, schedule_id FROM posts WHERE id IN ({marks}) "
            "UNION ALL SELECT key, schedule_id, 1, NULL FROM schedule_import_keys "
            f"WHERE key IN ({marks}) "
            f"UNION ALL SELECT id, id, 1, NULL FROM schedules WHERE id IN ({marks})",
            [*batch, *batch, *batch, *batch],
        )
        for key, known_id, schedule, made_by in rows:
            known = Known(str(known_id), bool(schedule), None if made_by is None else str(made_by))
            found.setdefault(str(key), known)
    return found


def remember(conn: Database, key: str, post_id: str, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO import_keys (key, post_id, imported_at_ms) VALUES (?, ?, ?)",
        (key, post_id, now_ms),
    )


def remember_schedule(conn: Database, key: str, schedule_id: str, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO schedule_import_keys (key, schedule_id, imported_at_ms) VALUES (?, ?, ?)",
        (key, schedule_id, now_ms),
    )


def keys_of(conn: Database, post_ids: Sequence[str]) -> dict[str, str]:
    """post id → the key it was imported under (plur-export writes it back)."""
    return _keys(conn, "import_keys", "post_id", post_ids)


def schedule_keys_of(conn: Database, schedule_ids: Sequence[str]) -> dict[str, str]:
    """schedule id → the key it was imported under."""
    return _keys(conn, "schedule_import_keys", "schedule_id", schedule_ids)


def _keys(conn: Database, table: str, column: str, ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(ids), _BATCH):
        batch = list(ids[start : start + _BATCH])
        marks = ",".join("?" * len(batch))
        rows = conn.execute(f"SELECT {column}, key FROM {table} WHERE {column} IN ({marks})", batch)
        found.update((str(p), str(k)) for p, k in rows)
    return found


def runs_taken(conn: Database, runs: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
    """Of these (schedule id, occurrence) runs, the ones a post in the queue already is."""
    wanted = set(runs)
    ids = list(dict.fromkeys(schedule_id for schedule_id, _ in runs))
    taken: set[tuple[str, int]] = set()
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        marks = ",".join("?" * len(batch))
        rows = conn.execute(
            "SELECT schedule_id, occurrence_at_ms FROM posts "
            f"WHERE schedule_id IN ({marks}) AND occurrence_at_ms IS NOT NULL",
            batch,
        )
        taken.update(run for run in ((str(s), int(at)) for s, at in rows) if run in wanted)
    return taken
