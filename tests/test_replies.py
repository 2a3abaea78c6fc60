"""plurcast.platforms.replies: the reply links of each platform, from the parent as stored."""

from __future__ import annotations

import json

import nostr_sdk

from plurcast.platforms.replies import (
    NostrParent,
    bluesky_reply,
    nostr_reply_tags,
    nostr_root,
)

ME = nostr_sdk.Keys.parse("11" * 32)
THEM = nostr_sdk.Keys.parse("22" * 32)
RELAY = "wss://relay.example"


def event(keys: nostr_sdk.Keys, tags: list[list[str]]) -> dict[str, object]:
    built = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "text")
        .tags([nostr_sdk.Tag.parse(t) for t in tags])
        .finalize(keys)
    )
    parsed: dict[str, object] = json.loads(built.as_json())
    return parsed


def hex_of(keys: nostr_sdk.Keys) -> str:
    return str(keys.public_key().to_hex())


# --- Nostr ------------------------------------------------------------------------------------


def test_a_reply_to_a_root_marks_it_root_only() -> None:
    root = event(ME, [])
    tags = nostr_reply_tags(NostrParent.from_event(root), RELAY)
    assert tags == [["e", root["id"], RELAY, "root", hex_of(ME)], ["p", hex_of(ME)]]


def test_part_three_names_the_root_and_its_parent() -> None:
    part1 = event(ME, [])
    part2 = event(ME, nostr_reply_tags(NostrParent.from_event(part1), RELAY))
    tags = nostr_reply_tags(NostrParent.from_event(part2), RELAY)
    assert tags == [
        ["e", part1["id"], RELAY, "root", hex_of(ME)],
        ["e", part2["id"], RELAY, "reply", hex_of(ME)],
        ["p", hex_of(ME)],
    ]


def test_every_later_part_keeps_the_same_root() -> None:
    parent = event(ME, [])
    root_id = parent["id"]
    for _ in range(4):
        tags = nostr_reply_tags(NostrParent.from_event(parent), RELAY)
        assert tags[0][:4] == ["e", root_id, RELAY, "root"]
        parent = event(ME, tags)


def test_a_reply_to_someone_elses_reply_follows_their_root() -> None:
    their_root = event(THEM, [])
    their_reply = event(
        THEM,
        [["e", str(their_root["id"]), "wss://their.relay", "root", hex_of(THEM)], ["p", "ab" * 32]],
    )
    tags = nostr_reply_tags(NostrParent.from_event(their_reply), RELAY)
    assert tags[0] == ["e", their_root["id"], "wss://their.relay", "root", hex_of(THEM)]
    assert tags[1] == ["e", their_reply["id"], RELAY, "reply", hex_of(THEM)]
    # Their author first, then everyone they tagged.
    assert tags[2:] == [["p", hex_of(THEM)], ["p", "ab" * 32]]


def test_a_p_tag_is_not_repeated() -> None:
    parent = event(THEM, [["p", hex_of(THEM)], ["p", "cd" * 32], ["p", "cd" * 32]])
    tags = nostr_reply_tags(NostrParent.from_event(parent), "")
    assert [t for t in tags if t[0] == "p"] == [["p", hex_of(THEM)], ["p", "cd" * 32]]


def test_old_style_positional_tags_name_the_root_first() -> None:
    parent = NostrParent("ee" * 32, "aa" * 32, [["e", "01" * 32, ""], ["e", "02" * 32, ""]])
    assert nostr_root(parent) == ("01" * 32, "", None)
    tags = nostr_reply_tags(parent, RELAY)
    assert tags[0] == ["e", "01" * 32, RELAY, "root"]  # no author known for it
    assert tags[1] == ["e", "ee" * 32, RELAY, "reply", "aa" * 32]


def test_a_reply_marked_only_reply_treats_that_as_the_root() -> None:
    parent = NostrParent("ee" * 32, "aa" * 32, [["e", "03" * 32, "", "reply"]])
    assert nostr_root(parent)[0] == "03" * 32


def test_a_mention_is_no_root() -> None:
    parent = NostrParent("ee" * 32, "aa" * 32, [["e", "04" * 32, "", "mention"]])
    assert nostr_root(parent) == ("ee" * 32, "", "aa" * 32)


def test_the_tags_make_a_valid_signed_event() -> None:
    part2 = event(ME, nostr_reply_tags(NostrParent.from_event(event(ME, [])), RELAY))
    checked = nostr_sdk.Event.from_json(json.dumps(part2))
    assert checked.verify()


# --- Bluesky ----------------------------------------------------------------------------------

URI1 = "at://did:plc:me/app.bsky.feed.post/3kaaaaaaaaaa2"
URI2 = "at://did:plc:me/app.bsky.feed.post/3kbbbbbbbbbb2"


def test_a_reply_to_a_top_level_post_has_it_as_root_and_parent() -> None:
    reply = bluesky_reply(URI1, "cid1", {"text": "part 1", "createdAt": "…"})
    assert reply == {"root": {"uri": URI1, "cid": "cid1"}, "parent": {"uri": URI1, "cid": "cid1"}}


def test_a_reply_to_a_reply_keeps_its_root() -> None:
    record = {"text": "part 2", "reply": bluesky_reply(URI1, "cid1", {})}
    reply = bluesky_reply(URI2, "cid2", record)
    assert reply == {"root": {"uri": URI1, "cid": "cid1"}, "parent": {"uri": URI2, "cid": "cid2"}}


def test_a_malformed_reply_in_the_parent_makes_the_parent_the_root() -> None:
    for broken in ({"reply": "x"}, {"reply": {"root": {"uri": URI1}}}, {"reply": {}}):
        assert bluesky_reply(URI2, "cid2", broken)["root"] == {"uri": URI2, "cid": "cid2"}
