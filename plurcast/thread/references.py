"""What `--reply-to REF` points at, read from its shape alone (no database, no network).

- one of our posts: its id or a unique prefix of 8 or more characters;
- a Nostr event: `note1…`, `nevent1…` (with its relay and author hints), 64 hex characters,
  any of them after `nostr:`, or a web link whose path holds a `note1…`/`nevent1…`;
- a Bluesky post: `at://<did or handle>/app.bsky.feed.post/<rkey>` or
  `https://bsky.app/profile/<handle or did>/post/<rkey>`;
- a Mastodon status: its numeric id, or its link (`https://host/@user/<id>`,
  `https://host/users/<user>/statuses/<id>`, `https://host/web/statuses/<id>`).

Eight digits could be our id's first characters or a (very old) Mastodon status id: `parse`
reads them as ours, and `OurPost.as_mastodon` is what they mean if no post of ours has them.
Whether a Mastodon link is on the account's own instance, and what a Bluesky handle's DID
and a record's CID are, is for later: the first needs the config, the others the network.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from plurcast.errors import InvalidInput
from plurcast.platforms.nip19 import decode_event

BLUESKY_POST = "app.bsky.feed.post"
BLUESKY_WEB_HOSTS = frozenset({"bsky.app", "www.bsky.app"})
_UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_DIGITS = re.compile(r"[0-9]{1,32}")
_NIP19 = re.compile(r"(?:note|nevent)1[02-9ac-hj-np-z]+", re.IGNORECASE)
# atproto.com/specs: a record key; a DID; a handle (checked loosely: the server decides).
_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]+")
_HANDLE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*")
_MASTODON_PATHS = (
    re.compile(r"/@[^/]+/([0-9]+)"),
    re.compile(r"/users/[^/]+/statuses/([0-9]+)"),
    re.compile(r"/web/statuses/([0-9]+)"),
    re.compile(r"/web/@[^/]+/([0-9]+)"),
)
EXAMPLES = (
    "give a plurcast post id, note1…/nevent1…, an at:// or bsky.app link, "
    "or a Mastodon status link or id"
)


class OurPost(NamedTuple):
    """A post of ours, by id or prefix (resolved against the database)."""

    prefix: str

    def as_mastodon(self) -> MastodonStatus | None:
        """What the text means if it is no id of ours: a Mastodon status id, if all digits."""
        return MastodonStatus(self.prefix, None) if self.prefix.isdigit() else None


class NostrEvent(NamedTuple):
    event_id: str  # 64 lower-case hex
    relays: tuple[str, ...] = ()
    author: str | None = None  # 64 lower-case hex

    @property
    def platform(self) -> str:
        return "nostr"


class BlueskyPost(NamedTuple):
    actor: str  # a DID, or a handle to resolve
    rkey: str

    @property
    def platform(self) -> str:
        return "bluesky"

    @property
    def uri(self) -> str:
        return f"at://{self.actor}/{BLUESKY_POST}/{self.rkey}"


class MastodonStatus(NamedTuple):
    status_id: str
    host: str | None  # the server of the link (None for a bare id), lower case with its port

    @property
    def platform(self) -> str:
        return "mastodon"


PlatformRef = NostrEvent | BlueskyPost | MastodonStatus
Reference = OurPost | PlatformRef


def parse(text: str) -> Reference:
    """The reference `text` names, or InvalidInput (exit 3) saying what would be understood."""
    ref = text.strip()
    if ref.lower().startswith("nostr:"):
        ref = ref[len("nostr:") :]
    if _HEX64.fullmatch(ref):
        return NostrEvent(ref.lower())
    pointer = decode_event(ref)
    if pointer is not None:
        return NostrEvent(pointer.event_id, pointer.relays, pointer.author)
    if ref.startswith("at://"):
        return _at_uri(text, ref)
    if "://" in ref:
        return _link(text, ref)
    if _is_our_id(ref.lower()):
        return OurPost(ref.lower())
    if _DIGITS.fullmatch(ref):
        return MastodonStatus(ref, None)
    raise InvalidInput(f'cannot tell what "{text}" is to reply to', EXAMPLES)


def _is_our_id(text: str) -> bool:
    """A uuid4 or its first 8+ characters: hex digits, dashes where a uuid has them."""
    if not 8 <= len(text) <= len(_UUID_SHAPE):
        return False
    return all(
        (c == "-") if shape == "-" else c in "0123456789abcdef"
        for c, shape in zip(text, _UUID_SHAPE, strict=False)
    )


def _bad(text: str, why: str) -> InvalidInput:
    return InvalidInput(f'"{text}" is not a post to reply to ({why})', EXAMPLES)


def _at_uri(text: str, ref: str) -> BlueskyPost:
    authority, _, path = ref[len("at://") :].partition("/")
    collection, _, rkey = path.partition("/")
    if collection != BLUESKY_POST or not _RKEY.fullmatch(rkey):
        raise _bad(text, f"an at:// link to a post is at://<did or handle>/{BLUESKY_POST}/<key>")
    return BlueskyPost(_actor(text, authority), rkey)


def _actor(text: str, actor: str) -> str:
    if _DID.fullmatch(actor):
        return actor
    if _HANDLE.fullmatch(actor):
        return actor.lower()
    raise _bad(text, f'"{actor}" is neither a DID nor a Bluesky handle')


def _link(text: str, ref: str) -> Reference:
    try:
        parts = urlsplit(ref)
        port = parts.port
    except ValueError:
        raise _bad(text, "not a link") from None
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise _bad(text, "not a web link")
    segments = [s for s in parts.path.split("/") if s]
    for segment in segments:  # njump.me/note1…, primal.net/e/nevent1…, …
        if _NIP19.fullmatch(segment):
            pointer = decode_event(segment)
            if pointer is not None:
                return NostrEvent(pointer.event_id, pointer.relays, pointer.author)
    if host in BLUESKY_WEB_HOSTS:
        if len(segments) == 4 and segments[0] == "profile" and segments[2] == "post":
            if not _RKEY.fullmatch(segments[3]):
                raise _bad(text, "the post's key is not valid")
            return BlueskyPost(_actor(text, segments[1]), segments[3])
        raise _bad(text, "a Bluesky post's link is https://bsky.app/profile/<handle>/post/<key>")
    path = parts.path.rstrip("/")
    for pattern in _MASTODON_PATHS:
        match = pattern.fullmatch(path)
        if match:
            return MastodonStatus(match.group(1), host + (f":{port}" if port else ""))
    raise _bad(text, "not a link to a Nostr event, a Bluesky post or a Mastodon status")
