"""The SQL of plur-import and plur-export: which import keys name which posts."""

from __future__ import annotations

from collections.abc import Sequence

from plurcast.store.base import Database

_BATCH = 500  # values per IN (...): well inside every SQLite build's limit


def existing(conn: Database, keys: Sequence[str]) -> dict[str, str]:
    """key → post id, for keys already imported — or that are a post's own id (an exported
    post carries its id as its key, so importing an export back changes nothing)."""
    found: dict[str, str] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _BATCH):
        batch = unique[start : start + _BATCH]
        marks = ",".join("?" * len(batch))
        rows = conn.execute(
            f"SELECT key, post_id FROM import_keys WHERE key IN ({marks}) "
            f"UNION ALL SELECT id, id FROM posts WHERE id IN ({marks})",
            [*batch, *batch],
        )
        for key, post_id in rows:
            found.setdefault(str(key), str(post_id))
    return found


def remember(conn: Database, key: str, post_id: str, now_ms: int) -> None:
    conn.execute(
        "INSERT INTO import_keys (key, post_id, imported_at_ms) VALUES (?, ?, ?)",
        (key, post_id, now_ms),
    )


def keys_of(conn: Database, post_ids: Sequence[str]) -> dict[str, str]:
    """post id → the key it was imported under (plur-export writes it back)."""
    found: dict[str, str] = {}
    for start in range(0, len(post_ids), _BATCH):
        batch = list(post_ids[start : start + _BATCH])
        marks = ",".join("?" * len(batch))
        rows = conn.execute(
            f"SELECT post_id, key FROM import_keys WHERE post_id IN ({marks})", batch
        )
        found.update((str(p), str(k)) for p, k in rows)
    return found
