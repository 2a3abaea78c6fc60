"""Bluesky: posts written into the account's repo with putRecord, one atproto client per account.

The payload the engine stores is the body of a `com.atproto.repo.putRecord` request,
`{"repo", "collection", "rkey", "record"}`, with the record key (a TID), `createdAt` and the
facets fixed when it is prepared; `publish` sends those stored bytes as they are. putRecord of
the same key and record again is a no-op answered with the same CID, so a re-send after a crash
leaves one post (G2) — whereas createRecord with a key that exists answers HTTP 500. ("repo" is
missing only when the account's DID could not be learned while preparing; `publish` then uses
the session's.)

Sessions: createSession is limited per handle (30 per 5 min, 300 per day), so a publisher logs
in once and keeps the session — in memory, and for the next process in
`<database dir>/sessions/bluesky-<account>.session` (mode 600, written atomically). The SDK
refreshes the access token (valid 2 h) with the refresh token (90 days) and every new pair is
saved. The app password is used only when no stored session works; then at most once per
LOGIN_COOLDOWN per publisher (288 a day at most, under the daily limit), and an app password
the server refused is not tried again until the file holding it changes.

`import atproto` costs ~450 ms, so it happens only inside the publisher: `check_credentials`
(what plur-post calls at schedule time) reads and checks the config in pure Python.

Config (the `default` account is `[bluesky]`, named ones `[accounts.bluesky.NAME]`):
    handle             alice.bsky.social (every account names its own)
    app_password_file  a mode-600 file holding an app password (or $PLURCAST_BLUESKY_APP_PASSWORD
                       for the default account); a relative path is relative to the config file
    pds                the account's server, https://bsky.social by default; plain http only to
                       this machine (127.0.0.1, localhost, ::1)
    timeout            seconds per request to the server (default 10)
A named account without `pds` or `timeout` takes the default account's.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plurcast.config import DEFAULT_ACCOUNT, Config
from plurcast.errors import ConfigError
from plurcast.platforms import accounts
from plurcast.platforms.accounts import Account
from plurcast.platforms.base import Outcome, OutcomeKind, Work, one_line
from plurcast.platforms.bluesky_facets import build_facets, mention_handles
from plurcast.secrets import read_secret_file

if TYPE_CHECKING:  # asyncio (~35 ms), logging, tempfile ...: only the publisher needs them
    import asyncio
    import logging
    from collections.abc import Callable

PLATFORM = "bluesky"
PASSWORD_ENV = "PLURCAST_BLUESKY_APP_PASSWORD"
DEFAULT_PDS = "https://bsky.social"
POST_COLLECTION = "app.bsky.feed.post"
PUT_RECORD = "com.atproto.repo.putRecord"
RESOLVE_HANDLE = "com.atproto.identity.resolveHandle"
# Seconds between two logins with the app password by one publisher (see the module docstring).
LOGIN_COOLDOWN = 300.0
# What the server answers (HTTP 400) when the session's tokens are expired, revoked or garbled.
SESSION_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
# Handle syntax (atproto.com/specs/handle): domain labels, the last not starting with a digit.
_HANDLE = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("plurcast.platforms.bluesky")


def _sdk() -> Any:
    """The atproto client package, imported on first use (~450 ms); it ships no type hints."""
    import atproto_client  # type: ignore[import-untyped, unused-ignore]
    import atproto_client.exceptions  # type: ignore[import-untyped, unused-ignore]
    import atproto_client.request  # type: ignore[import-untyped, unused-ignore]

    return atproto_client


# --- configuration -------------------------------------------------------------------


def _account(cfg: Config, account: str) -> Account:
    return accounts.account(cfg, PLATFORM, account, needs="handle and app_password_file")


def normalise_handle(value: object, where: str) -> str:
    """The handle in canonical form (lower case, no leading @), after checking its syntax."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{where}: handle must be a Bluesky handle such as alice.bsky.social",
            'write handle = "alice.bsky.social"',
        )
    handle = value.strip().removeprefix("@").lower()
    if len(handle) > 253 or not _HANDLE.fullmatch(handle):
        raise ConfigError(
            f"{where}: {value!r} is not a Bluesky handle",
            "a handle looks like alice.bsky.social or a domain of your own (no did:, no URL)",
        )
    return handle


