"""The media store seam on both backends: SQLite keeps images as files beside the database,
PostgreSQL as rows of `media` (so a daemon on any host reads them); the same contract either
way — kept once by sha256, read back checked, gone or damaged is a RuntimeFailure, collected
when no post needs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import queue, writing
from plurcast.errors import RuntimeFailure
from plurcast.media import files
from plurcast.media import store as media_store
from plurcast.media.attach import ImageSpec
from plurcast.validation import Extras
from tests.helpers import NOW, media_stored
from tests.images import photo
from tests.peers.postgres import Backend, open_test_db, run_sql

pytestmark = pytest.mark.usefixtures("configured")


def test_an_image_is_kept_once_and_read_back(db_path: Path, backend: Backend) -> None:
    conn = open_test_db(db_path)
    store = media_store.for_database(conn)
    assert isinstance(store, media_store.TableStore) == backend.is_postgresql
    with conn.transaction():
        digest = store.put(b"picture")
        assert store.put(b"picture") == digest == files.sha256(b"picture")
    assert media_stored(db_path) == {digest: b"picture"}
    assert store.read(digest) == b"picture"
    assert files.media_dir(db_path).exists() != backend.is_postgresql  # no file on PostgreSQL


def test_a_damaged_or_missing_image_is_a_runtime_failure(db_path: Path, backend: Backend) -> None:
    conn = open_test_db(db_path)
    store = media_store.for_database(conn)
    with conn.transaction():
        digest = store.put(b"picture")
    if backend.is_postgresql:
        run_sql(db_path, "UPDATE media SET data = ? WHERE sha256 = ?", b"other", digest)
    else:
        (files.media_dir(db_path) / digest).write_bytes(b"other")
    with pytest.raises(RuntimeFailure, match="damaged"):
        store.read(digest)
    if backend.is_postgresql:
        run_sql(db_path, "DELETE FROM media")
    else:
        (files.media_dir(db_path) / digest).unlink()
    with pytest.raises(RuntimeFailure, match=r"gone|cannot be read"):
        store.read(digest)


def test_collect_keeps_what_a_waiting_post_needs(
    db_path: Path, backend: Backend, tmp_path: Path
) -> None:
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    picture = tmp_path / "kite.png"
    picture.write_bytes(photo("PNG", (40, 30)))
    store = media_store.for_database(conn)
    with conn.transaction():
        unneeded = store.put(b"left over by nobody")
    created = writing.create_post(
        conn, cfg, "A kite", schedule="1h", draft=False, platforms=["mastodon"], account=None,
        tz=cfg.timezone, now=NOW, extras=Extras(images=[ImageSpec(str(picture), "A kite")]),
    )  # fmt: skip
    [needed] = set(media_stored(db_path)) - {unneeded}
    assert store.collect() == [unneeded]
    assert list(media_stored(db_path)) == [needed]
    run_sql(db_path, "UPDATE deliveries SET state = 'sent' WHERE post_id = ?", created.post_id)
    assert store.collect() == [needed] and media_stored(db_path) == {}
