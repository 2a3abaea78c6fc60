"""Bluesky: posts written into the account's repo with putRecord, one atproto client per account.

The payload the engine stores is the body of a `com.atproto.repo.putRecord` request,
`{"repo", "collection", "rkey", "record"}`, with the record key (a TID), `createdAt` and the
facets fixed when it is prepared; `publish` sends those stored bytes as they are. putRecord of
the same key and record again is a no-op answered with the same CID, so a re-send after a crash
leaves one post (G2) — whereas createRecord with a key that exists answers HTTP 500. ("repo" is
missing only when the account's DID could not be learned while preparing; `publish` then uses
the session's.)

The account's session (one login, kept and refreshed, saved for the next process) is
`bluesky_session.Session`, which also says what the server's refusals mean.

`import atproto` costs ~450 ms, so it happens only inside the publisher; the account's settings
are read and checked (`check_credentials`, what plur-post calls at schedule time) by
plurcast.platforms.bluesky_settings, pure Python, which a scheduling plur-post imports instead
of this module.

Config (the `default` account is `[bluesky]`, named ones `[accounts.bluesky.NAME]`):
    handle             alice.bsky.social (every account names its own)
    app_password_file  a mode-600 file holding an app password (or $PLURCAST_BLUESKY_APP_PASSWORD
                       for the default account); a relative path is relative to the config file
    pds                the account's server, https://bsky.social by default; plain http only to
                       this machine (127.0.0.1, localhost, ::1)
    timeout            seconds per request to the server (default 10)
    cards_allow_private  fetch link cards from private and loopback addresses too (default
                       false: a post must not make this machine fetch from its own network)
A named account without `pds`, `timeout` or `cards_allow_private` takes the default account's.

Images, link cards, labels and languages: `plurcast.platforms.bluesky_media`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plurcast.config import DEFAULT_ACCOUNT, Config
from plurcast.errors import ConfigError, InvalidInput, RuntimeFailure
from plurcast.platforms import accounts, bluesky_tid, registry, replies
from plurcast.platforms import bluesky_settings as settings
from plurcast.platforms.base import Outcome, OutcomeKind, Reply, Work
from plurcast.platforms.bluesky_facets import build_facets, mention_handles
from plurcast.platforms.bluesky_references import POST_COLLECTION, BlueskyPost
from plurcast.platforms.bluesky_session import (
    NoSession,
    Session,
    is_session_error,
    outcome_for_error,
    sdk,
    xrpc_reason,
)
from plurcast.thread import references

if TYPE_CHECKING:  # asyncio (~35 ms), logging, tempfile ...: only the publisher needs them
    import logging
    from collections.abc import Awaitable, Callable

    from plurcast.media.store import MediaReader

PLATFORM = settings.PLATFORM
PUT_RECORD = "com.atproto.repo.putRecord"
RESOLVE_HANDLE = "com.atproto.identity.resolveHandle"
GET_RECORD = "com.atproto.repo.getRecord"
GET_POSTS = "app.bsky.feed.getPosts"


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("plurcast.platforms.bluesky")


def publisher(cfg: Config, account: str) -> BlueskyPublisher:
    """The account's publisher, for the registry: its settings and secret read now."""
    return BlueskyPublisher.from_config(cfg, account)


# --- the publisher -----------------------------------------------------------------------