def _handle(acc: Account) -> str:
    value = acc.settings.get("handle")
    if value is None:
        raise ConfigError(
            f"no Bluesky handle configured for account {acc.name}",
            f'add handle = "alice.bsky.social" to [{acc.section}] in {acc.cfg_path}',
        )
    return normalise_handle(value, f"{acc.cfg_path}: {acc.section}")


def normalise_pds(value: object, where: str) -> str:
    """The PDS base URL without a trailing slash; https, or http to this machine only."""
    from urllib.parse import urlsplit

    hint = 'write pds = "https://bsky.social" (or your own server\'s https:// URL)'
    if not isinstance(value, str):
        raise ConfigError(f"{where}: pds must be a URL", hint)
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{where}: pds {value!r} is not a URL", hint) from None
    scheme = parts.scheme.lower()
    if (
        not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in url)
        or scheme not in ("http", "https")
    ):
        raise ConfigError(f"{where}: pds {value!r} is not a server URL", hint)
    if scheme == "http" and not accounts.plain_http_allowed(parts.hostname):
        raise ConfigError(
            f"{where}: pds {value!r} uses plain http, which would send the password unencrypted",
            "use https:// (http:// is allowed only to 127.0.0.1 or localhost)",
        )
    return url


def _pds(acc: Account) -> str:
    value, table = acc.inherited("pds")
    if value is None:
        return DEFAULT_PDS
    return normalise_pds(value, f"{acc.cfg_path}: {table}")


def _app_password(acc: Account) -> str:
    """The account's app password, from the environment (default account) or its file."""
    return accounts.secret(acc, "app_password_file", PASSWORD_ENV, "Bluesky app password").text


def check_credentials(cfg: Config, account: str) -> None:
    """What plur-post checks at schedule time, without importing atproto or touching the network.

    The handle's syntax, the app password (file mode, environment), the pds URL and the
    timeout. Whether the server accepts the password is known only when the post is sent.
    Raises ConfigError (exit 2).
    """
    acc = _account(cfg, account)
    _handle(acc)
    _app_password(acc)
    _pds(acc)
    accounts.timeout(acc)


def publisher(cfg: Config, account: str) -> BlueskyPublisher:
    """The account's publisher, for the registry: its settings and secret read now."""
    return BlueskyPublisher.from_config(cfg, account)


def session_path(cfg: Config, account: str) -> Path:
    """Where the account's session is kept: beside the database, which is the user's own."""
    return cfg.db_path.expanduser().parent / "sessions" / f"{PLATFORM}-{account}.session"


# --- record keys -----------------------------------------------------------------------


