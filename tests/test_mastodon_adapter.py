"""The Mastodon adapter: instance and token from config, how answers are classified, and real
posting to mastodon_mock (a Mastodon API server written by others) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config
from plurcast.errors import ConfigError, InvalidInput
from plurcast.platforms import mastodon, mastodon_settings
from plurcast.platforms.base import Outcome, OutcomeKind, Work
from plurcast.platforms.mastodon import Answer, MastodonPublisher, outcome_from_answer
from tests.helpers import ANSWER_TIMEOUT, secret_file
from tests.peers.mastodon import TOKENS, MastodonMock

TEXT = "Grüße from plurcast 🎉 — 日本語, ZWJ 👩‍👩‍👧, combining é\nsecond line"
DATE = "Fri, 15 Jan 2027 08:00:00 GMT"  # a server's Date header
AT_DATE = email.utils.parsedate_to_datetime(DATE).timestamp()
POST_ID = "0b7c1c39-5bd5-4a4e-9a53-1f6c1d0e2f10"


@pytest.fixture(autouse=True)
def _no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mastodon_settings.TOKEN_ENV, raising=False)


MakeConfig = Callable[..., config.Config]


@pytest.fixture
def make_config(isolated_home: Path, write_config: Callable[[str], Path]) -> MakeConfig:
    """A [mastodon] section for `instance` with a token file (None: no token_file), loaded."""

    def make(
        instance: str = "mastodon.example", token: str | None = TOKENS["alice"], extra: str = ""
    ) -> config.Config:
        lines = ["[mastodon]", f"instance = {json.dumps(instance)}"]
        if token is not None:
            secret_file(isolated_home / ".config/plurcast/mastodon.token", token)
            lines.append('token_file = "mastodon.token"')  # relative to the config file
        write_config("\n".join([*lines, extra]) + "\n")
        return config.load()

    return make


def work(delivery_id: int = 7, text: str = TEXT, **metadata: str) -> Work:
    return Work(delivery_id, POST_ID, "mastodon", "default", text, dict(metadata))


def prepare(publisher: MastodonPublisher, w: Work) -> str:
    return asyncio.run(publisher.prepare(w))


def publish(publisher: MastodonPublisher, payload: str) -> Outcome:
    return asyncio.run(publisher.publish(payload))


# --- configuration, checked at schedule time -------------------------------------------


@pytest.mark.parametrize(
    ("setting", "url"),
    [
        ("mastodon.social", "https://mastodon.social"),
        (" Mastodon.Social ", "https://mastodon.social"),
        ("https://mastodon.social/", "https://mastodon.social"),
        ("fosstodon.org:8443", "https://fosstodon.org:8443"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("http://localhost:3000/", "http://localhost:3000"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_instance_is_normalised_to_a_base_url(setting: str, url: str) -> None:
    assert mastodon_settings.instance_url(setting) == url


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ("http://mastodon.social", "must use https://"),
        ("https://mastodon.social/@alice", "without a path"),
        ("mastodon.social/api/v1", "without a path"),
        ("ftp://mastodon.social", "is not a server address"),
        ("https://alice:pw@mastodon.social", "is not a server address"),
        ("https://mastodon.social:99999", "is not a server address"),
        ("masto don.social", "contains spaces"),
        ("", "is empty"),
    ],
)
def test_instance_refused_with_the_reason(
    make_config: MakeConfig, setting: str, reason: str
) -> None:
    cfg = make_config(instance=setting)
    with pytest.raises(ConfigError) as err:
        mastodon_settings.check_credentials(cfg, "default")
    assert err.value.message.startswith(f"{cfg.path}: mastodon.instance {setting!r} ")
    assert reason in err.value.message


def test_missing_instance_and_missing_section(
    write_config: Callable[[str], Path], isolated_home: Path
) -> None:
    secret_file(isolated_home / ".config/plurcast/t", "x")
    write_config('[mastodon]\ntoken_file = "t"\n')
    with pytest.raises(ConfigError, match="no Mastodon instance configured for account default"):
        mastodon_settings.check_credentials(config.load(), "default")
    write_config('[nostr]\nrelays = ["wss://r.example"]\n')
    with pytest.raises(ConfigError, match="Mastodon is not configured"):
        mastodon_settings.check_credentials(config.load(), "default")
    with pytest.raises(ConfigError, match='no Mastodon account "work"'):
        mastodon_settings.check_credentials(config.load(), "work")


def test_token_file_must_be_private(make_config: MakeConfig, isolated_home: Path) -> None:
    cfg = make_config()
    path = isolated_home / ".config" / "plurcast" / "mastodon.token"
    path.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        mastodon_settings.check_credentials(cfg, "default")
    assert err.value.hint == f"chmod 600 {path}"
    assert TOKENS["alice"] not in str(err.value)


def test_no_token_names_both_ways_to_give_one(make_config: MakeConfig) -> None:
    cfg = make_config(token=None)
    with pytest.raises(ConfigError) as err:
        mastodon_settings.check_credentials(cfg, "default")
    assert err.value.message == "no Mastodon access token configured"
    assert "token_file" in str(err.value.hint)
    assert mastodon_settings.TOKEN_ENV in str(err.value.hint)


def test_token_from_the_environment_for_the_default_account_only(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(token=None, extra='[accounts.mastodon.work]\ninstance = "work.example"\n')
    monkeypatch.setenv(mastodon_settings.TOKEN_ENV, "from-env")
    mastodon_settings.check_credentials(cfg, "default")
    assert mastodon_settings.token(mastodon_settings.account_of(cfg, "default")) == "from-env"
    with pytest.raises(ConfigError, match="no Mastodon access token configured"):
        mastodon_settings.check_credentials(cfg, "work")


def test_a_token_file_written_by_mastodon_py_works(make_config: MakeConfig) -> None:
    """Mastodon.py's log_in(to_file=…) writes the token, then the server's URL, ...."""
    cfg = make_config(token="tok3n\nhttps://mastodon.example\nclient-id\nclient-secret")
    assert mastodon_settings.token(mastodon_settings.account_of(cfg, "default")) == "tok3n"


@pytest.mark.parametrize("token", ["two words", "bearer\u00a0x", "é", "tab\tx", "del\x7f"])
def test_a_token_that_cannot_go_into_a_header_is_refused(
    make_config: MakeConfig, token: str
) -> None:
    cfg = make_config(token=token)
    with pytest.raises(ConfigError, match="does not hold a Mastodon access token") as err:
        mastodon_settings.check_credentials(cfg, "default")
    assert token not in str(err.value)


def test_named_accounts_have_their_own_token_and_inherit_the_rest(
    make_config: MakeConfig, isolated_home: Path
) -> None:
    secret_file(isolated_home / ".config/plurcast/work.token", "work_token")
    cfg = make_config(
        instance="social.example",
        extra='visibility = "unlisted"\ntimeout = 3\n'
        '[accounts.mastodon.work]\ntoken_file = "work.token"\n'
        '[accounts.mastodon.other]\ninstance = "other.example"\nvisibility = "private"\n'
        'token_file = "work.token"\n',
    )
    default = MastodonPublisher.from_config(cfg)
    work_account = MastodonPublisher.from_config(cfg, "work")
    other = MastodonPublisher.from_config(cfg, "other")
    assert (work_account.instance, work_account.visibility, work_account.timeout) == (
        "https://social.example",
        "unlisted",
        3.0,
    )
    assert (other.instance, other.visibility) == ("https://other.example", "private")
    assert default._client.access_token == TOKENS["alice"]
    assert work_account._client.access_token == "work_token"
    assert work_account._client is not default._client


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('visibility = "friends"', "mastodon.visibility must be one of public, unlisted"),
        ("timeout = 0", "mastodon.timeout must be a number of seconds above 0 and at most 55"),
        ('timeout = "10"', "mastodon.timeout must be a number of seconds above 0 and at most 55"),
    ],
)
def test_bad_options_are_config_errors(make_config: MakeConfig, extra: str, message: str) -> None:
    cfg = make_config(extra=extra)
    with pytest.raises(ConfigError, match=message):
        mastodon_settings.check_credentials(cfg, "default")


def test_check_credentials_does_not_import_mastodon_py(make_config: MakeConfig) -> None:
    """`import mastodon` costs ~180 ms: plur-post --schedule must not pay it."""
    make_config()
    code = (
        "import sys\n"
        "from plurcast import config\n"
        "from plurcast.platforms import mastodon_settings\n"
        "mastodon_settings.check_credentials(config.load(), 'default')\n"
        "unwanted = ('mastodon', 'requests', 'asyncio', 'plurcast.platforms.mastodon')\n"
        "loaded = [m for m in unwanted if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- the payload ---------------------------------------------------------------------------


def test_payload_is_fixed_by_the_delivery(make_config: MakeConfig) -> None:
    publisher = MastodonPublisher.from_config(make_config())
    payload = prepare(publisher, work())
    assert json.loads(payload) == {
        "status": TEXT,
        "visibility": "public",
        "idempotency_key": f"plurcast-{POST_ID}-7",
    }
    assert prepare(publisher, work()) == payload  # deterministic: nothing random, no clock
    assert json.loads(prepare(publisher, work(8)))["idempotency_key"] == f"plurcast-{POST_ID}-8"


def test_visibility_from_the_post_then_the_account(make_config: MakeConfig) -> None:
    publisher = MastodonPublisher.from_config(make_config(extra='visibility = "unlisted"'))
    assert json.loads(prepare(publisher, work()))["visibility"] == "unlisted"
    assert json.loads(prepare(publisher, work(visibility="direct")))["visibility"] == "direct"
    with pytest.raises(InvalidInput, match="'friends' is not one of public"):
        prepare(publisher, work(visibility="friends"))


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "{}",
        "[1]",
        '{"status": "x"}',
        '{"status": 1, "visibility": "public", "idempotency_key": "k"}',
        '{"status": "x", "visibility": "friends", "idempotency_key": "k"}',
        '{"status": "x", "visibility": "public", "idempotency_key": ""}',
    ],
)
def test_a_damaged_payload_is_permanent(make_config: MakeConfig, payload: str) -> None:
    publisher = MastodonPublisher.from_config(make_config(instance="http://127.0.0.1:1"))
    outcome = publish(publisher, payload)
    assert outcome == Outcome(
        OutcomeKind.PERMANENT, error="stored payload is not a Mastodon status"
    )


# --- what an answer means ------------------------------------------------------------------


def answer(status: int | None, body: object = None, **headers: str) -> Answer:
    names = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return Answer(status, {"date": DATE, **names}, body)


STATUS = {"id": "110", "url": "https://m.example/@alice/110", "uri": "https://m.example/x/110"}
SENT = OutcomeKind.SENT
TRANSIENT = OutcomeKind.TRANSIENT
PERMANENT = OutcomeKind.PERMANENT
LIMITED = OutcomeKind.RATE_LIMITED
TOKEN_HINT = " — check the account's access token"
LIMIT_429 = "HTTP 429 Too Many Requests"
IN_5_MIN = {"x_ratelimit_reset": "2027-01-15T08:05:00.000Z"}  # Mastodon's own form
IN_300_S = {"x_ratelimit_reset": str(int(AT_DATE) + 300)}  # epoch seconds (mastodon_mock)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (answer(200, STATUS), Outcome(SENT, "110", STATUS["url"])),
        (
            answer(200, {"id": 111, "uri": "https://m.example/x/111"}),
            Outcome(SENT, "111", "https://m.example/x/111"),
        ),
        (
            answer(200, STATUS, x_ratelimit_remaining="0", **IN_5_MIN),
            Outcome(SENT, "110", STATUS["url"], hold_for=300.0),
        ),
        (
            answer(200, STATUS, x_ratelimit_remaining="1", **IN_5_MIN),
            Outcome(SENT, "110", STATUS["url"]),
        ),
        (
            answer(429, {"error": "Too many"}, retry_after="7", **IN_300_S),
            Outcome(LIMITED, error=f"{LIMIT_429}: Too many", retry_after=7.0),
        ),
        (
            answer(429, None, retry_after="Fri, 15 Jan 2027 08:01:30 GMT"),
            Outcome(LIMITED, error=LIMIT_429, retry_after=90.0),
        ),
        (
            answer(429, None, x_ratelimit_remaining="0", **IN_300_S),
            Outcome(LIMITED, error=LIMIT_429, retry_after=300.0),
        ),
        (
            answer(429, None, retry_after="99999999"),
            Outcome(LIMITED, error=LIMIT_429, retry_after=86400.0),
        ),
        (
            answer(401, {"error": "The access token is invalid"}),
            Outcome(
                PERMANENT,
                error=f"HTTP 401 Unauthorized: The access token is invalid{TOKEN_HINT}",
                auth=True,
            ),
        ),
        (
            answer(403, {"error": "Outside the authorized scopes", "error_description": "w"}),
            Outcome(
                PERMANENT,
                error=f"HTTP 403 Forbidden: Outside the authorized scopes (w){TOKEN_HINT}",
                auth=True,
            ),
        ),
        (
            answer(422, {"error": "Validation failed: Text can't be blank"}),
            Outcome(
                PERMANENT,
                error="HTTP 422 Unprocessable Entity: Validation failed: Text can't be blank",
            ),
        ),
        (
            answer(404, "<html>Not   Found</html>"),
            Outcome(PERMANENT, error="HTTP 404 Not Found: <html>Not Found</html>"),
        ),
        (
            answer(503, {"error": "Down"}, retry_after="120"),
            Outcome(TRANSIENT, error="HTTP 503 Service Unavailable: Down", retry_after=120.0),
        ),
        (answer(502, ""), Outcome(TRANSIENT, error="HTTP 502 Bad Gateway")),
        (answer(408, None), Outcome(TRANSIENT, error="HTTP 408 Request Timeout")),
        (answer(599, None), Outcome(TRANSIENT, error="HTTP 599")),
        (
            Answer(200, {}, '{"error": "trunc', "JSONDecodeError: Unterminated"),
            Outcome(
                TRANSIENT,
                error="HTTP 200, but the answer is not a status: JSONDecodeError: Unterminated",
            ),
        ),
        (
            Answer(None, {}, None, "MastodonNetworkError: Read timed out."),
            Outcome(TRANSIENT, error="MastodonNetworkError: Read timed out."),
        ),
    ],
)
def test_outcome_from_answer(given: Answer, expected: Outcome) -> None:
    assert outcome_from_answer(given, now=AT_DATE + 3600) == expected


def test_waits_are_measured_on_the_server_clock_or_ours() -> None:
    """With a Date header our clock does not matter; without one, it does."""
    headers = {
        "date": DATE,
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(AT_DATE) + 60),
    }
    assert mastodon.quota_used_up(headers, now=0.0) == 60.0
    del headers["date"]
    assert mastodon.quota_used_up(headers, now=AT_DATE + 15) == 45.0
    assert mastodon.quota_used_up(headers, now=AT_DATE + 120) is None  # already past
    assert mastodon.retry_after({"retry-after": "soon"}, now=0.0) is None
    assert mastodon.retry_after({"retry-after": "0"}, now=0.0) is None


# --- against mastodon_mock -----------------------------------------------------------------


@pytest.fixture
def mock_config(make_config: MakeConfig, mastodon_server: MastodonMock) -> MakeConfig:
    """make_config pointed at the running mock (options: token, extra)."""

    def make(**kwargs: str) -> config.Config:
        return make_config(instance=mastodon_server.url, **kwargs)

    return make


def test_posts_the_exact_text_once_however_often_the_payload_is_sent(
    mock_config: MakeConfig, mastodon_server: MastodonMock
) -> None:
    """G2: every re-send carries the same Idempotency-Key, and the server makes one status."""
    publisher = MastodonPublisher.from_config(mock_config())
    payload = prepare(publisher, work(visibility="unlisted"))
    first = publish(publisher, payload)
    assert first.kind is OutcomeKind.SENT, first
    [status] = mastodon_server.statuses()
    assert status["text"] == TEXT
    assert status["visibility"] == "unlisted"
    assert (first.remote_id, first.remote_url) == (status["id"], status["url"])
    assert first.hold_for is None  # the mock sends no X-RateLimit-* unless asked to
    again = publish(publisher, payload)  # a crash between publish and record, then a re-send
    assert again == first
    assert [s["id"] for s in mastodon_server.statuses()] == [status["id"]]
    other = publish(publisher, prepare(publisher, work(8)))  # another delivery, another key
    assert other.kind is OutcomeKind.SENT and other.remote_id != first.remote_id
    assert mastodon_server.texts() == [TEXT, TEXT]


def test_transient_answers_then_success_after_the_fault_clears(
    mock_config: MakeConfig, mastodon_server: MastodonMock
) -> None:
    publisher = MastodonPublisher.from_config(mock_config())
    payload = prepare(publisher, work())
    mastodon_server.add_fault({"type": "status", "status": 503, "headers": {"Retry-After": "30"}})
    mastodon_server.add_fault({"type": "status", "status": 500})
    mastodon_server.add_fault({"type": "malformed"})  # a 200 whose body is cut off
    outcomes = [publish(publisher, payload) for _ in range(4)]
    assert [o.kind for o in outcomes] == [OutcomeKind.TRANSIENT] * 3 + [OutcomeKind.SENT]
    assert outcomes[0].error == "HTTP 503 Service Unavailable: Service temporarily unavailable"
    assert outcomes[0].retry_after == 30.0
    assert outcomes[1] == Outcome(
        OutcomeKind.TRANSIENT, error="HTTP 500 Internal Server Error: An unexpected error occurred"
    )
    assert str(outcomes[2].error).startswith("HTTP 200, but the answer is not a status: ")
    assert mastodon_server.texts() == [TEXT]


def test_no_answer_within_the_timeout_is_transient(
    mock_config: MakeConfig, mastodon_server: MastodonMock
) -> None:
    """The server answers only after 20 s, the configured timeout is 0.5 s: the publisher
    gives up (a timeout of its own, after at least 0.5 s) — it would have had the answer with
    the default 10 s. Told by what came back, not by how long it took."""
    publisher = MastodonPublisher.from_config(mock_config(extra="timeout = 0.5"))
    assert publisher.timeout == 0.5
    payload = prepare(publisher, work())
    mastodon_server.add_fault({"type": "latency", "delay_ms": 20_000})
    started = time.monotonic()
    outcome = publish(publisher, payload)
    assert time.monotonic() - started >= 0.5
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert "Read timed out" in str(outcome.error)
    # The server makes that status when the 20 s are over; the re-send before that (by a
    # publisher that waits for the answer) makes it first, and the late one finds the
    # Idempotency-Key (one status either way).
    patient = MastodonPublisher.from_config(mock_config(extra=f"timeout = {ANSWER_TIMEOUT:g}"))
    assert publish(patient, payload).kind is OutcomeKind.SENT
    assert mastodon_server.texts() == [TEXT]


def test_refusals_are_permanent_with_the_servers_reason(
    mock_config: MakeConfig, mastodon_server: MastodonMock
) -> None:
    refused = MastodonPublisher.from_config(mock_config(token="revoked_token"))
    outcome = publish(refused, prepare(refused, work()))
    assert outcome == Outcome(
        OutcomeKind.PERMANENT,
        error="HTTP 401 Unauthorized: This method requires an authenticated user "
        "— check the account's access token",
        auth=True,
    )
    publisher = MastodonPublisher.from_config(mock_config())
    mastodon_server.add_fault(
        {"type": "status", "status": 403, "body": {"error": "This action is not allowed"}}
    )
    forbidden = publish(publisher, prepare(publisher, work()))
    assert (forbidden.kind, forbidden.auth) == (OutcomeKind.PERMANENT, True)
    too_long = publish(publisher, prepare(publisher, work(text="x" * 501)))
    assert too_long == Outcome(
        OutcomeKind.PERMANENT,
        error="HTTP 422 Unprocessable Entity: "
        "Validation failed: Text is too long (maximum is 500 characters)",
    )
    assert mastodon_server.statuses() == []
