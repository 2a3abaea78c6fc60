"""Mastodon: images uploaded with their alt text while preparing, on a real mastodon_mock."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from plurcast.errors import ConfigError, RuntimeFailure
from plurcast.platforms import mastodon_media
from plurcast.platforms.base import OutcomeKind, Work
from plurcast.platforms.mastodon import MastodonPublisher
from tests.helpers import FileMedia, stored_images
from tests.images import has_location
from tests.peers.mastodon import TOKENS, MastodonMock

POST_ID = "5d7c6a1e-0000-4000-8000-000000000013"


def _media(tmp_path: Path) -> FileMedia:
    return FileMedia(tmp_path / "media")


def _entries(tmp_path: Path, *alts: str) -> list[dict[str, Any]]:
    return stored_images(_media(tmp_path), *alts)


def _publisher(
    server: MastodonMock, tmp_path: Path, token: str = TOKENS["alice"]
) -> MastodonPublisher:
    return MastodonPublisher(server.url, token)


def _status(server: MastodonMock, status_id: str) -> dict[str, Any]:
    found: dict[str, Any] = server.request(
        "GET", f"/api/v1/statuses/{status_id}", token=TOKENS["alice"]
    )
    return found


def test_images_go_up_with_their_alt_text_and_the_status_carries_the_options(
    mastodon_server: MastodonMock, tmp_path: Path
) -> None:
    entries = _entries(tmp_path, "A red kite over a field", "The same kite, landing")
    publisher = _publisher(mastodon_server, tmp_path)
    metadata = {"images": entries, "cw": "birds", "langs": ["pt-BR", "en"]}
    work = Work(
        13, POST_ID, "mastodon", "default", "Look at this", metadata, media=_media(tmp_path)
    )
    payload = asyncio.run(publisher.prepare(work))
    stored = json.loads(payload)
    assert len(stored["media_ids"]) == 2 and stored["spoiler_text"] == "birds"
    outcome = asyncio.run(publisher.publish(payload))
    assert outcome.kind is OutcomeKind.SENT, outcome.error
    again = asyncio.run(publisher.publish(payload))  # a re-send after a crash: the same status
    assert again.remote_id == outcome.remote_id
    status = _status(mastodon_server, str(outcome.remote_id))
    assert [m["description"] for m in status["media_attachments"]] == [
        "A red kite over a field",
        "The same kite, landing",
    ]
    assert [m["id"] for m in status["media_attachments"]] == stored["media_ids"]
    assert status["spoiler_text"] == "birds" and status["sensitive"] is True
    assert status["language"] == "pt"
    assert len(mastodon_server.statuses()) == 1
    for media, entry in zip(status["media_attachments"], entries, strict=True):
        with urllib.request.urlopen(media["url"], timeout=5) as answer:
            on_server = answer.read()
        assert on_server == _media(tmp_path).read(entry["sha256"])
        assert not has_location(on_server)


def test_a_202_is_polled_until_the_attachment_has_a_url(
    mastodon_server: MastodonMock, tmp_path: Path
) -> None:
    [entry] = _entries(tmp_path, "processing")
    publisher = _publisher(mastodon_server, tmp_path)
    upload = publisher._client.media_post(
        _media(tmp_path).read(entry["sha256"]), mime_type="image/jpeg"
    )
    media_id = str(upload["id"])
    # The next upload answers 202 with that attachment not yet processed; asking for it
    # answers 206 (still processing) twice, then the real attachment.
    mastodon_server.add_fault(
        {"type": "status", "status": 202, "body": {"id": media_id, "url": None}},
        path="/api/v2/media",
    )
    mastodon_server.add_fault(
        {"type": "status", "status": 206, "body": {"id": media_id, "url": None}},
        count=2,
        method="GET",
        path=f"/api/v1/media/{media_id}",
    )
    ids = asyncio.run(
        mastodon_media.upload_images(
            publisher.request, publisher._client, [entry], _media(tmp_path), poll_delays=[0] * 4
        )
    )
    assert ids == [media_id]


def test_processing_that_never_ends_is_a_transient_failure(
    mastodon_server: MastodonMock, tmp_path: Path
) -> None:
    [entry] = _entries(tmp_path, "slow")
    publisher = _publisher(mastodon_server, tmp_path)
    mastodon_server.add_fault(
        {"type": "status", "status": 202, "body": {"id": "404404", "url": None}},
        path="/api/v2/media",
    )
    mastodon_server.add_fault(
        {"type": "status", "status": 206, "body": {"id": "404404", "url": None}},
        count=None,
        method="GET",
        path="/api/v1/media/404404",
    )
    with pytest.raises(RuntimeFailure, match="still processing image 1"):
        asyncio.run(
            mastodon_media.upload_images(
                publisher.request, publisher._client, [entry], _media(tmp_path),
                poll_delays=[0] * 3,
            )
        )  # fmt: skip


def test_a_403_on_upload_names_the_write_media_scope(
    mastodon_server: MastodonMock, tmp_path: Path
) -> None:
    entries = _entries(tmp_path, "scoped")
    publisher = _publisher(mastodon_server, tmp_path)
    mastodon_server.add_fault(
        {
            "type": "status",
            "status": 403,
            "body": {"error": "This action is outside the authorized scopes"},
        },
        path="/api/v2/media",
    )
    work = Work(
        14, POST_ID, "mastodon", "default", "text", {"images": entries}, media=_media(tmp_path)
    )
    with pytest.raises(ConfigError, match="needs the write:media scope") as caught:
        asyncio.run(publisher.prepare(work))
    assert caught.value.exit_code == 2 and "README" in str(caught.value)
    assert mastodon_server.statuses() == []


def test_a_server_error_on_upload_is_retried_later(
    mastodon_server: MastodonMock, tmp_path: Path
) -> None:
    entries = _entries(tmp_path, "x")
    publisher = _publisher(mastodon_server, tmp_path)
    mastodon_server.add_fault({"type": "status", "status": 503}, path="/api/v2/media")
    work = Work(
        15, POST_ID, "mastodon", "default", "text", {"images": entries}, media=_media(tmp_path)
    )
    with pytest.raises(RuntimeFailure, match="HTTP 503"):
        asyncio.run(publisher.prepare(work))


def test_a_label_alone_marks_the_status_sensitive() -> None:
    assert mastodon_media.status_options({"label": "graphic-media"}) == {"sensitive": True}
    assert mastodon_media.status_options({}) == {}
