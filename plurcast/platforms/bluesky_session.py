"""A Bluesky account's session: logging in, refreshing, keeping it — and what the server's
refusals mean.

createSession is limited per handle (30 per 5 min, 300 per day), so a `Session` logs in once
and keeps the session — in memory, and for the next process in
`<database dir>/sessions/bluesky-<account>.session` (mode 600, written atomically). The SDK
refreshes the access token (valid 2 h) with the refresh token (90 days) and every new pair is
saved. The app password is used only when no stored session works; then at most once per
LOGIN_COOLDOWN per session (288 a day at most, under the daily limit), and an app password the
server refused is not tried again until the file holding it changes.

The client is async (httpx), so that the daemon's event loop never blocks on Bluesky; it
belongs to the loop it was made in, and a request from another loop gets a new client carrying
the same session (no login). `import atproto` costs ~450 ms: it happens on first use.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plurcast.errors import ConfigError
from plurcast.platforms.base import MAX_REASON_CHARS, Outcome, OutcomeKind, one_line
from plurcast.secrets import read_secret_file

if TYPE_CHECKING:  # asyncio (~35 ms), logging, tempfile ...: only a publishing process needs them
    import asyncio
    import logging
    from collections.abc import Callable

# Seconds between two logins with the app password by one session (see the module docstring).
LOGIN_COOLDOWN = 300.0
# What the server answers (HTTP 400) when the session's tokens are expired, revoked or garbled.
SESSION_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("plurcast.platforms.bluesky")


def sdk() -> Any:
    """The atproto client package, imported on first use (~450 ms); it ships no type hints."""
    import atproto_client  # type: ignore[import-untyped, unused-ignore]
    import atproto_client.exceptions  # type: ignore[import-untyped, unused-ignore]
    import atproto_client.request  # type: ignore[import-untyped, unused-ignore]

    return atproto_client


# --- what the server said ------------------------------------------------------------------


def xrpc_reason(exc: BaseException) -> tuple[int | None, str, str]:
    """(HTTP status, XRPC error name, message) of an SDK request error; no status without a
    response (a timeout, a refused connection: then the message is httpx's)."""
    response = getattr(exc, "response", None)
    if response is None:
        cause = exc.__cause__ or exc
        return None, "", one_line(f"{type(cause).__name__}: {cause}")
    content = response.content
    if isinstance(content, dict):
        name, message = content.get("error"), content.get("message")
    elif isinstance(content, bytes):
        name, message = None, content.decode(errors="replace")
    else:  # the SDK's XrpcError model
        name, message = getattr(content, "error", None), getattr(content, "message", None)
    return (
        int(response.status_code),
        str(name or ""),
        one_line(str(message or ""), MAX_REASON_CHARS),
    )


def is_session_error(exc: BaseException) -> bool:
    """The server refused the session's token (expired, revoked, garbled): refresh or log in."""
    status, name, _ = xrpc_reason(exc)
    return status == 401 or (status == 400 and name in SESSION_ERRORS)


def outcome_for_error(exc: BaseException, now: float | None = None) -> Outcome:
    """What an exception from the atproto SDK (or httpx below it) means for the delivery.

    429 → RATE_LIMITED after Retry-After (else until `ratelimit-reset`); 401/403 and a refused
    session token → PERMANENT auth; any other 4xx (400 InvalidRequest: a record the server
    will never take) → PERMANENT with the server's reason; 408/409/5xx, timeouts and connection
    failures → TRANSIENT.
    """
    ex = sdk().exceptions
    now = time.time() if now is None else now
    status, name, message = xrpc_reason(exc)
    said = f"{name}: {message}" if name else message
    reason = f"HTTP {status} {said}" if status is not None else said
    if isinstance(exc, ex.RateLimitExceededError) or status == 429:
        wait = getattr(exc, "retry_after", None)
        reset_at = getattr(exc, "reset_at", None)
        if wait is None and reset_at is not None:
            wait = max(0.0, reset_at.timestamp() - now)
        return Outcome(OutcomeKind.RATE_LIMITED, error=reason, retry_after=wait)
    if isinstance(exc, ex.InvokeTimeoutError):
        return Outcome(OutcomeKind.TRANSIENT, error="no answer from the server in time")
    if status is None:
        return Outcome(OutcomeKind.TRANSIENT, error=reason)
    if status in (401, 403) or (status == 400 and name in SESSION_ERRORS):
        return Outcome(OutcomeKind.PERMANENT, error=reason, auth=True)
    if status in (408, 409, 425) or status >= 500:
        return Outcome(OutcomeKind.TRANSIENT, error=reason)
    return Outcome(OutcomeKind.PERMANENT, error=reason)


class NoSession(Exception):
    """No session could be had; `outcome` says why and what the delivery should do."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class Session:
    """One account's session and its client: ours, the stored one, or a new login."""

    def __init__(
        self,
        handle: str,
        pds: str,
        app_password: Callable[[], str],
        *,
        timeout: float,
        file: Path | None,
        account: str,
    ) -> None:
        self.handle = handle
        self.pds = pds
        self.timeout = timeout
        self.file = file
        self.account = account  # for the log
        self.logins = 0  # logins tried with the app password
        self._app_password = app_password  # read at each login: a fixed file is picked up
        self._refused: str | None = None  # digest of the app password the server refused
        self._last_login: float | None = None  # time.monotonic() of the last login
        self._login_failure: Outcome | None = None  # why the last login failed, unless refused
        self._session: Any = None  # the SDK's Session (handle, did, tokens), once known
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._client_ready = False  # the client holds self._session
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def did(self) -> str | None:
        """The account's DID, once a session is known."""
        return None if self._session is None else str(self._session.did)

    @property
    def current_handle(self) -> str:
        """The handle as the session knows it (the server may have changed its case)."""
        return self.handle if self._session is None else str(self._session.handle)

    async def client(self) -> Any:
        """The client of this loop, holding a session: ours, the stored one, or a new login."""
        async with self._guard():
            client = self.client_here()
            if not self._client_ready:
                session = self.current() or self._stored()
                if session is not None:
                    await client.login(session_string=session, fetch_bsky_profile=False)
                else:
                    await self._login(client)
                self._client_ready = True
            return client

    async def renewed(self, refused: str | None) -> Any:
        """A client whose session is not `refused`, from the cheapest source that has one.

        Another task of this process may have renewed it already; another process may have
        saved a newer one; the refresh token may still be good (refreshSession); only when
        the server refuses that too does the app password log in.
        """
        async with self._guard():
            client = self.client_here()
            current = self.current()
            if current is not None and current != refused:
                return client
            stored = self._stored()
            if stored is not None and stored != refused:
                await client.login(session_string=stored, fetch_bsky_profile=False)
            elif not await self._refreshed(client):
                await self._login(client)
            self._client_ready = True
            return client

    def client_here(self) -> Any:
        """The client for the running loop (httpx connections cannot move between loops)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            atproto = sdk()
            client = atproto.AsyncClient(
                self.pds, request=atproto.request.AsyncRequest(timeout=self.timeout)
            )
            client.on_session_change(self._on_session_change)
            self._client, self._client_loop, self._client_ready = client, loop, False
        return self._client

    def current(self) -> str | None:
        """The session as the SDK encodes it (its tokens), once known."""
        return None if self._session is None else str(self._session.encode())

    async def close(self) -> None:
        """Close the HTTP connections; the session stays (in memory and on disk) for reuse."""
        import asyncio

        client, self._client = self._client, None
        self._client_ready = False
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.request.close()
        self._client_loop = None

    # -- getting and keeping a session --

    async def _refreshed(self, client: Any) -> bool:
        """Renew the session with its refresh token; False when the server refuses the token.

        The SDK's own refresh (what it does by itself before the access token expires); it
        reports the new tokens through the session callback, which saves them.
        """
        if self._session is None:
            return False
        if not self._client_ready:
            await client.login(session_string=self.current(), fetch_bsky_profile=False)
        try:
            await client._refresh_and_set_session()  # private in atproto 0.0.73, which is pinned
        except Exception as exc:
            if not is_session_error(exc):
                raise
            _log().info("bluesky/%s: the refresh token was refused too (%s)", self.account, exc)
            return False
        return True

    async def _login(self, client: Any) -> None:
        """createSession with the app password (the one thing rate-limited per handle)."""
        import hashlib

        try:
            password = self._app_password()
        except ConfigError as exc:
            raise NoSession(Outcome(OutcomeKind.PERMANENT, error=str(exc), auth=True)) from None
        digest = hashlib.sha256(password.encode()).hexdigest()
        if digest == self._refused:
            raise NoSession(self._refused_outcome("refused at an earlier login"))
        if self._last_login is not None:
            wait = self._last_login + LOGIN_COOLDOWN - time.monotonic()
            if wait > 0:
                raise NoSession(self._cooling_down(wait))
        last_login, self._last_login = self._last_login, time.monotonic()
        self.logins += 1
        try:
            await client.login(self.handle, password, fetch_bsky_profile=False)
        except Exception as exc:
            outcome = outcome_for_error(exc)
            if xrpc_reason(exc)[0] is None:  # never reached the server: not a login it counts
                self._last_login = last_login
            if not outcome.auth:
                self._login_failure = outcome
                raise NoSession(outcome) from None
            self._refused = digest
            raise NoSession(self._refused_outcome(str(outcome.error))) from None
        self._login_failure = None
        _log().info("bluesky/%s: logged in as %s", self.account, self.handle)

    def _cooling_down(self, wait: float) -> Outcome:
        """Why there is no login now: the last one's failure (a 429 stays rate-limited), if any."""
        failure = self._login_failure
        if failure is not None:
            return failure._replace(retry_after=max(wait, failure.retry_after or 0.0))
        return Outcome(
            OutcomeKind.TRANSIENT,
            error=f"logged in {LOGIN_COOLDOWN - wait:.0f} s ago already; "
            "waiting before logging in again",
            retry_after=wait,
        )

    def _refused_outcome(self, why: str) -> Outcome:
        return Outcome(
            OutcomeKind.PERMANENT,
            error=f"the app password of {self.handle} was refused ({why}) — make one "
            "in Bluesky's Settings → Privacy and security → App passwords and put it in the "
            "account's app_password_file",
            auth=True,
        )

    def _guard(self) -> asyncio.Lock:
        """A lock for logging in, one per event loop (a Lock belongs to one loop)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _on_session_change(self, event: Any, session: Any) -> None:
        """The SDK's callback after a login, a refresh, or an import: keep the new tokens."""
        self._session = session
        if event != sdk().SessionEvent.IMPORT:
            self._save(session.encode())

    def _stored(self) -> str | None:
        """The session saved for this handle and server, if there is one."""
        path = self.file
        if path is None or not path.exists():
            return None
        try:
            stored = json.loads(read_secret_file(path, "Bluesky session"))
        except ConfigError as exc:
            raise NoSession(Outcome(OutcomeKind.PERMANENT, error=str(exc), auth=True)) from None
        except ValueError:
            _log().warning("bluesky/%s: %s is not a session file; logging in", self.account, path)
            return None
        if not isinstance(stored, dict) or stored.get("handle") != self.handle:
            return None
        session = stored.get("session")
        if stored.get("pds") != self.pds or not isinstance(session, str):
            return None
        try:
            sdk().Session.decode(session)
        except ValueError:
            _log().warning("bluesky/%s: damaged session file %s; logging in", self.account, path)
            return None
        return session

    def _save(self, session: str) -> None:
        """Write the session file atomically, mode 600; a failure costs a login next time only."""
        path = self.file
        if path is None:
            return
        import tempfile

        data = json.dumps({"handle": self.handle, "pds": self.pds, "session": session})
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 600
            try:
                with os.fdopen(fd, "w") as file:
                    file.write(data + "\n")
                    file.flush()
                    os.fsync(file.fileno())
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            _log().warning("bluesky/%s: could not save the session: %s", self.account, exc)
