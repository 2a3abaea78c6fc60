"""The Bluesky adapter: config, record keys and error classes (pure), then against a real PDS.

The PDS tests count what the server saw (its request log): a login is a createSession request
there, whatever the client library does on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from atproto_client import exceptions as sdk_errors
from atproto_client.models.common import XrpcError
from atproto_client.models.string_formats import TID_RE
from atproto_client.request import Response

from plurcast import config as config_module
from plurcast.errors import ConfigError
from plurcast.platforms import bluesky_session, bluesky_settings, bluesky_tid
from plurcast.platforms.base import OutcomeKind, Work
from plurcast.platforms.bluesky import BlueskyPublisher
from tests.helpers import ANSWER_TIMEOUT, secret_file
from tests.peers.bluesky import Account, Pds

T = TypeVar("T")
CREATE_SESSION = "com.atproto.server.createSession"
REFRESH_SESSION = "com.atproto.server.refreshSession"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- configuration, checked at schedule time -----------------------------------------------


@pytest.fixture
def password_file(isolated_home: Path) -> Path:
    return secret_file(isolated_home / ".config/plurcast/bluesky.password", "abcd-efgh-ijkl-mnop")


WriteConfig = Callable[..., config_module.Config]


@pytest.fixture
def bluesky_config(write_config: Callable[[str], Path], password_file: Path) -> WriteConfig:
    """A config with [bluesky] (the given lines, or a working handle + password file) loaded."""

    def write(section: str = "") -> config_module.Config:
        body = section or f'handle = "alice.bsky.social"\napp_password_file = "{password_file}"\n'
        write_config(f"[bluesky]\n{body}")
        return config_module.load()

    return write


def test_a_complete_account_passes_the_checks(bluesky_config: WriteConfig) -> None:
    bluesky_settings.check_credentials(bluesky_config(), "default")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "no Bluesky handle configured"),
        ('handle = "alice"', "is not a Bluesky handle"),
        ('handle = "https://bsky.app/profile/alice.bsky.social"', "is not a Bluesky handle"),
        ('handle = "did:plc:abc"', "is not a Bluesky handle"),
    ],
)
def test_a_missing_or_implausible_handle_is_a_config_error(
    bluesky_config: WriteConfig, password_file: Path, setting: str, message: str
) -> None:
    cfg = bluesky_config(f'{setting}\napp_password_file = "{password_file}"\n')
    with pytest.raises(ConfigError, match=message):
        bluesky_settings.check_credentials(cfg, "default")


def test_a_handle_may_be_written_with_at_and_capitals(
    bluesky_config: WriteConfig, password_file: Path
) -> None:
    cfg = bluesky_config(f'handle = "@Alice.Bsky.Social"\napp_password_file = "{password_file}"\n')
    bluesky_settings.check_credentials(cfg, "default")
    assert BlueskyPublisher.from_config(cfg).handle == "alice.bsky.social"


@pytest.mark.parametrize(
    ("pds", "message"),
    [
        ("http://pds.example.com", "plain http"),
        ("https://bsky.social/xrpc", "is not a server URL"),
        ("ftp://bsky.social", "is not a server URL"),
        ("https://bsky.social:99999", "is not a URL"),
    ],
)
def test_a_pds_must_be_https_unless_it_is_this_machine(
    bluesky_config: WriteConfig, password_file: Path, pds: str, message: str
) -> None:
    base = f'handle = "alice.bsky.social"\napp_password_file = "{password_file}"\n'
    with pytest.raises(ConfigError, match=message):
        bluesky_settings.check_credentials(bluesky_config(f'{base}pds = "{pds}"\n'), "default")
    bluesky_settings.check_credentials(
        bluesky_config(f'{base}pds = "http://127.0.0.1:2583/"\n'), "default"
    )


def test_the_pds_defaults_to_bsky_social_and_the_session_lives_beside_the_database(
    bluesky_config: WriteConfig,
) -> None:
    cfg = bluesky_config()
    publisher = BlueskyPublisher.from_config(cfg)
    assert (publisher.pds, publisher.timeout) == ("https://bsky.social", 10.0)
    assert publisher.session.file == cfg.db_path.parent / "sessions" / "bluesky-default.session"


def test_an_app_password_file_others_can_read_is_refused(
    bluesky_config: WriteConfig, password_file: Path
) -> None:
    password_file.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {password_file}"):
        bluesky_settings.check_credentials(bluesky_config(), "default")


def test_the_environment_speaks_for_the_default_account_only(
    bluesky_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLURCAST_BLUESKY_APP_PASSWORD", "from-env")
    cfg = bluesky_config(
        'handle = "alice.bsky.social"\npds = "https://pds.example"\ntimeout = 3\n'
        '[accounts.bluesky.work]\nhandle = "work.example.org"\n'
    )
    bluesky_settings.check_credentials(cfg, "default")
    with pytest.raises(ConfigError, match="no Bluesky app password configured"):
        bluesky_settings.check_credentials(cfg, "work")
    assert bluesky_settings.app_password(bluesky_settings.account_of(cfg, "default")) == "from-env"


def test_a_named_account_inherits_pds_and_timeout(
    bluesky_config: WriteConfig, password_file: Path
) -> None:
    cfg = bluesky_config(
        f'handle = "alice.bsky.social"\napp_password_file = "{password_file}"\n'
        'pds = "https://pds.example"\ntimeout = 3\n'
        '[accounts.bluesky.work]\nhandle = "work.example.org"\n'
        f'app_password_file = "{password_file}"\n'
    )
    bluesky_settings.check_credentials(cfg, "work")
    work = BlueskyPublisher.from_config(cfg, "work")
    assert (work.handle, work.pds, work.timeout) == ("work.example.org", "https://pds.example", 3.0)
    assert work.session.file is not None and work.session.file.name == "bluesky-work.session"
    with pytest.raises(ConfigError, match='no Bluesky account "other"'):
        bluesky_settings.check_credentials(cfg, "other")


def test_a_bad_timeout_is_a_config_error(bluesky_config: WriteConfig, password_file: Path) -> None:
    cfg = bluesky_config(
        f'handle = "alice.bsky.social"\napp_password_file = "{password_file}"\ntimeout = 0\n'
    )
    with pytest.raises(
        ConfigError, match="timeout must be a number of seconds above 0 and at most 55"
    ):
        bluesky_settings.check_credentials(cfg, "default")


def test_checking_credentials_does_not_import_atproto(
    bluesky_config: WriteConfig, config_path: Path
) -> None:
    """plur-post runs the check for every post: it must not pay ~450 ms for the SDK, nor load
    the adapter."""
    bluesky_config()
    code = (
        "import sys; from plurcast import config; from plurcast.platforms import bluesky_settings; "
        "bluesky_settings.check_credentials(config.load(), 'default'); "
        "print(sorted(m for m in sys.modules if m.startswith("
        "('atproto', 'httpx', 'asyncio', 'plurcast.platforms.bluesky_session'))"
        " or m == 'plurcast.platforms.bluesky'))"
    )
    env = {**os.environ, "PLURCAST_CONFIG": str(config_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- record keys -----------------------------------------------------------------------------


def decode_tid(tid: str) -> int:
    return int("".join(f"{'234567abcdefghijklmnopqrstuvwxyz'.index(c):05b}" for c in tid), 2)


def test_a_tid_is_13_sortable_characters_of_time_and_clock_id() -> None:
    assert bluesky_tid.tid(0, 0) == "2222222222222"
    micros = int(datetime(2026, 11, 22, 10, 4, 43, tzinfo=UTC).timestamp() * 1_000_000)
    key = bluesky_tid.tid(micros, 1023)
    assert TID_RE.fullmatch(key)
    assert decode_tid(key) == micros << 10 | 1023
    assert bluesky_tid.tid(micros + 1, 0) > key  # later time, later key, whatever the clock id
    with pytest.raises(ValueError, match="53 bits"):
        bluesky_tid.tid(1 << 53, 0)


def test_tids_made_in_the_same_microsecond_never_repeat() -> None:
    now = 1_795_309_000.0
    keys = [bluesky_tid.next_tid(now) for _ in range(500)]
    assert len(set(keys)) == 500
    assert all(TID_RE.fullmatch(k) for k in keys)
    assert [decode_tid(k) >> 10 for k in keys] == sorted(decode_tid(k) >> 10 for k in keys)


# --- what the server's answers mean ------------------------------------------------------------


def answer(status: int, error: str, message: str, **headers: str) -> Response:
    return Response(
        success=False,
        status_code=status,
        content=XrpcError(error=error, message=message),
        headers=headers,
    )


def test_429_is_rate_limited_for_as_long_as_the_server_says() -> None:
    after = sdk_errors.RateLimitExceededError(
        answer(429, "RateLimitExceeded", "Rate Limit Exceeded", **{"retry-after": "289"})
    )
    outcome = bluesky_session.outcome_for_error(after)
    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.RATE_LIMITED, 289.0)
    reset = sdk_errors.RateLimitExceededError(
        answer(429, "RateLimitExceeded", "Rate Limit Exceeded", **{"ratelimit-reset": "1000"})
    )
    outcome = bluesky_session.outcome_for_error(reset, now=940.0)
    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.RATE_LIMITED, 60.0)


@pytest.mark.parametrize(
    ("error_class", "status", "name", "kind", "auth"),
    [
        ("UnauthorizedError", 401, "AuthenticationRequired", OutcomeKind.PERMANENT, True),
        ("UnauthorizedError", 403, "AccountTakedown", OutcomeKind.PERMANENT, True),
        ("BadRequestError", 400, "ExpiredToken", OutcomeKind.PERMANENT, True),
        ("BadRequestError", 400, "InvalidRequest", OutcomeKind.PERMANENT, False),
        ("RequestException", 404, "NotFound", OutcomeKind.PERMANENT, False),
        ("RequestException", 500, "InternalServerError", OutcomeKind.TRANSIENT, False),
        ("NetworkError", 502, "UpstreamFailure", OutcomeKind.TRANSIENT, False),
        ("RequestException", 503, "ServiceUnavailable", OutcomeKind.TRANSIENT, False),
    ],
)
def test_server_answers_are_classified(
    error_class: str, status: int, name: str, kind: OutcomeKind, auth: bool
) -> None:
    error = getattr(sdk_errors, error_class)(answer(status, name, "what the server said"))
    outcome = bluesky_session.outcome_for_error(error)
    assert (outcome.kind, outcome.auth) == (kind, auth)
    assert outcome.error == f"HTTP {status} {name}: what the server said"


def test_a_timeout_is_transient() -> None:
    outcome = bluesky_session.outcome_for_error(sdk_errors.InvokeTimeoutError())
    assert outcome.kind == OutcomeKind.TRANSIENT
    assert outcome.error == "no answer from the server in time"


def test_a_refused_connection_is_transient_and_names_the_cause() -> None:
    try:
        raise sdk_errors.NetworkError from httpx.ConnectError("[Errno 111] Connection refused")
    except sdk_errors.NetworkError as exc:
        outcome = bluesky_session.outcome_for_error(exc)
    assert outcome.kind == OutcomeKind.TRANSIENT
    assert outcome.error == "ConnectError: [Errno 111] Connection refused"


class CountingClient:
    """Stands in for the SDK client where only the number of logins matters."""

    def __init__(self) -> None:
        self.logins = 0

    async def login(self, *args: Any, **kwargs: Any) -> None:
        self.logins += 1


def test_a_second_login_within_the_cooldown_waits_instead_of_spending_a_create_session() -> None:
    """Never a login per post: if sessions keep being refused, logins are spaced 5 min apart."""
    publisher = BlueskyPublisher("alice.test", lambda: "app-password", session_file=None)
    client = CountingClient()
    before = time.monotonic()
    run(publisher.session._login(client))
    with pytest.raises(bluesky_session.NoSession) as refused:
        run(publisher.session._login(client))
    between = time.monotonic() - before  # at most this long since the first login
    outcome = refused.value.outcome
    assert outcome.kind == OutcomeKind.TRANSIENT
    assert outcome.retry_after is not None
    cooldown = bluesky_session.LOGIN_COOLDOWN
    assert cooldown - between <= outcome.retry_after <= cooldown
    assert client.logins == 1


# --- against a real PDS --------------------------------------------------------------------------


@pytest.fixture
def account(bluesky_pds: Pds) -> Account:
    return bluesky_pds.create_account()


MakePublisher = Callable[..., BlueskyPublisher]


@pytest.fixture
def make_publisher(bluesky_pds: Pds, tmp_path: Path) -> MakePublisher:
    """A publisher for an account of the test PDS; its session file is shared by default."""

    def make(
        account: Account, password: str | None = None, session_file: Path | None = None
    ) -> BlueskyPublisher:
        chosen = account.app_password if password is None else password
        return BlueskyPublisher(
            account.handle,
            lambda: chosen,
            pds=bluesky_pds.url,
            timeout=ANSWER_TIMEOUT,
            session_file=session_file or tmp_path / "sessions" / "bluesky-default.session",
        )

    return make


def work(text: str) -> Work:
    return Work(1, "post-1", "bluesky", "default", text)


async def prepare_and_publish(publisher: BlueskyPublisher, text: str) -> tuple[str, Any]:
    try:
        payload = await publisher.prepare(work(text))
        return payload, await publisher.publish(payload)
    finally:
        await publisher.close()


async def publish(publisher: BlueskyPublisher, payload: str) -> Any:
    try:
        return await publisher.publish(payload)
    finally:
        await publisher.close()


def test_a_post_appears_in_the_repo_with_its_exact_text_and_facets(
    bluesky_pds: Pds, account: Account, make_publisher: MakePublisher
) -> None:
    friend = bluesky_pds.create_account()
    text = f"Grüße aus 東京 🎉 @{friend.handle} @nobody.test https://example.com/straße #日本語"
    payload, outcome = run(prepare_and_publish(make_publisher(account), text))

    body = json.loads(payload)
    rkey = body["rkey"]
    assert (body["repo"], body["collection"]) == (account.did, "app.bsky.feed.post")
    assert TID_RE.fullmatch(rkey)
    assert outcome.kind == OutcomeKind.SENT, outcome.error
    assert outcome.remote_id == f"at://{account.did}/app.bsky.feed.post/{rkey}"
    assert outcome.remote_url == f"https://bsky.app/profile/{account.handle}/post/{rkey}"

    [record] = bluesky_pds.list_records(account.did)
    assert record["uri"] == outcome.remote_id
    assert record["value"] == body["record"]  # what was prepared is what the server holds
    value = record["value"]
    assert value["text"] == text
    assert value["createdAt"].endswith("Z") and len(value["createdAt"]) == 24
    covered = [
        (text.encode()[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"])
        for f in value["facets"]
    ]
    assert covered == [
        (f"@{friend.handle}", [{"$type": "app.bsky.richtext.facet#mention", "did": friend.did}]),
        (
            "https://example.com/straße",
            [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/straße"}],
        ),
        ("#日本語", [{"$type": "app.bsky.richtext.facet#tag", "tag": "日本語"}]),
    ]  # @nobody.test does not resolve: plain text


def test_resending_the_stored_payload_leaves_one_record(
    bluesky_pds: Pds, account: Account, make_publisher: MakePublisher
) -> None:
    payload, first = run(prepare_and_publish(make_publisher(account), "sent once, twice"))
    again = run(publish(make_publisher(account), payload))  # a new process, same payload
    assert again.kind == OutcomeKind.SENT
    assert (again.remote_id, again.detail) == (first.remote_id, first.detail)  # same CID
    assert len(bluesky_pds.list_records(account.did)) == 1
    _, other = run(prepare_and_publish(make_publisher(account), "sent once, twice"))
    assert other.remote_id != first.remote_id  # a new delivery gets a key of its own
    assert len(bluesky_pds.list_records(account.did)) == 2


def test_the_session_is_saved_mode_600_and_reused_without_logging_in_again(
    bluesky_pds: Pds, account: Account, make_publisher: MakePublisher, tmp_path: Path
) -> None:
    logins = bluesky_pds.requests(CREATE_SESSION)
    publisher = make_publisher(account)
    for text in ("one", "two"):  # two event loops, like two plur-post runs in one process
        run(prepare_and_publish(publisher, text))
    assert bluesky_pds.requests(CREATE_SESSION) == logins + 1
    session_file = tmp_path / "sessions" / "bluesky-default.session"
    assert session_file.stat().st_mode & 0o777 == 0o600
    saved = json.loads(session_file.read_text())
    assert (saved["handle"], saved["pds"]) == (account.handle, bluesky_pds.url)
    assert account.did in saved["session"]
    assert account.app_password not in session_file.read_text()

    fresh = make_publisher(account)  # another publisher (or process) with the saved session
    run(prepare_and_publish(fresh, "three"))
    assert fresh.session.logins == 0
    assert bluesky_pds.requests(CREATE_SESSION) == logins + 1
    assert len(bluesky_pds.list_records(account.did)) == 3


def tampered(session_file: Path) -> str:
    """The saved session with its access token's signature broken (the server says InvalidToken)."""
    saved = json.loads(session_file.read_text())
    handle, did, access, refresh, pds = saved["session"].split(":::")
    saved["session"] = ":::".join((handle, did, access[:-4] + "AAAA", refresh, pds))
    session_file.write_text(json.dumps(saved))
    return str(saved["session"])


