"""Bluesky images, link cards, labels and languages, against the real PDS and its record validation.

The PDS itself says where the limits are (2,000,000 bytes per image, 4 images, langs ≤ 3): each
limit plurcast checks at write time is shown here to be the PDS's own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plurcast import config as config_module
from plurcast import queue, writing
from plurcast.engine import Engine
from plurcast.platforms.base import OutcomeKind, Work
from plurcast.platforms.bluesky import BlueskyPublisher
from plurcast.validation import Extras
from tests.helpers import NOW, T0, Clock, FileMedia, deliver, secret_file, stored_images
from tests.images import photo
from tests.peers.bluesky import Account, Pds
from tests.peers.pages import PageServer, og_page

UPLOAD_BLOB = "com.atproto.repo.uploadBlob"


@pytest.fixture
def account(bluesky_pds: Pds) -> Account:
    return bluesky_pds.create_account()


@pytest.fixture
def publisher(bluesky_pds: Pds, account: Account, tmp_path: Path) -> BlueskyPublisher:
    return BlueskyPublisher(
        account.handle,
        lambda: account.app_password,
        pds=bluesky_pds.url,
        session_file=tmp_path / "session",
        cards_allow_private=True,
    )


@pytest.fixture
def media(tmp_path: Path) -> FileMedia:
    return FileMedia(tmp_path / "media")


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _send(publisher: BlueskyPublisher, work: Work) -> tuple[str, Any]:
    try:
        payload = await publisher.prepare(work)
        return payload, await publisher.publish(payload, work.media)
    finally:
        await publisher.close()


def _work(text: str, metadata: dict[str, Any], media: FileMedia | None = None) -> Work:
    return Work(7, "post-7", "bluesky", "default", text, metadata, media=media, notes={})


def _record(bluesky_pds: Pds, account: Account) -> dict[str, Any]:
    [record] = bluesky_pds.list_records(account.did)
    value: dict[str, Any] = record["value"]
    return value


def _cid(data: bytes) -> str:
    """The CID a PDS gives a blob: CIDv1, raw codec, sha2-256, base32."""
    raw = bytes([1, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def _put(publisher: BlueskyPublisher, rkey: str, embed: dict[str, Any]) -> Any:
    record = {
        "$type": "app.bsky.feed.post",
        "text": "limits",
        "createdAt": "2026-11-22T10:04:43.000Z",
        "embed": embed,
    }

    async def put() -> Any:
        try:
            await publisher.session.client()
            body = {"repo": publisher.session.did, "collection": "app.bsky.feed.post", "rkey": rkey}
            return await publisher.publish(json.dumps({**body, "record": record}))
        finally:
            await publisher.close()

    return _run(put())


def test_images_carry_alt_aspect_ratio_labels_languages_and_the_warning_first(
    publisher: BlueskyPublisher, media: FileMedia, bluesky_pds: Pds, account: Account
) -> None:
    entries = stored_images(media, "A kite", "")
    metadata = {"images": entries, "cw": "birds", "label": "nudity", "langs": ["en", "pt-BR"]}
    _, outcome = _run(_send(publisher, _work("Look at #kites", metadata, media)))
    assert outcome.kind is OutcomeKind.SENT, outcome.error
    value = _record(bluesky_pds, account)
    assert value["text"] == "CW: birds\n\nLook at #kites"
    [tag] = value["facets"]  # the facet's byte range is in the text as sent, warning included
    assert value["text"].encode()[tag["index"]["byteStart"] : tag["index"]["byteEnd"]] == b"#kites"
    assert value["labels"]["values"] == [{"val": "nudity"}]
    assert value["langs"] == ["en", "pt-BR"]
    images = value["embed"]["images"]
    assert [i["alt"] for i in images] == ["A kite", ""]  # the lexicon wants the field
    # stored_images makes 80×60 and 81×60 photos turned by EXIF orientation 6
    assert [i["aspectRatio"] for i in images] == [
        {"width": 60, "height": 80},
        {"width": 60, "height": 81},
    ]
    data = media.read(entries[0]["sha256"])
    assert images[0]["image"]["ref"]["$link"] == _cid(data)


def test_the_pds_limits_are_the_ones_checked_at_write_time(
    publisher: BlueskyPublisher, media: FileMedia
) -> None:
    from plurcast.platforms import registry

    bluesky = registry.get("bluesky").capabilities.media
    assert bluesky is not None
    most = bluesky.max_image_bytes.default if bluesky.max_image_bytes else 0
    jpeg = photo("JPEG", (40, 30), metadata=False)

    def padded(size: int) -> bytes:  # the PDS counts the blob's bytes, not its pixels
        return jpeg[:-2] + b"\0" * (size - len(jpeg)) + jpeg[-2:]

    async def blob(data: bytes) -> dict[str, Any]:
        try:
            return await publisher._upload(data, "image/jpeg")
        finally:
            await publisher.close()

    at_limit, over = _run(blob(padded(most))), _run(blob(padded(most + 1)))
    embed: dict[str, Any] = {"$type": "app.bsky.embed.images"}
    one = [{"alt": "", "image": at_limit}]
    assert _put(publisher, "3n3maaaaaaa22", {**embed, "images": one}).kind == "sent"
    refused = _put(publisher, "3n3maaaaaaa23", {**embed, "images": [{"alt": "", "image": over}]})
    assert refused.kind == "permanent" and f"maximum {most}, got {most + 1}" in str(refused.error)
    four = [{"alt": "", "image": at_limit}] * bluesky.max_images.default
    assert _put(publisher, "3n3maaaaaaa24", {**embed, "images": four}).kind == "sent"
    five = _put(publisher, "3n3maaaaaaa25", {**embed, "images": [*four, four[0]]})
    assert five.kind == "permanent" and "maximum 4, got 5" in str(five.error)


def test_a_blob_the_pds_lost_is_uploaded_again_and_the_record_stays_the_same(
    publisher: BlueskyPublisher, media: FileMedia, bluesky_pds: Pds, account: Account
) -> None:
    """A PDS deletes blobs no record names after a while: a retry much later finds them gone
    (BlobNotFound) and uploads the same bytes again — the same CID, so the same record."""
    [entry] = stored_images(media, "Kept")
    data = media.read(entry["sha256"])
    image = {"$type": "blob", "ref": {"$link": _cid(data)}, "mimeType": "image/jpeg",
             "size": len(data)}  # fmt: skip
    record = {
        "$type": "app.bsky.feed.post",
        "text": "lost and found",
        "createdAt": "2026-11-22T10:04:43.000Z",
        "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "Kept", "image": image}]},
    }

    async def send(with_media: bool) -> Any:
        try:
            await publisher.session.client()
            body = {
                "repo": publisher.session.did,
                "collection": "app.bsky.feed.post",
                "rkey": "3n3mbbbbbbb22",
                "record": record,
                "plurcast_blobs": [{"sha256": entry["sha256"], "mime": "image/jpeg"}],
            }
            return await publisher.publish(json.dumps(body), media if with_media else None)
        finally:
            await publisher.close()

    lost = _run(send(with_media=False))
    assert lost.kind == "permanent" and "BlobNotFound" in lost.error
    found = _run(send(with_media=True))
    assert found.kind == "sent", found.error
    assert _record(bluesky_pds, account)["embed"]["images"][0]["image"]["ref"] == image["ref"]


def test_a_link_gets_a_card_with_its_thumbnail(
    publisher: BlueskyPublisher, page_server: PageServer, bluesky_pds: Pds, account: Account
) -> None:
    page_server.add("/kite.jpg", photo("JPEG", (300, 200)), content_type="image/jpeg")
    url = page_server.add("/story", og_page("Kites of Berlin", "A field guide", "/kite.jpg"))
    work = _work(f"Read this: {url}", {})
    _, outcome = _run(_send(publisher, work))
    assert outcome.kind is OutcomeKind.SENT, outcome.error
    external = _record(bluesky_pds, account)["embed"]["external"]
    assert (external["uri"], external["title"], external["description"]) == (
        url,
        "Kites of Berlin",
        "A field guide",
    )
    assert external["thumb"]["mimeType"] == "image/jpeg"
    assert work.notes == {}


def test_no_card_with_images_or_with_no_card(
    publisher: BlueskyPublisher, page_server: PageServer, media: FileMedia
) -> None:
    url = page_server.add("/story", og_page("Not fetched"))
    entries = stored_images(media, "x")
    payload, _ = _run(_send(publisher, _work(f"See {url}", {"images": entries}, media)))
    assert json.loads(payload)["record"]["embed"]["$type"] == "app.bsky.embed.images"
    payload, _ = _run(_send(publisher, _work(f"See {url}", {"card": False})))
    assert "embed" not in json.loads(payload)["record"]
    assert page_server.requests == []


Configure = Callable[[str], config_module.Config]


@pytest.fixture
def configure(
    write_config: Callable[[str], Path], isolated_home: Path, bluesky_pds: Pds, account: Account
) -> Configure:
    def write(extra: str = "") -> config_module.Config:
        password = secret_file(isolated_home / "bluesky.password", account.app_password)
        write_config(
            f'timezone = "UTC"\n[bluesky]\nhandle = "{account.handle}"\n'
            f'app_password_file = "{password}"\npds = "{bluesky_pds.url}"\ntimeout = 5\n{extra}'
        )
        return config_module.load()

    return write


def _deliver_now(cfg: config_module.Config, text: str, extras: Extras | None = None) -> str:
    conn = queue.open_db(cfg)
    created = writing.create_post(
        conn, cfg, text, schedule="2026-11-22 10:05", draft=False, platforms=["bluesky"],
        account=None, tz=cfg.timezone, now=NOW, extras=extras,
    )  # fmt: skip
    engine = Engine(cfg, conn, clock=Clock(T0 + 60))
    [result] = deliver(engine, engine.claim_due(5))
    assert result.state == "sent", result.outcome
    return created.post_id


def _notes(cfg: config_module.Config, post_id: str) -> dict[str, str]:
    post = queue.get(queue.open_db(cfg), post_id, history=True)
    [delivery] = post.deliveries
    [attempt] = delivery.history
    return attempt.notes


def test_a_page_that_fails_leaves_a_post_without_a_card_and_says_so(
    configure: Configure, page_server: PageServer, bluesky_pds: Pds, account: Account
) -> None:
    cfg = configure("cards_allow_private = true\n")
    missing = f"{page_server.url}/gone"
    post_id = _deliver_now(cfg, f"Broken link {missing}")
    assert "embed" not in _record(bluesky_pds, account)
    assert _notes(cfg, post_id) == {
        "card": f"posted without a link card: {missing} answered HTTP 404"
    }


def test_local_pages_are_not_fetched_unless_cards_allow_private(
    configure: Configure, page_server: PageServer
) -> None:
    cfg = configure()
    url = page_server.add("/intranet", og_page("Internal"))
    post_id = _deliver_now(cfg, f"Our wiki {url}")
    assert "private or local address" in _notes(cfg, post_id)["card"]
    assert page_server.requests == []  # nothing was fetched from this machine's network
