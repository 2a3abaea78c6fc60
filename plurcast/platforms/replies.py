"""How each platform links a reply to the post it answers, from that post as it was stored.

A reply names its parent and its thread's root. The root is the parent's own root when the
parent is itself a reply — someone else's thread stays theirs — and the parent otherwise. Each
function reads the parent as the platform keeps it (a signed Nostr event, a Bluesky record)
and returns what goes into the reply; all of them are pure.

- Nostr (NIP-10, marked tags): `["e", root, relay, "root", pubkey]` on every reply, plus
  `["e", parent, relay, "reply", pubkey]` when the parent is not the root; `p` tags for the
  parent's author and every `p` of the parent.
- Bluesky: `reply = {"root": {uri, cid}, "parent": {uri, cid}}`, the strong references of
  records that exist (a PDS accepts a reply to nothing, so the CIDs must be the stored ones).
- Mastodon: `in_reply_to_id`, the parent's status id on the account's own instance; the
  server finds the root itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from plurcast.value import Value

ROOT, REPLY = "root", "reply"


class NostrParent(Value):
    """The event being answered: its id and author (hex; "" when unknown), and its tags."""

    event_id: str
    pubkey: str
    tags: Sequence[Sequence[str]] = ()

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> NostrParent:
        """From a NIP-01 event as JSON (our stored payload, or what a relay sent)."""
        tags = [[str(v) for v in tag] for tag in event.get("tags", []) if isinstance(tag, list)]
        return cls(str(event["id"]), str(event["pubkey"]), tags)


def _e_tags(tags: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    return [t for t in tags if len(t) >= 2 and t[0] == "e"]


def nostr_root(parent: NostrParent) -> tuple[str, str, str | None]:
    """(event id, relay hint, author or None) of the thread's root, as `parent` names it.

    A marked `root` tag wins; an old-style reply (NIP-10's deprecated positional `e` tags)
    names the root first; one marked only `reply` (as some clients write) names the
    earliest ancestor it knows; an event without such `e` tags is a root itself.
    """
    e_tags = _e_tags(parent.tags)
    for marker in (ROOT, None, REPLY):
        for tag in e_tags:
            found = tag[3] if len(tag) >= 4 and tag[3] else None
            if found == marker:
                author = tag[4] if len(tag) >= 5 and tag[4] else None
                return tag[1], tag[2] if len(tag) >= 3 else "", author
    return parent.event_id, "", parent.pubkey


def nostr_reply_tags(parent: NostrParent, relay: str) -> list[list[str]]:
    """The tags of a reply to `parent`, which can be found on `relay` (a hint; may be "")."""
    root_id, root_relay, root_author = nostr_root(parent)
    if root_id == parent.event_id:
        tags = [_e(parent.event_id, relay, ROOT, parent.pubkey)]
    else:
        tags = [
            _e(root_id, root_relay or relay, ROOT, root_author),
            _e(parent.event_id, relay, REPLY, parent.pubkey),
        ]
    people = [parent.pubkey] if parent.pubkey else []
    for tag in parent.tags:
        if len(tag) >= 2 and tag[0] == "p" and tag[1] not in people:
            people.append(tag[1])
    return tags + [["p", pubkey] for pubkey in people]


def _e(event_id: str, relay: str, marker: str, pubkey: str | None) -> list[str]:
    """A marked `e` tag; the author goes last, when known."""
    return ["e", event_id, relay, marker, *([pubkey] if pubkey else [])]


def strong_ref(uri: str, cid: str) -> dict[str, str]:
    return {"uri": uri, "cid": cid}


def bluesky_reply(
    parent_uri: str, parent_cid: str, parent_record: Mapping[str, Any]
) -> dict[str, Any]:
    """The `reply` of a record answering the post `parent_uri` (whose record is given)."""
    parent = strong_ref(parent_uri, parent_cid)
    root = parent
    theirs = parent_record.get("reply")
    if isinstance(theirs, Mapping):
        candidate = theirs.get("root")
        if (
            isinstance(candidate, Mapping)
            and isinstance(candidate.get("uri"), str)
            and isinstance(candidate.get("cid"), str)
        ):
            root = strong_ref(candidate["uri"], candidate["cid"])
    return {"root": root, "parent": parent}
