"""Mastodon through the delivery engine and the CLIs, against a real mastodon_mock server.

Each test names the guarantee it would catch breaking; every status is counted on the server.
The suite runs on both backends: a rate-limit wait, a stored payload re-sent after a crash, an
account held until its reset and a partial post's retry are claims, leases and records, which
PostgreSQL does its own way. What only the publisher decides (one client per account, the
lines plur-post prints) runs on SQLite alone.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import config as config_module
from plurcast import queue
from plurcast.engine import Engine
from plurcast.platforms.base import OutcomeKind, Work
from plurcast.platforms.mastodon import Answer, MastodonPublisher
from plurcast.store import recording
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from tests import helpers
from tests.helpers import (
    ANSWER_TIMEOUT,
    PATIENCE,
    T0,
    Clock,
    Daemons,
    Run,
    deliver,
    row,
    secret_file,
    wait_until,
)
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import InProcessRelay
from tests.peers.postgres import Backend, run_sql

pytestmark = pytest.mark.usefixtures("backend")

WriteConfig = Callable[..., config_module.Config]


@pytest.fixture
def mastodon_config(
    write_config: Callable[[str], Path], isolated_home: Path, mastodon_server: MastodonMock
) -> WriteConfig:
    """[mastodon] on the mock as alice, [accounts.mastodon.bob] as bob; `extra` appended."""

    def write(alice_token: str = TOKENS["alice"], extra: str = "") -> config_module.Config:
        for name, token in (("alice", alice_token), ("bob", TOKENS["bob"])):
            secret_file(isolated_home / f"{name}.token", token)
        write_config(
            f'timezone = "UTC"\n{extra}\n'
            f'[mastodon]\ninstance = "{mastodon_server.url}"\n'
            f'token_file = "{isolated_home / "alice.token"}"\ntimeout = {ANSWER_TIMEOUT:g}\n'
            f'[accounts.mastodon.bob]\ntoken_file = "{isolated_home / "bob.token"}"\n'
            "[scheduling]\nretry_delay = 60\nmax_retries = 2\n"
        )
        return config_module.load()

    return write


def add_post(
    conn: Database,
    cfg: config_module.Config,
    text: str,
    at: float | None = None,
    account: str | None = None,
) -> str:
    """A Mastodon post (tests.helpers.add_post for one platform)."""
    return helpers.add_post(conn, cfg, text, at, platforms=["mastodon"], account=account)


def test_429_retry_after_defers_the_delivery_by_that_much(
    mastodon_config: WriteConfig, mastodon_server: MastodonMock
) -> None:
    """A 429 is no failed attempt: the delivery waits exactly Retry-After, then goes out once."""
    cfg = mastodon_config()
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "after the limit ⏳", T0 + 1)
    clock = Clock(T0 + 2)
    engine = Engine(cfg, conn, clock=clock)
    mastodon_server.add_fault({"type": "ratelimit", "headers": {"Retry-After": "42"}})
    [result] = deliver(engine, engine.claim_due(5))
    assert result.outcome is not None
    assert (result.state, result.outcome.kind) == ("retry", OutcomeKind.RATE_LIMITED)
    assert result.outcome.retry_after == 42.0
    state, attempts, due_at_ms, error, kind, _, payload = row(conn, post_id)
    assert (state, attempts, kind) == ("retry", 0, "rate_limited")
    assert error == "HTTP 429 Too Many Requests: Too many requests"
    assert due_at_ms == int((T0 + 2) * 1000) + 42_000
    assert payload is not None
    clock.advance(41)
    assert engine.claim_due(5) == []
    clock.advance(1)
    [result] = deliver(engine, engine.claim_due(5))
    assert result.state == "sent"
    assert mastodon_server.texts() == ["after the limit ⏳"]


def test_a_crash_between_publish_and_record_posts_once(
    mastodon_config: WriteConfig, mastodon_server: MastodonMock
) -> None:
    """G2: the stored payload's Idempotency-Key makes the re-send return the first status."""
    cfg = mastodon_config()
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "survives a crash 💥", T0 + 1)
    clock = Clock(T0 + 2)
    first = Engine(cfg, conn, clock=clock, owner="host:1:1")
    [claim] = first.claim_due(5)

    async def crash_after_publish() -> str | None:
        publisher = first.pool.get("mastodon", "default")
        payload = await publisher.prepare(
            Work(claim.delivery_id, claim.post_id, "mastodon", "default", claim.content)
        )
        with transaction(conn):
            assert recording.store_payload(conn, claim.delivery_id, first.owner, payload, 0)
        outcome = await publisher.publish(payload)
        assert outcome.kind is OutcomeKind.SENT
        await first.pool.close()  # ... and the process dies before recording anything
        return outcome.remote_id

    status_id = asyncio.run(crash_after_publish())
    assert row(conn, post_id)[0] == "sending"
    clock.advance(200)  # the dead holder's lease runs out
    second = Engine(cfg, queue.open_db(cfg), clock=clock, owner="host:2:2")
    claims = second.claim_due(5)
    assert [c.payload is not None for c in claims] == [True]
    [result] = deliver(second, claims)
    assert result.state == "sent"
    assert result.outcome is not None and result.outcome.remote_id == status_id
    assert [s["id"] for s in mastodon_server.statuses()] == [status_id]
    assert row(conn, post_id)[5] == status_id


