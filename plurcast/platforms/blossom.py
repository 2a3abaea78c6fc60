"""Blossom (BUD-01, BUD-02): a Nostr post's images uploaded to the account's file servers.

Nostr events carry text; images live on Blossom servers, addressed by the sha256 of their
bytes. Each upload is `PUT <server>/upload` with the bytes and an `Authorization: Nostr
<base64 event>` header: a kind-24242 event signed with the account's key, `t` = `upload`,
`x` = the blob's sha256 and an `expiration` a few minutes ahead, so the authorization is
good for this one blob, briefly, on any server (BUD-01 asks for events not scoped to one).

Every configured server is asked at once; the upload succeeds when at least one has the blob
(its blob descriptor names the same sha256), and the note links the first of them in
configuration order, with the others as fallbacks. A server that is down or says 5xx/429 makes
the whole upload a passing failure only when no server took the blob; one that refuses for good
(401/403 for our key, 402, 413 too large, 415 wrong type) is named in the error.

Synchronous HTTP (http.client) in worker threads: the event loop stays free meanwhile.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from plurcast import __version__
from plurcast.errors import InvalidInput, RuntimeFailure
from plurcast.value import Value

AUTH_KIND = 24242
# How long an upload's authorization is good for: long enough for a slow server.
AUTH_SECONDS = 600
# Answers after which asking again later cannot help.
PERMANENT_STATUSES = frozenset({400, 401, 402, 403, 413, 415})


# --- uploading -------------------------------------------------------------------------


class Uploaded(Value):
    """Where a blob is now: its URL on each server that took it, in configuration order."""

    urls: list[str]
    answers: Mapping[str, str] = MappingProxyType({})  # server → "ok" or why not


def authorization(keys: Any, digest: str, size: int, name: str, now: float) -> str:
    """The `Authorization` header for uploading the blob `digest`, signed with `keys`."""
    import nostr_sdk

    tags = [
        ["t", "upload"],
        ["x", digest],
        ["size", str(size)],
        ["expiration", str(int(now) + AUTH_SECONDS)],
    ]
    event = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(AUTH_KIND), f"Upload {name}")
        .tags([nostr_sdk.Tag.parse(tag) for tag in tags])
        .custom_created_at(nostr_sdk.Timestamp.from_secs(int(now) - 1))
        .finalize(keys)
    )
    return "Nostr " + base64.b64encode(str(event.as_json()).encode()).decode()


async def upload(
    servers: Sequence[str],
    data: bytes,
    *,
    mime: str,
    digest: str,
    keys: Any,
    name: str,
    timeout: float,
) -> Uploaded:
    """Upload `data` to every server at once; raises RuntimeFailure (try again later) or
    InvalidInput (no server will ever take it) when none has it."""
    import asyncio

    header = authorization(keys, digest, len(data), name, time.time())
    results = await asyncio.gather(
        *(
            asyncio.to_thread(_put, server, data, mime, digest, header, timeout)
            for server in servers
        )
    )
    urls = [url for url, _, _ in results if url is not None]
    answers = {server: reason for server, (_, reason, _) in zip(servers, results, strict=True)}
    if urls:
        return Uploaded(urls, answers)
    summary = "; ".join(f"{server}: {reason}" for server, reason in answers.items())
    if all(permanent for _, _, permanent in results):
        raise InvalidInput(
            f"no Blossom server took {name}: {summary}",
            "check [nostr] blossom_servers: each must accept uploads from this account's key",
        )
    raise RuntimeFailure(f"no Blossom server took {name} yet: {summary}")


def _put(
    server: str, data: bytes, mime: str, digest: str, header: str, timeout: float
) -> tuple[str | None, str, bool]:
    """(blob URL or None, "ok" or why not, whether the refusal is for good)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(server)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    path = parts.path.rstrip("/") + "/upload"
    try:
        conn.request(
            "PUT",
            path,
            body=data,
            headers={
                "Authorization": header,
                "Content-Type": mime,
                "Content-Length": str(len(data)),
                "X-SHA-256": digest,
                "User-Agent": f"plurcast/{__version__}",
            },
        )
        answer = conn.getresponse()
        body = answer.read(1_000_000)
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}", False
    finally:
        conn.close()
    if not 200 <= answer.status < 300:
        reason = answer.getheader("X-Reason") or body.decode(errors="replace").strip()[:200]
        said = f"HTTP {answer.status}" + (f": {' '.join(reason.split())}" if reason else "")
        return None, said, answer.status in PERMANENT_STATUSES
    try:
        descriptor = json.loads(body)
        url, found = descriptor["url"], descriptor["sha256"]
    except (ValueError, KeyError, TypeError):
        return None, f"HTTP {answer.status}, but no blob descriptor", False
    if found != digest or not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return None, f"HTTP {answer.status}, but the descriptor is for another blob", False
    return url, "ok", False
