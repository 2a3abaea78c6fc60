"""The Nostr adapter: keys and relays from config, answer classification, and real publishing
to nostr-sdk's in-process relay on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nostr_sdk as n
import pytest

from plurcast import config
from plurcast.errors import ConfigError
from plurcast.platforms import nostr, nostr_answers, nostr_settings
from plurcast.platforms.base import OutcomeKind, Work
from tests import helpers
from tests.helpers import ANSWER_TIMEOUT, PATIENCE, free_port, secret_file
from tests.peers.nostr import local_relay

KEYS = n.Keys.generate()
NSEC = KEYS.secret_key().to_bech32()
HEX = KEYS.secret_key().to_hex()
NPUB = KEYS.public_key().to_bech32()
CONTENT = "Grüße from plurcast 🎉 — 日本語, ZWJ 👩‍👩‍👧, combining é\nsecond line"


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(nostr_settings.KEY_ENV, raising=False)


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


@pytest.fixture
def make_config(
    isolated_home: Path, write_config: Callable[[str], Path]
) -> Callable[..., config.Config]:
    """Write a config with a [nostr] section (and optionally a named account), load it."""

    def make(
        relays: list[str] | None = None,
        key: str | None = NSEC,
        extra: str = "",
        named: str | None = None,
    ) -> config.Config:
        text = "[nostr]\n"
        if key is not None:
            secret_file(isolated_home / ".config/plurcast/nostr.keys", key)
            text += 'keys_file = "~/.config/plurcast/nostr.keys"\n'
        text += f"relays = {toml_list(relays or ['ws://127.0.0.1:1'])}\n{extra}\n"
        if named is not None:
            text += f"[accounts.nostr.test]\n{named}\n"
        write_config(text)
        return config.load()

    return make


@pytest.fixture
def silent_port() -> Iterator[int]:
    with helpers.silent_port() as port:
        yield port


async def events_on(url: str, author: Any = None) -> list[Any]:
    """Every event the relay holds (by `author`), read with a second, independent client."""
    client = n.Client()
    await client.add_relay(n.RelayUrl.parse(url))
    await client.connect()
    try:
        query = n.Filter().author(author or KEYS.public_key())
        events = await client.fetch_events(
            n.ReqTarget.auto([query]), timedelta(seconds=ANSWER_TIMEOUT)
        )
        return list(events)
    finally:
        await client.shutdown()


def work(content: str = CONTENT) -> Work:
    return Work(delivery_id=1, post_id="p", platform="nostr", account="default", content=content)


# --- keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [NSEC, HEX, NSEC.upper(), HEX.upper(), f"  {NSEC}\n\n"])
def test_nsec_and_hex_load_to_the_same_public_key(
    make_config: Callable[..., config.Config], key: str
) -> None:
    cfg = make_config(key=key)
    nostr_settings.check_credentials(cfg, "default")
    assert nostr.load_keys(cfg, "default").public_key().to_bech32() == NPUB


def flip(text: str, index: int) -> str:
    """The string with one bech32 character changed (a checksum must catch it)."""
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    c = text[index]
    return text[:index] + alphabet[(alphabet.index(c) + 1) % 32] + text[index + 1 :]


GARBAGE = [
    "hello world",
    flip(NSEC, 20),  # bad checksum
    NSEC[:-1],  # truncated
    NSEC + "q",
    NSEC[:10] + NSEC[10:].upper(),  # mixed case is not bech32
    HEX[:-1],  # 63 hex
    HEX + "0",  # 65 hex
    "0" * 64,  # zero is not a key
    "f" * 64,  # above the curve order
    "g" * 64,
    HEX[:-1] + "\u0660",  # an Arabic-Indic zero is a digit, not a hex one
    HEX[:32] + " " + HEX[33:],  # bytes.fromhex would skip the space
]


@pytest.mark.parametrize("key", GARBAGE)
def test_garbage_key_is_a_config_error_without_the_secret(
    make_config: Callable[..., config.Config], key: str
) -> None:
    cfg = make_config(key=key)
    for check in (nostr_settings.check_credentials, nostr.load_keys):
        with pytest.raises(ConfigError) as info:
            check(cfg, "default")
        error = info.value
        assert error.exit_code == 2
        assert "is not a Nostr secret key (nsec1… or 64 hex characters)" in error.message
        assert "nostr.keys" in error.message  # names where the key came from
        assert key.strip() not in str(error)
        assert key.strip()[5:25] not in str(error)


def test_public_key_in_the_key_file_gets_its_own_message(
    make_config: Callable[..., config.Config],
) -> None:
    cfg = make_config(key=NPUB)
    with pytest.raises(ConfigError) as info:
        nostr_settings.check_credentials(cfg, "default")
    assert "public key" in info.value.message
    assert NPUB not in str(info.value)


def test_shape_check_agrees_with_nostr_sdk_on_random_keys() -> None:
    for _ in range(50):
        secret = n.Keys.generate().secret_key()
        for text in (secret.to_bech32(), secret.to_hex()):
            assert n.Keys.parse(
                nostr_settings.normalise_secret_key(text, "k")
            ).secret_key().to_hex() == (secret.to_hex())


def test_key_file_open_to_others_is_refused(
    make_config: Callable[..., config.Config], isolated_home: Path
) -> None:
    cfg = make_config()
    path = secret_file(isolated_home / ".config/plurcast/nostr.keys", NSEC, 0o644)
    with pytest.raises(ConfigError) as info:
        nostr_settings.check_credentials(cfg, "default")
    assert info.value.hint == f"chmod 600 {path}"


def test_env_key_wins_for_the_default_account_only(
    make_config: Callable[..., config.Config],
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = n.Keys.generate()
    secret_file(isolated_home / ".config/plurcast/nostr-test.keys", HEX)
    cfg = make_config(named='keys_file = "~/.config/plurcast/nostr-test.keys"')
    monkeypatch.setenv(nostr_settings.KEY_ENV, other.secret_key().to_bech32())
    assert nostr.load_keys(cfg, "default").public_key().to_hex() == other.public_key().to_hex()
    assert nostr.load_keys(cfg, "test").public_key().to_bech32() == NPUB


def test_env_key_garbage_names_the_variable_not_the_value(
    make_config: Callable[..., config.Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(key=None)
    monkeypatch.setenv(nostr_settings.KEY_ENV, "nsec1notakeyatall")
    with pytest.raises(ConfigError) as info:
        nostr_settings.check_credentials(cfg, "default")
    assert nostr_settings.KEY_ENV in info.value.message
    assert "notakeyatall" not in str(info.value)


def test_named_account_never_uses_the_default_accounts_key(
    make_config: Callable[..., config.Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(named="")
    monkeypatch.setenv(nostr_settings.KEY_ENV, NSEC)
    with pytest.raises(ConfigError) as info:
        nostr_settings.check_credentials(cfg, "test")
    assert info.value.hint is not None
    assert "keys_file" in info.value.hint
    assert "[accounts.nostr.test]" in info.value.hint
    assert nostr_settings.KEY_ENV not in info.value.hint


def test_missing_keys_file_setting_names_setting_and_env(
    make_config: Callable[..., config.Config],
) -> None:
    cfg = make_config(key=None)
    with pytest.raises(ConfigError) as info:
        nostr_settings.check_credentials(cfg, "default")
    assert info.value.hint is not None
    assert "keys_file" in info.value.hint
    assert "[nostr]" in info.value.hint
    assert nostr_settings.KEY_ENV in info.value.hint


def test_unknown_account_and_missing_section(
    make_config: Callable[..., config.Config], write_config: Callable[[str], Path]
) -> None:
    with pytest.raises(ConfigError, match='no Nostr account "work"'):
        nostr_settings.check_credentials(make_config(), "work")
    write_config('[mastodon]\ninstance = "m.example"\n')
    with pytest.raises(ConfigError, match="Nostr is not configured"):
        nostr_settings.check_credentials(config.load(), "default")


def test_check_credentials_does_not_import_nostr_sdk(
    make_config: Callable[..., config.Config], config_path: Path
) -> None:
    make_config(relays=["wss://relay.example", "ws://127.0.0.1:7777"])
    code = (
        "import sys\n"
        "from plurcast import config\n"
        "from plurcast.platforms import nostr_settings\n"
        "nostr_settings.check_credentials(config.load(), 'default')\n"
        "loaded = [m for m in ('nostr_sdk', 'plurcast.platforms.nostr') if m in sys.modules]\n"
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


# --- relays and options --------------------------------------------------------------


def test_relays_are_read_and_deduplicated(make_config: Callable[..., config.Config]) -> None:
    cfg = make_config(relays=["wss://a.example", "ws://127.0.0.1:7777/", "wss://a.example"])
    assert nostr_settings.relays(cfg, "default") == ["wss://a.example", "ws://127.0.0.1:7777/"]


def test_named_account_falls_back_to_the_default_relays(
    make_config: Callable[..., config.Config], isolated_home: Path
) -> None:
    secret_file(isolated_home / ".config/plurcast/nostr-test.keys", HEX)
    keys_line = 'keys_file = "~/.config/plurcast/nostr-test.keys"'
    cfg = make_config(relays=["wss://a.example"], named=keys_line)
    assert nostr_settings.relays(cfg, "test") == ["wss://a.example"]
    cfg = make_config(
        relays=["wss://a.example"], named=f'{keys_line}\nrelays = ["wss://b.example"]'
    )
    assert nostr_settings.relays(cfg, "test") == ["wss://b.example"]
    nostr_settings.check_credentials(cfg, "test")


@pytest.mark.parametrize(
    "value",
    ["[]", '"wss://a.example"', '["https://a.example"]', '["wss://"]', '["wss://a b"]', "[3]"],
)
def test_bad_relays_are_config_errors(
    make_config: Callable[..., config.Config], write_config: Callable[[str], Path], value: str
) -> None:
    make_config()
    write_config(f'[nostr]\nkeys_file = "~/.config/plurcast/nostr.keys"\nrelays = {value}\n')
    cfg = config.load()
    with pytest.raises(ConfigError) as info:
        nostr_settings.relays(cfg, "default")
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError):
        nostr_settings.check_credentials(cfg, "default")


def test_no_relays_at_all(
    make_config: Callable[..., config.Config], write_config: Callable[[str], Path]
) -> None:
    make_config()
    write_config('[nostr]\nkeys_file = "~/.config/plurcast/nostr.keys"\n')
    with pytest.raises(ConfigError, match="no Nostr relays") as info:
        nostr_settings.check_credentials(config.load(), "default")
    assert info.value.hint is not None
    assert "relays = " in info.value.hint


@pytest.mark.parametrize(
    "extra",
    ["min_relays = 0", "min_relays = 3", "min_relays = true", "timeout = 0", 'timeout = "x"'],
)
def test_bad_min_relays_or_timeout(make_config: Callable[..., config.Config], extra: str) -> None:
    cfg = make_config(relays=["wss://a.example", "wss://b.example"], extra=extra)
    with pytest.raises(ConfigError):
        nostr_settings.check_credentials(cfg, "default")


def test_from_config_reads_min_relays_and_timeout(
    make_config: Callable[..., config.Config],
) -> None:
    cfg = make_config(
        relays=["wss://a.example", "wss://b.example"], extra="min_relays = 2\ntimeout = 2.5"
    )
    publisher = nostr.NostrPublisher.from_config(cfg, "default")
    assert (publisher.min_relays, publisher.timeout, publisher.account) == (2, 2.5, "default")
    assert publisher.relays == ["wss://a.example", "wss://b.example"]
    assert publisher.public_key == NPUB
    defaults = nostr.NostrPublisher.from_config(make_config(), "default")
    assert (defaults.min_relays, defaults.timeout) == (1, 10.0)


# --- classifying relay answers -------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        (None, "accepted"),
        ("duplicate: already have this event", "accepted"),
        ("duplicate:", "accepted"),
        ("invalid: bad signature", "permanent"),
        ("blocked: you are banned", "permanent"),
        ("restricted: not allowed to write", "permanent"),
        ("pow: difficulty 26 is less than 30", "permanent"),
        ("Blocked: upper case prefix", "permanent"),
        ("rate-limited: slow down", "rate_limited"),
        ("error: could not save", "transient"),
        ("timeout", "transient"),
        ("relay not connected", "transient"),
        ("auth-required: please authenticate", "transient"),
        ("something odd: happened", "transient"),
        ("", "transient"),
    ],
)
def test_classify_relay_answer(reason: str | None, kind: str) -> None:
    assert nostr_answers.classify_relay_answer(reason) == kind


NOTE = "note1example"


def test_outcome_sent_when_quorum_accepts_duplicates_included() -> None:
    answers = {"wss://a": None, "wss://b": "duplicate: have it", "wss://c": "blocked: spam"}
    outcome = nostr_answers.outcome_from_answers(answers, 2, NOTE)
    assert outcome.kind is OutcomeKind.SENT
    assert outcome.remote_id == NOTE
    assert outcome.remote_url is None
    assert outcome.detail == {
        "wss://a": "ok",
        "wss://b": "duplicate: have it",
        "wss://c": "blocked: spam",
    }


def test_outcome_permanent_when_every_relay_refuses_for_good() -> None:
    answers = {"wss://x": "blocked: spam", "wss://y": "invalid: event too large"}
    outcome = nostr_answers.outcome_from_answers(answers, 1, NOTE)
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error == "wss://x: blocked: spam; wss://y: invalid: event too large"
    assert outcome.remote_id is None


def test_outcome_permanent_when_the_quorum_is_out_of_reach() -> None:
    answers = {"wss://a": None, "wss://b": "blocked: no", "wss://c": "timeout"}
    outcome = nostr_answers.outcome_from_answers(answers, 3, NOTE)
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.error is not None
    assert outcome.error.startswith("accepted by 1 of the 3 relays required; ")
    assert "wss://b: blocked: no; wss://c: timeout" in outcome.error


def test_outcome_transient_while_a_retry_could_reach_the_quorum() -> None:
    answers = {"wss://a": "blocked: no", "wss://b": "timeout"}
    outcome = nostr_answers.outcome_from_answers(answers, 1, NOTE)
    assert outcome.kind is OutcomeKind.TRANSIENT
    assert outcome.error == "wss://a: blocked: no; wss://b: timeout"


def test_outcome_rate_limited_only_when_that_is_the_only_failure() -> None:
    limited = {"wss://a": "rate-limited: slow", "wss://b": "rate-limited: later"}
    assert nostr_answers.outcome_from_answers(limited, 1, NOTE).kind is OutcomeKind.RATE_LIMITED
    mixed = {"wss://a": "rate-limited: slow", "wss://b": "error: disk full"}
    assert nostr_answers.outcome_from_answers(mixed, 1, NOTE).kind is OutcomeKind.TRANSIENT
    with_ok = {"wss://a": None, "wss://b": "rate-limited: slow"}
    assert nostr_answers.outcome_from_answers(with_ok, 2, NOTE).kind is OutcomeKind.RATE_LIMITED


def test_publisher_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        nostr.NostrPublisher(KEYS, [])
    with pytest.raises(ConfigError):
        nostr.NostrPublisher(KEYS, ["ws://127.0.0.1:1"], min_relays=2)
    with pytest.raises(ConfigError):
        nostr.NostrPublisher(KEYS, ["http://x.example"])


# --- publishing to a real (in-process) relay -----------------------------------------


def test_prepare_signs_a_kind1_note_created_now() -> None:
    async def scenario() -> str:
        return await nostr.NostrPublisher(KEYS, ["ws://127.0.0.1:1"]).prepare(work())

    before = int(time.time())
    payload = asyncio.run(scenario())
    after = math.ceil(time.time())
    event = n.Event.from_json(payload)
    assert event.verify()
    assert event.kind().as_u16() == 1
    assert event.content() == CONTENT
    assert event.author().to_bech32() == NPUB
    assert event.tags() == []
    assert before <= event.created_at().as_secs() <= after


def test_publish_sends_the_note_to_the_relay() -> None:
    async def scenario() -> None:
        async with local_relay() as url:
            publisher = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            try:
                payload = await publisher.prepare(work())
                outcome = await publisher.publish(payload)
            finally:
                await publisher.close()
            event = n.Event.from_json(payload)
            assert outcome.kind is OutcomeKind.SENT, outcome
            assert outcome.remote_id == event.id().to_bech32()
            assert (outcome.remote_id or "").startswith("note1")
            assert outcome.remote_url is None
            assert outcome.detail == {url: "ok"}
            stored = await events_on(url)
            assert [e.id().to_hex() for e in stored] == [event.id().to_hex()]
            assert stored[0].content() == CONTENT

    asyncio.run(scenario())


def test_resending_the_stored_payload_is_the_same_event_once() -> None:
    async def scenario() -> None:
        async with local_relay() as url:
            first = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            payload = await first.prepare(work("once only"))
            one = await first.publish(payload)
            await first.close()
            # a restarted process: a new publisher re-sends the stored payload
            second = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            two = await second.publish(payload)
            three = await second.publish(payload)
            await second.close()
            assert one.kind is two.kind is three.kind is OutcomeKind.SENT
            assert one.remote_id == two.remote_id == three.remote_id
            assert len(await events_on(url)) == 1

    asyncio.run(scenario())


def test_publish_does_not_depend_on_the_clock() -> None:
    """A payload signed long ago goes out unchanged: same id, its own created_at."""

    async def scenario() -> None:
        old = n.Timestamp.from_secs(int(time.time()) - 3 * 86400)
        event = n.EventBuilder(n.Kind(1), "old draft").custom_created_at(old).finalize(KEYS)
        async with local_relay() as url:
            publisher = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            outcome = await publisher.publish(event.as_json())
            await publisher.close()
            assert outcome.kind is OutcomeKind.SENT
            assert outcome.remote_id == event.id().to_bech32()
            (stored,) = await events_on(url)
            assert stored.created_at().as_secs() == old.as_secs()

    asyncio.run(scenario())


def test_relay_down_is_transient_within_the_timeout() -> None:
    """No relay listens: the publish ends by itself (a hang would meet the test's patience)
    with a transient outcome; `make bench` measures how soon."""

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{free_port()}"
        publisher = nostr.NostrPublisher(KEYS, [url], timeout=1.0)
        payload = await publisher.prepare(work())
        for _ in range(2):  # first attempt and a retry on the same client
            outcome = await asyncio.wait_for(publisher.publish(payload), PATIENCE)
            assert outcome.kind is OutcomeKind.TRANSIENT, outcome
            assert outcome.error is not None
            assert outcome.error.startswith(f"{url}: ")
            assert set(outcome.detail) == {url}
        await publisher.close()

    asyncio.run(scenario())


def test_relay_that_never_answers_is_transient_within_the_timeout(silent_port: int) -> None:
    """The relay takes the connection and never answers: the publish waits its 1-s timeout
    (at least), then ends by itself, transient; `make bench` measures how soon."""

    async def scenario() -> None:
        url = f"ws://127.0.0.1:{silent_port}"
        publisher = nostr.NostrPublisher(KEYS, [url], timeout=1.0)
        payload = await publisher.prepare(work())
        started = time.monotonic()
        outcome = await asyncio.wait_for(publisher.publish(payload), PATIENCE)
        assert time.monotonic() - started >= 1.0
        assert outcome.kind is OutcomeKind.TRANSIENT
        await publisher.close()

    asyncio.run(scenario())


def test_one_relay_down_min_relays_1_is_sent_with_both_answers() -> None:
    async def scenario() -> None:
        down = f"ws://127.0.0.1:{free_port()}"
        async with local_relay() as up:
            publisher = nostr.NostrPublisher(KEYS, [up, down], min_relays=1, timeout=ANSWER_TIMEOUT)
            outcome = await publisher.publish(await publisher.prepare(work()))
            await publisher.close()
        assert outcome.kind is OutcomeKind.SENT, outcome
        assert set(outcome.detail) == {up, down}
        assert outcome.detail[up] == "ok"
        assert outcome.detail[down] != "ok"

    asyncio.run(scenario())


def test_one_relay_down_min_relays_2_is_transient() -> None:
    async def scenario() -> None:
        down = f"ws://127.0.0.1:{free_port()}"
        async with local_relay() as up:
            # The down relay is waited for until the timeout: 3 s, time enough for the up
            # one's answer on a busy machine without making the test slow.
            publisher = nostr.NostrPublisher(KEYS, [up, down], min_relays=2, timeout=3)
            outcome = await publisher.publish(await publisher.prepare(work()))
            await publisher.close()
        assert outcome.kind is OutcomeKind.TRANSIENT, outcome
        assert outcome.detail[up] == "ok"
        assert outcome.error is not None
        assert outcome.error.startswith("accepted by 1 of the 2 relays required; ")
        assert down in outcome.error
        assert up not in outcome.error

    asyncio.run(scenario())


def test_silent_relay_does_not_hold_up_a_reached_quorum(silent_port: int) -> None:
    """One relay accepts, the other never answers: the publish returns after `linger`, with
    the silent relay still pending — not after its timeout, which would report it timed
    out (and take a minute)."""

    async def scenario() -> None:
        silent = f"ws://127.0.0.1:{silent_port}"
        async with local_relay() as up:
            publisher = nostr.NostrPublisher(KEYS, [up, silent], timeout=60, linger=0.5)
            outcome = await publisher.publish(await publisher.prepare(work()))
            await publisher.close()
        assert outcome.kind is OutcomeKind.SENT
        assert outcome.detail[silent].startswith("pending:")

    asyncio.run(scenario())


def test_tampered_payload_is_permanent_and_never_sent() -> None:
    async def scenario() -> None:
        async with local_relay() as url:
            publisher = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            payload = json.loads(await publisher.prepare(work("original")))
            payload["content"] = "changed"
            outcome = await publisher.publish(json.dumps(payload))
            garbage = await publisher.publish("{not json")
            await publisher.close()
            assert outcome.kind is OutcomeKind.PERMANENT
            assert outcome.error == "stored event failed verification"
            assert garbage.kind is OutcomeKind.PERMANENT
            assert await events_on(url) == []

    asyncio.run(scenario())


def test_relay_demanding_proof_of_work_is_permanent() -> None:
    async def scenario() -> None:
        async with local_relay(min_pow=30) as url:
            publisher = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            outcome = await publisher.publish(await publisher.prepare(work()))
            await publisher.close()
        assert outcome.kind is OutcomeKind.PERMANENT, outcome
        assert outcome.error is not None
        assert outcome.error.startswith(f"{url}: pow: ")

    asyncio.run(scenario())


def test_relay_rate_limiting_is_rate_limited() -> None:
    async def scenario() -> None:
        async with local_relay(notes_per_minute=2) as url:
            publisher = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            outcomes = [
                await publisher.publish(await publisher.prepare(work(f"{i}"))) for i in range(3)
            ]
            await publisher.close()
        assert [o.kind for o in outcomes] == [OutcomeKind.SENT] * 2 + [OutcomeKind.RATE_LIMITED]
        assert outcomes[2].error == f"{url}: rate-limited: slow down"

    asyncio.run(scenario())


class Blocking(n.WritePolicy):  # type: ignore[misc]
    async def admit_event(self, event: Any, socket_addr: str) -> Any:
        return n.WritePolicyResult.REJECT("spam")


def test_relay_blocking_the_event_is_permanent_and_an_accepting_one_wins() -> None:
    async def scenario() -> None:
        # the relay calls the Python policy from its own thread: tell uniffi our loop
        n.uniffi_set_event_loop(asyncio.get_running_loop())
        try:
            async with local_relay(write_policy=Blocking()) as blocked:
                lone = nostr.NostrPublisher(KEYS, [blocked], timeout=ANSWER_TIMEOUT)
                alone = await lone.publish(await lone.prepare(work()))
                await lone.close()
                async with local_relay() as ok:
                    both = nostr.NostrPublisher(KEYS, [blocked, ok], timeout=ANSWER_TIMEOUT)
                    mixed = await both.publish(await both.prepare(work()))
                    await both.close()
        finally:
            n.uniffi_set_event_loop(None)
        assert alone.kind is OutcomeKind.PERMANENT
        assert alone.error == f"{blocked}: blocked: spam"
        assert mixed.kind is OutcomeKind.SENT
        assert mixed.detail == {blocked: "blocked: spam", ok: "ok"}

    asyncio.run(scenario())


def test_publisher_from_config_publishes_and_reconnects_after_close(
    make_config: Callable[..., config.Config],
) -> None:
    async def scenario() -> None:
        async with local_relay() as url:
            publisher = nostr.NostrPublisher.from_config(make_config(relays=[url]), "default")
            first = await publisher.publish(await publisher.prepare(work("one")))
            await publisher.close()
            second = await publisher.publish(await publisher.prepare(work("two")))
            await publisher.close()
            assert first.kind is second.kind is OutcomeKind.SENT
            assert sorted(e.content() for e in await events_on(url)) == ["one", "two"]

    asyncio.run(scenario())


def test_concurrent_publishes_share_one_client() -> None:
    async def scenario() -> None:
        async with local_relay() as url:
            publisher = nostr.NostrPublisher(KEYS, [url], timeout=ANSWER_TIMEOUT)
            payloads = [await publisher.prepare(work(f"post {i}")) for i in range(5)]
            outcomes = await asyncio.gather(*(publisher.publish(p) for p in payloads))
            client = publisher._client
            await publisher.close()
            assert client is not None
            assert [o.kind for o in outcomes] == [OutcomeKind.SENT] * 5
            assert len(await events_on(url)) == 5

    asyncio.run(scenario())


def test_prepare_now_signs_a_plain_note_and_leaves_the_rest_to_prepare() -> None:
    """What needs the network (a reply, images) or mining (proof of work) is not made at once."""
    from plurcast.platforms.base import Reply

    publisher = nostr.NostrPublisher(KEYS, ["ws://127.0.0.1:1"])
    plain = publisher.prepare_now(work()._replace(metadata={"cw": "spoilers"}))
    assert plain is not None
    event = n.Event.from_json(plain)
    assert event.verify() and event.content() == CONTENT
    assert [t.to_vec() for t in event.tags()] == [["content-warning", "spoilers"]]
    for other in (
        work()._replace(reply=Reply(reference="note1abc")),
        work()._replace(metadata={"images": ["ab" * 32]}),
        work()._replace(metadata={"nostr": {"pow_difficulty": 8}}),
    ):
        assert publisher.prepare_now(other) is None
