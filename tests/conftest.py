"""Each test gets its own HOME and XDG dirs and a fixed clock: the real user dirs stay untouched."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import hypothesis.configuration
import pytest
from click.testing import CliRunner, Result

from plurcast import clikit, queue
from plurcast import config as config_module
from tests.helpers import (
    BASE_CONFIG,
    NOW,
    AnotherDatabase,
    Clock,
    Daemons,
    Run,
    add_post,
    secret_file,
)
from tests.peers.blossom import blossom_server
from tests.peers.bluesky import bluesky_pds
from tests.peers.fixtures import inprocess_relay, nostr_relay
from tests.peers.mastodon import mastodon_server, shared_mastodon
from tests.peers.nostr import InProcessRelay
from tests.peers.pages import page_server
from tests.peers.postgres import Backend, backend, postgres_cluster

# Hypothesis keeps its examples and caches under the user's cache, not in the working tree.
hypothesis.configuration.set_hypothesis_home_dir(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plurcast" / "hypothesis"
)

# Real peers, for every test module.
__all__ = [
    "backend",
    "blossom_server",
    "bluesky_pds",
    "inprocess_relay",
    "mastodon_server",
    "nostr_relay",
    "page_server",
    "postgres_cluster",
    "shared_mastodon",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `sqlite_only` in a suite that runs on both backends runs on SQLite alone
    (it checks something only SQLite has: file modes, PRAGMAs, sqlite3's own errors)."""
    dropped = [
        item
        for item in items
        if item.get_closest_marker("sqlite_only")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("backend") == "postgresql"  # type: ignore[attr-defined]
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in set(dropped)]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("TZ", "UTC")
    for var in (
        "PLURCAST_CONFIG",
        "PLURCAST_DB_PATH",
        "PLURCAST_DATABASE_URL",
        "PLURCAST_HOST",
        "PLURCAST_DEBUG",
        "PLURCAST_LOG_LEVEL",
        "PLURCAST_LOG_FORMAT",
        "NO_COLOR",
        "EDITOR",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A command run with --log-level/--log-format sets up the root logger; the next test
    gets it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("nostr_sdk", "asyncio", "websockets")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in noisy.items():
        logging.getLogger(name).setLevel(was)


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
        secret_file(path.parent / name, key)
    return path


@pytest.fixture
def nostr_key(isolated_home: Path) -> Path:
    """A fresh Nostr secret key (nsec) in a mode-600 file."""
    import nostr_sdk

    return secret_file(
        isolated_home / "nostr-secret.keys", nostr_sdk.Keys.generate().secret_key().to_bech32()
    )


@pytest.fixture
def one_post_in_an_hour(
    write_config: Callable[[str], Path], nostr_key: Path, inprocess_relay: InProcessRelay
) -> Callable[[str], None]:
    """Writes a config for the in-process relay (and `more` of it) and a queue holding one
    post due in an hour."""

    def make(more: str = "") -> None:
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
            f'relays = ["{inprocess_relay.url}"]\n{more}'
        )
        cfg = config_module.load()
        conn = queue.open_db(cfg)
        now = time.time()
        add_post(conn, cfg, "in an hour", now + 3600, now=now)
        conn.close()

    return make


@pytest.fixture
def db_path(isolated_home: Path) -> Path:
    return isolated_home / ".local" / "share" / "plurcast" / "posts.db"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """The CLIs' clock (`clikit.now`), at NOW until the test moves it."""
    c = Clock(NOW)
    monkeypatch.setattr(clikit, "now", lambda db=None: c.now)
    yield c


@pytest.fixture
def run() -> Run:
    def invoke(cli: click.Command, *args: str, input: str | bytes | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    """plur-send processes the test starts; every one still running is killed after it."""
    d = Daemons(tmp_path)
    yield d
    d.stop_all()


@pytest.fixture
def another_database(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AnotherDatabase:
    """`with another_database() as copy:` — an empty database of the test's kind, which every
    tool uses from then on (where an export is imported into a copy); its path (on PostgreSQL
    one that is never made: `run_sql` and `media_stored` ask the url)."""

    @contextlib.contextmanager
    def make() -> Iterator[Path]:
        if backend.is_postgresql:
            assert backend.cluster is not None
            with backend.cluster.database() as url:
                monkeypatch.setenv("PLURCAST_DATABASE_URL", url)
                yield tmp_path / "unused.db"
            return
        copy = tmp_path / "copy" / "posts.db"
        monkeypatch.setenv("PLURCAST_DB_PATH", str(copy))
        yield copy

    return make
