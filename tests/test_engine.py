"""The delivery engine against a real relay (nostr-sdk's in-process one), with an injected clock.

Each test names the guarantee it would catch breaking.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import changes, queue
from plurcast import config as config_module
from plurcast.engine import LEASE_SECONDS, Engine
from plurcast.models import DeliveryState
from plurcast.platforms.base import Work
from plurcast.pool import Lanes
from plurcast.store import rates, recording
from plurcast.store.connection import transaction
from tests.helpers import (
    ANSWER_TIMEOUT,
    DOWN_TIMEOUT,
    NOW,
    T0,
    Clock,
    add_post,
    deliver,
    free_port,
    row,
    secret_file,
)
from tests.peers.nostr import InProcessRelay

pytestmark = pytest.mark.usefixtures("backend")


WriteNostrConfig = Callable[..., config_module.Config]


@pytest.fixture
def nostr_config(write_config: Callable[[str], Path], nostr_key: Path) -> WriteNostrConfig:
    def write(
        relays: list[str],
        scheduling: str = "",
        min_relays: int = 1,
        timeout: float = ANSWER_TIMEOUT,
    ) -> config_module.Config:
        relay_list = ", ".join(f'"{r}"' for r in relays)
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = [{relay_list}]\n'
            f"timeout = {timeout:g}\nmin_relays = {min_relays}\n"
            f"[scheduling]\nretry_delay = 60\nmax_retries = 2\n{scheduling}"
        )
        return config_module.load()

    return write


def test_a_record_asked_to_refill_leases_the_next_due_delivery_of_its_platform(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """G1: the lane a delivery leaves is taken again in the transaction that records it, by
    the oldest due delivery, leased to this process like any claim; not when refill says no."""
    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    clock = Clock()
    first = add_post(conn, cfg, "first", T0 + 10)
    second = add_post(conn, cfg, "second", T0 + 20)
    third = add_post(conn, cfg, "third", T0 + 30)
    add_post(conn, cfg, "not yet", T0 + 3600)
    clock.advance(60)
    engine = Engine(cfg, conn, clock=clock)
    [claim] = engine.claim_due(1)
    assert claim.post_id == first

    async def run() -> list[tuple[str, str | None]]:
        try:
            done = await engine.deliver(claim, lambda: True)
            assert done.successor is not None
            last = await engine.deliver(done.successor, lambda: False)
            return [
                (done.state, done.successor.post_id),
                (last.state, None if last.successor is None else last.successor.post_id),
            ]
        finally:
            await engine.pool.close()

    assert asyncio.run(run()) == [("sent", second), ("sent", None)]
    assert [row(conn, p)[0] for p in (first, second, third)] == ["sent", "sent", "pending"]


def test_sends_due_posts_once_and_records_the_note_id(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    clock = Clock()
    due = add_post(conn, cfg, "due now ✨ Grüße", T0 + 60)
    later = add_post(conn, cfg, "not yet", T0 + 3600)
    clock.advance(60)
    engine = Engine(cfg, conn, clock=clock)
    claims = engine.claim_due(10)
    assert [c.post_id for c in claims] == [due]
    [result] = deliver(engine, claims)
    assert result.state == "sent"
    assert result.outcome is not None
    assert (result.outcome.remote_id or "").startswith("note1")
    state, attempts, _, error, _, remote_id, payload = row(conn, due)
    assert (state, attempts, error) == ("sent", 1, None)
    assert result.outcome.remote_id == remote_id
    assert payload is not None
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["due now ✨ Grüße"]
    assert row(conn, later)[0] == "pending"
    history = conn.execute("SELECT number, outcome FROM attempts").fetchall()
    assert history == [(1, "sent")]


def test_two_engines_never_claim_the_same_delivery(
    nostr_config: WriteNostrConfig, tmp_path: Path
) -> None:
    """G1: claims are disjoint however the two processes interleave."""
    cfg = nostr_config(["ws://127.0.0.1:1"])
    conn = queue.open_db(cfg)
    ids = {add_post(conn, cfg, f"p{i}", T0 + 1) for i in range(40)}
    clock = Clock(T0 + 5)
    a = Engine(cfg, queue.open_db(cfg), clock=clock, owner="host:1:1")
    b = Engine(cfg, queue.open_db(cfg), clock=clock, owner="host:2:2")
    taken: list[str] = []
    for _ in range(10):
        taken += [c.post_id for c in a.claim_due(3)]
        taken += [c.post_id for c in b.claim_due(2)]
    assert sorted(taken) == sorted(ids)
    owners = conn.execute(
        "SELECT lease_owner, count(*) FROM deliveries GROUP BY lease_owner ORDER BY 1"
    ).fetchall()
    assert owners == [("host:1:1", 24), ("host:2:2", 16)]


def test_a_crash_after_prepare_resends_the_same_event(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """G2: the payload committed before publishing is what every later attempt sends."""
    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "survives a crash", T0 + 1)
    clock = Clock(T0 + 2)
    first = Engine(cfg, conn, clock=clock, owner="host:1:1")
    [claim] = first.claim_due(5)

    async def crash_after_publish() -> None:
        publisher = first.pool.get("nostr", "default")
        payload = await publisher.prepare(
            Work(claim.delivery_id, claim.post_id, "nostr", "default", claim.content)
        )
        with transaction(conn):
            stored = recording.store_payload(conn, claim.delivery_id, first.owner, payload, 0)
        assert stored == payload
        outcome = await publisher.publish(payload)
        assert outcome.kind == "sent"
        await first.pool.close()  # ... and the process dies before recording anything

    asyncio.run(crash_after_publish())
    assert row(conn, post_id)[0] == "sending"
    clock.advance(200)  # the dead holder's lease runs out
    second = Engine(cfg, queue.open_db(cfg), clock=clock, owner="host:2:2")
    claims = second.claim_due(5)
    assert [c.payload is not None for c in claims] == [True]
    [result] = deliver(second, claims)
    assert result.state == "sent"
    events = inprocess_relay.fetch_events()
    assert [e["content"] for e in events] == ["survives a crash"]
    assert result.outcome is not None and result.outcome.remote_id == row(conn, post_id)[5]


def test_cancelled_between_claim_and_publish_is_never_sent(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """G2/cancel: the prepare transaction re-checks that the delivery is still wanted."""
    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "cancel me", T0 + 1)
    engine = Engine(cfg, conn, clock=Clock(T0 + 2))
    claims = engine.claim_due(5)
    post = queue.get(queue.open_db(cfg), post_id)
    changes.cancel(queue.open_db(cfg), [post], NOW)
    [result] = deliver(engine, claims)
    assert result.state == "cancelled"
    assert row(conn, post_id)[0] == "cancelled"
    assert row(conn, post_id)[6] is None
    assert inprocess_relay.fetch_events() == []


def test_a_plain_note_is_prepared_by_its_claim_and_then_no_longer_cancellable(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """G2/cancel, payload made at once: once the account's publisher is made, the claim signs a
    plain note and stores it in its own transaction; a cancel after that is refused (the note
    may be out), and it is sent once, as stored."""
    from plurcast.errors import InvalidInput

    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "made at once", T0 + 1)
    engine = Engine(cfg, conn, clock=Clock(T0 + 2))
    engine.pool.get("nostr", "default")
    [claim] = engine.claim_due(5)
    assert claim.ready
    assert claim.payload is not None and row(conn, post_id).payload == claim.payload
    post = queue.get(queue.open_db(cfg), post_id)
    with pytest.raises(InvalidInput, match="may already be out"):
        changes.cancel(queue.open_db(cfg), [post], NOW)
    [result] = deliver(engine, [claim])
    assert result.state == "sent"
    [event] = inprocess_relay.fetch_events()
    assert event["content"] == "made at once"
    assert event["id"] == json.loads(claim.payload)["id"]


def test_a_failing_prepare_now_leaves_the_claim_to_deliver(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """A bug in an adapter's prepare_now neither undoes the claim nor loses the post: the
    delivery is claimed unprepared and `deliver` prepares it."""
    from plurcast.platforms.nostr import NostrPublisher
    from plurcast.pool import PublisherPool

    class Broken(NostrPublisher):
        def prepare_now(self, work: Work) -> str | None:
            raise ValueError("adapter bug")

    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "prepared later", T0 + 1)
    engine = Engine(
        cfg, conn, PublisherPool(cfg, {"nostr": Broken.from_config}), clock=Clock(T0 + 2)
    )
    engine.pool.get("nostr", "default")
    [claim] = engine.claim_due(5)
    assert (claim.ready, claim.payload) == (False, None)
    assert (row(conn, post_id).state, row(conn, post_id).payload) == ("sending", None)
    [result] = deliver(engine, [claim])
    assert result.state == "sent"
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["prepared later"]


def test_transient_failures_back_off_exponentially_then_give_up(
    nostr_config: WriteNostrConfig,
) -> None:
    """G3 and the original's bug: retries honour retry_delay and grow; attempts are bounded."""
    cfg = nostr_config([f"ws://127.0.0.1:{free_port()}"], timeout=DOWN_TIMEOUT)  # each waits it
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "relay is down", T0 + 1)
    clock = Clock(T0 + 1)
    engine = Engine(cfg, conn, clock=clock, rng=random.Random(7))
    delays = []
    for attempt in (1, 2, 3):
        claims = engine.claim_due(5)
        assert len(claims) == 1, attempt
        [result] = deliver(engine, claims)
        state, attempts, due, error, kind, _, payload = row(conn, post_id)
        assert attempts == attempt
        assert payload is not None
        if attempt < 3:
            assert (state, kind) == ("retry", "transient")
            delays.append((due - int(clock() * 1000)) / 1000)
            assert engine.claim_due(5) == []  # not before its time
            clock.t = due / 1000
        else:
            assert (state, kind) == ("dead", "transient")
            assert str(error).startswith("gave up after 3 attempts: ")
            assert result.state == "dead"
    assert 48 <= delays[0] <= 72  # retry_delay = 60, ±20 %
    assert 96 <= delays[1] <= 144  # doubled
    outcomes = [r[0] for r in conn.execute("SELECT outcome FROM attempts ORDER BY id")]
    assert outcomes == ["retry", "retry", "dead"]


