"""A real Mastodon API server on 127.0.0.1 for the tests: mastodon_mock (PyPI, written by others).

`mastodon-mock==0.6.1` is a stateful FastAPI implementation of Mastodon's REST API. Its pins
agree with ours, so it is in the `test` extra of our own venv. It runs as a server *process*
(`python -m mastodon_mock serve`) on a free port, its data in memory. Starting one costs ~2 CPU
seconds, so tests share one: each gets it *reset* (`POST /api/v1/_mock/reset` drops and remakes
every table, seeds alice and bob again and clears the faults; account ids never repeat, so a
status an earlier test made is not alice's any more). After a test that may have left a
request on its way in, the next one gets a fresh process on another port instead (the old one
stopped by its PID): after one that held requests (a `latency`/`timeout` fault, a `delay_ms`)
or started plur-send processes (`daemons`). A test that asks for options (`ratelimit`) gets
a server of its own.

What the tests rely on, checked against 0.6.1 (and Mastodon.py 2.3.3 as the client):

- Accounts and tokens come from the config's seed: `alice` / `alice_token`, `bob` / `bob_token`;
  any other token is answered `401 {"error": "This method requires an authenticated user"}`.
- `Idempotency-Key` on POST /api/v1/statuses: the same key from the same account returns the
  status made the first time (same id), checked *before* validation; another account's same key
  makes a new status.
- Over 500 characters (len() of the text): `422 {"error": "Validation failed: Text is too long
  (maximum is 500 characters)"}`.
- `GET /api/v1/statuses/:id/source` gives the text exactly as posted (`content` is HTML).
- Fault injection, `POST /api/v1/_mock/faults` (`add_fault`): the first matching rule fires and
  counts down; `status` answers `{"error": <default text>}` (or `body`) with its `headers`;
  `ratelimit` answers 429 with `Retry-After: 300`, `X-RateLimit-Remaining: 0` and
  `X-RateLimit-Reset: <epoch + 300>` unless `headers` overrides them; `timeout` holds the
  request 30 s and *then serves it* (a post arrives late); `malformed` answers 200 with a
  truncated JSON body.
- With `ratelimit=N` every answer carries `X-RateLimit-Limit/Remaining/Reset` (Reset in epoch
  seconds, where Mastodon itself sends ISO 8601); request N+1 in the window gets a 429 without
  `Retry-After`.
- Ready ~1.5 s after the start (imports); SIGTERM stops it in ~0.2 s, except while a `timeout`
  fault holds a request: then it waits for that request, so `stop` kills it after a grace.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Self

import pytest

from tests.peers.process import Peer, dies_with_parent, free_port

__all__ = ["TOKENS", "MastodonMock", "mastodon_server"]

#: Seeded accounts and their access tokens.
TOKENS = {"alice": "alice_token", "bob": "bob_token"}

START_TIMEOUT = 60.0  # a hang guard: a busy machine starts it in seconds
STOP_GRACE = 1.0
LOG_NAME = "mastodon-mock.log"


class MastodonMock(Peer):
    """mastodon_mock 0.6.1 as a subprocess on 127.0.0.1; config and log in `directory`.

    `ratelimit=N` turns on its limiter: N requests per token per `window` seconds.
    """

    def __init__(self, directory: Path, *, ratelimit: int | None = None, window: int = 300) -> None:
        self.directory = directory
        self.port = free_port()
        self.ratelimit = ratelimit
        self.window = window
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.held = False  # a fault may still hold a request: not to be reset for another test

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    def _config(self) -> str:
        lines = [
            # Its uploads go in its own directory (left alone, it makes one in /tmp per start).
            f"media_storage_path = {json.dumps(str(self.directory / 'media'))}",
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}',
            '[database]\npath = ":memory:"',
        ]
        if self.ratelimit is not None:
            lines.append(
                f"[ratelimit]\nenabled = true\nlimit = {self.ratelimit}\n"
                f"window_seconds = {self.window}"
            )
        for name, token in TOKENS.items():
            lines.append(f'[[seed.accounts]]\nusername = "{name}"\naccess_token = "{token}"')
        return "\n\n".join(lines) + "\n"

    def start(self) -> Self:
        """Start the server and wait until it answers; raise with its log if it does not."""
        if self.process is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "mock.toml"
        config.write_text(self._config())
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "mastodon_mock", "serve", "--config", str(config)]
        self.process = subprocess.Popen(
            dies_with_parent([*cmd, "--log-level", "warning"]),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,  # it would read ./.mastodon_mock.toml or ./pyproject.toml
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mastodon_mock did not start on {self.url}:\n{self.log_tail()}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            self.request("GET", "/api/v1/instance", timeout=0.5)
        except (OSError, urllib.error.URLError):
            return False
        return True

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE s (a held request delays a graceful stop)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        return ""

    # -- the HTTP API --

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        timeout: float = 5.0,
    ) -> Any:
        """One request; the parsed JSON answer. Raises urllib.error.HTTPError for non-2xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return json.loads(answer.read() or b"null")

    def add_fault(
        self,
        effect: dict[str, Any],
        *,
        count: int | None = 1,
        method: str = "POST",
        path: str = "/api/v1/statuses",
    ) -> dict[str, Any]:
        """Make the next `count` matching requests fail (None: until cleared); the rule as stored.

        e.g. `{"type": "ratelimit", "headers": {"Retry-After": "2"}}`, `{"type": "status",
        "status": 503}`, `{"type": "timeout"}`.
        """
        if effect.get("type") in ("latency", "timeout") or effect.get("delay_ms"):
            self.held = True
        rule = {"match": {"methods": [method], "path": path}, "effect": effect, "count": count}
        result: dict[str, Any] = self.request("POST", "/api/v1/_mock/faults", body=rule)
        return result

    def reset(self) -> None:
        """As if just started: every table made anew and seeded, no faults."""
        self.request("POST", "/api/v1/_mock/reset", timeout=60)

    def clear_faults(self) -> None:
        self.request("DELETE", "/api/v1/_mock/faults")

    def statuses(self, token: str = TOKENS["alice"]) -> list[dict[str, Any]]:
        """The account's statuses, oldest first, each with its `text` exactly as posted."""
        me = self.request("GET", "/api/v1/accounts/verify_credentials", token=token)
        found = self.request("GET", f"/api/v1/accounts/{me['id']}/statuses?limit=40", token=token)
        for status in found:
            source = self.request("GET", f"/api/v1/statuses/{status['id']}/source", token=token)
            status["text"] = source["text"]
        return list(reversed(found))

    def texts(self, token: str = TOKENS["alice"]) -> list[str]:
        return [status["text"] for status in self.statuses(token)]

    def close(self) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.process.pid}" if self.process else "stopped"
        return f"<MastodonMock {self.url} {state}>"


