"""A fourth platform, `microblog`, for tests: all that adding a platform takes.

This module is its adapter (`check_credentials`, `publisher`) and `ENTRY` its registry
entry; nothing else of plurcast knows it. It posts with the standard library to any
server that speaks Mastodon's `POST /api/v1/statuses` (the tests use mastodon_mock), with
an Idempotency-Key per delivery so that a re-send is the same status.

`python -m tests.microblog plur-post ARGS…` runs a console script with the entry in the
registry, as it would be had it been written into plurcast/platforms/registry.py.

Config: `[microblog] server = "http://127.0.0.1:PORT"`, `token_file = "…"` (mode 600).
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from plurcast.errors import ConfigError
from plurcast.platforms import registry
from plurcast.platforms.base import Outcome, OutcomeKind, Work, one_line

if TYPE_CHECKING:
    from plurcast.config import Config
    from plurcast.media.store import MediaReader

NAME = "microblog"
ENTRY = registry.Platform(
    name=NAME,
    title="Microblog",
    module="tests.microblog",
    posts_per_hour=60,
    text_limits=(registry.TextLimit("characters", len, registry.Maximum(280, "max_chars")),),
)


def register() -> None:
    """Put ENTRY into the registry, after the three, as a fourth entry written there would be
    (before the config module is imported: it reads the registry's defaults then)."""
    platforms = (*registry.PLATFORMS, ENTRY)
    registry.PLATFORMS = platforms
    registry.NAMES = tuple(p.name for p in platforms)
    registry._BY_NAME = {p.name: p for p in platforms}
    registry.ORDER = {name: i for i, name in enumerate(registry.NAMES)}


def _settings(cfg: Config, account: str) -> tuple[str, str, float]:
    from plurcast.platforms import accounts  # reads the config: not before `register`

    acc = accounts.account(cfg, NAME, account, needs="server and token_file")
    server, table = acc.inherited("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://127.0.0.1")):
        raise ConfigError(f"{acc.cfg_path}: {table}.server must be an https:// address")
    token = accounts.secret(acc, "token_file", "PLURCAST_MICROBLOG_TOKEN", "Microblog token")
    return server.rstrip("/"), token.text.strip(), accounts.timeout(acc)


def check_credentials(cfg: Config, account: str) -> None:
    _settings(cfg, account)


def publisher(cfg: Config, account: str) -> MicroblogPublisher:
    return MicroblogPublisher(account, *_settings(cfg, account))


class MicroblogPublisher:
    platform = NAME

    def __init__(self, account: str, server: str, token: str, timeout: float) -> None:
        self.account = account
        self.server = server
        self.token = token
        self.timeout = timeout

    async def prepare(self, work: Work) -> str:
        key = f"plurcast-{work.post_id}-{work.delivery_id}"
        return json.dumps({"status": work.content, "key": key})

    async def publish(self, payload: str, media: MediaReader | None = None) -> Outcome:
        return await asyncio.to_thread(self._post, json.loads(payload))

    def _post(self, body: dict[str, str]) -> Outcome:
        request = urllib.request.Request(
            f"{self.server}/api/v1/statuses",
            data=json.dumps({"status": body["status"]}).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Idempotency-Key": body["key"],
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                status = json.load(answer)
        except urllib.error.HTTPError as exc:
            kind = OutcomeKind.TRANSIENT if exc.code >= 500 else OutcomeKind.PERMANENT
            return Outcome(kind, error=one_line(f"HTTP {exc.code}"), auth=exc.code == 401)
        except OSError as exc:
            return Outcome(OutcomeKind.TRANSIENT, error=one_line(str(exc)))
        return Outcome(OutcomeKind.SENT, remote_id=str(status["id"]), remote_url=status.get("url"))

    async def close(self) -> None:
        return None


if __name__ == "__main__":
    register()
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name=sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.exit(script.load()())
