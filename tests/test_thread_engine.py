"""G6 in the engine: a thread's part is never claimed before the previous part there is sent.

Against a real relay (nostr-sdk's in-process one) with an injected clock, on both backends;
each test names what it would catch breaking. The wire formats on each platform's server are
checked in test_thread_wire.py; daemons in separate processes on PostgreSQL in
test_postgres_threads.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast import queue
from plurcast.engine import Engine
from plurcast.models import PostStatus
from plurcast.store.base import Database
from plurcast.store.claiming import Claimed
from tests.helpers import ANSWER_TIMEOUT, DOWN_TIMEOUT, T0, Clock, add_thread, deliver, free_port
from tests.peers.nostr import InProcessRelay

pytestmark = pytest.mark.usefixtures("backend")

NostrConfig = Callable[..., config_module.Config]


@pytest.fixture
def nostr_config(write_config: Callable[[str], Path], nostr_key: Path) -> NostrConfig:
    def write(
        relays: list[str], scheduling: str = "", timeout: float = ANSWER_TIMEOUT
    ) -> config_module.Config:
        relay_list = ", ".join(f'"{r}"' for r in relays)
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = [{relay_list}]\n'
            f"timeout = {timeout:g}\n[scheduling]\nretry_delay = 60\nmax_retries = 2\n{scheduling}"
        )
        return config_module.load()

    return write


def parent_sent_at_claim(conn: Database, claims: Sequence[Claimed]) -> None:
    """The check G6 makes: every claimed delivery with a parent has that parent sent, with
    its remote id, at the moment of the claim."""
    for claim in claims:
        row = conn.execute(
            "SELECT p.state, p.remote_id FROM deliveries d JOIN deliveries p ON p.id = d.parent_id "
            "WHERE d.id = ?",
            (claim.delivery_id,),
        ).fetchone()
        if row is not None:
            assert row[0] == "sent" and row[1], f"delivery {claim.delivery_id} claimed early"


def tags_of(event: dict[str, object]) -> list[list[str]]:
    tags = event["tags"]
    assert isinstance(tags, list)
    return [list(t) for t in tags]


def test_a_thread_due_at_once_goes_out_part_by_part_in_order(
    nostr_config: NostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """G6: after downtime every part is due at once; each claim takes only the part whose
    parent is out, and each part's event names the root and its parent (NIP-10)."""
    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    ids = add_thread(conn, cfg, [f"part {i}" for i in range(1, 5)], T0 + 1)
    engine = Engine(cfg, conn, clock=Clock(T0 + 3600))
    order = []
    while claims := engine.claim_due(16):
        parent_sent_at_claim(conn, claims)
        assert len(claims) == 1
        order.append(claims[0].post_id)
        [result] = deliver(engine, claims)
        assert result.state == "sent"
    assert order == ids
    events = {e["content"]: e for e in inprocess_relay.fetch_events()}
    root = events["part 1"]
    assert [t for t in tags_of(root) if t[0] == "e"] == []
    pubkey = root["pubkey"]
    for i in range(2, 5):
        e_tags = [t for t in tags_of(events[f"part {i}"]) if t[0] == "e"]
        assert e_tags[0] == ["e", root["id"], inprocess_relay.url, "root", pubkey]
        if i == 2:
            assert len(e_tags) == 1
        else:
            parent = events[f"part {i - 1}"]
            assert e_tags[1] == ["e", parent["id"], inprocess_relay.url, "reply", pubkey]
        assert ["p", pubkey] in tags_of(events[f"part {i}"])


def test_two_engines_at_max_concurrency_never_claim_a_part_early(
    nostr_config: NostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """G6 with several daemons and max_concurrency 16: 10 threads of 5 parts, all due,
    claimed in turns by two engines; no claim ever holds a part whose parent is not sent."""
    cfg = nostr_config([inprocess_relay.url], "max_concurrency = 16\n")
    conn = queue.open_db(cfg)
    threads = [add_thread(conn, cfg, [f"t{t} p{i}" for i in range(5)], T0 + 1) for t in range(10)]
    clock = Clock(T0 + 60)
    engines = [Engine(cfg, queue.open_db(cfg), clock=clock, owner=f"host:{n}:1") for n in (1, 2)]
    rng = random.Random(3)
    rounds = 0
    while True:
        batches = [e.claim_due(16) for e in engines]
        for claims in batches:
            parent_sent_at_claim(conn, claims)
        if not any(batches):
            break
        for engine, claims in zip(engines, batches, strict=True):
            rng.shuffle(claims)
            deliver(engine, claims)
        rounds += 1
    assert rounds == 5  # one part of every thread per round: never two of one thread
    for ids in threads:
        assert [p.status for p in queue.get_many(conn, ids)] == [PostStatus.POSTED] * 5
    assert len(inprocess_relay.fetch_events()) == 50


def test_a_part_waiting_for_a_retry_holds_the_rest(nostr_config: NostrConfig) -> None:
    """G6 with failures: part 2 retrying (relay down) keeps part 3 out of every claim, and
    the daemon's wake-up ignores part 3 (no busy loop on a due but blocked delivery)."""
    # The attempt waits its timeout.
    cfg = nostr_config([f"ws://127.0.0.1:{free_port()}"], timeout=DOWN_TIMEOUT)
    conn = queue.open_db(cfg)
    ids = add_thread(conn, cfg, ["one", "two", "three"], T0 + 1)
    clock = Clock(T0 + 10)
    engine = Engine(cfg, conn, clock=clock, rng=random.Random(1))
    # Part 1 as if sent: the relay is down for everything after.
    first = queue.get(conn, ids[0]).deliveries[0]
    conn.execute(
        "UPDATE deliveries SET state = 'sent', remote_id = 'note1x', sent_at_ms = ?, "
        "payload = ? WHERE id = ?",
        (int(T0 * 1000), json.dumps(_event_json()), first.id),
    )
    conn.execute("UPDATE deliveries SET blocked = 0 WHERE parent_id = ?", (first.id,))
    [claim] = engine.claim_due(16)
    assert claim.post_id == ids[1]
    [result] = deliver(engine, [claim])
    assert result.state == "retry"
    due = result.due_at_ms
    assert due is not None
    assert engine.next_wake_ms() == due  # not part 3's (past) time
    clock.t = due / 1000 - 1
    assert engine.claim_due(16) == []
    part3 = queue.get(conn, ids[2])
    assert part3.status == PostStatus.SCHEDULED  # waiting, not stuck
    [d3] = part3.deliveries
    assert d3.blocked and d3.waiting_on is not None
    assert (d3.waiting_on.thread_part, d3.waiting_on.state) == (2, "retry")


def _event_json() -> dict[str, object]:
    import nostr_sdk

    keys = nostr_sdk.Keys.parse("11" * 32)
    event = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "one").finalize(keys)
    parsed: dict[str, object] = json.loads(event.as_json())
    return parsed


