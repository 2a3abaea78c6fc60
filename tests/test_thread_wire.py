"""Threads and replies on the wire, each read back from the real server that stored them.

- Nostr: the relay's stored events, asked for by their `#e` root tag, with NIP-10 markers;
- Mastodon: mastodon_mock's /api/v1/statuses/:id/context, in order;
- Bluesky: the PDS's listRecords, each reply's root/parent the uri+cid of the records stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nostr_sdk
import pytest

from plurcast import config as config_module
from plurcast import queue
from plurcast.engine import Engine
from plurcast.models import PostStatus
from tests.helpers import ANSWER_TIMEOUT, T0, Clock, add_thread, deliver, secret_file
from tests.peers.bluesky import Account, Pds
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import NostrRelay, RawWebSocket, publish_raw

WriteConfig = Callable[[str], config_module.Config]


def post(
    conn: sqlite3.Connection,
    cfg: config_module.Config,
    text: str,
    platforms: Sequence[str],
    *,
    reply_to: str | None = None,
) -> list[str]:
    return add_thread(
        conn, cfg, text.split("\n---\n"), T0 + 1, platforms=platforms, reply_to=reply_to
    )


def drain(cfg: config_module.Config, conn: sqlite3.Connection) -> None:
    """Deliver everything claimable, round after round, as the daemon would."""
    engine = Engine(cfg, conn, clock=Clock(T0 + 10))
    while claims := engine.claim_due(16):
        assert {d.state for d in deliver(engine, claims)} == {"sent"}


THREAD = "One: the start.\n---\nTwo: the middle.\n---\nThree: the end."


# --- Nostr -------------------------------------------------------------------------------------


def req(url: str, flt: dict[str, Any]) -> list[dict[str, Any]]:
    """The relay's events matching one NIP-01 filter, as it sends them."""
    events = []
    with RawWebSocket(url) as ws:
        ws.send(["REQ", "q", flt])
        while True:
            message = ws.recv()
            if message[0] == "EOSE":
                return events
            if message[0] == "EVENT":
                events.append(message[2])


def test_nostr_thread_on_the_relay_by_its_root_tag(
    write_config: Callable[[str], Path], nostr_key: Path, nostr_relay: NostrRelay
) -> None:
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{nostr_relay.url}"]\n'
    )
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    ids = post(conn, cfg, THREAD, ["nostr"])
    drain(cfg, conn)
    notes = [queue.get(conn, i).deliveries[0].remote_id for i in ids]
    root_hex = nostr_sdk.EventId.parse(notes[0]).to_hex()
    replies = sorted(req(nostr_relay.url, {"#e": [root_hex]}), key=lambda e: e["content"])
    assert [e["content"] for e in replies] == ["Three: the end.", "Two: the middle."]
    two = next(e for e in replies if e["content"].startswith("Two"))
    three = next(e for e in replies if e["content"].startswith("Three"))
    me = two["pubkey"]
    assert [t for t in two["tags"] if t[0] == "e"] == [["e", root_hex, nostr_relay.url, "root", me]]
    assert [t for t in three["tags"] if t[0] == "e"] == [
        ["e", root_hex, nostr_relay.url, "root", me],
        ["e", two["id"], nostr_relay.url, "reply", me],
    ]
    assert ["p", me] in three["tags"]
    assert [e["id"] for e in req(nostr_relay.url, {"#e": [two["id"]]})] == [three["id"]]


def test_a_nostr_reply_to_someone_elses_reply_follows_their_root(
    write_config: Callable[[str], Path], nostr_key: Path, nostr_relay: NostrRelay
) -> None:
    them = nostr_sdk.Keys.generate()
    friend = nostr_sdk.Keys.generate().public_key().to_hex()
    their_root = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "their root").finalize(them)
    their_reply = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "their reply")
        .tags(
            [
                nostr_sdk.Tag.parse(["e", their_root.id().to_hex(), "", "root"]),
                nostr_sdk.Tag.parse(["p", friend]),
            ]
        )
        .finalize(them)
    )
    import json

    for event in (their_root, their_reply):
        assert publish_raw(nostr_relay.url, json.loads(event.as_json()))[2] is True
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{nostr_relay.url}"]\n'
    )
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    [mine] = post(conn, cfg, "my answer", ["nostr"], reply_to=their_reply.id().to_bech32())
    drain(cfg, conn)
    [event] = req(nostr_relay.url, {"#e": [their_reply.id().to_hex()]})
    assert event["content"] == "my answer"
    assert [t for t in event["tags"] if t[0] == "e"] == [
        ["e", their_root.id().to_hex(), nostr_relay.url, "root"],
        ["e", their_reply.id().to_hex(), nostr_relay.url, "reply", them.public_key().to_hex()],
    ]
    assert [t for t in event["tags"] if t[0] == "p"] == [
        ["p", them.public_key().to_hex()],
        ["p", friend],
    ]
    assert queue.get(conn, mine).metadata["reply_to"] == their_reply.id().to_bech32()


# --- Mastodon ----------------------------------------------------------------------------------


@pytest.fixture
def mastodon_cfg(
    write_config: Callable[[str], Path], isolated_home: Path, mastodon_server: MastodonMock
) -> config_module.Config:
    token = secret_file(isolated_home / "alice.token", TOKENS["alice"])
    write_config(
        f'timezone = "UTC"\n[mastodon]\ninstance = "{mastodon_server.url}"\n'
        f'token_file = "{token}"\ntimeout = {ANSWER_TIMEOUT:g}\n'
    )
    return config_module.load()


