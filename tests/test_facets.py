"""Bluesky facets: links, mentions and tags at the right UTF-8 byte offsets (pure, no network).

A facet's range counts bytes of the UTF-8 text; anything non-ASCII before a link moves it by
more bytes than characters, and an offset counted in characters points into the wrong text.
"""

from __future__ import annotations

from typing import Any

from plurcast.platforms.bluesky_facets import LINK, MENTION, TAG, build_facets, mention_handles

DIDS = {"alice.test": "did:plc:alice", "bob.bsky.social": "did:plc:bob"}


def spans(text: str, facets: list[dict[str, Any]]) -> list[tuple[int, int, str, dict[str, str]]]:
    """(byteStart, byteEnd, the bytes they cover, feature) for each facet."""
    out = []
    for facet in facets:
        start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        [feature] = facet["features"]
        out.append((start, end, text.encode()[start:end].decode(), feature))
    return out


def test_ascii_text_offsets_equal_character_offsets() -> None:
    text = "see https://example.com/x?y=1, by @alice.test #python"
    assert spans(text, build_facets(text, DIDS)) == [
        (4, 29, "https://example.com/x?y=1", {"$type": LINK, "uri": "https://example.com/x?y=1"}),
        (34, 45, "@alice.test", {"$type": MENTION, "did": "did:plc:alice"}),
        (46, 53, "#python", {"$type": TAG, "tag": "python"}),
    ]


def test_umlauts_emoji_and_cjk_before_the_facets_shift_them_by_bytes() -> None:
    # "Grüße " is 6 characters but 8 bytes, "🎉" 1 character but 4 bytes, "東京" 2 but 6.
    text = "Grüße 🎉 aus 東京! https://example.com/straße. @alice.test #日本語 #café"
    facets = build_facets(text, DIDS)
    assert spans(text, facets) == [
        (
            25,
            52,
            "https://example.com/straße",
            {"$type": LINK, "uri": "https://example.com/straße"},
        ),
        (54, 65, "@alice.test", {"$type": MENTION, "did": "did:plc:alice"}),
        (66, 76, "#日本語", {"$type": TAG, "tag": "日本語"}),
        (77, 83, "#café", {"$type": TAG, "tag": "café"}),
    ]
    assert text.index("https") == 16  # the character offset: 9 short of the byte offset
    assert facets[-1]["index"]["byteEnd"] == len(text.encode())


def test_a_family_emoji_is_eighteen_bytes_before_a_mention() -> None:
    text = "👨‍👩‍👧 @bob.bsky.social"  # three emoji joined by two zero-width joiners
    assert spans(text, build_facets(text, DIDS)) == [
        (19, 35, "@bob.bsky.social", {"$type": MENTION, "did": "did:plc:bob"}),
    ]


def test_a_mention_without_a_did_stays_plain_text() -> None:
    text = "hi @carol.test and @alice.test"
    assert mention_handles(text) == ["carol.test", "alice.test"]
    assert spans(text, build_facets(text, DIDS)) == [
        (19, 30, "@alice.test", {"$type": MENTION, "did": "did:plc:alice"}),
    ]


def test_mentioned_handles_are_listed_once_in_lower_case() -> None:
    text = "@alice.test, @ALICE.test and @bob.bsky.social; mail me@example.com"
    assert mention_handles(text) == ["alice.test", "bob.bsky.social"]


def test_trailing_punctuation_and_digit_only_tags_are_not_part_of_facets() -> None:
    text = "Docs: https://atproto.com/specs! #2026 #v2! (https://example.com/a)"
    assert spans(text, build_facets(text, {})) == [
        (6, 31, "https://atproto.com/specs", {"$type": LINK, "uri": "https://atproto.com/specs"}),
        (39, 42, "#v2", {"$type": TAG, "tag": "v2"}),
        (45, 66, "https://example.com/a", {"$type": LINK, "uri": "https://example.com/a"}),
    ]


def test_text_without_links_mentions_or_tags_has_no_facets() -> None:
    assert build_facets("Schöne Grüße — nothing to link here.", DIDS) == []