def test_rate_limit_defers_the_rest_to_when_slots_free(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """posts_per_hour = N: exactly N claimed in the window, the rest deferred, none dropped."""
    cfg = nostr_config(
        [inprocess_relay.url], "[scheduling.rate_limits.nostr]\nposts_per_hour = 3\n"
    )
    conn = queue.open_db(cfg)
    ids = [add_post(conn, cfg, f"limited {i}", T0 + 1) for i in range(5)]
    clock = Clock(T0 + 2)
    engine = Engine(cfg, conn, clock=clock)
    first = engine.claim_due(10)
    assert len(first) == 3
    deliver(engine, first)
    waiting = [r for r in (row(conn, i) for i in ids) if r[0] == "pending"]
    assert len(waiting) == 2
    slot_ms = int((T0 + 2) * 1000)
    # Both get the slot the first send frees: they are claimed one by one as it opens.
    assert [r.due_at_ms for r in waiting] == [slot_ms + 3_600_001] * 2
    clock.advance(1800)
    assert engine.claim_due(10) == []
    clock.advance(1801)
    second = engine.claim_due(10)
    assert len(second) == 2
    deliver(engine, second)
    assert sorted(e["content"] for e in inprocess_relay.fetch_events()) == sorted(
        f"limited {i}" for i in range(5)
    )


def test_the_rate_window_forgets_old_slots_when_it_looks_full_and_once_a_minute(
    nostr_config: WriteNostrConfig,
) -> None:
    """A claim prunes a key's slots that left the hour at most once a minute, so its count
    may still hold old slots (an upper bound: room it sees is there). A window that looks
    full is pruned and counted again before anything is deferred, and old slots never pile
    up: a minute after the last prune they go, full or not."""
    cfg = nostr_config(["ws://127.0.0.1:1"], "[scheduling.rate_limits.nostr]\nposts_per_hour = 5\n")
    conn = queue.open_db(cfg)
    now = T0 + 7200
    engine = Engine(cfg, conn, clock=Clock(now))
    hour_ago_ms = int(now * 1000) - 3_600_000

    def old_slots(count: int) -> None:
        with transaction(conn):  # slots that left the window: still in the count
            for i in range(count):
                rates.reserve_slot(conn, "nostr", "default", hour_ago_ms - 1 - i, 0)

    def claim_one(at: float) -> int:
        engine.clock = Clock(at)
        add_post(conn, cfg, f"at {at}", T0 + 7000)
        assert len(engine.claim_due(10)) == 1
        return rates.slots_used(conn, "nostr", "default")

    assert claim_one(now) == 1
    old_slots(4)  # the count says 5 of 5
    assert claim_one(now) == 2, "pruned when it looked full: claimed, not deferred"
    old_slots(1)
    assert claim_one(now + 30) == 4  # 30 s after a prune, room left: the old one waits
    assert claim_one(now + 61) == 4  # a minute on: pruned, though not full


def test_release_gives_back_leases_and_keeps_payloads(nostr_config: WriteNostrConfig) -> None:
    cfg = nostr_config(["ws://127.0.0.1:1"])
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "x", T0 + 1)
    engine = Engine(cfg, conn, clock=Clock(T0 + 2))
    [claim] = engine.claim_due(1)
    conn.execute("UPDATE deliveries SET payload = '{\"stored\":1}'")
    assert engine.release() == 1
    state, attempts, _, _, _, _, payload = row(conn, post_id)
    assert (state, attempts, payload) == ("pending", 0, '{"stored":1}')
    assert engine.claim_due(1)[0].payload == '{"stored":1}'
    assert claim.post_id == post_id


