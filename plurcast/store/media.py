"""Every SQL statement about the images posts and schedules need from the media store.

A post or schedule with images has one row per image file it refers to (an image and its
re-encodings for a platform are separate files). An image is still needed while a post
that refers to it may be sent — a delivery waiting, sending, or given up (it may be
retried) — or while a recurring schedule that refers to it is active or paused.

On PostgreSQL the bytes themselves are rows of `media`, so that a daemon on any host can
read them; on SQLite they are files beside the database (plurcast.media.files) and the
table stays empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from plurcast.store.base import MAY_STILL_GO, Database

_NEEDED = f"""
    SELECT pm.sha256 FROM post_media pm
    WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.post_id = pm.post_id
                  AND d.state IN {MAY_STILL_GO})
    UNION
    SELECT sm.sha256 FROM schedule_media sm JOIN schedules s ON s.id = sm.schedule_id
    WHERE s.state IN ('active', 'paused')
"""


def add_post_media(conn: Database, post_id: str, digests: Iterable[str]) -> None:
    """The images a new post refers to; inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO post_media (post_id, sha256) VALUES (?, ?)",
        [(post_id, digest) for digest in dict.fromkeys(digests)],
    )


def add_schedule_media(conn: Database, schedule_id: str, digests: Iterable[str]) -> None:
    """The images a new recurring schedule refers to; inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO schedule_media (schedule_id, sha256) VALUES (?, ?)",
        [(schedule_id, digest) for digest in dict.fromkeys(digests)],
    )


def needed(conn: Database) -> set[str]:
    """The sha256 of every image some post or schedule may still need."""
    return {row[0] for row in conn.execute(_NEEDED)}


# --- the bytes, on PostgreSQL --------------------------------------------------------------


def put_blob(conn: Database, digest: str, data: bytes, now_ms: int) -> None:
    """Keep `data` under its sha256 (once: the same bytes again change nothing)."""
    conn.execute(
        "INSERT INTO media (sha256, size, created_at_ms, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (sha256) DO NOTHING",
        (digest, len(data), now_ms, data),
    )


def get_blob(conn: Database, digest: str) -> bytes | None:
    row = conn.execute("SELECT data FROM media WHERE sha256 = ?", (digest,)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


def delete_unneeded(conn: Database) -> list[str]:
    """Remove the stored images no post or schedule needs; their sha256."""
    rows = conn.execute(f"DELETE FROM media WHERE sha256 NOT IN ({_NEEDED}) RETURNING sha256")
    return sorted(row[0] for row in rows)
