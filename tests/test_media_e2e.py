"""Images from plur-post to all three platforms, on real servers: a phone photo with its GPS
position goes out with its alt text, and no server ever holds the position.

Nostr: nostr-sdk's relay and two strict Blossom servers; Mastodon: mastodon_mock; Bluesky: the
real PDS. Each test names what it would catch breaking. Every test runs on SQLite (images as
files beside the database) and on PostgreSQL (images as rows of the shared database, which is
where a daemon on any host reads them from).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import config as config_module
from plurcast import queue, writing
from plurcast.engine import Engine
from plurcast.media.attach import ImageSpec
from plurcast.validation import Extras
from tests.helpers import (
    ANSWER_TIMEOUT,
    NOW,
    T0,
    Clock,
    Run,
    deliver,
    media_stored,
    secret_file,
)
from tests.images import has_location, photo
from tests.peers.blossom import BlossomServer
from tests.peers.bluesky import Account, Pds
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import InProcessRelay
from tests.peers.postgres import Backend

ALT = "A red kite hanging in the wind over a stubble field"


@pytest.fixture
def second_blossom() -> Any:
    with BlossomServer() as server:
        yield server


@pytest.fixture
def three(
    write_config: Callable[[str], Path],
    isolated_home: Path,
    nostr_key: Path,
    inprocess_relay: InProcessRelay,
    blossom_server: BlossomServer,
    second_blossom: BlossomServer,
    mastodon_server: MastodonMock,
    bluesky_pds: Pds,
    backend: Backend,
) -> tuple[config_module.Config, Account]:
    """All three platforms configured on their local servers, the queue on `backend`."""
    account = bluesky_pds.create_account()
    token = secret_file(isolated_home / "mastodon.token", TOKENS["alice"])
    password = secret_file(isolated_home / "bluesky.password", account.app_password)
    write_config(
        'timezone = "UTC"\n'
        f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{inprocess_relay.url}"]\n'
        f"timeout = {ANSWER_TIMEOUT}\n"
        f'blossom_servers = ["{blossom_server.url}", "{second_blossom.url}"]\n'
        f'[mastodon]\ninstance = "{mastodon_server.url}"\ntoken_file = "{token}"\n'
        f"timeout = {ANSWER_TIMEOUT}\n"
        f'[bluesky]\nhandle = "{account.handle}"\napp_password_file = "{password}"\n'
        f'pds = "{bluesky_pds.url}"\ntimeout = {ANSWER_TIMEOUT}\n'
        "[scheduling]\nretry_delay = 60\nmax_retries = 2\n"
    )
    return config_module.load(), account


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        data: bytes = answer.read()
    return data


def _blob(pds: Pds, did: str, cid: str) -> bytes:
    return _get(f"{pds.url}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}")


def _nothing_stored(cfg: config_module.Config) -> bool:
    """The media store is empty, and on PostgreSQL no file was ever made."""
    return media_stored(cfg.db_path) == {} and not (
        cfg.database_url and (cfg.db_path.parent / "media").exists()
    )


def test_a_gps_tagged_photo_reaches_every_platform_with_its_alt_text_and_without_its_position(
    three: tuple[config_module.Config, Account],
    run: Run,
    tmp_path: Path,
    inprocess_relay: InProcessRelay,
    blossom_server: BlossomServer,
    second_blossom: BlossomServer,
    mastodon_server: MastodonMock,
    bluesky_pds: Pds,
) -> None:
    cfg, account = three
    original = photo("JPEG", (640, 480), orientation=6)
    assert has_location(original)
    path = tmp_path / "IMG_0042.jpg"
    path.write_bytes(original)

    result = run(post_cli, "Kites over the field", "--image", str(path), "--alt", ALT,
                 "--lang", "en", "-f", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [r["success"] for r in reports] == [True, True, True]

    # Nostr: the note links the blob on the first server, with the second as a fallback.
    [event] = inprocess_relay.fetch_events()
    [imeta] = [t for t in event["tags"] if t[0] == "imeta"]
    fields = dict(item.split(" ", 1) for item in imeta[1:] if not item.startswith("fallback"))
    assert fields["alt"] == ALT and fields["m"] == "image/jpeg"
    assert fields["dim"] == "480x640"  # as shown: orientation 6 turns it upright
    assert fields["url"].startswith(blossom_server.url) and fields["url"] in event["content"]
    assert f"fallback {second_blossom.blob_url(fields['x'], 'jpg')}" in imeta
    assert ["l", "en", "ISO-639-1"] in event["tags"]
    for server in (blossom_server, second_blossom):
        [upload] = server.uploads
        assert not has_location(server.blobs[upload.sha256])
    assert not has_location(_get(fields["url"]))

    # Mastodon: one status, the attachment described by the alt text.
    [status] = mastodon_server.statuses()
    [attachment] = status["media_attachments"]
    assert attachment["description"] == ALT and status["language"] == "en"
    assert not has_location(_get(attachment["url"]))

    # Bluesky: an images embed with the alt text and the real aspect ratio.
    [record] = bluesky_pds.list_records(account.did)
    [image] = record["value"]["embed"]["images"]
    assert image["alt"] == ALT
    assert image["aspectRatio"] == {"width": 480, "height": 640}
    assert record["value"]["langs"] == ["en"]
    assert not has_location(_blob(bluesky_pds, account.did, image["image"]["ref"]["$link"]))

    # Delivered everywhere: nothing needs the copy any more.
    assert _nothing_stored(cfg)


def _failing_once(real: Callable[..., Awaitable[Any]], error: str) -> Callable[..., Awaitable[Any]]:
    """`real`, except that its first call raises ConnectionError(error)."""
    failed = False

    async def call(*args: Any) -> Any:
        nonlocal failed
        if not failed:
            failed = True
            raise ConnectionError(error)
        return await real(*args)

    return call


def test_a_retry_reuses_every_upload_and_makes_one_post(
    three: tuple[config_module.Config, Account],
    tmp_path: Path,
    blossom_server: BlossomServer,
    inprocess_relay: InProcessRelay,
    mastodon_server: MastodonMock,
    bluesky_pds: Pds,
) -> None:
    """G2 with images: the uploads are part of the stored payload, so the attempt after a
    failed one sends the same note, status and record, and uploads nothing again.

    Nostr and Bluesky fail as their connection fails, once, in the publisher: a relay really
    stopped would make nostr-sdk wait 10 ± 3 s (its own reconnect delay) before the retry
    could reach it again, restarted or not."""
    cfg, account = three
    path = tmp_path / "photo.png"
    path.write_bytes(photo("PNG", (90, 60)))
    conn = queue.open_db(cfg)
    created = writing.create_post(
        conn, cfg, "Second time lucky", schedule=None, draft=True,
        platforms=["nostr", "mastodon", "bluesky"], account=None,
        tz=cfg.timezone, now=NOW, extras=Extras(images=[ImageSpec(str(path), "Dots")]),
    )  # fmt: skip
    conn.execute("UPDATE deliveries SET due_at_ms = ?", (int(T0 * 1000),))
    clock = Clock(T0 + 1)
    uploads = bluesky_pds.requests("com.atproto.repo.uploadBlob")
    # Every platform fails its first publish, after the images are up.
    mastodon_server.add_fault({"type": "status", "status": 503})
    engine = Engine(cfg, conn, clock=clock)
    bluesky = engine.pool.get("bluesky", "default")
    bluesky._put = _failing_once(bluesky._put, "the PDS went away")  # type: ignore[attr-defined]
    nostr = engine.pool.get("nostr", "default")
    nostr._send = _failing_once(nostr._send, "the relay went away")  # type: ignore[attr-defined]
    first = deliver(engine, engine.claim_due(5))
    assert sorted(d.state for d in first) == ["retry", "retry", "retry"]
    payloads = dict(conn.execute("SELECT platform, payload FROM deliveries").fetchall())

    clock.advance(600)
    second = deliver(engine, engine.claim_due(5))
    assert sorted(d.state for d in second) == ["sent", "sent", "sent"]
    assert dict(conn.execute("SELECT platform, payload FROM deliveries").fetchall()) == payloads

    assert len(blossom_server.uploads) == 1
    assert bluesky_pds.requests("com.atproto.repo.uploadBlob") == uploads + 1
    [status] = mastodon_server.statuses()
    assert [m["id"] for m in status["media_attachments"]] == json.loads(payloads["mastodon"])[
        "media_ids"
    ]
    assert len(bluesky_pds.list_records(account.did)) == 1
    [event] = inprocess_relay.fetch_events()
    assert event == json.loads(payloads["nostr"])
    assert created.post_id and _nothing_stored(cfg)


def test_plur_queue_now_and_show_with_images(
    three: tuple[config_module.Config, Account], run: Run, tmp_path: Path, clock: Clock
) -> None:
    cfg, _ = three
    path = tmp_path / "photo.webp"
    path.write_bytes(photo("WEBP", (64, 48), orientation=1))
    made = run(post_cli, "Later", "-p", "mastodon,bluesky", "--image", str(path), "--alt", "Dots",
               "--cw", "flashing colours", "-s", "1h")  # fmt: skip
    assert made.exit_code == 0, made.output
    post_id = made.stdout.split(":")[1]
    [stored] = media_stored(cfg.db_path).values()  # on PostgreSQL a row, not a file
    assert not has_location(stored)
    shown = run(queue_cli, "show", post_id)
    assert "warning:    flashing colours" in shown.stdout
    assert "  1. photo.webp: image/webp," in shown.stdout and "64×48" in shown.stdout
    assert "     alt: Dots" in shown.stdout
    sent = run(queue_cli, "now", post_id)
    assert sent.exit_code == 0, sent.output
    assert [line.split(":")[0] for line in sent.stdout.splitlines()] == ["mastodon", "bluesky"]
    assert _nothing_stored(cfg)