def test_leases_of_dead_processes_on_this_host_are_recovered_at_once(
    nostr_config: WriteNostrConfig,
) -> None:
    from plurcast import process

    cfg = nostr_config(["ws://127.0.0.1:1"])
    conn = queue.open_db(cfg)
    add_post(conn, cfg, "orphan", T0 + 1)
    clock = Clock(T0 + 2)
    dead_owner = f"{process.HOST}:999999:1"
    Engine(cfg, conn, clock=clock, owner=dead_owner).claim_due(1)
    elsewhere = Engine(cfg, conn, clock=clock, owner="otherhost:1:1")
    assert elsewhere.claim_due(1) == []  # the lease has not run out
    assert elsewhere.recover_dead_leases() == 1
    assert len(elsewhere.claim_due(1)) == 1


def test_grace_expires_stale_one_shot_posts(nostr_config: WriteNostrConfig) -> None:
    cfg = nostr_config(["ws://127.0.0.1:1"], "grace = 600\n")
    conn = queue.open_db(cfg)
    stale = add_post(conn, cfg, "too late", T0 + 1)
    fresh = add_post(conn, cfg, "fine", T0 + 3000)
    engine = Engine(cfg, conn, clock=Clock(T0 + 3100))
    assert [c.post_id for c in engine.claim_due(10)] == [fresh]
    state, _, _, error, kind, _, _ = row(conn, stale)
    assert (state, kind) == ("dead", "expired")
    assert "over the grace of 600 s" in str(error)
    assert queue.get(conn, stale).status.value == "expired"