def test_a_refused_access_token_is_refreshed_without_logging_in(
    bluesky_pds: Pds, account: Account, make_publisher: MakePublisher, tmp_path: Path
) -> None:
    run(prepare_and_publish(make_publisher(account), "before"))
    session_file = tmp_path / "sessions" / "bluesky-default.session"
    broken = tampered(session_file)
    logins, refreshes = bluesky_pds.requests(CREATE_SESSION), bluesky_pds.requests(REFRESH_SESSION)
    publisher = make_publisher(account)
    _, outcome = run(prepare_and_publish(publisher, "after"))
    assert outcome.kind == OutcomeKind.SENT, outcome.error
    assert bluesky_pds.requests(CREATE_SESSION) == logins
    assert bluesky_pds.requests(REFRESH_SESSION) == refreshes + 1
    assert json.loads(session_file.read_text())["session"] != broken  # the new tokens are saved
    assert len(bluesky_pds.list_records(account.did)) == 2


def test_a_wrong_app_password_is_a_permanent_auth_error_and_is_not_retried(
    bluesky_pds: Pds, account: Account, make_publisher: MakePublisher
) -> None:
    logins = bluesky_pds.requests(CREATE_SESSION)
    publisher = make_publisher(account, password="wrong-wrong-wrong-wrong")
    with pytest.raises(ConfigError, match=f"app password of {account.handle} was refused"):
        run(publisher.prepare(work("never")))
    payload = json.dumps(
        {
            "collection": "app.bsky.feed.post",
            "rkey": bluesky_tid.next_tid(0),
            "record": {
                "$type": "app.bsky.feed.post",
                "text": "x",
                "createdAt": "2026-11-22T00:00:00Z",
            },
        }
    )
    outcome = run(publish(publisher, payload))
    assert (outcome.kind, outcome.auth) == (OutcomeKind.PERMANENT, True)
    assert "refused" in str(outcome.error)
    assert bluesky_pds.requests(CREATE_SESSION) == logins + 1  # the refused password, once
    assert bluesky_pds.list_records(account.did) == []


