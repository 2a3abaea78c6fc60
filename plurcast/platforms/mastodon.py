"""Mastodon: statuses posted through Mastodon.py, one client per account, never twice.

The payload the engine stores holds the text, the visibility and an `Idempotency-Key`
made from the delivery (`plurcast-<post id>-<delivery id>`). Every attempt sends that
key, and Mastodon answers a repeated key with the status it already made instead of a
second one (G2). Mastodon remembers a key for about an hour, and ignores it for
server-side scheduled statuses: we only ever post immediately, at the time we chose.

What an attempt came to is read from the HTTP answer itself, captured per thread by a
response hook on the client's session, not from Mastodon.py's exceptions: its 429
error carries neither status nor headers (no `Retry-After`), its
`ratelimit_remaining`/`ratelimit_reset` belong to the client, not to one request
(they survive into later answers that carry no such headers, and threads share them),
and it raises after a 2xx whose body or headers it cannot parse — a post that exists.

`import mastodon` costs ~180 ms (requests, dateutil …), so it happens only when a
publisher is made. What plur-post checks at schedule time (`check_credentials`) is in
plurcast.platforms.mastodon_settings, pure Python, which reads the settings below.

Config (the `default` account is `[mastodon]`, named ones `[accounts.mastodon.NAME]`):
    instance    the server: "mastodon.social" or "https://mastodon.social"; http:// only
                for this machine (127.0.0.1, localhost, ::1)
    token_file  the access token, in a mode-600 file (or $PLURCAST_MASTODON_TOKEN for the
                default account); a relative path is relative to the config file
    visibility  public (default), unlisted, private or direct; plur-post --visibility wins
    timeout     seconds to wait for the server (default 10)
A named account without `instance`, `visibility` or `timeout` takes the default account's;
its token is always its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from plurcast.config import DEFAULT_ACCOUNT, Config
from plurcast.errors import ConfigError, InvalidInput, RuntimeFailure
from plurcast.platforms import accounts
from plurcast.platforms import mastodon_settings as settings
from plurcast.platforms.base import MAX_REASON_CHARS, Outcome, OutcomeKind, Reply, Work, one_line
from plurcast.platforms.mastodon_references import MastodonStatus
from plurcast.thread import references
from plurcast.value import Value

if TYPE_CHECKING:  # only the publisher needs these, and plur-post must start fast
    from mastodon import Mastodon

    from plurcast.media.store import MediaReader

PLATFORM = settings.PLATFORM
# A wait a server asks for is believed up to a day (Mastodon's windows are hours long);
# a broken header must not park an account for years.
MAX_WAIT_SECONDS = 24 * 3600.0
# What a stored payload may add to the status besides its text (mastodon_media).
_STATUS_OPTIONS = ("in_reply_to_id", "media_ids", "spoiler_text", "sensitive", "language")


def publisher(cfg: Config, account: str) -> MastodonPublisher:
    """The account's publisher, for the registry: its settings and secret read now."""
    return MastodonPublisher.from_config(cfg, account)


def instance_host(url: str) -> str:
    """`host[:port]` of an instance URL, lower case: what a status link on it starts with."""
    from urllib.parse import urlsplit

    return urlsplit(url).netloc.lower()


def check_reply_reference(cfg: Config, account: str, ref: MastodonStatus) -> None:
    """A status to reply to must be on the account's own instance: Mastodon knows a status
    by the id its own server gave it (InvalidInput, exit 3, otherwise)."""
    instance = settings.instance(settings.account_of(cfg, account))
    if ref.host is not None and ref.host != instance_host(instance):
        raise InvalidInput(
            f"the status to reply to is on {ref.host}, but the Mastodon account "
            f"{account} is on {instance_host(instance)}",
            "open the status on your own instance (paste its link into the search) and "
            "reply to the link it shows there",
        )


def idempotency_key(work: Work) -> str:
    """The delivery's Idempotency-Key: the same for every attempt, different for every delivery."""
    return f"plurcast-{work.post_id}-{work.delivery_id}"


# --- what the server answered --------------------------------------------------------


class Answer(Value):
    """The HTTP answer to one attempt, or why there was none."""

    status: int | None  # None: no answer at all (timeout, connection refused, DNS …)
    headers: Mapping[str, str]  # names in lower case
    body: Any  # the parsed JSON, else the text
    problem: str | None = None  # what went wrong on our side, if anything


