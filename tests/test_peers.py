"""The local Nostr peers, and the nostr-sdk 0.45.1 behaviour the adapter is written against.

These tests pin down what a real relay (nostr-relay 1.14) and nostr-sdk actually do, so the
adapter's error handling rests on observed facts rather than on the NIPs' good intentions:

`Client.send_event(event, ok_timeout=...)` never raises for relay trouble; it returns
`SendEventOutput(id=EventId, success=[RelayUrl], failed={RelayUrl: reason})` (use `str()` on the
RelayUrl keys: `'ws://127.0.0.1:PORT'`, no trailing slash). Observed:

- accepted:           success=[url], failed={}
- re-sent (real):     success=[],    failed={url: 'duplicate: exists'}
- re-sent (in-proc):  success=[url], failed={}          (the in-process relay says OK true again)
- refused by a validator (too old, >1 h in the future, content > 4096 chars, bad signature):
  nostr-relay 1.14 answers `["OK", "", false, "invalid: ..."]` with an EMPTY event id, so
  nostr-sdk cannot match it and reports failed={url: 'timeout'} after `ok_timeout`
  (default 10 s). It also pauses that connection 2 s, 4 s, 8 s... after each refusal.
- relay down: failed={url: 'timeout'} after `ok_timeout` (or sometimes 'relay not connected');
  `connect_timeout` does not shorten it, `ok_timeout` does. The event stays queued in that
  client and is delivered when it reconnects, so "failed" can still mean "published later".
- relay back after a restart: reconnect with `await client.disconnect()` then
  `await client.try_connect(timeout)`; left alone, nostr-sdk reconnects after 5-9 s.
- never connected: failed={url: 'relay is initialized but not ready'} at once.
- no relay added: raises NostrSdkError.Generic('relay/s not specified').
- tampered event: nostr-sdk refuses to send it at all, raising NostrSdkError.Generic with
  'Invalid event ID' (content changed) or 'Invalid signature' (sig changed).

The real relay checks `created_at` against the *real* clock (refused if > 1 h ahead or > 1 year
old): events dated by the tests' fixed clock (conftest NOW) can be refused, as a 'timeout'.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nostr_sdk import (
    Client,
    ClientBuilder,
    Event,
    EventBuilder,
    EventId,
    Keys,
    Kind,
    NostrSdkError,
    Output,
    RelayUrl,
    SendEventOutput,
    Tag,
    Timestamp,
)

from tests.helpers import ANSWER_TIMEOUT, PATIENCE, free_port
from tests.peers import fixtures, nostr
from tests.peers.nostr import InProcessRelay, NostrRelay, publish_raw
from tests.peers.process import dies_with_parent

# The fixtures, made visible to this module. (An import of the names would do too, but ruff
# would flag every test argument as a redefinition, F811.)
nostr_relay = fixtures.nostr_relay
inprocess_relay = fixtures.inprocess_relay

ROOT = Path(__file__).resolve().parents[1]
SECOND = timedelta(seconds=1)  # for sends meant to time out
# For sends and connections meant to succeed: long, so a busy machine is never a timeout.
ANSWER = timedelta(seconds=ANSWER_TIMEOUT)


async def connected_client(url: str) -> Client:
    """The client setup that worked: a connect timeout, and wait for the connection."""
    client = ClientBuilder().connect_timeout(ANSWER).build()
    await client.add_relay(RelayUrl.parse(url))
    await client.connect(and_wait=ANSWER)
    return client


def shape(out: SendEventOutput | Output) -> tuple[list[str], dict[str, str]]:
    return [str(url) for url in out.success], {
        str(url): reason for url, reason in out.failed.items()
    }


def note(text: str, keys: Keys, created_at: int | None = None) -> Event:
    builder = EventBuilder(Kind(1), text).tags([Tag.hashtag("plurcast")])
    if created_at is not None:
        builder = builder.custom_created_at(Timestamp.from_secs(created_at))
    return builder.finalize(keys)


def as_dict(event: Event) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.as_json())
    return parsed


# --------------------------------------------------------------------------- real relay


def test_real_relay_accepts_a_signed_event_and_stores_it(nostr_relay: NostrRelay) -> None:
    keys = Keys.generate()
    event = note("hello from plurcast", keys)

    async def publish() -> SendEventOutput:
        client = await connected_client(nostr_relay.url)
        try:
            return await client.send_event(event, ok_timeout=ANSWER)
        finally:
            await client.shutdown()

    out = asyncio.run(publish())

    assert shape(out) == ([nostr_relay.url], {})
    assert out.id.to_hex() == event.id().to_hex()
    assert nostr_relay.stored_events() == [as_dict(event)]
    assert nostr_relay.count_by_content("hello from plurcast") == 1


def test_real_relay_refuses_a_resent_event_as_duplicate(nostr_relay: NostrRelay) -> None:
    """A retry after a lost OK must count as delivered: the adapter sees 'duplicate: exists'."""
    event = note("only once", Keys.generate())

    async def publish_twice() -> tuple[SendEventOutput, SendEventOutput]:
        client = await connected_client(nostr_relay.url)
        try:
            first = await client.send_event(event, ok_timeout=ANSWER)
            return first, await client.send_event(event, ok_timeout=ANSWER)
        finally:
            await client.shutdown()

    first, second = asyncio.run(publish_twice())

    assert shape(first) == ([nostr_relay.url], {})
    assert shape(second) == ([], {nostr_relay.url: "duplicate: exists"})
    assert second.id.to_hex() == event.id().to_hex()
    assert nostr_relay.count_by_content("only once") == 1


def test_tampered_event_is_refused_by_nostr_sdk_and_by_the_relay(nostr_relay: NostrRelay) -> None:
    """`Event.from_json` parses anything well-formed; only `verify()` (a bool, it never raises)
    tells a forged event apart, and `send_event` refuses to send it. Sent raw, the relay says
    `["OK", "", false, "invalid: Bad signature"]`, with an empty id, after a 2 s pause."""
    event = as_dict(note("original", Keys.generate()))
    changed_content = {**event, "content": "tampered"}
    changed_sig = {**event, "sig": ("0" if event["sig"][0] != "0" else "1") + event["sig"][1:]}

    forged = Event.from_json(json.dumps(changed_content))
    assert (forged.verify(), forged.verify_id(), forged.verify_signature()) == (False, False, True)
    bad_sig = Event.from_json(json.dumps(changed_sig))
    assert (bad_sig.verify(), bad_sig.verify_id(), bad_sig.verify_signature()) == (
        False,
        True,
        False,
    )

    async def try_send() -> list[str]:
        client = await connected_client(nostr_relay.url)
        errors = []
        try:
            for bad in (forged, bad_sig):
                with pytest.raises(NostrSdkError.Generic) as caught:
                    await client.send_event(bad, ok_timeout=SECOND)
                errors.append(str(caught.value))
        finally:
            await client.shutdown()
        return errors

    assert asyncio.run(try_send()) == ["'Invalid event ID'", "'Invalid signature'"]

    ok = publish_raw(nostr_relay.url, changed_sig, timeout=5)
    assert ok == ["OK", "", False, "invalid: Bad signature"]
    assert nostr_relay.stored_events() == []


def test_refusal_by_the_real_relay_reaches_nostr_sdk_as_a_timeout(nostr_relay: NostrRelay) -> None:
    """A correctly signed event older than a year: the relay refuses it (`invalid: <ts> is too
    old`) but with an empty id in its OK, so nostr-sdk only sees 'timeout' after ok_timeout.
    Beware: the same happens to events dated > 1 h ahead of the real clock (tests' fake NOW!)."""
    two_years_ago = int(time.time()) - 2 * 365 * 86400
    event = note("from long ago", Keys.generate(), created_at=two_years_ago)

    async def publish() -> tuple[SendEventOutput, float]:
        client = await connected_client(nostr_relay.url)
        try:
            started = time.monotonic()
            out = await client.send_event(event, ok_timeout=SECOND)
            return out, time.monotonic() - started
        finally:
            await client.shutdown()

    out, elapsed = asyncio.run(publish())

    assert shape(out) == ([], {nostr_relay.url: "timeout"})
    assert elapsed >= 0.9  # it waited out ok_timeout: the refusal never reached it
    assert nostr_relay.stored_events() == []
    raw = publish_raw(nostr_relay.url, as_dict(event), timeout=5)
    assert raw == ["OK", "", False, f"invalid: {two_years_ago} is too old"]


def test_relay_down_then_back(nostr_relay: NostrRelay) -> None:
    """While the relay is down, send_event fails after `ok_timeout` ('timeout', or at times
    'relay not connected') -- yet the event stays queued in the client and IS delivered once
    that client reconnects: a failed send may still be published.

    After a restart nostr-sdk reconnects by itself only after its retry interval (measured
    5-9 s; `RelayOptions.retry_interval` has a 5 s minimum). `client.connect()` does nothing
    meanwhile, and `disconnect()` + `connect(and_wait=...)` reconnected in only ~half of the
    trials (status stuck PENDING/DISCONNECTED). What works every time (15/15, ~2 ms):
    `await client.disconnect(); await client.try_connect(timeout)`.
    """
    keys = Keys.generate()
    url = nostr_relay.url

    async def scenario() -> dict[str, Any]:
        client = await connected_client(url)
        try:
            before = await client.send_event(note("before", keys), ok_timeout=ANSWER)
            nostr_relay.stop()
            down = await client.send_event(note("while down", keys), ok_timeout=SECOND)
            nostr_relay.restart()
            await client.disconnect()
            # Less than nostr-sdk's own retry interval (5 s at the least): the connection it
            # reports is try_connect's own.
            reconnected = await client.try_connect(4 * SECOND)
            after = await client.send_event(note("after", keys), ok_timeout=ANSWER)
        finally:
            await client.shutdown()
        return {
            "before": shape(before),
            "down": shape(down),
            "reconnected": shape(reconnected),  # try_connect returns the same shape
            "after": shape(after),
        }

    seen = asyncio.run(scenario())

    assert seen["before"] == ([url], {})
    assert seen["down"][0] == []
    assert seen["down"][1][url] in {"timeout", "relay not connected"}
    assert seen["reconnected"] == ([url], {})
    assert seen["after"] == ([url], {})
    assert sorted(e["content"] for e in nostr_relay.stored_events()) == [
        "after",
        "before",
        "while down",  # reported as failed, delivered on reconnect
    ]


def test_client_shutdown_drops_events_queued_while_the_relay_was_down(
    nostr_relay: NostrRelay,
) -> None:
    """The other half: a client shut down after the failure never delivers the queued event,
    so a publisher that uses one client per run gets no late ghost deliveries."""
    keys = Keys.generate()

    async def scenario() -> list[tuple[list[str], dict[str, str]]]:
        client = await connected_client(nostr_relay.url)
        try:
            nostr_relay.stop()
            down = await client.send_event(note("while down", keys), ok_timeout=SECOND)
        finally:
            await client.shutdown()
        nostr_relay.restart()
        client = await connected_client(nostr_relay.url)
        try:
            after = await client.send_event(note("after", keys), ok_timeout=ANSWER)
        finally:
            await client.shutdown()
        return [shape(down), shape(after)]

    down, after = asyncio.run(scenario())
    assert down[0] == []
    assert after == ([nostr_relay.url], {})
    assert [e["content"] for e in nostr_relay.stored_events()] == ["after"]


def test_a_relay_that_dies_while_starting_reports_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "nostr-relay"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'boom: cannot open database' >&2\nexit 3\n")
    fake.chmod(0o755)
    relay = NostrRelay(tmp_path / "relay", executable=fake)

    with pytest.raises(RuntimeError, match=r"(?s)exited with code 3.*boom: cannot open database"):
        relay.start()
    assert not relay.running


def test_start_refuses_a_port_that_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        relay = NostrRelay(tmp_path, port=taken.getsockname()[1], executable=tmp_path / "unused")
        with pytest.raises(RuntimeError, match="already in use"):
            relay.start()


# --------------------------------------------------------------------------- in-process relay


def test_inprocess_relay_round_trip(inprocess_relay: InProcessRelay) -> None:
    keys = Keys.generate()
    event = note("in process", keys)

    async def publish_twice() -> tuple[SendEventOutput, SendEventOutput]:
        client = await connected_client(inprocess_relay.url)
        try:
            first = await client.send_event(event, ok_timeout=ANSWER)
            return first, await client.send_event(event, ok_timeout=ANSWER)
        finally:
            await client.shutdown()

    first, second = asyncio.run(publish_twice())

    assert shape(first) == ([inprocess_relay.url], {})
    assert shape(second) == ([inprocess_relay.url], {})  # lenient: OK true for a duplicate
    assert inprocess_relay.fetch_events() == [as_dict(event)]
    assert inprocess_relay.count_by_content("in process") == 1


# --------------------------------------------------------------------------- nostr-sdk facts


def test_send_event_without_a_usable_relay() -> None:
    event = note("nowhere", Keys.generate())

    async def scenario() -> tuple[list[str], dict[str, str]]:
        with pytest.raises(NostrSdkError.Generic, match="relay/s not specified"):
            await Client().send_event(event)
        client = Client()
        url = f"ws://127.0.0.1:{free_port()}"
        await client.add_relay(RelayUrl.parse(url))  # added but never connected
        try:
            return shape(await client.send_event(event, ok_timeout=SECOND))
        finally:
            await client.shutdown()

    success, failed = asyncio.run(scenario())
    assert success == []
    assert list(failed.values()) == ["relay is initialized but not ready"]


def test_event_json_ids_and_keys() -> None:
    keys = Keys.generate()
    assert Keys.parse(keys.secret_key().to_bech32()).public_key().to_hex() == (
        Keys.parse(keys.secret_key().to_hex()).public_key().to_hex()
    )
    assert keys.public_key().to_bech32().startswith("npub1")
    event = note("ids", keys, created_at=1_790_000_000)

    parsed = Event.from_json(event.as_json())
    assert parsed.verify() is True
    assert parsed.id() == event.id()
    assert (parsed.created_at().as_secs(), parsed.kind().as_u16()) == (1_790_000_000, 1)
    assert [tag.to_vec() for tag in parsed.tags()] == [["t", "plurcast"]]

    bech32 = event.id().to_bech32()
    assert bech32.startswith("note1")
    assert EventId.parse(bech32).to_hex() == event.id().to_hex()
    assert EventId.parse(event.id().to_hex()).to_bech32() == bech32
    with pytest.raises(NostrSdkError.Generic, match="missing field `id`"):
        Event.from_json('{"content": "x"}')


# --------------------------------------------------------------------------- command line


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (PID 1 here may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_cli_server(directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        dies_with_parent(
            [sys.executable, "-m", "tests.peers.nostr", "serve", "--dir", str(directory)]
        ),
        cwd=ROOT,
        # HOME is a temp dir in tests: point the child at the real relay cache.
        env={**os.environ, "PLURCAST_PEERS_DIR": str(nostr.PEERS_DIR)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "serve printed nothing"
    return proc.stdout.readline()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_cli_serve_prints_the_url_and_stops_the_relay_on_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "relay"
    proc = _start_cli_server(directory)
    try:
        url = _first_line(proc).rstrip("\n")
        assert url.startswith("ws://127.0.0.1:")
        relay_pid = int((directory / nostr.PID_NAME).read_text())
        event = note("via the cli", Keys.generate())

        async def publish() -> SendEventOutput:
            client = await connected_client(url)
            try:
                return await client.send_event(event, ok_timeout=ANSWER)
            finally:
                await client.shutdown()

        assert shape(asyncio.run(publish())) == ([url], {})
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=PATIENCE)

    assert proc.returncode == 0, stderr
    assert stdout == ""  # the URL was the only line
    assert not _alive(relay_pid)

    listed = subprocess.run(
        [sys.executable, "-m", "tests.peers.nostr", "events", "--dir", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert lines == [
        {
            "id": event.id().to_hex(),
            "created_at": event.created_at().as_secs(),
            "content": "via the cli",
        }
    ]


# Runs `serve`, SIGKILLs it and reports what became of its relay. It makes itself the "subreaper"
# so the orphaned relay is reparented to it and can be reaped: PID 1 on some machines (this VM,
# containers) never reaps, and a zombie would linger in `ps`.
_SUPERVISOR = """\
import ctypes, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
directory = sys.argv[1]
serve = subprocess.Popen(
    [sys.executable, "-m", "tests.peers.nostr", "serve", "--dir", directory],
    stdout=subprocess.PIPE, text=True,
)
serve.stdout.readline()
relay_pid = int(open(os.path.join(directory, "relay.pid")).read())
serve.kill()
serve.wait()
deadline = time.monotonic() + 60  # a hang guard: a busy machine stops it in seconds
while time.monotonic() < deadline:
    try:
        pid, status = os.waitpid(relay_pid, os.WNOHANG)
    except ChildProcessError:  # not reparented to us yet
        pid = 0
    if pid:
        print("stopped", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.05)
else:
    os.kill(relay_pid, signal.SIGKILL)
    print("survived")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_relay_does_not_outlive_a_killed_starter(tmp_path: Path) -> None:
    """A pytest or demo killed with SIGKILL (CI timeout) must not leave a relay running."""
    supervisor = subprocess.run(
        [sys.executable, "-c", _SUPERVISOR, str(tmp_path / "relay")],
        cwd=ROOT,
        env={**os.environ, "PLURCAST_PEERS_DIR": str(nostr.PEERS_DIR)},
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=True,
    )
    # uvicorn stops gracefully on the SIGTERM, then re-raises it: exit status -15.
    assert supervisor.stdout.split() == ["stopped", "-15"]


# --------------------------------------------------------------------------- the venv cache


def test_peers_dir_comes_from_the_environment() -> None:
    assert nostr._peers_dir_from_env({"PLURCAST_PEERS_DIR": "/p", "XDG_CACHE_HOME": "/x"}) == Path(
        "/p"
    )
    assert nostr._peers_dir_from_env({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path(
        "/x/plurcast-peers"
    )
    assert nostr._peers_dir_from_env({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.cache/plurcast-peers"
    )
    assert nostr._peers_dir_from_env({"HOME": "/h"}) == Path("/h/.cache/plurcast-peers")
    # Fixed at import, from the real environment: not inside this test's temporary HOME.
    assert not nostr.PEERS_DIR.is_relative_to(os.environ["HOME"])


def test_ensure_builds_once_even_when_called_concurrently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Path] = []

    def fake_build(root: Path, venv: Path, *, lock_fd: int, tool: nostr.VenvTool) -> None:
        time.sleep(0.2)  # long enough for the other threads to queue on the lock
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").symlink_to(sys.executable)
        (venv / "bin" / "nostr-relay").write_text("")
        (venv / nostr._MARKER).write_text("{}")
        builds.append(venv)

    monkeypatch.setattr(nostr, "_build", fake_build)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(nostr.ensure_nostr_relay(tmp_path)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = tmp_path / f"nostr-relay-{nostr.RELAY_VERSION}" / "bin" / "nostr-relay"
    assert results == [expected] * 4
    assert len(builds) == 1

    # An interpreter that disappeared (dangling bin/python) means: build again.
    (builds[0] / "bin" / "python").unlink()
    (builds[0] / "bin" / "python").symlink_to(tmp_path / "gone")
    monkeypatch.setattr(nostr, "_build", lambda root, venv, lock_fd, tool: builds.append(venv))
    nostr.ensure_nostr_relay(tmp_path)
    assert len(builds) == 2