def test_a_revoked_app_password_ends_in_a_permanent_auth_error(
    bluesky_pds: Pds, account: Account, make_publisher: MakePublisher, tmp_path: Path
) -> None:
    payload, outcome = run(prepare_and_publish(make_publisher(account), "before revoking"))
    assert outcome.kind == OutcomeKind.SENT
    bluesky_pds.revoke_app_password(account)
    tampered(tmp_path / "sessions" / "bluesky-default.session")  # force a refresh
    outcome = run(publish(make_publisher(account), payload))
    assert (outcome.kind, outcome.auth) == (OutcomeKind.PERMANENT, True)
    assert "(HTTP 401 AuthenticationRequired: Invalid identifier or password)" in str(outcome.error)


def test_a_record_the_server_refuses_is_permanent_with_its_reason(
    account: Account, make_publisher: MakePublisher
) -> None:
    payload = json.dumps(
        {
            "repo": account.did,
            "collection": "app.bsky.feed.post",
            "rkey": bluesky_tid.next_tid(0),
            "record": {"$type": "app.bsky.feed.post", "text": 42, "createdAt": "yesterday"},
        }
    )
    outcome = run(publish(make_publisher(account), payload))
    assert (outcome.kind, outcome.auth) == (OutcomeKind.PERMANENT, False)
    assert str(outcome.error).startswith("HTTP 400 InvalidRequest: Invalid app.bsky.feed.post")
    bad = run(publish(make_publisher(account), "{not json"))
    assert (bad.kind, bad.error) == (
        OutcomeKind.PERMANENT,
        "stored payload is not a Bluesky record",
    )


def test_a_server_that_is_down_is_transient(account: Account, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    publisher = BlueskyPublisher(
        account.handle,
        lambda: account.app_password,
        pds=f"http://127.0.0.1:{port}",
        timeout=2,
        session_file=tmp_path / "down.session",
    )
    payload, outcome = run(prepare_and_publish(publisher, "nobody home @alice.test"))
    assert "repo" not in json.loads(payload)  # the DID comes with the session, at publish time
    assert outcome.kind == OutcomeKind.TRANSIENT
    assert "ConnectError" in str(outcome.error)
    assert not (tmp_path / "down.session").exists()