def tid(micros: int, clock_id: int) -> str:
    """A TID: 53 bits of microseconds since 1970 and a 10-bit clock id, as 13 base32-sortable
    characters (atproto.com/specs/tid); later times sort later."""
    if not 0 <= micros < 1 << 53 or not 0 <= clock_id < 1 << 10:
        raise ValueError("a TID holds 53 bits of microseconds and a 10-bit clock id")
    value = micros << 10 | clock_id
    return "".join(_TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


class _TidClock:
    """Hands out TIDs that never repeat within this process.

    putRecord replaces whatever record holds the key, so two posts must never share one: the
    microseconds are bumped past the last TID's (two posts in one microsecond, or the clock
    stepping back), and a random clock id per TID separates processes.
    """

    def __init__(self) -> None:
        self.last_micros = 0

    def next(self, now: float) -> str:
        import secrets

        self.last_micros = max(int(now * 1_000_000), self.last_micros + 1)
        return tid(self.last_micros, secrets.randbelow(1 << 10))


next_tid = _TidClock().next


# --- what the server said ----------------------------------------------------------------


def _xrpc_reason(exc: BaseException) -> tuple[int | None, str, str]:
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
    return int(response.status_code), str(name or ""), one_line(str(message or ""))


def is_session_error(exc: BaseException) -> bool:
    """The server refused the session's token (expired, revoked, garbled): refresh or log in."""
    status, name, _ = _xrpc_reason(exc)
    return status == 401 or (status == 400 and name in SESSION_ERRORS)


def outcome_for_error(exc: BaseException, now: float | None = None) -> Outcome:
    """What an exception from the atproto SDK (or httpx below it) means for the delivery.

    429 → RATE_LIMITED after Retry-After (else until `ratelimit-reset`); 401/403 and a refused
    session token → PERMANENT auth; any other 4xx (400 InvalidRequest: a record the server
    will never take) → PERMANENT with the server's reason; 408/409/5xx, timeouts and connection
    failures → TRANSIENT.
    """
    ex = _sdk().exceptions
    now = time.time() if now is None else now
    status, name, message = _xrpc_reason(exc)
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


class _NoSession(Exception):
    """No session could be had; `outcome` says why and what the delivery should do."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


# --- the publisher -----------------------------------------------------------------------


class BlueskyPublisher:
    """The Publisher for one Bluesky account: one atproto AsyncClient, logged in on first use.

    The client is async (httpx) so that the daemon's event loop never blocks on Bluesky;
    it belongs to the loop it was made in, and a publish from another loop gets a new one
    carrying the same session (no login).
    """

    platform = PLATFORM

    def __init__(
        self,
        handle: str,
        app_password: Callable[[], str],
        *,
        pds: str = DEFAULT_PDS,
        timeout: float = accounts.DEFAULT_TIMEOUT,
        session_file: Path | None = None,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        if not timeout > 0:
            raise ConfigError("the Bluesky timeout must be a positive number of seconds")
        self.handle = normalise_handle(handle, "Bluesky account")
        self.pds = normalise_pds(pds, "Bluesky account")
        self.timeout = float(timeout)
        self.account = account
        self.session_file = session_file
        self.logins = 0  # logins tried with the app password by this publisher
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

    @classmethod
    def from_config(cls, cfg: Config, account: str = DEFAULT_ACCOUNT) -> BlueskyPublisher:
        acc = _account(cfg, account)
        _app_password(acc)  # a missing or unreadable password is a config error now
        return cls(
            _handle(acc),
            lambda: _app_password(acc),
            pds=_pds(acc),
            timeout=accounts.timeout(acc),
            session_file=session_path(cfg, account),
            account=account,
        )

    @property
    def did(self) -> str | None:
        """The account's DID, once a session is known."""
        return None if self._session is None else str(self._session.did)

    async def prepare(self, work: Work) -> str:
        """The putRecord body: a post record with a fresh TID key, createdAt and facets.

        Logs in if needed, to learn the account's DID (a refused app password ends the
        delivery here, as an auth error), and resolves the handles mentioned in the text.
        A mention whose handle does not resolve stays plain text.
        """
        now = time.time()
        text = work.content
        record: dict[str, Any] = {
            "$type": POST_COLLECTION,
            "text": text,
            "createdAt": _iso_utc(now),
        }
        try:
            client = await self._connected()
        except _NoSession as exc:
            if exc.outcome.auth:
                raise ConfigError(exc.outcome.error or "Bluesky refused the login") from None
            # publish logs in again, or says why not; the mentions can still be resolved.
            _log().warning("bluesky/%s: no session yet: %s", self.account, exc.outcome.error)
            client = self._client_here()
        facets = build_facets(text, await self._resolve(client, mention_handles(text)))
        if facets:
            record["facets"] = facets
        body: dict[str, Any] = {} if self.did is None else {"repo": self.did}
        body |= {"collection": POST_COLLECTION, "rkey": next_tid(now), "record": record}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    async def publish(self, payload: str) -> Outcome:
        """putRecord the stored body; never raises for platform trouble."""
        try:
            request = json.loads(payload)
            rkey = request["rkey"]
            if not isinstance(request["record"], dict) or not isinstance(rkey, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return Outcome(OutcomeKind.PERMANENT, error="stored payload is not a Bluesky record")
        try:
            answer = await self._put(payload, request)
        except _NoSession as exc:
            return exc.outcome
        except Exception as exc:  # whatever the SDK or httpx raise: an outcome, not a crash
            return outcome_for_error(exc)
        content = answer.content
        if not isinstance(content, dict) or not isinstance(content.get("uri"), str):
            return Outcome(
                OutcomeKind.TRANSIENT, error=f"HTTP {answer.status_code}, but no record URI"
            )
        handle = self._session.handle if self._session is not None else self.handle
        return Outcome(
            OutcomeKind.SENT,
            remote_id=content["uri"],
            remote_url=f"https://bsky.app/profile/{handle}/post/{rkey}",
            hold_for=_quota_hold(answer.headers),
            detail={"cid": str(content.get("cid", ""))},
        )

    async def close(self) -> None:
        """Close the HTTP connections; the session stays (in memory and on disk) for reuse."""
        import asyncio

        client, self._client = self._client, None
        self._client_ready = False
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.request.close()
        self._client_loop = None

    # -- sending --

    async def _put(self, payload: str, request: dict[str, Any]) -> Any:
        """Send putRecord; when the server refuses the session, get a working one and resend.

        Re-sending is safe: the same key and record again changes nothing.
        """
        client = await self._connected()
        used = self._session_string()
        try:
            return await self._send(client, payload, request)
        except Exception as exc:
            if not is_session_error(exc):
                raise
            _log().info("bluesky/%s: the server refused the session (%s)", self.account, exc)
        return await self._send(await self._renewed(used), payload, request)

    async def _send(self, client: Any, payload: str, request: dict[str, Any]) -> Any:
        """The stored bytes as they are; a payload without repo gets the session's DID."""
        body = payload if "repo" in request else json.dumps({"repo": self.did, **request})
        return await client.invoke_procedure(
            PUT_RECORD, content=body.encode(), headers={"Content-Type": "application/json"}
        )

    async def _connected(self) -> Any:
        """The client of this loop, holding a session: ours, the stored one, or a new login."""
        async with self._guard():
            client = self._client_here()
            if not self._client_ready:
                session = self._session_string() or self._stored_session()
                if session is not None:
                    await client.login(session_string=session, fetch_bsky_profile=False)
                else:
                    await self._login(client)
                self._client_ready = True
            return client

    async def _renewed(self, refused: str | None) -> Any:
        """A client whose session is not `refused`, from the cheapest source that has one.

        Another task of this process may have renewed it already; another process may have
        saved a newer one; the refresh token may still be good (refreshSession); only when
        the server refuses that too does the app password log in.
        """
        async with self._guard():
            client = self._client_here()
            current = self._session_string()
            if current is not None and current != refused:
                return client
            stored = self._stored_session()
            if stored is not None and stored != refused:
                await client.login(session_string=stored, fetch_bsky_profile=False)
            elif not await self._refreshed(client):
                await self._login(client)
            self._client_ready = True
            return client

    async def _refreshed(self, client: Any) -> bool:
        """Renew the session with its refresh token; False when the server refuses the token.

        The SDK's own refresh (what it does by itself before the access token expires); it
        reports the new tokens through the session callback, which saves them.
        """
        if self._session is None:
            return False
        if not self._client_ready:
            await client.login(session_string=self._session_string(), fetch_bsky_profile=False)
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
            raise _NoSession(Outcome(OutcomeKind.PERMANENT, error=str(exc), auth=True)) from None
        digest = hashlib.sha256(password.encode()).hexdigest()
        if digest == self._refused:
            raise _NoSession(self._refused_outcome("refused at an earlier login"))
        if self._last_login is not None:
            wait = self._last_login + LOGIN_COOLDOWN - time.monotonic()
            if wait > 0:
                raise _NoSession(self._cooling_down(wait))
        last_login, self._last_login = self._last_login, time.monotonic()
        self.logins += 1
        try:
            await client.login(self.handle, password, fetch_bsky_profile=False)
        except Exception as exc:
            outcome = outcome_for_error(exc)
            if _xrpc_reason(exc)[0] is None:  # never reached the server: not a login it counts
                self._last_login = last_login
            if not outcome.auth:
                self._login_failure = outcome
                raise _NoSession(outcome) from None
            self._refused = digest
            raise _NoSession(self._refused_outcome(str(outcome.error))) from None
        self._login_failure = None
        _log().info("bluesky/%s: logged in as %s", self.account, self.handle)

    def _cooling_down(self, wait: float) -> Outcome:
        """Why there is no login now: the last one's failure (a 429 stays rate-limited), if any."""
        failure = self._login_failure
        if failure is not None:
            return replace(failure, retry_after=max(wait, failure.retry_after or 0.0))
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

    async def _resolve(self, client: Any, handles: list[str]) -> dict[str, str]:
        """DIDs of the mentioned handles that resolve, all within `timeout`.

        A handle that does not resolve (HTTP 400) gets no mention facet, as in the Bluesky
        app; one that could not be asked about (network, timeout) neither, with a warning:
        the post goes out on time rather than waiting for a link.
        """
        import asyncio

        params = _sdk().models.ComAtprotoIdentityResolveHandle.Params
        dids: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.timeout):
                for handle in handles:
                    try:
                        answer = await client.invoke_query(
                            RESOLVE_HANDLE, params=params(handle=handle)
                        )
                    except Exception as exc:
                        status, _, reason = _xrpc_reason(exc)
                        if status != 400:
                            _log().warning(
                                "bluesky/%s: could not resolve @%s (%s); it stays plain text",
                                self.account,
                                handle,
                                reason,
                            )
                        continue
                    dids[handle] = str(answer.content["did"])
        except TimeoutError:
            _log().warning("bluesky/%s: resolving mentions timed out", self.account)
        return dids

    # -- the client and its session --

    def _guard(self) -> asyncio.Lock:
        """A lock for logging in, one per event loop (a Lock belongs to one loop)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _client_here(self) -> Any:
        """The client for the running loop (httpx connections cannot move between loops)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            sdk = _sdk()
            client = sdk.AsyncClient(
                self.pds, request=sdk.request.AsyncRequest(timeout=self.timeout)
            )
            client.on_session_change(self._on_session_change)
            self._client, self._client_loop, self._client_ready = client, loop, False
        return self._client

    def _session_string(self) -> str | None:
        return None if self._session is None else str(self._session.encode())

    def _on_session_change(self, event: Any, session: Any) -> None:
        """The SDK's callback after a login, a refresh, or an import: keep the new tokens."""
        self._session = session
        if event != _sdk().SessionEvent.IMPORT:
            self._save_session(session.encode())

    def _stored_session(self) -> str | None:
        """The session saved for this handle and server, if there is one."""
        path = self.session_file
        if path is None or not path.exists():
            return None
        try:
            stored = json.loads(read_secret_file(path, "Bluesky session"))
        except ConfigError as exc:
            raise _NoSession(Outcome(OutcomeKind.PERMANENT, error=str(exc), auth=True)) from None
        except ValueError:
            _log().warning("bluesky/%s: %s is not a session file; logging in", self.account, path)
            return None
        if not isinstance(stored, dict) or stored.get("handle") != self.handle:
            return None
        session = stored.get("session")
        if stored.get("pds") != self.pds or not isinstance(session, str):
            return None
        try:
            _sdk().Session.decode(session)
        except ValueError:
            _log().warning("bluesky/%s: damaged session file %s; logging in", self.account, path)
            return None
        return session

    def _save_session(self, session: str) -> None:
        """Write the session file atomically, mode 600; a failure costs a login next time only."""
        path = self.session_file
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


def _iso_utc(when: float) -> str:
    """`2026-11-22T10:04:43.123Z`: the datetime form Bluesky's own clients write."""
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _quota_hold(headers: dict[str, str]) -> float | None:
    """Seconds until the write quota refills, when this write used the last of it."""
    if headers.get("ratelimit-remaining") != "0":
        return None
    try:
        return max(0.0, float(headers["ratelimit-reset"]) - time.time())
    except (KeyError, ValueError):
        return None
