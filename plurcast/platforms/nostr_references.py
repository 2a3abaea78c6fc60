"""The Nostr events `--reply-to` can name: `note1…`, `nevent1…` (with its relay and author
hints), 64 hex characters — any of them after `nostr:` — or a web link whose path holds a
`note1…`/`nevent1…` (njump.me/note1…, primal.net/e/nevent1…). Pure Python, no SDK."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from plurcast.platforms.nip19 import decode_event, is_hex64
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.config import Config
    from plurcast.thread.references import Link

SHAPES = "note1…/nevent1…"
WHAT = "a Nostr event"
_NIP19 = re.compile(r"(?:note|nevent)1[02-9ac-hj-np-z]+", re.IGNORECASE)


class NostrEvent(Value):
    event_id: str  # 64 lower-case hex
    relays: tuple[str, ...] = ()
    author: str | None = None  # 64 lower-case hex

    @property
    def platform(self) -> str:
        return "nostr"

    def check_account(self, cfg: Config, account: str) -> None:
        """Any account can answer any event (relays are asked when the reply is prepared)."""


def reference(text: str) -> NostrEvent | None:
    ref = text[len("nostr:") :] if text.lower().startswith("nostr:") else text
    if is_hex64(ref):
        return NostrEvent(ref.lower())
    pointer = decode_event(ref)
    if pointer is None:
        return None
    return NostrEvent(pointer.event_id, pointer.relays, pointer.author)


def link_reference(link: Link) -> NostrEvent | None:
    for segment in link.segments:
        if _NIP19.fullmatch(segment):
            found = reference(segment)
            if found is not None:
                return found
    return None
