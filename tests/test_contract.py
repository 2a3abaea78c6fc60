"""One contract, every platform adapter, each against its real local server.

What the engine relies on (plurcast/platforms/base.py): prepare once → a payload the
engine stores; publish(payload) any number of times → the same single post; publish
never raises for a server that is down; check_credentials imports no SDK.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from plurcast import config as config_module
from plurcast.platforms.base import OutcomeKind, Publisher, Work
from plurcast.pool import default_factories
from tests.helpers import ANSWER_TIMEOUT, DOWN_TIMEOUT, PATIENCE, free_port, secret_file
from tests.peers.bluesky import Pds
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import InProcessRelay

PLATFORMS = ["nostr", "mastodon", "bluesky"]
SDK_MODULES = {"nostr": "nostr_sdk", "mastodon": "mastodon", "bluesky": "atproto"}
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Server:
    """A platform's config section pointing at a live server, and how to count its posts."""

    section: str
    count: Callable[[str], int]
    down_section: str  # the same account pointed at a port where nothing listens


# A server that is up gets a timeout it never meets on a busy machine; one that is down, a
# short one (the contract is that it comes back transient, not how soon).
UP = f"timeout = {ANSWER_TIMEOUT:g}\n"
DOWN = f"timeout = {DOWN_TIMEOUT:g}\n"


@pytest.fixture(params=PLATFORMS)
def server(request: pytest.FixtureRequest, isolated_home: Path, nostr_key: Path) -> Server:
    platform = request.param
    if platform == "nostr":
        relay: InProcessRelay = request.getfixturevalue("inprocess_relay")
        common = f'keys_file = "{nostr_key}"\n'
        return Server(
            f'[nostr]\n{common}{UP}relays = ["{relay.url}"]\n',
            lambda text: sum(e["content"] == text for e in relay.fetch_events()),
            f'[nostr]\n{common}{DOWN}relays = ["ws://127.0.0.1:{free_port()}"]\n',
        )
    if platform == "mastodon":
        mock: MastodonMock = request.getfixturevalue("mastodon_server")
        token = secret_file(isolated_home / "mastodon.token", TOKENS["alice"])
        common = f'token_file = "{token}"\n'
        return Server(
            f'[mastodon]\ninstance = "{mock.url}"\n{common}{UP}',
            lambda text: mock.texts().count(text),
            f'[mastodon]\ninstance = "http://127.0.0.1:{free_port()}"\n{common}{DOWN}',
        )
    pds: Pds = request.getfixturevalue("bluesky_pds")
    account = pds.create_account()
    password = secret_file(isolated_home / "bluesky.password", account.app_password)
    common = f'handle = "{account.handle}"\napp_password_file = "{password}"\n'
    return Server(
        f'[bluesky]\n{common}{UP}pds = "{pds.url}"\n',
        lambda text: sum(r["value"]["text"] == text for r in pds.list_records(account.did)),
        f'[bluesky]\n{common}{DOWN}pds = "http://127.0.0.1:{free_port()}"\n',
    )


def publisher(write_config: Callable[[str], Path], section: str) -> Publisher:
    write_config(section)
    cfg = config_module.load()
    platform = section.split("]", maxsplit=1)[0].strip("[")
    return default_factories()[platform](cfg, "default")


def work(platform: str, text: str) -> Work:
    return Work(1, "contract-post", platform, "default", text)


def test_one_prepared_payload_published_twice_is_one_post(
    server: Server, write_config: Callable[[str], Path]
) -> None:
    pub = publisher(write_config, server.section)
    text = f"contract {pub.platform} ✨ Grüße {time.time_ns()}"

    async def scenario() -> tuple[str, Any, Any]:
        try:
            payload = await pub.prepare(work(pub.platform, text))
            return payload, await pub.publish(payload), await pub.publish(payload)
        finally:
            await pub.close()

    payload, first, again = run(scenario())
    json.loads(payload)  # a stored payload is JSON: it is what a later process re-sends
    assert (first.kind, again.kind) == (OutcomeKind.SENT, OutcomeKind.SENT)
    assert first.remote_id and first.remote_id == again.remote_id
    assert server.count(text) == 1


def test_a_server_that_is_down_is_transient_never_an_exception(
    server: Server, write_config: Callable[[str], Path]
) -> None:
    pub = publisher(write_config, server.down_section)
    assert pub.timeout == DOWN_TIMEOUT

    async def scenario() -> Any:
        try:
            payload = await pub.prepare(work(pub.platform, "into the void"))
            return await asyncio.wait_for(pub.publish(payload), PATIENCE)  # a hang fails
        finally:
            await pub.close()
            await pub.close()  # closing twice is harmless: the engine may close on reload too

    outcome = run(scenario())
    assert outcome.kind == OutcomeKind.TRANSIENT
    assert outcome.error


@pytest.mark.parametrize("platform", PLATFORMS)
def test_credentials_are_checked_without_importing_the_sdk(platform: str) -> None:
    """plur-post calls check_credentials on every post: it must stay fast."""
    code = (
        "import sys, importlib\n"
        f"importlib.import_module('plurcast.platforms.{platform}')\n"
        f"assert {SDK_MODULES[platform]!r} not in sys.modules\n"
        "assert 'asyncio' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