class BlueskyPublisher:
    """The Publisher for one Bluesky account: its `Session` (logged in on first use, kept,
    refreshed) and the records it writes with it."""

    platform = PLATFORM

    def __init__(
        self,
        handle: str,
        app_password: Callable[[], str],
        *,
        pds: str = settings.DEFAULT_PDS,
        timeout: float = accounts.DEFAULT_TIMEOUT,
        session_file: Path | None = None,
        account: str = DEFAULT_ACCOUNT,
        cards_allow_private: bool = False,
    ) -> None:
        if not timeout > 0:
            raise ConfigError("the Bluesky timeout must be a positive number of seconds")
        self.handle = settings.normalise_handle(handle, "Bluesky account")
        self.pds = settings.normalise_pds(pds, "Bluesky account")
        self.timeout = float(timeout)
        self.account = account
        self.cards_allow_private = cards_allow_private
        self.session = Session(
            self.handle,
            self.pds,
            app_password,
            timeout=self.timeout,
            file=session_file,
            account=account,
        )

    @classmethod
    def from_config(cls, cfg: Config, account: str = DEFAULT_ACCOUNT) -> BlueskyPublisher:
        acc = settings.account_of(cfg, account)
        settings.app_password(acc)  # a missing or unreadable password is a config error now
        return cls(
            settings.handle(acc),
            lambda: settings.app_password(acc),
            pds=settings.pds(acc),
            timeout=accounts.timeout(acc),
            session_file=settings.session_path(cfg, account),
            account=account,
            cards_allow_private=settings.cards_allow_private(acc),
        )

    async def prepare(self, work: Work) -> str:
        """The putRecord body: a post record with a fresh TID key, createdAt and facets, and
        the post's images, link card, labels and languages (bluesky_media).

        Logs in if needed, to learn the account's DID (a refused app password ends the
        delivery here, as an auth error), and resolves the handles mentioned in the text.
        A mention whose handle does not resolve stays plain text. A content warning goes
        first in the text (Bluesky has no field for one).
        """
        from plurcast.platforms import bluesky_media

        now = time.time()
        text = registry.get(PLATFORM).as_sent(work.content, work.metadata.get("cw"))
        record: dict[str, Any] = {
            "$type": POST_COLLECTION,
            "text": text,
            "createdAt": _iso_utc(now),
        }
        try:
            client = await self.session.client()
        except NoSession as exc:
            if exc.outcome.auth:
                raise ConfigError(exc.outcome.error or "Bluesky refused the login") from None
            # publish logs in again, or says why not; the mentions can still be resolved.
            _log().warning("bluesky/%s: no session yet: %s", self.account, exc.outcome.error)
            client = self.session.client_here()
        facets = build_facets(text, await self._resolve(client, mention_handles(text)))
        if facets:
            record["facets"] = facets
        if work.reply is not None:
            record["reply"] = await self._reply(client, work.reply)
        record |= bluesky_media.record_options(work.metadata)
        body: dict[str, Any] = {} if self.session.did is None else {"repo": self.session.did}
        images = work.metadata.get("images") or []
        if images:
            if work.media is None:
                raise RuntimeFailure("no media store was given for the post's images")
            embed, sources = await bluesky_media.images_embed(self._upload, images, work.media)
            record["embed"] = embed
            body[bluesky_media.SOURCES] = sources
        elif work.metadata.get("card") is not False:
            link = bluesky_media.first_link(facets)
            if link is not None:
                card = await bluesky_media.card_embed(
                    self._upload, link, allow_private=self.cards_allow_private, notes=work.notes
                )
                if card is not None:
                    record["embed"] = card
        body |= {"collection": POST_COLLECTION, "rkey": bluesky_tid.next_tid(now), "record": record}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    async def _upload(self, data: bytes, mime: str) -> dict[str, Any]:
        """uploadBlob: the blob ref. Raises what the answer means (ConfigError for a refused
        login, InvalidInput for a blob the PDS will never take, else RuntimeFailure)."""
        from plurcast.platforms import bluesky_media

        async def send(client: Any) -> Any:
            return await client.invoke_procedure(
                bluesky_media.UPLOAD_BLOB, content=data, headers={"Content-Type": mime}
            )

        try:
            answer = await self._with_session(send)
        except NoSession as exc:
            raise _raised(exc.outcome, "uploading an image") from None
        except Exception as exc:
            raise _raised(outcome_for_error(exc), "uploading an image") from None
        return bluesky_media.blob_of(answer)

    async def publish(self, payload: str, media: MediaReader | None = None) -> Outcome:
        """putRecord the stored body; never raises for platform trouble.

        When the PDS no longer has the record's images (BlobNotFound: their blobs were
        deleted while the delivery waited), they are uploaded again from `media` — the same
        bytes, so the same blobs — and the record is sent once more, unchanged."""
        from plurcast.platforms import bluesky_media

        try:
            request = json.loads(payload)
            rkey = request["rkey"]
            if not isinstance(request["record"], dict) or not isinstance(rkey, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return Outcome(OutcomeKind.PERMANENT, error="stored payload is not a Bluesky record")
        sources = request.pop(bluesky_media.SOURCES, None)
        if sources is not None:
            payload = json.dumps(request, ensure_ascii=False, separators=(",", ":"))
        try:
            try:
                answer = await self._put(payload, request)
            except Exception as exc:
                if not (sources and media and xrpc_reason(exc)[1] == bluesky_media.BLOB_NOT_FOUND):
                    raise
                _log().info("bluesky/%s: the images' blobs are gone; uploading again", self.account)
                await bluesky_media.reupload(self._upload, sources, media)
                answer = await self._put(payload, request)
        except NoSession as exc:
            return exc.outcome
        except Exception as exc:  # whatever the SDK or httpx raise: an outcome, not a crash
            return outcome_for_error(exc)
        content = answer.content
        if not isinstance(content, dict) or not isinstance(content.get("uri"), str):
            return Outcome(
                OutcomeKind.TRANSIENT, error=f"HTTP {answer.status_code}, but no record URI"
            )
        handle = self.session.current_handle
        cid = content.get("cid")
        return Outcome(
            OutcomeKind.SENT,
            remote_id=content["uri"],
            remote_url=BlueskyPost(handle, rkey).web_url,
            remote_cid=cid if isinstance(cid, str) and cid else None,
            hold_for=_quota_hold(answer.headers),
            detail={"cid": str(cid or "")},
        )

    async def close(self) -> None:
        """Close the HTTP connections; the session stays (in memory and on disk) for reuse."""
        await self.session.close()

    # -- sending --

    async def _put(self, payload: str, request: dict[str, Any]) -> Any:
        """Send putRecord; when the server refuses the session, get a working one and resend.

        Re-sending is safe: the same key and record again changes nothing.
        """
        return await self._with_session(lambda client: self._send(client, payload, request))

    async def _with_session(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """`await call(client)` with a logged-in client; when the server refuses the session,
        once more with a working one (Session.renewed)."""
        client = await self.session.client()
        used = self.session.current()
        try:
            return await call(client)
        except Exception as exc:
            if not is_session_error(exc):
                raise
            _log().info("bluesky/%s: the server refused the session (%s)", self.account, exc)
        return await call(await self.session.renewed(used))

    async def _send(self, client: Any, payload: str, request: dict[str, Any]) -> Any:
        """The stored bytes as they are; a payload without repo gets the session's DID."""
        body = payload if "repo" in request else json.dumps({"repo": self.session.did, **request})
        return await client.invoke_procedure(
            PUT_RECORD, content=body.encode(), headers={"Content-Type": "application/json"}
        )

    async def _reply(self, client: Any, reply: Reply) -> dict[str, Any]:
        """`reply.root`/`reply.parent` for a record answering our sent parent (its stored
        record names the root) or the post `--reply-to` named, looked up now."""
        if reply.remote_id is not None and reply.remote_cid and reply.payload is not None:
            parent = json.loads(reply.payload).get("record", {})
            return replies.bluesky_reply(reply.remote_id, reply.remote_cid, parent)
        if reply.remote_id is not None:  # ours, but its CID was not recorded: ask for it
            uri = reply.remote_id
        else:
            ref = references.parse(reply.reference or "")
            if not isinstance(ref, BlueskyPost):
                raise InvalidInput(f"{reply.reference} is not a Bluesky post to reply to")
            uri = await self._post_uri(client, ref)
        cid, record = await self._record(client, uri)
        return replies.bluesky_reply(uri, cid, record)

    async def _post_uri(self, client: Any, ref: BlueskyPost) -> str:
        """The at:// URI of a post, with its author's handle resolved to a DID."""
        if ref.actor.startswith("did:"):
            return ref.uri
        params = sdk().models.ComAtprotoIdentityResolveHandle.Params
        try:
            answer = await client.invoke_query(RESOLVE_HANDLE, params=params(handle=ref.actor))
        except Exception as exc:
            raise _lookup_failure(exc, f"@{ref.actor}") from None
        return BlueskyPost(str(answer.content["did"]), ref.rkey).uri

    async def _record(self, client: Any, uri: str) -> tuple[str, dict[str, Any]]:
        """(CID, record) of the post at `uri`: from its repo (our PDS has ours, and any
        repo it hosts), else from the app view behind the PDS (bsky.social has one)."""
        models = sdk().models
        repo, _, rest = uri.removeprefix("at://").partition("/")
        collection, _, rkey = rest.partition("/")
        params = models.ComAtprotoRepoGetRecord.Params(repo=repo, collection=collection, rkey=rkey)
        try:
            answer = await client.invoke_query(GET_RECORD, params=params)
            content = answer.content
            return str(content["cid"]), dict(content["value"])
        except Exception as exc:
            status = xrpc_reason(exc)[0]
            if status is None or status >= 500:
                raise _lookup_failure(exc, uri) from None
        try:
            answer = await client.invoke_query(
                GET_POSTS, params=models.AppBskyFeedGetPosts.Params(uris=[uri])
            )
        except Exception as exc:
            raise _lookup_failure(exc, uri) from None
        posts = answer.content.get("posts") if isinstance(answer.content, dict) else None
        if not posts:
            raise InvalidInput(f"the Bluesky post {uri} to reply to was not found")
        return str(posts[0]["cid"]), dict(posts[0]["record"])

    async def _resolve(self, client: Any, handles: list[str]) -> dict[str, str]:
        """DIDs of the mentioned handles that resolve, all within `timeout`.

        A handle that does not resolve (HTTP 400) gets no mention facet, as in the Bluesky
        app; one that could not be asked about (network, timeout) neither, with a warning:
        the post goes out on time rather than waiting for a link.
        """
        import asyncio

        params = sdk().models.ComAtprotoIdentityResolveHandle.Params
        dids: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.timeout):
                for handle in handles:
                    try:
                        answer = await client.invoke_query(
                            RESOLVE_HANDLE, params=params(handle=handle)
                        )
                    except Exception as exc:
                        status, _, reason = xrpc_reason(exc)
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


def _lookup_failure(exc: BaseException, what: str) -> Exception:
    """A failed look-up of the post replied to: passing (retried) when the server could not
    answer, final when it answered that there is no such post or author."""
    status, _, reason = xrpc_reason(exc)
    if status is None or status >= 500 or status == 429:
        return RuntimeFailure(f"bluesky: could not look up {what} to reply to: {reason}")
    return InvalidInput(f"bluesky: {what} to reply to was not found (HTTP {status} {reason})")


def _raised(outcome: Outcome, doing: str) -> Exception:
    """An outcome while preparing, as the error the engine turns back into that outcome."""
    message = f"{doing}: {outcome.error}"
    if outcome.kind in (OutcomeKind.TRANSIENT, OutcomeKind.RATE_LIMITED):
        return RuntimeFailure(message)
    if outcome.auth:
        return ConfigError(message)
    return InvalidInput(message)


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
