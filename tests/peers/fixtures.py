"""pytest fixtures for the real local peers; load with `pytest_plugins = ["tests.peers.fixtures"]`.

Each fixture starts its peer on a free port for one test and stops it, by its own PID,
afterwards, even when the test fails. The real relay's venv is built on first use (once per
machine, see `tests.peers.nostr.ensure_nostr_relay`), so the first test using it is ~15 s slower.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.nostr import InProcessRelay, NostrRelay

__all__ = ["inprocess_relay", "nostr_relay"]


@pytest.fixture
def nostr_relay(tmp_path: Path) -> Iterator[NostrRelay]:
    """A started nostr-relay 1.14 (strict: refuses duplicates and invalid events).

    Its config, SQLite database and log are in `tmp_path / "nostr-relay"`.
    """
    relay = NostrRelay(tmp_path / "nostr-relay")
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def inprocess_relay() -> Iterator[InProcessRelay]:
    """nostr-sdk's in-process relay: memory only, ready in ~2 ms, says OK true to duplicates."""
    relay = InProcessRelay()
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