def test_a_missing_key_is_permanent_and_failed_retry_sends_after_the_fix(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay, nostr_key: Path
) -> None:
    """Permanent errors go dead at once with the reason; retry re-sends what is dead."""
    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "needs a key", T0 + 1)
    key = nostr_key.read_text()
    nostr_key.unlink()
    engine = Engine(cfg, conn, clock=Clock(T0 + 2))
    [result] = deliver(engine, engine.claim_due(1))
    state, attempts, _, error, kind, _, _ = row(conn, post_id)
    assert (state, attempts, kind) == ("dead", 1, "auth")
    assert str(nostr_key) in str(error)
    assert [p.id for p in queue.failed(conn)] == [post_id]
    nostr_key.write_text(key)
    nostr_key.chmod(0o600)
    changes.retry_failed(conn, queue.get_many(conn, [post_id]), NOW)
    engine = Engine(cfg, conn, clock=Clock(T0 + 3))
    [result] = deliver(engine, engine.claim_post(post_id))
    assert result.state == "sent"
    assert row(conn, post_id)[0] == DeliveryState.SENT
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["needs a key"]


def test_an_adapter_bug_in_prepare_is_retried_not_fatal(
    nostr_config: WriteNostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """An exception from an adapter's prepare must not take down a delivery run (or the daemon)."""
    from plurcast.errors import RuntimeFailure
    from plurcast.platforms.nostr import NostrPublisher
    from plurcast.pool import PublisherPool

    class Broken(NostrPublisher):
        async def prepare(self, work: Work) -> str:
            if work.content == "bug":
                raise ValueError("adapter bug")
            if work.content == "passing":
                raise RuntimeFailure("handle lookup timed out")
            return await super().prepare(work)

    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    ids = {text: add_post(conn, cfg, text, T0 + 1) for text in ("bug", "passing", "fine")}
    pool = PublisherPool(cfg, {"nostr": Broken.from_config})
    engine = Engine(cfg, conn, pool, clock=Clock(T0 + 2))
    results = {r.claim.content: r.state for r in deliver(engine, engine.claim_due(5))}
    assert results == {"bug": "retry", "passing": "retry", "fine": "sent"}
    assert row(conn, ids["bug"]).last_error == "ValueError: adapter bug"
    assert row(conn, ids["passing"]).last_error == "handle lookup timed out"


def test_a_publish_past_its_limit_is_cancelled_and_retried(
    nostr_config: WriteNostrConfig,
    inprocess_relay: InProcessRelay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A publish that outlasts the platform's timeout (+ the engine's margin, 0 here) is
    abandoned: the adapter's coroutine is cancelled, the attempt recorded as a passing
    failure, and nothing was sent."""
    from plurcast import engine as engine_module
    from plurcast.platforms.base import Outcome
    from plurcast.platforms.nostr import NostrPublisher
    from plurcast.pool import PublisherPool

    cancelled: list[str] = []

    class Hanging(NostrPublisher):
        async def publish(self, payload: str, media: object = None) -> Outcome:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(payload)
                raise
            raise AssertionError("unreachable")

    monkeypatch.setattr(engine_module, "PUBLISH_MARGIN_SECONDS", 0.0)
    cfg = nostr_config([inprocess_relay.url], timeout=0.2)
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "hangs", T0 + 1)
    pool = PublisherPool(cfg, {"nostr": Hanging.from_config})
    engine = Engine(cfg, conn, pool, clock=Clock(T0 + 2))
    [result] = deliver(engine, engine.claim_due(5))
    assert result.state == "retry"
    assert row(conn, post_id).last_error == "no answer within 0.2 s"
    assert len(cancelled) == 1
    assert inprocess_relay.fetch_events() == []


def test_a_platform_with_no_free_slot_is_passed_over_for_the_others(
    write_config: Callable[[str], Path], nostr_key: Path, isolated_home: Path
) -> None:
    """G4: a platform whose slots are all on the wire — its relay hangs — must not keep
    another platform's post waiting, though that post is due later."""
    token = secret_file(isolated_home / "mastodon.token", "token")
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["ws://127.0.0.1:1"]\n'
        f'[mastodon]\ninstance = "http://127.0.0.1:1"\ntoken_file = "{token}"\n'
    )
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    nostr = [add_post(conn, cfg, f"nostr {i}", T0 + 10 + i) for i in range(5)]
    mastodon = add_post(conn, cfg, "mastodon", T0 + 30, platforms=["mastodon"])
    engine = Engine(cfg, conn, clock=Clock(T0 + 60))
    lanes = Lanes(2)

    def claim(limit: int = 5) -> list[str]:
        claims = engine.claim_due(limit, lanes)
        for c in claims:
            lanes.take(c.platform)
        return [c.post_id for c in claims]

    assert claim(1) == nostr[:1]
    assert claim() == [nostr[1], mastodon]  # Nostr's 2 slots, though 5 were asked for
    assert lanes.room("nostr") == 0
    assert claim() == []
    # Not Nostr's due posts: only the lease of the Mastodon post, for when it runs out.
    assert engine.next_wake_ms(lanes) == int((T0 + 60 + LEASE_SECONDS) * 1000)
    assert engine.next_wake_ms() == int((T0 + 12) * 1000)
    lanes.give("nostr")
    assert engine.next_wake_ms(lanes) == int((T0 + 12) * 1000)
    assert claim() == [nostr[2]]
    assert row(conn, nostr[3]).state == row(conn, nostr[4]).state == "pending"
