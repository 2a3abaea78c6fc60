"""The Bluesky posts `--reply-to` can name: `at://<did or handle>/app.bsky.feed.post/<rkey>`
or `https://bsky.app/profile/<handle or did>/post/<rkey>`. A handle's DID and the record's
CID are looked up when the reply is prepared."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from plurcast.thread.references import Unreadable
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.config import Config
    from plurcast.thread.references import Link

SHAPES = "an at:// or bsky.app link"
WHAT = "a Bluesky post"
POST_COLLECTION = "app.bsky.feed.post"
WEB_HOSTS = frozenset({"bsky.app", "www.bsky.app"})
# atproto.com/specs: a record key; a DID; a handle (domain labels, the last not starting
# with a digit), checked in lower case.
_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]+")
HANDLE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")


class BlueskyPost(Value):
    actor: str  # a DID, or a handle to resolve
    rkey: str

    @property
    def platform(self) -> str:
        return "bluesky"

    @property
    def uri(self) -> str:
        return f"at://{self.actor}/{POST_COLLECTION}/{self.rkey}"

    @property
    def web_url(self) -> str:
        """The post in the Bluesky app, as `link_reference` reads it back."""
        return f"https://bsky.app/profile/{self.actor}/post/{self.rkey}"

    def check_account(self, cfg: Config, account: str) -> None:
        """Any account can answer any post (the record is looked up when the reply is prepared)."""


def reference(text: str) -> BlueskyPost | None:
    if not text.startswith("at://"):
        return None
    authority, _, path = text[len("at://") :].partition("/")
    collection, _, rkey = path.partition("/")
    if collection != POST_COLLECTION or not _RKEY.fullmatch(rkey):
        raise Unreadable(f"an at:// link to a post is at://<did or handle>/{POST_COLLECTION}/<key>")
    return BlueskyPost(_actor(authority), rkey)


def link_reference(link: Link) -> BlueskyPost | None:
    if link.host not in WEB_HOSTS:
        return None
    segments = link.segments
    if len(segments) == 4 and segments[0] == "profile" and segments[2] == "post":
        if not _RKEY.fullmatch(segments[3]):
            raise Unreadable("the post's key is not valid")
        return BlueskyPost(_actor(segments[1]), segments[3])
    raise Unreadable("a Bluesky post's link is https://bsky.app/profile/<handle>/post/<key>")


def _actor(actor: str) -> str:
    if _DID.fullmatch(actor):
        return actor
    if HANDLE.fullmatch(actor.lower()):
        return actor.lower()
    raise Unreadable(f'"{actor}" is neither a DID nor a Bluesky handle')
