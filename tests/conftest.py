"""Each test gets its own HOME and XDG dirs and a fixed clock: the real user dirs stay untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from plurcast import clikit
from tests.peers.blossom import blossom_server
from tests.peers.bluesky import bluesky_pds
from tests.peers.fixtures import inprocess_relay, nostr_relay
from tests.peers.mastodon import mastodon_server
from tests.peers.pages import page_server

# Real peers, for every test module.
__all__ = [
    "blossom_server",
    "bluesky_pds",
    "inprocess_relay",
    "mastodon_server",
    "nostr_relay",
    "page_server",
]

# A Sunday morning; Europe/Berlin is on CET (UTC+1).
NOW = datetime(2026, 11, 22, 10, 4, 43, tzinfo=UTC)

BASE_CONFIG = """\
timezone = "Europe/Berlin"

[nostr]
keys_file = "~/.config/plurcast/nostr.keys"
relays = ["ws://127.0.0.1:1"]

[mastodon]
instance = "mastodon.example"
token_file = "~/.config/plurcast/mastodon.token"

[bluesky]
handle = "alice.test"
app_password_file = "~/.config/plurcast/bluesky.password"

[accounts.nostr.test]
keys_file = "~/.config/plurcast/nostr-test.keys"

[defaults]
platforms = ["nostr", "mastodon"]
"""


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("TZ", "UTC")
    for var in ("PLURCAST_CONFIG", "PLURCAST_DB_PATH", "PLURCAST_DEBUG", "NO_COLOR", "EDITOR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def config_path(isolated_home: Path) -> Path:
    return isolated_home / ".config" / "plurcast" / "config.toml"


@pytest.fixture
def write_config(config_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(text)
        return config_path

    return write


# Valid secp256k1 secret keys (any 64-hex value in [1, n-1]); not anyone's real key.
TEST_KEYS = {
    "nostr.keys": "11" * 32,
    "nostr-test.keys": "22" * 32,
    "mastodon.token": "test-mastodon-token",
    "bluesky.password": "test-app-password",
}


@pytest.fixture
def configured(write_config: Callable[[str], Path]) -> Path:
    """The usual config: three platforms, Berlin time, a named nostr account `test`."""
    path = write_config(BASE_CONFIG)
    for name, key in TEST_KEYS.items():
        (path.parent / name).write_text(key + "\n")
        (path.parent / name).chmod(0o600)
    return path


@pytest.fixture
def nostr_key(isolated_home: Path) -> Path:
    """A fresh Nostr secret key (nsec) in a mode-600 file."""
    import nostr_sdk

    path = isolated_home / "nostr-secret.keys"
    path.write_text(nostr_sdk.Keys.generate().secret_key().to_bech32() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def db_path(isolated_home: Path) -> Path:
    return isolated_home / ".local" / "share" / "plurcast" / "posts.db"


@dataclass
class Clock:
    now: datetime

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock(NOW)
    monkeypatch.setattr(clikit, "now", lambda: c.now)
    yield c


Run = Callable[..., Result]


@pytest.fixture
def run() -> Run:
    def invoke(cli: click.Command, *args: str, input: str | bytes | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke
