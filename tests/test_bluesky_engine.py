"""Bluesky through the delivery engine, the daemon and plur-post, against a real PDS.

Each test names the guarantee it would catch breaking. Logins are counted on the server.
The suite runs on both backends where the database decides: the stored putRecord re-sent
after a crash (payload, lease, re-claim) and a partial post's retry. The saved session is a
file on either backend and what plur-post prints is no database's: those run on SQLite alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from plur_post.cli import cli as post_cli
from plurcast import changes, queue
from plurcast import config as config_module
from plurcast.daemon import Daemon, Options
from plurcast.engine import Engine
from plurcast.models import PostStatus
from plurcast.platforms.base import Work
from plurcast.store import recording
from plurcast.store.base import Database
from plurcast.store.connection import transaction
from tests import helpers
from tests.helpers import ANSWER_TIMEOUT, NOW, T0, Clock, Run, deliver, secret_file
from tests.peers.bluesky import Account, Pds
from tests.peers.nostr import InProcessRelay

pytestmark = pytest.mark.usefixtures("backend")

CREATE_SESSION = "com.atproto.server.createSession"
PUT_RECORD = "com.atproto.repo.putRecord"


@pytest.fixture
def account(bluesky_pds: Pds) -> Account:
    return bluesky_pds.create_account()


@pytest.fixture
def password_file(isolated_home: Path, account: Account) -> Path:
    return secret_file(isolated_home / "bluesky.password", account.app_password)


WriteConfig = Callable[..., config_module.Config]


@pytest.fixture
def bluesky_config(
    write_config: Callable[[str], Path],
    bluesky_pds: Pds,
    account: Account,
    password_file: Path,
    nostr_key: Path,
) -> WriteConfig:
    def write(relay: str = "ws://127.0.0.1:1") -> config_module.Config:
        write_config(
            'timezone = "UTC"\n'
            f'[bluesky]\nhandle = "{account.handle}"\napp_password_file = "{password_file}"\n'
            f'pds = "{bluesky_pds.url}"\ntimeout = {ANSWER_TIMEOUT:g}\n'
            f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{relay}"]\n'
            f"timeout = {ANSWER_TIMEOUT:g}\n"
            "[scheduling]\nretry_delay = 60\nmax_retries = 2\n"
        )
        return config_module.load()

    return write


def add_post(
    conn: Database,
    cfg: config_module.Config,
    text: str,
    at: float | None = T0 + 1,
    platforms: Sequence[str] = ("bluesky",),
) -> str:
    """A Bluesky post due at `at` (None: due now, by the real clock, for the daemon)."""
    return helpers.add_post(conn, cfg, text, at, platforms=platforms)


COLUMNS = ("state", "attempts", "error_kind", "last_error", "payload", "remote_id", "remote_url")


def delivery(conn: Database, post_id: str, platform: str) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM deliveries WHERE post_id = ? AND platform = ?",
        (post_id, platform),
    ).fetchone()
    return dict(zip(COLUMNS, row, strict=True))


def test_a_crash_between_publish_and_record_leaves_one_record(
    bluesky_config: WriteConfig, bluesky_pds: Pds, account: Account
) -> None:
    """G2: the re-send after a crash is the stored putRecord, which the PDS takes as a no-op."""
    cfg = bluesky_config()
    conn = queue.open_db(cfg)
    post_id = add_post(conn, cfg, "survives a crash 💥 #resilient")
    clock = Clock(T0 + 2)
    first = Engine(cfg, conn, clock=clock, owner="host:1:1")
    [claim] = first.claim_due(5)
    puts = bluesky_pds.requests(PUT_RECORD)

    async def crash_after_publish() -> None:
        publisher = first.pool.get("bluesky", "default")
        payload = await publisher.prepare(
            Work(claim.delivery_id, claim.post_id, "bluesky", "default", claim.content)
        )
        with transaction(conn):
            assert (
                recording.store_payload(conn, claim.delivery_id, first.owner, payload, 0) == payload
            )
        outcome = await publisher.publish(payload)
        assert outcome.kind == "sent"
        await first.pool.close()  # ... and the process dies before recording anything

    asyncio.run(crash_after_publish())
    assert delivery(conn, post_id, "bluesky")["state"] == "sending"
    clock.advance(200)  # the dead holder's lease runs out
    second = Engine(cfg, queue.open_db(cfg), clock=clock, owner="host:2:2")
    claims = second.claim_due(5)
    assert [c.payload is not None for c in claims] == [True]
    [result] = deliver(second, claims)

    assert result.state == "sent"
    assert bluesky_pds.requests(PUT_RECORD) == puts + 2  # it was sent twice ...
    [record] = bluesky_pds.list_records(account.did)  # ... and is there once
    row = delivery(conn, post_id, "bluesky")
    assert row["remote_id"] == record["uri"]
    assert row["remote_url"] == f"https://bsky.app/profile/{account.handle}/post/{claim_rkey(row)}"
    assert record["value"]["text"] == "survives a crash 💥 #resilient"


def claim_rkey(row: dict[str, Any]) -> str:
    return str(json.loads(row["payload"])["rkey"])


@pytest.mark.sqlite_only  # the saved session is a file beside the config on either backend
def test_a_daemon_run_logs_in_once_and_the_next_run_not_at_all(
    bluesky_config: WriteConfig, bluesky_pds: Pds, account: Account
) -> None:
    """createSession is limited to 30 per 5 min: one login per daemon run, however many posts
    are sent at once, and none for the next run, which finds the saved session."""
    cfg = bluesky_config()
    conn = queue.open_db(cfg)
    logins = bluesky_pds.requests(CREATE_SESSION)

    def daemon_run(texts: list[str]) -> int:
        for text in texts:
            add_post(conn, cfg, text, at=None)
        daemon = Daemon(config_module.load, queue.open_db, Options(once=True, poll_interval=0.1))
        return asyncio.run(daemon.run())

    assert daemon_run([f"post {i}" for i in range(6)]) == 0  # all six in flight together
    assert bluesky_pds.requests(CREATE_SESSION) == logins + 1
    assert daemon_run(["post 6", "post 7"]) == 0
    assert bluesky_pds.requests(CREATE_SESSION) == logins + 1
    texts = sorted(r["value"]["text"] for r in bluesky_pds.list_records(account.did))
    assert texts == sorted(f"post {i}" for i in range(8))
    session_file = cfg.db_path.parent / "sessions" / "bluesky-default.session"
    assert session_file.stat().st_mode & 0o777 == 0o600


def test_nostr_sent_and_bluesky_refused_is_partial_and_retry_resends_only_bluesky(
    bluesky_config: WriteConfig,
    bluesky_pds: Pds,
    account: Account,
    password_file: Path,
    inprocess_relay: InProcessRelay,
) -> None:
    """G3: a post that reached Nostr is not sent there again because Bluesky failed."""
    cfg = bluesky_config(inprocess_relay.url)
    conn = queue.open_db(cfg)
    password_file.write_text("not-the-app-password\n")
    post_id = add_post(conn, cfg, "to both", platforms=("nostr", "bluesky"))
    engine = Engine(cfg, conn, clock=Clock(T0 + 2))
    results = {r.claim.platform: r.state for r in deliver(engine, engine.claim_due(5))}
    assert results == {"nostr": "sent", "bluesky": "dead"}
    post = queue.get(conn, post_id)
    assert post.status == PostStatus.PARTIAL
    dead = delivery(conn, post_id, "bluesky")
    assert (dead["error_kind"], dead["payload"]) == ("auth", None)
    assert f"app password of {account.handle} was refused" in dead["last_error"]

    password_file.write_text(account.app_password + "\n")
    changes.retry_failed(conn, [post], NOW)
    engine = Engine(cfg, conn, clock=Clock(T0 + 3))
    claims = engine.claim_due(5)
    assert [c.platform for c in claims] == ["bluesky"]
    [result] = deliver(engine, claims)
    assert result.state == "sent"
    assert queue.get(conn, post_id).status == PostStatus.POSTED
    assert delivery(conn, post_id, "nostr")["attempts"] == 1
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["to both"]
    assert [r["value"]["text"] for r in bluesky_pds.list_records(account.did)] == ["to both"]


@pytest.mark.sqlite_only  # what plur-post prints
def test_plur_post_prints_the_at_uri_and_the_url_in_json(
    run: Run, bluesky_config: WriteConfig, bluesky_pds: Pds, account: Account
) -> None:
    bluesky_config()
    result = run(post_cli, "Hallo Bluesky 🦋 https://example.com", "-p", "bluesky")
    assert result.exit_code == 0, result.stderr
    [record] = bluesky_pds.list_records(account.did)
    assert result.stdout == f"bluesky:{record['uri']}\n"
    result = run(post_cli, "as json", "-p", "bluesky", "-f", "json")
    [item] = json.loads(result.stdout)
    rkey = item["post_id"].rsplit("/", 1)[1]
    assert item["success"] is True
    assert item["post_id"] == f"at://{account.did}/app.bsky.feed.post/{rkey}"
    assert item["url"] == f"https://bsky.app/profile/{account.handle}/post/{rkey}"
    assert len(bluesky_pds.list_records(account.did)) == 2


@pytest.mark.sqlite_only  # an exit code: the refusal is the PDS's
def test_plur_post_with_a_refused_app_password_exits_2(
    run: Run, bluesky_config: WriteConfig, password_file: Path
) -> None:
    bluesky_config()
    password_file.write_text("not-the-app-password\n")
    result = run(post_cli, "never sent", "-p", "bluesky")
    assert result.exit_code == 2
    assert result.stdout.startswith("bluesky:error:the app password of ")