class _Shared:
    """The server the tests without options share: started when first needed, replaced by a
    fresh one (its own port and directory) after a test that may have left requests coming."""

    def __init__(self, directories: pytest.TempPathFactory) -> None:
        self.directories = directories
        self.server: MastodonMock | None = None

    def take(self) -> MastodonMock:
        server = self.server
        if server is not None and server.process is not None and server.process.poll() is None:
            server.reset()
            return server
        self.drop()
        self.server = MastodonMock(self.directories.mktemp("mastodon-mock")).start()
        return self.server

    def drop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="session")
def shared_mastodon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Shared]:
    shared = _Shared(tmp_path_factory)
    try:
        yield shared
    finally:
        shared.drop()


@pytest.fixture
def mastodon_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MastodonMock]:
    """A started mastodon_mock with accounts alice and bob (see TOKENS) and nothing else, for
    one test (the shared one, reset; see the module's docstring).

    Options through indirect parametrisation, e.g.
    `@pytest.mark.parametrize("mastodon_server", [{"ratelimit": 2}], indirect=True)`.
    """
    options: dict[str, Any] = getattr(request, "param", {})
    if options:
        with MastodonMock(tmp_path / "mastodon-mock", **options) as own:
            yield own
        return
    shared: _Shared = request.getfixturevalue("shared_mastodon")
    server = shared.take()
    try:
        yield server
    finally:
        if server.held or "daemons" in request.fixturenames:
            shared.drop()