def _seconds_until(value: str, headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from the answer's time until `value`: epoch seconds, an HTTP-date or ISO 8601.

    Measured from the server's own `Date` when it sent one, so that a wrong clock
    on either side does not change the wait. None when `value` is no time.
    """
    import email.utils
    from datetime import UTC, datetime

    def epoch(text: str) -> float | None:
        text = text.strip()
        if text.isdigit():
            return float(text)
        try:
            return email.utils.parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError):
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    until = epoch(value)
    if until is None:
        return None
    sent = epoch(headers["date"]) if "date" in headers else None
    return until - (now if sent is None else sent)


def _wait(seconds: float | None) -> float | None:
    """A wait the server asked for, if it is one: positive, and at most a day."""
    if seconds is None or not seconds > 0:
        return None
    return min(seconds, MAX_WAIT_SECONDS)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """`Retry-After` in seconds: a number of seconds or an HTTP-date."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return _wait(float(value))
    return _wait(_seconds_until(value, headers, now))


def quota_reset(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until `X-RateLimit-Reset` (Mastodon sends ISO 8601, others epoch seconds)."""
    value = headers.get("x-ratelimit-reset", "").strip()
    return _wait(_seconds_until(value, headers, now)) if value else None


def quota_used_up(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the account must not post: until the reset when no request is left, else None."""
    if headers.get("x-ratelimit-remaining", "").strip() != "0":
        return None
    return quota_reset(headers, now)


def _http_error(answer: Answer) -> str:
    """`HTTP 422 Unprocessable Entity: Validation failed: Text is too long` — for people."""
    from http import HTTPStatus

    code = answer.status or 0
    try:
        head = f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        head = f"HTTP {code}"
    body = answer.body
    if isinstance(body, dict) and body.get("error"):
        message = str(body["error"])
        if body.get("error_description"):
            message += f" ({body['error_description']})"
    elif isinstance(body, str) and body.strip():
        message = body
    else:
        return head
    return f"{head}: {one_line(message, MAX_REASON_CHARS)}"


def outcome_from_answer(answer: Answer, now: float) -> Outcome:
    """What one attempt came to, from the server's answer alone.

    2xx with a status: SENT (a post that exists is never retried). 429: RATE_LIMITED
    after `Retry-After`, else after `X-RateLimit-Reset`. 401/403: PERMANENT, the
    token was refused. 408, 5xx, no answer or an unreadable 2xx: TRANSIENT — the
    re-send carries the same Idempotency-Key, so a post that did get made is not
    made twice. Any other 4xx (422 validation …): PERMANENT with the server's reason.
    `hold_for` is set whenever the answer says no request is left until the reset.
    """
    from http import HTTPStatus

    if answer.status is None:
        return Outcome(OutcomeKind.TRANSIENT, error=answer.problem or "no answer from the server")
    headers = answer.headers
    hold = quota_used_up(headers, now)
    code = answer.status
    if 200 <= code < 300:
        body = answer.body
        if isinstance(body, dict) and isinstance(body.get("id"), str | int) and body["id"] != "":
            url = body.get("url") or body.get("uri")
            return Outcome(
                OutcomeKind.SENT,
                remote_id=str(body["id"]),
                remote_url=str(url) if url else None,
                hold_for=hold,
            )
        return Outcome(
            OutcomeKind.TRANSIENT,
            error=f"HTTP {code}, but the answer is not a status: {answer.problem or 'no id'}",
            hold_for=hold,
        )
    if code == HTTPStatus.TOO_MANY_REQUESTS:
        wait = retry_after(headers, now) or quota_reset(headers, now)
        return Outcome(OutcomeKind.RATE_LIMITED, error=_http_error(answer), retry_after=wait)
    if code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        return Outcome(
            OutcomeKind.PERMANENT,
            error=f"{_http_error(answer)} — check the account's access token",
            auth=True,
            hold_for=hold,
        )
    if code == HTTPStatus.REQUEST_TIMEOUT or code >= 500:
        return Outcome(
            OutcomeKind.TRANSIENT,
            error=_http_error(answer),
            retry_after=retry_after(headers, now),
            hold_for=hold,
        )
    return Outcome(OutcomeKind.PERMANENT, error=_http_error(answer), hold_for=hold)


def _answer_of(response: Any, problem: str | None) -> Answer:
    """An Answer from a `requests.Response` (or None when the request got no answer)."""
    if response is None:
        return Answer(None, {}, None, problem)
    headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return Answer(int(response.status_code), headers, body, problem)


# --- the publisher -------------------------------------------------------------------


class MastodonPublisher:
    """The Publisher for one Mastodon account: one Mastodon.py client, reused.

    Mastodon.py is synchronous: each post runs in a worker thread, so the daemon's
    event loop keeps serving other deliveries and signals meanwhile. The client is
    made with `ratelimit_method="throw"` (its default sleeps inside the call, up to
    5 minutes) and without version checks (they cost a request).
    """

    platform = PLATFORM

    def __init__(
        self,
        instance: str,
        token: str,
        *,
        visibility: str = settings.DEFAULT_VISIBILITY,
        timeout: float = accounts.DEFAULT_TIMEOUT,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        import threading

        from mastodon import Mastodon

        from plurcast import __version__

        if visibility not in settings.VISIBILITIES:
            raise ConfigError(
                f"Mastodon visibility must be one of {', '.join(settings.VISIBILITIES)}"
            )
        if not timeout > 0:
            raise ConfigError("the Mastodon timeout must be a positive number of seconds")
        self.account = account
        self.instance = settings.instance_url(instance)
        self.visibility = visibility
        self.timeout = float(timeout)
        # The answer to the request this thread made last (see the module docstring).
        self._last = threading.local()
        client = Mastodon(
            api_base_url=self.instance,
            version_check_mode="none",
            ratelimit_method="throw",
            request_timeout=self.timeout,
            user_agent=f"plurcast/{__version__}",
        )
        # Set after construction: given to the constructor, a token that happens to
        # name a file in the working directory would be replaced by that file's first line.
        client.access_token = token
        client.session.hooks["response"].append(self._keep_answer)
        self._client: Mastodon = client

    @classmethod
    def from_config(cls, cfg: Config, account: str = DEFAULT_ACCOUNT) -> MastodonPublisher:
        acc = settings.account_of(cfg, account)
        return cls(
            settings.instance(acc),
            settings.token(acc),
            visibility=settings.visibility(acc),
            timeout=accounts.timeout(acc),
            account=account,
        )

    async def prepare(self, work: Work) -> str:
        """Text, visibility (the post's, else the account's), the delivery's Idempotency-Key,
        the post's options, and the ids of its images, uploaded now (mastodon_media)."""
        from plurcast.platforms import mastodon_media

        visibility = work.metadata.get("visibility") or self.visibility
        if visibility not in settings.VISIBILITIES:
            raise InvalidInput(
                f"Mastodon visibility {visibility!r} is not one of "
                f"{', '.join(settings.VISIBILITIES)}"
            )
        payload: dict[str, Any] = {
            "status": work.content,
            "visibility": visibility,
            "idempotency_key": idempotency_key(work),
            **mastodon_media.status_options(work.metadata),
        }
        if work.reply is not None:
            payload["in_reply_to_id"] = self.reply_to_id(work.reply)
        images = work.metadata.get("images") or []
        if images:
            if work.media is None:
                raise RuntimeFailure("no media store was given for the post's images")
            payload["media_ids"] = await mastodon_media.upload_images(
                self.request, self._client, images, work.media
            )
        return json.dumps(payload, ensure_ascii=False)

    def reply_to_id(self, reply: Reply) -> str:
        """The status a reply answers, by its id on this instance: our parent's, or the
        one `--reply-to` named (a link on this instance, or a bare id)."""
        if reply.remote_id is not None:
            return reply.remote_id
        parsed = references.parse(reply.reference or "")
        ref = parsed.as_theirs() if isinstance(parsed, references.OurPost) else parsed
        if not isinstance(ref, MastodonStatus):
            raise InvalidInput(f"{reply.reference} is not a Mastodon status to reply to")
        if ref.host is not None and ref.host != instance_host(self.instance):
            raise InvalidInput(f"{reply.reference} is a status on {ref.host}, not on ours")
        return ref.status_id

    async def publish(self, payload: str, media: MediaReader | None = None) -> Outcome:
        """Post the stored status with its Idempotency-Key; never raises for platform trouble."""
        import time

        try:
            data = json.loads(payload)
            text, visibility, key = data["status"], data["visibility"], data["idempotency_key"]
            if not all(isinstance(v, str) and v for v in (text, key)):
                raise TypeError
            if (
                visibility not in settings.VISIBILITIES
            ):  # Mastodon.py would refuse it before sending
                raise ValueError
            options = {k: data[k] for k in _STATUS_OPTIONS if k in data}
        except (ValueError, KeyError, TypeError):
            return Outcome(OutcomeKind.PERMANENT, error="stored payload is not a Mastodon status")
        answer = await self.request(
            lambda: self._client.status_post(
                text, visibility=visibility, idempotency_key=key, **options
            )
        )
        return outcome_from_answer(answer, time.time())

    async def close(self) -> None:
        """Close the client's connections; a later publish opens new ones."""
        self._client.session.close()

    # -- internals --

    def _keep_answer(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """requests' response hook: runs in the thread that made the request."""
        self._last.response = response

    async def request(self, call: Callable[[], Any]) -> Answer:
        """Run a Mastodon.py call in a worker thread: the HTTP answer, whatever Mastodon.py
        made of it."""
        import asyncio

        return await asyncio.to_thread(self._answer_to, call)

    def _answer_to(self, call: Callable[[], Any]) -> Answer:
        self._last.response = None
        problem = None
        try:
            call()
        except Exception as exc:  # the answer decides; the exception only explains a missing one
            problem = one_line(f"{type(exc).__name__}: {exc}", MAX_REASON_CHARS)
        return _answer_of(self._last.response, problem)
