"""Nostr: signed kind-1 notes sent to several relays through one long-lived nostr-sdk client.

The payload the engine stores is the signed event's JSON. Re-sending it is always the
same event (same id, same signature), so a relay that already has it answers
`duplicate:` (or simply OK) and the re-send counts as delivered (G2). Nothing in
`publish` depends on the clock.

`import nostr_sdk` costs ~90 ms, more than plur-post's whole start-up budget, so it
happens only inside the functions that need it. What plur-post checks at schedule time
(`check_credentials`: the key's shape, the relay list …) is in plurcast.platforms.
nostr_settings, pure Python, which reads the settings below for this module too.

Config (the `default` account is `[nostr]`, named ones `[accounts.nostr.NAME]`):
    keys_file   nsec1… or 64 hex characters, in a mode-600 file (or $PLURCAST_NOSTR_KEY
                for the default account); a relative path is relative to the config file
    relays      ["wss://…", …]; a named account without its own uses the default's
    min_relays  how many relays must accept for the post to count as sent (default 1)
    timeout     seconds to wait for the relays' answers (default 10)
    default_pow_difficulty  NIP-13 proof of work for every post (0-64; --nostr-pow wins)
    pow_timeout seconds mining may take before the delivery gives up (default 300)
    blossom_servers  ["https://…", …]: the Blossom servers a post's images are uploaded to
                (plurcast.platforms.nostr_media); needed only for posts with images
A named account without one of these takes the default account's.

A publish sends to every relay at once and lasts at most `timeout` (+1.5 s of margin);
once `min_relays` relays have accepted, it waits at most 1 s more for the others.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from plurcast.config import DEFAULT_ACCOUNT, Config
from plurcast.errors import ConfigError, InvalidInput, RuntimeFailure
from plurcast.platforms import accounts, nostr_pow
from plurcast.platforms import nostr_answers as answers_module
from plurcast.platforms import nostr_settings as settings
from plurcast.platforms.base import Outcome, OutcomeKind, Reply, Work, one_line

if TYPE_CHECKING:  # asyncio costs ~35 ms to import: only the publisher needs it
    import asyncio
    import logging

    from plurcast.media.store import MediaReader
    from plurcast.platforms.replies import NostrParent  # replies only, like references

PLATFORM = settings.PLATFORM
# Extra seconds past `timeout` before publish gives up on nostr-sdk itself.
HARD_DEADLINE_MARGIN = 1.5
# Seconds to keep waiting for the other relays once `min_relays` have accepted.
DEFAULT_LINGER = 1.0
# Events a publisher signed and has not published yet, kept by their JSON (see `publish`);
# the oldest go past this many (a post cancelled after it was prepared is never published).
SIGNED_KEPT = 256
# Seconds between two looks at the relays' status (`_reconnect`): each is a call into the SDK
# per relay, and a publish every few ms needs no look of its own.
STATUS_CHECK_SECONDS = 1.0


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("plurcast.platforms.nostr")


def _sdk() -> Any:
    """nostr_sdk, imported on first use (~90 ms)."""
    import nostr_sdk  # type: ignore[import-untyped, unused-ignore]

    return nostr_sdk


# --- keys ----------------------------------------------------------------------------


def load_keys(cfg: Config, account: str) -> Any:
    """The account's `nostr_sdk.Keys`, from $PLURCAST_NOSTR_KEY (default account) or keys_file."""
    acc = settings.account_of(cfg, account)
    key = settings.secret_key_text(acc)
    sdk = _sdk()
    try:
        return sdk.Keys.parse(key)
    except sdk.NostrSdkError:
        raise ConfigError(
            f"the Nostr key of account {account} is not a Nostr secret key ({settings.KEY_SHAPE})"
        ) from None


def publisher(cfg: Config, account: str) -> NostrPublisher:
    """The account's publisher, for the registry: its settings and secret read now."""
    return NostrPublisher.from_config(cfg, account)


# --- the publisher -------------------------------------------------------------------


