"""What the delivery engine needs from a platform, and what a platform tells it back.

The engine calls `prepare` once, at a delivery's first attempt, and stores the
payload it returns before any byte goes out; every attempt, including re-sends
after a crash, calls `publish` with that stored payload. A platform therefore
makes the payload carry whatever lets the network recognise a re-send as the
same post (a signed Nostr event id, a Mastodon Idempotency-Key, a Bluesky rkey).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.media.store import MediaReader


class OutcomeKind(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # try again later with backoff
    PERMANENT = "permanent"  # retrying cannot help: give up now, with the reason
    RATE_LIMITED = "rate_limited"  # try again after `retry_after`, without counting it a failure


class Reply(Value):
    """What a reply's payload links to: a sent delivery of ours, or someone's post.

    For ours, the parent's remote id (and Bluesky CID) and its payload as sent, which names
    the thread's root; for someone else's, the `--reply-to` reference as the user gave it
    (`plurcast.thread.references.parse` reads it), looked up when the payload is prepared.
    """

    remote_id: str | None = None
    remote_cid: str | None = None
    payload: str | None = None
    reference: str | None = None


class Work(Value):
    """One delivery as a platform sees it."""

    delivery_id: int
    post_id: str
    platform: str
    account: str
    content: str
    metadata: Mapping[str, Any] = MappingProxyType({})
    reply: Reply | None = None
    # Where the post's images are kept (metadata "images" names them by sha256).
    media: MediaReader | None = None
    # What preparing it came to besides the payload, for the delivery's history (e.g. why a
    # link card is missing): the adapter adds to it, the engine records it with the attempt.
    notes: dict[str, str] | None = None


class Outcome(Value):
    kind: OutcomeKind
    remote_id: str | None = None  # e.g. note1…, a status id, an at:// uri
    remote_url: str | None = None
    remote_cid: str | None = None  # Bluesky: the CID of the record stored, for replies to it
    error: str | None = None  # one line, for people: "relay.example: blocked: spam"
    retry_after: float | None = None  # seconds the platform asked us to wait
    hold_for: float | None = (
        None  # seconds this account must not post (quota used up), even on success
    )
    auth: bool = False  # permanent because the credentials were refused
    detail: Mapping[str, str] = MappingProxyType({})  # e.g. relay url -> its answer


class Publisher(Protocol):
    """One connected client for one (platform, account), reused for every delivery."""

    platform: str
    account: str
    timeout: float  # publish returns within about this many seconds

    async def prepare(self, work: Work) -> str:
        """The payload to store and (re-)send; called once per delivery."""
        ...

    async def publish(self, payload: str, media: MediaReader | None = None) -> Outcome:
        """Send the stored payload; platform failures are outcomes, never exceptions.
        `media` is given when the post has images (a platform may need them again)."""
        ...

    async def close(self) -> None: ...


# What a server's own message is cut to in an outcome's error (Mastodon's and Bluesky's
# explanations; the engine caps every error text it stores besides).
MAX_REASON_CHARS = 300


def one_line(text: str, limit: int | None = None) -> str:
    """A reason as one line for an Outcome: runs of blank space become one space, one longer
    than `limit` characters is cut, an empty one says so."""
    line = " ".join(text.split()) or "(no reason given)"
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"