def test_a_part_deferred_by_the_rate_limit_holds_the_next(
    nostr_config: NostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """G6 under rate limits: with 2 posts an hour, part 3 is deferred to when a slot frees,
    and part 4 is not claimed before part 3 is out."""
    cfg = nostr_config(
        [inprocess_relay.url], "[scheduling.rate_limits.nostr]\nposts_per_hour = 2\n"
    )
    conn = queue.open_db(cfg)
    ids = add_thread(conn, cfg, ["a", "b", "c", "d"], T0 + 1)
    clock = Clock(T0 + 2)
    engine = Engine(cfg, conn, clock=clock)
    for _ in range(2):
        deliver(engine, engine.claim_due(16))
    assert engine.claim_due(16) == []  # part 3: deferred, part 4: blocked
    part3 = queue.get(conn, ids[2]).deliveries[0]
    assert part3.due_at_ms is not None and part3.due_at_ms > clock() * 1000 + 3_500_000
    assert engine.next_wake_ms() == part3.due_at_ms  # not part 4's
    clock.t = part3.due_at_ms / 1000
    claims = engine.claim_due(16)  # two slots free: only part 3 may take one
    assert [c.post_id for c in claims] == [ids[2]]
    deliver(engine, claims)
    claims = engine.claim_due(16)
    assert [c.post_id for c in claims] == [ids[3]]
    deliver(engine, claims)
    assert sorted(e["content"] for e in inprocess_relay.fetch_events()) == ["a", "b", "c", "d"]


def test_grace_never_cuts_a_thread_that_has_begun(
    nostr_config: NostrConfig, inprocess_relay: InProcessRelay
) -> None:
    """With grace = 60 s and the daemon gone for an hour after part 1, parts 2 and 3 still go
    (half a thread is worse than a late one); a thread not begun expires whole."""
    cfg = nostr_config([inprocess_relay.url], "grace = 60\n")
    conn = queue.open_db(cfg)
    begun = add_thread(conn, cfg, ["one", "two", "three"], T0 + 1)
    stale = add_thread(conn, cfg, ["late one", "late two"], T0 + 1)
    clock = Clock(T0 + 2)
    engine = Engine(cfg, conn, clock=clock)
    [first] = [c for c in engine.claim_due(16) if c.post_id == begun[0]]
    engine.release()
    conn.execute(  # the other thread's first part is still pending: stale later
        "UPDATE deliveries SET state = 'sending', lease_owner = ?, lease_expires_at_ms = ? "
        "WHERE id = ?",
        (engine.owner, int((T0 + 100) * 1000), first.delivery_id),
    )
    deliver(engine, [first])
    clock.advance(3600)
    while claims := engine.claim_due(16):
        deliver(engine, claims)
    assert [p.status for p in queue.get_many(conn, begun)] == [PostStatus.POSTED] * 3
    assert queue.get(conn, stale[0]).status == PostStatus.EXPIRED
    assert queue.get(conn, stale[1]).status == PostStatus.BLOCKED


def test_a_recurring_thread_posts_its_parts_in_order_at_each_occurrence(
    nostr_config: NostrConfig, inprocess_relay: InProcessRelay
) -> None:
    from datetime import UTC, datetime

    from plurcast import schedules
    from plurcast.thread.plan import Compose

    cfg = nostr_config([inprocess_relay.url])
    conn = queue.open_db(cfg)
    schedule = schedules.create(
        conn,
        cfg,
        "daily one\n---\ndaily two",
        schedules.Recurring(every="1d"),
        platforms=["nostr"],
        account=None,
        tz=cfg.timezone,
        now=datetime.fromtimestamp(T0, UTC),
        compose=Compose(thread=True),
    )
    assert schedule.next_run_at_ms == int((T0 + 86400) * 1000)
    clock = Clock(T0 + 86400)
    engine = Engine(cfg, conn, clock=clock)
    [first] = schedules.materialize(conn, engine.now_ms())
    post = queue.get(conn, first)
    assert (post.thread_part, post.thread_parts, post.schedule_id) == (1, 2, schedule.id)
    while claims := engine.claim_due(16):
        deliver(engine, claims)
    events = {e["content"]: e for e in inprocess_relay.fetch_events()}
    assert sorted(events) == ["daily one", "daily two"]
    one, two = events["daily one"], events["daily two"]
    assert ["e", one["id"], inprocess_relay.url, "root", one["pubkey"]] in two["tags"]
    history = schedules.history(conn, schedule)
    assert [(h.fate, h.post_id) for h in history] == [("posted", first)]