class NostrPublisher:
    """The Publisher for one Nostr account: one nostr-sdk Client, connected on first use.

    `publish` sends the event to every relay at once and waits for their answers, at
    most `timeout` seconds. Once `min_relays` have accepted it waits at most `linger`
    seconds more for the others (a dead relay in the list must not make every post
    take `timeout`); those still silent are reported as `pending: …` in `detail`, and
    their sends go on in the background until `close`.
    """

    platform = PLATFORM

    def __init__(
        self,
        keys: Any,
        relays: list[str],
        *,
        min_relays: int = settings.DEFAULT_MIN_RELAYS,
        timeout: float = accounts.DEFAULT_TIMEOUT,
        linger: float = DEFAULT_LINGER,
        account: str = DEFAULT_ACCOUNT,
        pow_timeout: float = nostr_pow.DEFAULT_TIMEOUT,
        blossom_servers: list[str] | None = None,
    ) -> None:
        sdk = _sdk()
        # nostr-sdk normalises URLs (lower-case host …) and reports answers by its form;
        # messages and `detail` use the URL as the user wrote it.
        self._urls: dict[str, str] = {}
        for url in relays:
            try:
                normal = str(sdk.RelayUrl.parse(url))
            except sdk.NostrSdkError:
                raise ConfigError(f"{url!r} is not a valid Nostr relay URL") from None
            self._urls.setdefault(normal, url)
        if not self._urls:
            raise ConfigError("a Nostr account needs at least one relay")
        if not 1 <= min_relays <= len(self._urls):
            raise ConfigError(f"min_relays must be from 1 to {len(self._urls)} (the relays)")
        if not timeout > 0:
            raise ConfigError("the Nostr timeout must be a positive number of seconds")
        self.account = account
        self.keys = keys
        self.relays = list(self._urls.values())
        self.min_relays = min_relays
        self.timeout = float(timeout)
        self.linger = max(0.0, min(float(linger), self.timeout))
        self.pow_timeout = pow_timeout
        self.blossom_servers = list(blossom_servers or [])
        self._client: Any = None
        self._pool: list[Any] = []  # the client's Relay objects, in `self._urls`'s order
        self._targets: list[tuple[Any, str]] = []  # (SendEventTarget, configured URL) per relay
        self._signed: dict[str, Any] = {}  # payload → the Event signed here (`_signed_json`)
        self._pubkey: Any = None
        self._kind: Any = None  # nostr_sdk.Kind(1), made once: each call into the SDK counts
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._next_status_check = 0.0  # time.monotonic() of the next `_reconnect`

    @classmethod
    def from_config(cls, cfg: Config, account: str = DEFAULT_ACCOUNT) -> NostrPublisher:
        acc = settings.account_of(cfg, account)
        urls = settings.relay_urls(acc)
        min_relays = settings.min_relays(acc, len(urls))
        timeout = accounts.timeout(acc)
        keys = load_keys(cfg, account)
        return cls(
            keys,
            urls,
            min_relays=min_relays,
            timeout=timeout,
            account=account,
            pow_timeout=settings.pow_timeout(acc),
            blossom_servers=settings.blossom_servers(acc),
        )

    @property
    def public_key(self) -> str:
        """The account's npub1…."""
        return str(self.keys.public_key().to_bech32())

    async def prepare(self, work: Work) -> str:
        """A kind-1 note with the content and the post's options as tags (nostr_media),
        created now and signed: its JSON is the payload.

        With proof of work asked for (NIP-13), the event is mined here, once: the stored
        payload is then re-sent as it is, never mined again (nor its images uploaded again).
        A reply carries NIP-10 marked `e` tags and `p` tags (platforms.replies), made from its
        parent as we stored it, or as the relays have someone else's event.
        """
        from plurcast.platforms import nostr_media

        sdk = _sdk()
        extra: list[list[str]] = []
        if work.reply is not None:
            from plurcast.platforms import replies

            parent, relay = await self._parent(work.reply)
            extra = replies.nostr_reply_tags(parent, relay)
        content, extra = work.content, extra + nostr_media.tags(work.metadata)
        images = work.metadata.get("images") or []
        if images:
            if work.media is None:
                raise RuntimeFailure("no media store was given for the post's images")
            if not self.blossom_servers:
                raise ConfigError(f"Nostr account {self.account} has no blossom_servers")
            content, imeta = await nostr_media.attach_images(
                content,
                images,
                work.media,
                servers=self.blossom_servers,
                keys=self.keys,
                timeout=self.timeout,
            )
            extra += imeta
        wanted = nostr_pow.requested(work.metadata)
        if wanted is not None:
            mined = await nostr_pow.mined_event(
                sdk,
                self.keys,
                content,
                extra,
                wanted,
                timeout=self.pow_timeout,
                label=f"post {work.post_id} to nostr/{self.account}",
            )
            return self._signed_json(mined)
        return self._signed_note(content, extra)

    def prepare_now(self, work: Work) -> str | None:
        """`prepare`'s payload when making it needs no network and no mining — a note that
        answers nothing, with no images and no proof of work asked for — else None. The
        engine makes such a payload in the transaction that claims its delivery."""
        metadata = work.metadata
        if work.reply is not None or metadata.get("images"):
            return None
        if nostr_pow.requested(metadata) is not None:
            return None
        from plurcast.platforms import nostr_media

        return self._signed_note(work.content, nostr_media.tags(metadata))

    def _signed_note(self, content: str, tags: list[list[str]]) -> str:
        """A kind-1 note created now (when it is built) with these tags, signed: its JSON."""
        sdk = _sdk()
        if self._kind is None:
            self._kind = sdk.Kind(1)
        builder = sdk.EventBuilder(self._kind, content)
        if tags:
            builder = builder.tags([sdk.Tag.parse(tag) for tag in tags])
        unsigned = builder.finalize_unsigned(self._public_key())
        # Keys.sign_event in Rust: `finalize(keys)` signs through a Python callback (~2× the CPU).
        return self._signed_json(self.keys.sign_event(unsigned))

    def _public_key(self) -> Any:
        if self._pubkey is None:
            self._pubkey = self.keys.public_key()
        return self._pubkey

    def _signed_json(self, event: Any) -> str:
        """The payload of an event signed here, the event kept for its publish."""
        payload = str(event.as_json())
        self._signed[payload] = event
        if len(self._signed) > SIGNED_KEPT:
            del self._signed[next(iter(self._signed))]
        return payload

    async def _parent(self, reply: Reply) -> tuple[NostrParent, str]:
        """The event a reply answers, and a relay where it can be found."""
        import json

        from plurcast.platforms import replies
        from plurcast.platforms.nostr_references import NostrEvent
        from plurcast.thread import references

        if reply.payload is not None:  # ours: the event as we sent it, on our relays
            return replies.NostrParent.from_event(json.loads(reply.payload)), self.relays[0]
        ref = references.parse(reply.reference or "")
        if not isinstance(ref, NostrEvent):
            raise InvalidInput(f"{reply.reference} is not a Nostr event to reply to")
        hint = ref.relays[0] if ref.relays else self.relays[0]
        found = await self._fetch_event(ref.event_id, [*self.relays, *ref.relays])
        if found is not None:
            return replies.NostrParent.from_event(found), hint
        # Not on any relay asked: answer it as a root, which is all that can be known of it.
        _log().warning("nostr/%s: event %s not found on the relays", self.account, ref.event_id)
        return replies.NostrParent(ref.event_id, ref.author or ""), hint

    async def _fetch_event(self, event_id: str, relays: list[str]) -> dict[str, Any] | None:
        """Someone else's event from these relays, within `timeout`, verified; None when the
        relays answered without it. No relay answering at all is a passing failure."""
        import json

        sdk = _sdk()
        wait = timedelta(seconds=self.timeout)
        client = sdk.ClientBuilder().connect_timeout(wait).build()  # short-lived: ours stays
        try:
            for url in dict.fromkeys(relays):
                await client.add_relay(sdk.RelayUrl.parse(url))
            await client.connect(and_wait=wait)
            pool = (await client.relays()).values()
            if not any(r.status() == sdk.RelayStatus.CONNECTED for r in pool):
                raise RuntimeFailure("no Nostr relay answered while looking up the post replied to")
            target = sdk.ReqTarget.auto([sdk.Filter().id(sdk.EventId.parse(event_id))])
            events = await client.fetch_events(target, timeout=wait)
        finally:
            await client.shutdown()
        for event in events:
            if event.verify() and event.id().to_hex() == event_id:
                parsed: dict[str, Any] = json.loads(event.as_json())
                return parsed
        return None

    async def publish(self, payload: str, media: MediaReader | None = None) -> Outcome:
        """Send the stored signed event to every relay; never raises for platform trouble.

        An event this publisher signed and whose JSON is exactly `payload` is sent as the
        object it signed; any other payload (a re-send after a restart, another process's) is
        parsed and verified first.
        """
        event = self._signed.pop(payload, None)
        if event is None:
            sdk = _sdk()
            try:
                event = sdk.Event.from_json(payload)
            except sdk.NostrSdkError:
                return Outcome(OutcomeKind.PERMANENT, error="stored payload is not a Nostr event")
            # from_json accepts an event whose content, id or signature was altered: verify.
            if not event.verify():
                return Outcome(OutcomeKind.PERMANENT, error="stored event failed verification")
        note_id = str(event.id().to_bech32())
        try:
            answers = await self._send(event)
        except Exception as exc:  # whatever nostr-sdk raises: a failed attempt, not a crash
            return Outcome(
                OutcomeKind.TRANSIENT,
                error=f"nostr: {type(exc).__name__}: {one_line(str(exc))}",
                detail=dict.fromkeys(self.relays, "not sent"),
            )
        return answers_module.outcome_from_answers(answers, self.min_relays, note_id)

    async def close(self) -> None:
        """Stop sends still in flight and disconnect from every relay; publish reconnects."""
        import asyncio
        import contextlib

        for task in list(self._background):
            task.cancel()
        self._background.clear()
        client, self._client = self._client, None
        self._pool, self._targets = [], []
        if client is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                await asyncio.wait_for(client.shutdown(), HARD_DEADLINE_MARGIN)

    # -- internals --

    def _guard(self) -> asyncio.Lock:
        """A lock for making the client, one per event loop (a Lock belongs to one loop)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _connected(self) -> Any:
        """The client, made and connecting on first use; a relay whose connection ended for
        good (none does by itself: nostr-sdk reconnects) is connected again."""
        client = self._client
        if client is None:
            async with self._guard():
                if self._client is None:
                    await self._make_client()
                client = self._client
        elif (now := time.monotonic()) >= self._next_status_check:
            self._next_status_check = now + STATUS_CHECK_SECONDS
            self._reconnect()
        return client

    async def _make_client(self) -> None:
        sdk = _sdk()
        client = sdk.ClientBuilder().connect_timeout(timedelta(seconds=self.timeout)).build()
        pool, targets = [], []
        for normal, url in self._urls.items():
            relay_url = sdk.RelayUrl.parse(normal)
            await client.add_relay(relay_url)
            pool.append(await client.relay(relay_url))
            targets.append((sdk.SendEventTarget.to([relay_url]), url))
        # Starts a connection to every relay and returns at once; send_event waits for
        # relays still connecting, and nostr-sdk reconnects to a relay that drops.
        await client.connect()
        self._pool, self._targets, self._client = pool, targets, client
        self._next_status_check = time.monotonic() + STATUS_CHECK_SECONDS

    def _reconnect(self) -> None:
        """What `client.connect()` does, without an await per publish: a connection task for
        each relay that has none (status INITIALIZED or TERMINATED); at most once a
        STATUS_CHECK_SECONDS."""
        status = _sdk().RelayStatus
        for relay in self._pool:
            if relay.status() in (status.INITIALIZED, status.TERMINATED):
                relay.connect()

    async def _send(self, event: Any) -> dict[str, str | None]:
        """Each relay's answer (None = accepted), by configured URL, within the deadline."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout + HARD_DEADLINE_MARGIN
        if self._client is None:
            client = await asyncio.wait_for(self._connected(), self.timeout)
        else:
            client = await self._connected()
        ok_timeout = timedelta(seconds=self.timeout)
        if len(self._targets) == 1:
            # One relay, the client's only one: its answer is the outcome (min_relays is 1, no
            # linger). Awaited in this task, to all the client's relays: no task, no wait, no
            # target to pass into the SDK per send.
            url, scope = self.relays[0], asyncio.timeout_at(deadline)
            try:
                async with scope:
                    output = await client.send_event(event, ok_timeout=ok_timeout)
            except Exception as exc:
                if scope.expired():
                    return {url: f"timeout: no answer within {self.timeout:g} s"}
                return {url: answers_module.send_error(exc)}
            return {url: answers_module.output_answer(output)}
        sends: dict[asyncio.Future[Any], str] = {}
        for target, url in self._targets:
            send = client.send_event(event, target=target, ok_timeout=ok_timeout)
            sends[asyncio.ensure_future(send)] = url
        answers: dict[str, str | None] = dict.fromkeys(self.relays, "no answer from the relay")
        pending = set(sends)
        quorum_at: float | None = None
        try:
            while pending:
                limit = deadline if quorum_at is None else min(deadline, quorum_at + self.linger)
                if loop.time() >= limit:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=limit - loop.time(), return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    answers[sends[task]] = answers_module.answer(task)
                if quorum_at is None and answers_module.accepted(answers) >= self.min_relays:
                    quorum_at = loop.time()
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        for task in pending:
            if quorum_at is None:
                task.cancel()
                answers[sends[task]] = f"timeout: no answer within {self.timeout:g} s"
            else:  # enough relays have it: let the rest finish while the client lives
                answers[sends[task]] = "pending: no answer yet, still sending"
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return answers
