"""plurcast.thread.references, each platform's *_references module and platforms.nip19:
what a --reply-to reference names."""

from __future__ import annotations

import nostr_sdk
import pytest

from plurcast.errors import EXIT_INVALID, InvalidInput
from plurcast.platforms.bluesky_references import BlueskyPost
from plurcast.platforms.mastodon_references import MastodonStatus
from plurcast.platforms.nip19 import bech32_payload, decode_event
from plurcast.platforms.nostr_references import NostrEvent
from plurcast.thread.references import OurPost, parse

KEYS = nostr_sdk.Keys.parse("11" * 32)
EVENT = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "hello").finalize(KEYS)
EVENT_HEX = EVENT.id().to_hex()
NOTE = EVENT.id().to_bech32()
PUBKEY = KEYS.public_key().to_hex()
RELAYS = ["wss://relay.example", "ws://127.0.0.1:7777"]
NEVENT = nostr_sdk.Nip19Event(
    EVENT.id(), KEYS.public_key(), nostr_sdk.Kind(1), [nostr_sdk.RelayUrl.parse(u) for u in RELAYS]
).to_bech32()


# --- nip19 ------------------------------------------------------------------------------------


def test_note_decodes_to_the_event_id() -> None:
    pointer = decode_event(NOTE)
    assert pointer is not None
    assert pointer.event_id == EVENT_HEX
    assert pointer.relays == ()
    assert decode_event(NOTE.upper()) == pointer


def test_nevent_carries_relays_author_and_kind() -> None:
    assert len(NEVENT) > 90  # longer than BIP-173 allows: NIP-19 lifts the cap
    pointer = decode_event(NEVENT)
    assert pointer is not None
    assert pointer.event_id == EVENT_HEX
    assert [r.rstrip("/") for r in pointer.relays] == RELAYS
    assert pointer.author == PUBKEY
    assert pointer.kind == 1


@pytest.mark.parametrize(
    "text",
    [
        NOTE[:-1] + ("q" if NOTE[-1] != "q" else "p"),  # checksum
        "note1" + NOTE[5:].upper(),  # mixed case
        KEYS.secret_key().to_bech32(),  # an nsec is not an event
        KEYS.public_key().to_bech32(),
        "note1",
        "",
    ],
)
def test_what_is_not_an_event_pointer(text: str) -> None:
    assert decode_event(text) is None


def test_bech32_keeps_bip173s_cap_for_keys() -> None:
    nsec = KEYS.secret_key().to_bech32()
    assert bech32_payload(nsec, "nsec") == bytes.fromhex("11" * 32)
    assert bech32_payload(NEVENT, "nevent") is None  # over 90 characters
    assert bech32_payload(NEVENT, "nevent", 5000) is not None


# --- parse --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3f2a9c1e", OurPost("3f2a9c1e")),
        ("3F2A9C1E-8B7D", OurPost("3f2a9c1e-8b7d")),
        ("3f2a9c1e-8b7d-4c55-9a1e-2b6f0d4c7e11", OurPost("3f2a9c1e-8b7d-4c55-9a1e-2b6f0d4c7e11")),
        ("12345678", OurPost("12345678")),  # ours if we have it, else a Mastodon id
        (NOTE, NostrEvent(EVENT_HEX)),
        (f"nostr:{NOTE}", NostrEvent(EVENT_HEX)),
        (EVENT_HEX, NostrEvent(EVENT_HEX)),
        (EVENT_HEX.upper(), NostrEvent(EVENT_HEX)),
        (f"https://njump.me/{NOTE}", NostrEvent(EVENT_HEX)),
        ("109876543210987654", MastodonStatus("109876543210987654", None)),
        ("123", MastodonStatus("123", None)),
        (
            "https://mastodon.example/@alice/109876543210987654",
            MastodonStatus("109876543210987654", "mastodon.example"),
        ),
        (
            "https://Mastodon.Example:8443/@bob@elsewhere.social/42/",
            MastodonStatus("42", "mastodon.example:8443"),
        ),
        (
            "https://mastodon.example/users/alice/statuses/7",
            MastodonStatus("7", "mastodon.example"),
        ),
        ("http://127.0.0.1:3000/web/statuses/9", MastodonStatus("9", "127.0.0.1:3000")),
        (
            "at://did:plc:abc123/app.bsky.feed.post/3kabcdefghi2a",
            BlueskyPost("did:plc:abc123", "3kabcdefghi2a"),
        ),
        (
            "at://Alice.bsky.social/app.bsky.feed.post/3kabcdefghi2a",
            BlueskyPost("alice.bsky.social", "3kabcdefghi2a"),
        ),
        (
            "https://bsky.app/profile/alice.bsky.social/post/3kabcdefghi2a",
            BlueskyPost("alice.bsky.social", "3kabcdefghi2a"),
        ),
        (
            "https://bsky.app/profile/did:plc:abc123/post/3kabcdefghi2a",
            BlueskyPost("did:plc:abc123", "3kabcdefghi2a"),
        ),
    ],
)
def test_parse(text: str, expected: object) -> None:
    assert parse(text) == expected


def test_nevent_keeps_its_hints() -> None:
    ref = parse(NEVENT)
    assert isinstance(ref, NostrEvent)
    assert ref.author == PUBKEY
    assert len(ref.relays) == 2


def test_bluesky_uri_of_a_web_link() -> None:
    ref = parse("https://bsky.app/profile/alice.test/post/3kabc")
    assert isinstance(ref, BlueskyPost)
    assert ref.uri == "at://alice.test/app.bsky.feed.post/3kabc"
    assert parse(ref.web_url) == ref  # the link a sent post records reads back as the post


def test_eight_digits_fall_back_to_mastodon() -> None:
    assert OurPost("12345678").as_theirs() == MastodonStatus("12345678", None)
    assert OurPost("3f2a9c1e").as_theirs() is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("hello", "cannot tell what"),
        ("", "cannot tell what"),
        ("3f2a9c1", "cannot tell what"),  # 7 characters: too short an id, not digits
        ("3f2a9c1e8b7d", "cannot tell what"),  # a uuid has a dash there
        ("at://did:plc:abc/app.bsky.actor.profile/self", "at:// link to a post"),
        ("at://not a handle/app.bsky.feed.post/3k", "neither a DID nor a Bluesky handle"),
        ("at://-bad-/app.bsky.feed.post/3kabc", "neither a DID nor a Bluesky handle"),
        ("https://bsky.app/profile/alice.test", "Bluesky post's link"),
        ("https://mastodon.example/about", "not a link to a Nostr event"),
        ("ftp://mastodon.example/@a/1", "not a web link"),
        ("https://host:notaport/@a/1", "not a link"),
        ("note1qqqq", "cannot tell what"),
    ],
)
def test_what_parse_refuses(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(text)
    assert caught.value.exit_code == EXIT_INVALID
    assert why in caught.value.message
    assert "note1" in (caught.value.hint or "")