@pytest.mark.parametrize("mastodon_server", [{"ratelimit": 2}], indirect=True)
def test_no_requests_left_holds_that_account_until_the_reset(
    mastodon_config: WriteConfig, mastodon_server: MastodonMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X-RateLimit-Remaining: 0 on a success: the account's next post waits for the reset;
    another account (its own token, its own quota) does not."""
    answers: list[Answer] = []
    request = MastodonPublisher.request

    async def recording(self: MastodonPublisher, call: Callable[[], object]) -> Answer:
        answers.append(await request(self, call))
        return answers[-1]

    monkeypatch.setattr(MastodonPublisher, "request", recording)
    cfg = mastodon_config()
    conn = queue.open_db(cfg)
    ids = [add_post(conn, cfg, f"alice {i}", T0 + 1) for i in range(2)]
    clock = Clock(T0 + 2)
    engine = Engine(cfg, conn, clock=clock)
    results = [deliver(engine, engine.claim_due(1))[0] for _ in ids]
    assert [r.state for r in results] == ["sent", "sent"]
    hold = results[1].outcome.hold_for if results[1].outcome else None
    assert results[0].outcome is not None and results[0].outcome.hold_for is None
    # What is left of the mock's 300-s window, by the server's own clock (its Date header,
    # which uvicorn refreshes once a second, so it may lag behind the window's start).
    headers = answers[1].headers
    assert headers["x-ratelimit-remaining"] == "0"
    reset, date = headers["x-ratelimit-reset"], headers["date"]
    assert hold == float(reset) - email.utils.parsedate_to_datetime(date).timestamp()
    assert hold is not None and hold > 0
    third = add_post(conn, cfg, "alice 2", T0 + 1)
    bobs = add_post(conn, cfg, "bob 0", T0 + 1, account="bob")
    bob_claims = engine.claim_due(5)
    assert [c.post_id for c in bob_claims] == [bobs]
    assert [r.state for r in deliver(engine, bob_claims)] == ["sent"]
    held_until = row(conn, third).due_at_ms
    assert held_until == int((T0 + 2) * 1000) + int(hold * 1000)
    clock.t = held_until / 1000
    assert [c.post_id for c in engine.claim_due(5)] == [third]


@pytest.mark.sqlite_only  # the publisher pool's clients: no database in it
def test_named_accounts_post_as_themselves_through_their_own_client(
    mastodon_config: WriteConfig, mastodon_server: MastodonMock
) -> None:
    cfg = mastodon_config()
    conn = queue.open_db(cfg)
    add_post(conn, cfg, "from alice", T0 + 1)
    add_post(conn, cfg, "from bob", T0 + 1, account="bob")
    engine = Engine(cfg, conn, clock=Clock(T0 + 2))
    alice = engine.pool.get("mastodon", "default")
    bob = engine.pool.get("mastodon", "bob")
    assert isinstance(alice, MastodonPublisher) and isinstance(bob, MastodonPublisher)
    assert alice._client is not bob._client
    results = deliver(engine, engine.claim_due(5))
    assert sorted(r.state for r in results) == ["sent", "sent"]
    assert mastodon_server.texts(TOKENS["alice"]) == ["from alice"]
    assert mastodon_server.texts(TOKENS["bob"]) == ["from bob"]


@pytest.mark.slow
def test_kill_9_between_publish_and_record_then_a_restart_posts_once(
    mastodon_config: WriteConfig,
    mastodon_server: MastodonMock,
    backend: Backend,
    daemons: Daemons,
) -> None:
    """G2 with a real kill -9, on each backend: the server made the status, plur-send died
    before recording it; the next plur-send re-sends the stored payload and is given that
    same status."""
    cfg = mastodon_config()
    conn = queue.open_db(cfg)
    add_post(conn, cfg, "killed before recording 🔪")
    # The server holds the request 2 s before it makes the status and answers.
    mastodon_server.add_fault({"type": "latency", "delay_ms": 2000})
    plur_send = str(Path(sys.executable).parent / "plur-send")
    locker = backend.inspect(cfg)
    # SQLite: the write lock; PostgreSQL: the delivery's row, which the record must update.
    lock = ["BEGIN", "SELECT id FROM deliveries FOR UPDATE"]
    if not backend.is_postgresql:
        lock = ["BEGIN IMMEDIATE"]
    stored = "SELECT count(*) FROM deliveries WHERE payload IS NOT NULL"
    first = daemons.start("--once")
    try:
        # Once the payload is committed plur-send writes nothing until the answer: lock
        # the delivery then, and it can no longer record the outcome (the 2 s leave the
        # lock time to be taken on a busy machine; nothing else depends on timing).
        wait_until(lambda: locker.execute(stored).fetchone()[0] > 0, "the stored payload")
        for statement in lock:
            locker.execute(statement)
        wait_until(lambda: bool(mastodon_server.statuses()), "the held request served")
    finally:
        first.kill()
        first.wait()
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
    [status] = mastodon_server.statuses()
    assert conn.execute("SELECT state FROM deliveries").fetchall() == [("sending",)]
    again = subprocess.run(
        [plur_send, "--once"], check=False, capture_output=True, text=True, timeout=PATIENCE
    )
    assert again.returncode == 0, again.stderr
    assert [s["id"] for s in mastodon_server.statuses()] == [status["id"]]
    assert conn.execute("SELECT state, remote_id FROM deliveries").fetchall() == [
        ("sent", status["id"])
    ]


# --- the CLIs --------------------------------------------------------------------------------


def deliveries(db_path: Path) -> list[tuple[Any, ...]]:
    return run_sql(db_path, "SELECT platform, state, attempts FROM deliveries ORDER BY id")


@pytest.mark.sqlite_only  # what plur-post prints: the delivery is test_cli_publish's
def test_plur_post_prints_the_status_id_and_json_carries_the_url(
    run: Run, clock: Clock, mastodon_config: WriteConfig, mastodon_server: MastodonMock
) -> None:
    mastodon_config()
    result = run(post_cli, "Hallo Fediverse 👋", "-p", "mastodon", "--visibility", "unlisted")
    assert result.exit_code == 0, result.stderr
    [status] = mastodon_server.statuses()
    assert result.stdout == f"mastodon:{status['id']}\n"
    assert (status["text"], status["visibility"]) == ("Hallo Fediverse 👋", "unlisted")
    result = run(post_cli, "as json", "-p", "mastodon", "-a", "bob", "-f", "json")
    [item] = json.loads(result.stdout)
    [status] = mastodon_server.statuses(TOKENS["bob"])
    assert (item["platform"], item["account"], item["success"]) == ("mastodon", "bob", True)
    assert (item["post_id"], item["url"]) == (status["id"], status["url"])


def test_refused_token_partial_post_then_failed_retry_sends_only_mastodon(
    run: Run,
    clock: Clock,
    mastodon_config: WriteConfig,
    mastodon_server: MastodonMock,
    inprocess_relay: InProcessRelay,
    nostr_key: Path,
    isolated_home: Path,
    db_path: Path,
) -> None:
    """G3 and exit codes: Nostr sent, Mastodon refused (401 → exit 2, partial); after the
    token is fixed, `failed retry` re-sends Mastodon only."""
    nostr = (
        f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{inprocess_relay.url}"]\n'
        f"timeout = {ANSWER_TIMEOUT:g}"
    )
    mastodon_config(alice_token="revoked_token", extra=nostr)
    result = run(post_cli, "everywhere 🌍", "-p", "nostr,mastodon")
    assert result.exit_code == 2, result.stderr
    nostr_line, mastodon_line = result.stdout.splitlines()
    assert nostr_line.startswith("nostr:note1")
    error = (
        "HTTP 401 Unauthorized: This method requires an authenticated user "
        "— check the account's access token"
    )
    assert mastodon_line == f"mastodon:error:{error}"
    assert deliveries(db_path) == [("nostr", "sent", 1), ("mastodon", "dead", 1)]
    listed = run(queue_cli, "failed", "list")
    [line] = listed.stdout.splitlines()
    post_id, post_status, errors, content = line.split("\t")
    assert (post_status, content) == ("partial", "everywhere 🌍")
    assert errors == f"mastodon(default): {error}"

    (isolated_home / "alice.token").write_text(TOKENS["alice"] + "\n")
    retried = run(queue_cli, "failed", "retry", post_id[:8], "-f", "json")
    assert retried.exit_code == 0, retried.stderr
    items = {item["platform"]: item for item in json.loads(retried.stdout)}
    [status] = mastodon_server.statuses()
    assert items["mastodon"]["success"] and items["mastodon"]["post_id"] == status["id"]
    assert items["mastodon"]["url"] == status["url"]
    assert deliveries(db_path) == [("nostr", "sent", 1), ("mastodon", "sent", 1)]
    assert inprocess_relay.count_by_content("everywhere 🌍") == 1
    assert status["text"] == "everywhere 🌍"
    assert run(queue_cli, "failed", "list").stdout == ""
