"""Proof of work from the command line to a relay that demands it: the flags, the config
default, plur-queue update, mining at prepare time (once, under a lease that is kept), and
the mined event stored and re-sent byte for byte.

The suite runs on both backends where the database decides: the difficulty written into a
post's metadata and changed by plur-queue update, and every delivery test (the payload stored
and re-claimed, the lease renewed while mining, a cancel racing the prepare, a thread's parent
before its reply). What is refused before any database is opened (help, flags, config values)
runs on SQLite alone."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plurcast import changes, queue, writing
from plurcast import config as config_module
from plurcast.engine import Engine
from plurcast.platforms import nostr_pow
from plurcast.platforms.base import Work
from plurcast.platforms.nostr import NostrPublisher
from plurcast.pool import PublisherPool
from tests.helpers import BASE_CONFIG, T0, Clock, Run, deliver, free_port
from tests.peers.nostr import InProcessRelay
from tests.peers.postgres import run_sql

pytestmark = pytest.mark.usefixtures("backend")

WriteNostrConfig = Callable[[list[str]], config_module.Config]


@pytest.fixture
def nostr_config(write_config: Callable[[str], Path], nostr_key: Path) -> WriteNostrConfig:
    def write(relays: list[str]) -> config_module.Config:
        listed = ", ".join(f'"{r}"' for r in relays)
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\nrelays = [{listed}]\n'
            "timeout = 2\n[scheduling]\nretry_delay = 60\nmax_retries = 2\n"
        )
        return config_module.load()

    return write


def metadata(db_path: Path, post_id: str) -> dict[str, object]:
    [row] = run_sql(db_path, "SELECT metadata FROM posts WHERE id = ?", post_id)
    return dict(json.loads(row[0]))


def draft(run: Run, *args: str) -> str:
    result = run(post_cli, "mined later", "--draft", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip().removeprefix("draft:")


# --- the command line ------------------------------------------------------------------


@pytest.mark.sqlite_only  # no database
def test_help_names_the_flag_and_hides_21e8(run: Run) -> None:
    text = " ".join(run(post_cli, "--help").stdout.split())
    for words in ("--nostr-pow", "Proof of Work difficulty", "NIP-13", "20-25"):
        assert words in text
    assert "Only applies when posting to Nostr" in text
    assert "--21e8" not in text


@pytest.mark.usefixtures("configured")
def test_flags_and_config_default(run: Run, clock: Clock, db_path: Path, config_path: Path) -> None:
    assert metadata(db_path, draft(run, "--nostr-pow", "20")) == {"nostr": {"pow_difficulty": 20}}
    assert metadata(db_path, draft(run, "--nostr-pow", "8", "--21e8")) == {
        "nostr": {"pow_difficulty": 8, "21e8": True}
    }
    assert metadata(db_path, draft(run)) == {}
    config_path.write_text(
        BASE_CONFIG.replace("[mastodon]", "default_pow_difficulty = 16\n\n[mastodon]")
    )
    assert metadata(db_path, draft(run)) == {"nostr": {"pow_difficulty": 16}}
    assert metadata(db_path, draft(run, "--nostr-pow", "30")) == {"nostr": {"pow_difficulty": 30}}
    assert metadata(db_path, draft(run, "--nostr-pow", "0")) == {}
    named = draft(run, "-a", "test", "-p", "nostr")  # a named account takes the default's
    assert metadata(db_path, named) == {"nostr": {"pow_difficulty": 16}}


@pytest.mark.sqlite_only  # refused before a database is opened
@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--21e8"], "Error: --21e8 requires --nostr-pow to be specified — add --nostr-pow N\n"),
        (["--nostr-pow", "65"], "Error: --nostr-pow must be from 0 to 64, not 65"),
        (["--nostr-pow", "-1"], "Error: --nostr-pow must be from 0 to 64, not -1"),
        (["--nostr-pow", "x"], "Error: Invalid value for '--nostr-pow': 'x' is not a valid"),
    ],
)
def test_bad_flags_exit_3_and_write_nothing(
    run: Run, clock: Clock, db_path: Path, args: list[str], message: str
) -> None:
    result = run(post_cli, "Hello", "-s", "1h", *args)
    assert result.exit_code == 3
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not db_path.exists()


@pytest.mark.sqlite_only  # refused before a database is opened
@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize("value", ["65", '"20"', "true", "-3"])
def test_a_bad_config_default_is_a_config_error(
    run: Run, clock: Clock, config_path: Path, value: str
) -> None:
    config_path.write_text(
        BASE_CONFIG.replace("[mastodon]", f"default_pow_difficulty = {value}\n\n[mastodon]")
    )
    result = run(post_cli, "Hello", "-s", "1h")
    assert result.exit_code == 2
    assert "nostr.default_pow_difficulty must be a whole number from 0 to 64" in result.stderr


@pytest.mark.usefixtures("configured")
def test_queue_update_changes_the_difficulty_of_a_post_not_yet_sent(
    run: Run, clock: Clock, db_path: Path
) -> None:
    post_id = draft(run, "--nostr-pow", "8", "--21e8")
    result = run(queue_cli, "update", post_id[:8], "--nostr-pow", "28")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"Updated Nostr PoW difficulty to: 28\n✓ Post {post_id} updated successfully\n"
    )
    assert metadata(db_path, post_id) == {"nostr": {"pow_difficulty": 28, "21e8": True}}
    assert run(queue_cli, "update", post_id, "--nostr-pow", "0", "-f", "json").exit_code == 0
    assert metadata(db_path, post_id) == {}
    for args, code, words in (
        ([post_id], 3, "No update options provided. Use --nostr-pow"),
        ([post_id, "--nostr-pow", "65"], 3, "--nostr-pow must be from 0 to 64"),
        (["deadbeef", "--nostr-pow", "5"], 3, 'no post with id "deadbeef"'),
    ):
        bad = run(queue_cli, "update", *args)
        assert (bad.exit_code, words in bad.stderr) == (code, True), bad.stderr
    masto = run(post_cli, "m", "--draft", "-p", "mastodon").stdout.strip().split(":")[1]
    assert "does not go to Nostr" in run(queue_cli, "update", masto, "--nostr-pow", "5").stderr


# --- delivery: mined at prepare time, stored, re-sent byte for byte ---------------------


def add_pow_post(cfg: config_module.Config, text: str, difficulty: int) -> str:
    conn = queue.open_db(cfg)
    created = writing.create_post(
        conn,
        cfg,
        text,
        schedule="now",
        draft=False,
        platforms=["nostr"],
        account=None,
        tz=cfg.timezone,
        now=datetime.fromtimestamp(T0, UTC),
        metadata={"nostr": {"pow_difficulty": difficulty}} if difficulty else None,
    )
    return created.post_id


def stored_payload(cfg: config_module.Config, post_id: str) -> str | None:
    row = (
        queue.open_db(cfg)
        .execute("SELECT payload FROM deliveries WHERE post_id = ?", (post_id,))
        .fetchone()
    )
    return None if row[0] is None else str(row[0])


def test_a_relay_that_demands_work_takes_the_mined_note_and_refuses_the_plain_one(
    nostr_config: WriteNostrConfig, caplog: pytest.LogCaptureFixture
) -> None:
    relay = InProcessRelay(min_pow=12).start()
    try:
        cfg = nostr_config([relay.url])
        mined = add_pow_post(cfg, "worked for it ⛏", 12)
        plain = add_pow_post(cfg, "did not", 0)
        engine = Engine(cfg, queue.open_db(cfg), clock=Clock(T0 + 1))
        with caplog.at_level(logging.INFO, "plurcast.nostr.pow"):
            results = {r.claim.post_id: r for r in deliver(engine, engine.claim_due(5))}
        assert results[mined].state == "sent"
        assert results[plain].state == "dead"
        assert "pow:" in str(results[plain].outcome and results[plain].outcome.error)
        [event] = relay.fetch_events()
        payload = stored_payload(cfg, mined)
        assert payload is not None and json.loads(payload) == event
        digest = bytes.fromhex(event["id"])
        assert nostr_pow.leading_zero_bits(digest) >= 12
        assert event["tags"][-1][0] == "nonce" and event["tags"][-1][2] == "12"
        messages = [r.getMessage() for r in caplog.records]
        assert any(
            m.startswith(f"mining proof of work for post {mined} to nostr/") for m in messages
        )
        assert any(m.startswith(f"mined proof of work for post {mined}") for m in messages)
    finally:
        relay.stop()


def test_the_mined_event_is_mined_once_and_re_sent_byte_for_byte(
    nostr_config: WriteNostrConfig, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    cfg = nostr_config([f"ws://127.0.0.1:{port}"])  # the relay is down at first
    post_id = add_pow_post(cfg, "patience", 10)
    clock = Clock(T0 + 1)
    engine = Engine(cfg, queue.open_db(cfg), clock=clock)
    with caplog.at_level(logging.INFO, "plurcast.nostr.pow"):
        [first] = deliver(engine, engine.claim_due(5))
        assert first.state == "retry"
        payload = stored_payload(cfg, post_id)
        assert payload is not None
        relay = InProcessRelay(port, min_pow=10).start()
        try:
            clock.advance(3600)
            engine = Engine(cfg, queue.open_db(cfg), clock=clock)
            [second] = deliver(engine, engine.claim_due(5))
            assert second.state == "sent"
            [event] = relay.fetch_events()
        finally:
            relay.stop()
    assert stored_payload(cfg, post_id) == payload
    assert json.loads(payload) == event
    mined = [r for r in caplog.records if r.getMessage().startswith("mined proof of work")]
    assert len(mined) == 1


def test_a_long_prepare_keeps_its_lease_and_a_cancel_stops_it(
    nostr_config: WriteNostrConfig,
) -> None:
    """Mining may outlast the lease: it is renewed while prepare runs, and a cancel in the
    meantime stops the prepare — nothing is stored, nothing sent."""
    release = asyncio.Event()
    started: list[str] = []

    class Slow(NostrPublisher):
        async def prepare(self, work: Work) -> str:
            started.append(work.post_id)
            await release.wait()  # never set: only the cancel ends this
            return await super().prepare(work)

    cfg = nostr_config(["ws://127.0.0.1:1"])
    post_id = add_pow_post(cfg, "slow", 30)
    conn = queue.open_db(cfg)
    clock = Clock(T0 + 1)
    engine = Engine(
        cfg, conn, PublisherPool(cfg, {"nostr": Slow.from_config}), clock=clock, lease_seconds=0.3
    )
    [claim] = engine.claim_due(5)

    def lease_ms() -> int:
        return int(
            conn.execute(
                "SELECT lease_expires_at_ms FROM deliveries WHERE post_id = ?", (post_id,)
            ).fetchone()[0]
        )

    async def scenario() -> str:
        task = asyncio.ensure_future(engine.deliver(claim))
        first = lease_ms()
        renewals = 0
        for _ in range(600):  # the engine renews every lease/3 s of real time
            clock.advance(1)
            await asyncio.sleep(0.05)
            if lease_ms() > first:
                renewals += 1
                first = lease_ms()
            if renewals == 2:
                break
        assert renewals == 2
        assert started == [post_id]
        changes.cancel(queue.open_db(cfg), [queue.get(queue.open_db(cfg), post_id)], clock_now())
        result = await asyncio.wait_for(task, 10)
        await engine.pool.close()
        return result.state

    def clock_now() -> datetime:
        return datetime.fromtimestamp(clock(), UTC)

    assert asyncio.run(scenario()) == "cancelled"
    assert stored_payload(cfg, post_id) is None


def test_a_mined_thread_keeps_its_reply_tags(nostr_config: WriteNostrConfig) -> None:
    """The second part of a thread is mined with its NIP-10 tags: the relay that demands
    work takes both, and the reply still names the first part."""
    from plurcast.thread.plan import Compose

    relay = InProcessRelay(min_pow=8).start()
    try:
        cfg = nostr_config([relay.url])
        conn = queue.open_db(cfg)
        created = writing.create_post(
            conn,
            cfg,
            "First part\n---\nSecond part",
            schedule="now",
            draft=False,
            platforms=["nostr"],
            account=None,
            tz=cfg.timezone,
            now=datetime.fromtimestamp(T0, UTC),
            metadata={"nostr": {"pow_difficulty": 8}},
            compose=Compose(thread=True),
        )
        clock = Clock(T0 + 1)
        engine = Engine(cfg, conn, clock=clock)
        assert [r.state for r in deliver(engine, engine.claim_due(5))] == ["sent"]
        engine = Engine(cfg, queue.open_db(cfg), clock=clock)
        assert [r.state for r in deliver(engine, engine.claim_due(5))] == ["sent"]
        first, second = sorted(relay.fetch_events(), key=lambda e: e["content"])
        assert second["content"] == "Second part"
        assert ["e", first["id"]] == second["tags"][0][:2]
        assert second["tags"][-1][0] == "nonce" and second["tags"][-1][2] == "8"
        for event in (first, second):
            assert nostr_pow.leading_zero_bits(bytes.fromhex(event["id"])) >= 8
        assert len(created.post_ids) == 2
    finally:
        relay.stop()