def test_mastodon_thread_context_in_order(
    mastodon_cfg: config_module.Config, mastodon_server: MastodonMock
) -> None:
    conn = queue.open_db(mastodon_cfg)
    ids = post(conn, mastodon_cfg, THREAD, ["mastodon"])
    drain(mastodon_cfg, conn)
    status_ids = [queue.get(conn, i).deliveries[0].remote_id for i in ids]
    context = mastodon_server.request(
        "GET", f"/api/v1/statuses/{status_ids[2]}/context", token=TOKENS["alice"]
    )
    assert [s["id"] for s in context["ancestors"]] == status_ids[:2]
    assert [s["in_reply_to_id"] for s in context["ancestors"]] == [None, status_ids[0]]
    down = mastodon_server.request(
        "GET", f"/api/v1/statuses/{status_ids[0]}/context", token=TOKENS["alice"]
    )
    assert [s["id"] for s in down["descendants"]] == status_ids[1:]


def test_mastodon_reply_to_a_status_link_on_the_instance(
    mastodon_cfg: config_module.Config, mastodon_server: MastodonMock
) -> None:
    theirs = mastodon_server.request(
        "POST", "/api/v1/statuses", token=TOKENS["bob"], body={"status": "bob asks"}
    )
    link = f"{mastodon_server.url}/@bob/{theirs['id']}"
    conn = queue.open_db(mastodon_cfg)
    post(conn, mastodon_cfg, "alice answers", ["mastodon"], reply_to=link)
    drain(mastodon_cfg, conn)
    [answer] = mastodon_server.statuses()
    assert answer["in_reply_to_id"] == theirs["id"]


# --- Bluesky -----------------------------------------------------------------------------------


@pytest.fixture
def bluesky_account(bluesky_pds: Pds) -> Account:
    return bluesky_pds.create_account()


@pytest.fixture
def bluesky_cfg(
    write_config: Callable[[str], Path],
    isolated_home: Path,
    bluesky_pds: Pds,
    bluesky_account: Account,
) -> config_module.Config:
    password = secret_file(isolated_home / "bluesky.password", bluesky_account.app_password)
    write_config(
        f'timezone = "UTC"\n[bluesky]\nhandle = "{bluesky_account.handle}"\n'
        f'app_password_file = "{password}"\npds = "{bluesky_pds.url}"\ntimeout = 5\n'
    )
    return config_module.load()


def ref(record: dict[str, Any]) -> dict[str, str]:
    return {"uri": record["uri"], "cid": record["cid"]}


def test_bluesky_thread_reply_refs_are_the_stored_records(
    bluesky_cfg: config_module.Config, bluesky_pds: Pds, bluesky_account: Account
) -> None:
    conn = queue.open_db(bluesky_cfg)
    ids = post(conn, bluesky_cfg, THREAD, ["bluesky"])
    drain(bluesky_cfg, conn)
    records = {r["value"]["text"]: r for r in bluesky_pds.list_records(bluesky_account.did)}
    one, two, three = (records[t] for t in THREAD.split("\n---\n"))
    assert "reply" not in one["value"]
    assert two["value"]["reply"] == {"root": ref(one), "parent": ref(one)}
    assert three["value"]["reply"] == {"root": ref(one), "parent": ref(two)}
    stored = [queue.get(conn, i).deliveries[0] for i in ids]
    assert [d.remote_id for d in stored] == [one["uri"], two["uri"], three["uri"]]


def test_bluesky_reply_to_someone_elses_reply_follows_their_root(
    bluesky_cfg: config_module.Config, bluesky_pds: Pds, bluesky_account: Account
) -> None:
    from atproto import Client, models

    other = bluesky_pds.create_account()
    client = Client(bluesky_pds.url)
    client.login(other.handle, other.password, fetch_bsky_profile=False)

    def create(record: dict[str, Any]) -> Any:
        data = models.ComAtprotoRepoCreateRecord.Data(
            repo=other.did, collection="app.bsky.feed.post", record=record
        )
        return client.com.atproto.repo.create_record(data)

    at = "2026-11-22T10:00:00.000Z"
    root = create({"$type": "app.bsky.feed.post", "text": "their root", "createdAt": at})
    strong = {"uri": root.uri, "cid": root.cid}
    reply = create(
        {
            "$type": "app.bsky.feed.post",
            "text": "their reply",
            "createdAt": at,
            "reply": {"root": strong, "parent": strong},
        }
    )
    rkey = reply.uri.rsplit("/", 1)[1]
    link = f"https://bsky.app/profile/{other.handle}/post/{rkey}"
    conn = queue.open_db(bluesky_cfg)
    [mine] = post(conn, bluesky_cfg, "my answer", ["bluesky"], reply_to=link)
    drain(bluesky_cfg, conn)
    [record] = bluesky_pds.list_records(bluesky_account.did)
    assert record["value"]["reply"] == {
        "root": {"uri": root.uri, "cid": root.cid},
        "parent": {"uri": reply.uri, "cid": reply.cid},
    }
    assert queue.get(conn, mine).status == PostStatus.POSTED
