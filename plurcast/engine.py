"""The one delivery path: claim → prepare and commit → publish → record.

plur-post (now), plur-queue now / failed retry and plur-send all deliver through
this module. The guarantees rest on where its transactions begin and end:

- claim: one BEGIN IMMEDIATE takes due deliveries (and those whose holder's lease
  ran out), reserves their rate-limit slots and leases them to this process — two
  processes can never hold the same delivery (G1);
- prepare: the payload is made once, at the first attempt, and committed before
  any byte goes out, under a check that this process still holds a delivery that
  is still wanted — a cancelled post is never sent, and every re-send after a
  crash sends the same bytes, which the platform recognises (G2);
- record: the outcome is written in one transaction; only failed deliveries are
  retried (G3), with backoff, or given up with the reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from plurcast import process
from plurcast.config import Config
from plurcast.errors import ConfigError, PlurcastError, RuntimeFailure
from plurcast.health import HEARTBEAT_STALE_MS
from plurcast.models import NOTE_PREFIX, ErrorKind, Fate, Recorded
from plurcast.platforms import registry
from plurcast.platforms.base import Outcome, OutcomeKind, Publisher, Reply, Work
from plurcast.ratelimit import Window
from plurcast.retry import backoff_seconds, rate_limited_wait
from plurcast.secrets import redact
from plurcast.store import deliveries as store
from plurcast.store.base import Database, DatabaseUnavailable
from plurcast.store.connection import transaction
from plurcast.store.deliveries import Claimed

if TYPE_CHECKING:
    import random

    from plurcast.media.store import MediaStore

log = logging.getLogger("plurcast.engine")
_T = TypeVar("_T")

LEASE_SECONDS = 120.0
# A publish gets its platform's timeout plus this before it is abandoned as
# transient, and never longer than MAX_PUBLISH_SECONDS: the lease must outlive it
# by far, so that no other process takes the delivery while it may be on the wire.
PUBLISH_MARGIN_SECONDS = 5.0
MAX_PUBLISH_SECONDS = LEASE_SECONDS / 2
# A relay's or server's error text is kept to this many characters (one answered 200 KB).
MAX_ERROR_CHARS = 1000

Factory = Callable[[Config, str], Publisher]


def default_factories() -> dict[str, Factory]:
    """Every registered platform's publisher factory, by name."""
    return {p.name: p.publisher for p in registry.PLATFORMS}


class PublisherPool:
    """One connected publisher per (platform, account), made on first use and reused."""

    def __init__(self, cfg: Config, factories: dict[str, Factory] | None = None) -> None:
        self.cfg = cfg
        self.factories = default_factories() if factories is None else factories
        self._publishers: dict[tuple[str, str], Publisher] = {}

    @property
    def platforms(self) -> tuple[str, ...]:
        return tuple(self.factories)

    def get(self, platform: str, account: str) -> Publisher:
        key = (platform, account)
        if key not in self._publishers:
            self._publishers[key] = self.factories[platform](self.cfg, account)
        return self._publishers[key]

    async def close(self) -> None:
        publishers, self._publishers = list(self._publishers.values()), {}
        for publisher in publishers:
            try:
                await publisher.close()
            except Exception as exc:  # a client that fails to close must not stop the others
                log.warning("closing %s/%s failed: %s", publisher.platform, publisher.account, exc)


class Delivered(NamedTuple):
    """What became of one claimed delivery in this process."""

    claim: Claimed
    state: Fate
    outcome: Outcome | None
    due_at_ms: int | None = None


class Lanes:
    """Deliveries on the wire per platform, each platform with `size` slots.

    A relay, instance or PDS that is down or hangs fills only its own platform's slots:
    posts for the other platforms still find one and go out on time (G4).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._busy: Counter[str] = Counter()

    def room(self, platform: str) -> int:
        return self.size - self._busy[platform]

    def free(self, platforms: Iterable[str]) -> dict[str, int]:
        return {p: self.room(p) for p in platforms}

    def take(self, platform: str) -> None:
        self._busy[platform] += 1

    def give(self, platform: str) -> None:
        self._busy[platform] -= 1
        if self._busy[platform] <= 0:
            del self._busy[platform]


class Engine:
    def __init__(
        self,
        cfg: Config,
        conn: Database,
        pool: PublisherPool | None = None,
        *,
        owner: str | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        no_retry: bool = False,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.cfg = cfg
        self.conn = conn
        self.pool = pool or PublisherPool(cfg)
        self.owner = owner or process.owner_id()
        self.clock = clock
        self._rng = rng
        self.no_retry = no_retry
        self.lease_ms = int(lease_seconds * 1000)
        self._media: MediaStore | None = None
        self._pruned: dict[tuple[str, str], int] = {}  # ratelimit.Window's, across claims

    @property
    def rng(self) -> random.Random:
        """Jitter for the wait before a retry, made at the first one: a pass that sends
        everything, or finds nothing due, never imports random."""
        if self._rng is None:
            import random

            self._rng = random.Random()
        return self._rng

    def now_ms(self) -> int:
        """The database's clock (on PostgreSQL the server's: hosts' clocks may disagree),
        unless a test injected one."""
        if self.clock is None:
            return self.conn.now_ms()
        return int(self.clock() * 1000)

    # --- claim ------------------------------------------------------------------------

    def claim_due(self, limit: int, lanes: Lanes | None = None) -> list[Claimed]:
        """Lease up to `limit` due deliveries, reserving their rate-limit slots; with
        `lanes`, none beyond a platform's free slots (the caller takes those)."""
        if limit <= 0:
            return []
        lease = self._lease_now()
        platforms = self.pool.platforms
        room = lanes.free(platforms) if lanes is not None else None
        if room is not None and not any(n > 0 for n in room.values()):
            return []  # every lane full: nothing to take, no write transaction for it
        with transaction(self.conn):
            return self._settle(store.lease_due(self.conn, lease, platforms, limit, room), lease)

    def claim_post(self, post_id: str) -> list[Claimed]:
        """Lease a post's waiting deliveries whatever their time (plur-queue now)."""
        with transaction(self.conn):
            return self.claim_post_locked(post_id)

    def claim_post_locked(self, post_id: str) -> list[Claimed]:
        """As claim_post, inside the caller's transaction (plur-post inserts and claims at once)."""
        lease = self._lease_now()
        leased = store.lease_post(self.conn, lease, post_id, self.pool.platforms)
        return self._settle(leased, lease)

    def claim_children(
        self, parent_id: int, post_ids: Sequence[str], *, any_time: bool = False
    ) -> list[Claimed]:
        """Lease the deliveries of `post_ids` that answer `parent_id` (just sent): the next
        part of a thread published in the foreground. Only those due, unless `any_time`."""
        lease = self._lease_now()
        due_by = None if any_time else lease.now_ms
        with transaction(self.conn):
            leased = store.lease_children(self.conn, lease, parent_id, post_ids, due_by)
            return self._settle(leased, lease)

    def _lease_now(self) -> store.Lease:
        now = self.now_ms()
        return store.Lease(self.owner, now, now + self.lease_ms)

    def _settle(self, leased: Iterable[tuple[Claimed, str]], lease: store.Lease) -> list[Claimed]:
        """Of the deliveries just leased (each with the state it was leased from), keep those
        with a rate-limit slot, reserved in this transaction; hand back the rest, due when a
        slot frees, and give up one-shot posts past the grace."""
        leased = list(leased)
        now = lease.now_ms
        window = Window(self.conn, self.cfg.scheduling.posts_per_hour, now, self._pruned)
        window.lock({(c.platform, c.account) for c, _ in leased})
        grace = self.cfg.scheduling.grace
        claimed: list[Claimed] = []
        for claim, was in leased:
            late = now - claim.due_at_ms
            # A thread that has begun is finished, however late: half a thread is worse.
            if (
                grace is not None
                and not claim.continues_thread
                and was == "pending"
                and not claim.payload
                and late > grace * 1000
            ):
                reason = f"expired: {late / 1000:.0f} s late, over the grace of {grace:g} s"
                store.expire(self.conn, lease, claim.delivery_id, reason)
                log.warning(
                    "post %s to %s: %s", claim.post_id, claim.platform, reason, extra=_fields(claim)
                )
                continue
            frees_at = window.reserve(claim.platform, claim.account, claim.delivery_id)
            if frees_at is not None:
                store.give_back(self.conn, lease, claim.delivery_id, was, frees_at)
                log.info(
                    "rate limit: post %s to %s/%s deferred by %.0f s",
                    claim.post_id,
                    claim.platform,
                    claim.account,
                    (frees_at - now) / 1000,
                    extra=_fields(claim),
                )
                continue
            claimed.append(claim)
        return claimed

    # --- prepare, publish, record -----------------------------------------------------

    async def deliver(self, claim: Claimed) -> Delivered:
        started = self.now_ms()
        try:
            publisher = self.pool.get(claim.platform, claim.account)
        except Exception as exc:
            return self._record(claim, _failure(exc, claim), started)
        payload = claim.payload
        notes: dict[str, str] = {}
        media = self.media if claim.metadata.get("images") else None
        if payload is None:
            work = Work(
                claim.delivery_id,
                claim.post_id,
                claim.platform,
                claim.account,
                claim.content,
                claim.metadata,
                _reply(claim),
                media=media,
                notes=notes,
            )
            try:
                payload = await self._holding_lease(claim, publisher.prepare(work))
            except Exception as exc:
                return self._record(claim, _failure(exc, claim), started, notes)
            for key, note in notes.items():
                log.warning(
                    "post %s to %s/%s: %s: %s",
                    claim.post_id,
                    claim.platform,
                    claim.account,
                    key,
                    note,
                    extra=_fields(claim),
                )
        stored = None
        if payload is not None:
            prepared = payload

            def store_prepared() -> str | None:
                with transaction(self.conn):
                    return store.store_payload(
                        self.conn, claim.delivery_id, self.owner, prepared, self.now_ms()
                    )

            stored = await self._written(store_prepared, claim)
        if stored is None:
            log.info(
                "post %s to %s/%s was cancelled or taken over before sending; not sent",
                claim.post_id,
                claim.platform,
                claim.account,
                extra=_fields(claim),
            )
            return Delivered(claim, "cancelled", None)
        import asyncio  # here, not at the top: plur-send --once finding nothing needs none

        limit = min(publisher.timeout + PUBLISH_MARGIN_SECONDS, MAX_PUBLISH_SECONDS)
        try:
            async with asyncio.timeout(limit):  # in this task: wait_for would start another
                outcome = await publisher.publish(stored, media)
        except TimeoutError:
            outcome = Outcome(OutcomeKind.TRANSIENT, error=f"no answer within {limit:g} s")
        except Exception as exc:  # an adapter must not take the daemon down with it
            log.exception(
                "publishing post %s to %s failed unexpectedly", claim.post_id, claim.platform
            )
            outcome = Outcome(OutcomeKind.TRANSIENT, error=f"{type(exc).__name__}: {exc}")
        delivered = await self._written(lambda: self._record(claim, outcome, started, notes), claim)
        if delivered.state == "sent" and claim.metadata.get("images"):
            self._collect(claim)
        return delivered

    async def _written(self, write: Callable[[], _T], claim: Claimed) -> _T:
        """Run a write, waiting out a broken database connection (PostgreSQL: reopened at
        the next try) for as long as the lease may still be ours. After that another
        process may have taken the delivery over: the write would be refused anyway."""
        import asyncio

        deadline = time.monotonic() + self.lease_ms / 2000
        pause = 0.2
        while True:
            try:
                return write()
            except DatabaseUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning(
                    "post %s to %s: %s; writing again in %.1f s",
                    claim.post_id,
                    claim.platform,
                    exc.message,
                    pause,
                    extra=_fields(claim),
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    @property
    def media(self) -> MediaStore:
        """The media store of this engine's queue, where posts' images wait."""
        if self._media is None:
            from plurcast.media import store as media_store

            self._media = media_store.for_database(self.conn)
        return self._media

    def _collect(self, claim: Claimed) -> None:
        """A post's images leave the media store once no delivery may need them."""
        try:
            self.media.collect()
        except Exception as exc:  # tidying up must never turn a sent post into an error
            log.warning("collecting images after post %s failed: %s", claim.post_id, exc)

    async def _holding_lease(self, claim: Claimed, prepare: Awaitable[str]) -> str | None:
        """Run a prepare step, renewing the lease while it runs — mining proof of work or
        uploading images to a slow server can outlast a lease, and another process must not
        take the delivery meanwhile.

        None (and the step is stopped) as soon as the delivery is cancelled or taken over.
        """
        import asyncio

        task = asyncio.ensure_future(prepare)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.lease_ms / 3000)
                if done:
                    return task.result()
                with transaction(self.conn):
                    held = store.extend_lease(
                        self.conn, claim.delivery_id, self.owner, self.now_ms() + self.lease_ms
                    )
                if not held:
                    task.cancel()
                    return None
        except BaseException:
            task.cancel()
            raise

    def _record(
        self, claim: Claimed, outcome: Outcome, started: int, notes: dict[str, str] | None = None
    ) -> Delivered:
        now = self.now_ms()
        sched = self.cfg.scheduling
        attempt = claim.attempts + 1
        due: int | None = None
        count = True
        state: Recorded
        kind: ErrorKind | None = None
        error = None if outcome.error is None else error_text(outcome.error)
        detail = {
            **{NOTE_PREFIX + key: error_text(note) for key, note in (notes or {}).items()},
            **{key: error_text(value) for key, value in outcome.detail.items()},
        }
        if outcome.kind == OutcomeKind.SENT:
            state, error = "sent", None
        elif outcome.kind == OutcomeKind.PERMANENT:
            state, kind = "dead", "auth" if outcome.auth else "permanent"
        elif outcome.kind == OutcomeKind.RATE_LIMITED and not self.no_retry:
            kind = "rate_limited"
            in_a_row = store.rate_limited_in_a_row(self.conn, claim.delivery_id)
            wait = rate_limited_wait(in_a_row, outcome.retry_after, sched.retry_delay, self.rng)
            if wait is None:
                state = "dead"
                error = f"gave up after {in_a_row + 1} rate-limit answers in a row: {error}"
            else:
                state, count = "retry", False
                due = now + int(wait * 1000)
        elif self.no_retry or attempt > sched.max_retries:
            state, kind = "dead", "transient"
            error = f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}: {error}"
        else:
            state, kind = "retry", "transient"
            wait = outcome.retry_after or backoff_seconds(attempt, sched.retry_delay, self.rng)
            due = now + int(wait * 1000)
        with transaction(self.conn):
            held = store.record(
                self.conn,
                claim.delivery_id,
                self.owner,
                state=state,
                now_ms=now,
                count_attempt=count,
                due_at_ms=due,
                remote_id=outcome.remote_id,
                remote_url=outcome.remote_url,
                remote_cid=outcome.remote_cid,
                error=error,
                error_kind=kind,
            )
            if held and state == "sent":
                store.unblock_children(self.conn, claim.delivery_id, now)
            store.log_attempt(
                self.conn,
                claim.delivery_id,
                started_ms=started,
                finished_ms=now,
                outcome=state,
                error=error,
                error_kind=kind,
                detail=detail,
                worker=self.owner,
            )
            if outcome.kind == OutcomeKind.RATE_LIMITED and due is not None:
                store.set_hold(
                    self.conn, claim.platform, claim.account, due, error or "rate limited"
                )
            if outcome.hold_for:
                until = now + int(outcome.hold_for * 1000)
                store.set_hold(self.conn, claim.platform, claim.account, until, "quota used up")
        if not held:
            log.warning(
                "post %s to %s/%s: lease lost before recording %s",
                claim.post_id,
                claim.platform,
                claim.account,
                state,
                extra=_fields(claim),
            )
            return Delivered(claim, "lost", outcome)
        self._log_outcome(claim, state, outcome, error, due, now)
        return Delivered(claim, state, outcome, due)

    def _log_outcome(
        self,
        claim: Claimed,
        state: Recorded,
        outcome: Outcome,
        error: str | None,
        due: int | None,
        now: int,
    ) -> None:
        fields = {**_fields(claim), "delivery_state": state}
        if state == "sent":
            lateness = (now - claim.due_at_ms) / 1000 if claim.due_at_ms else 0.0
            log.info(
                "sent post %s to %s/%s: %s (%.3f s after its time)",
                claim.post_id,
                claim.platform,
                claim.account,
                outcome.remote_id,
                lateness,
                extra=fields,
            )
        elif state == "retry":
            log.warning(
                "post %s to %s/%s failed (%s); retrying in %.0f s",
                claim.post_id,
                claim.platform,
                claim.account,
                error,
                ((due or now) - now) / 1000,
                extra=fields,
            )
        else:
            log.error(
                "post %s to %s/%s gave up: %s",
                claim.post_id,
                claim.platform,
                claim.account,
                error,
                extra=fields,
            )

    async def deliver_all(self, claims: Sequence[Claimed], concurrency: int) -> list[Delivered]:
        """Deliver claims with at most `concurrency` on the wire at once."""
        import asyncio

        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(claim: Claimed) -> Delivered:
            async with gate:
                return await self.deliver(claim)

        return list(await asyncio.gather(*(one(c) for c in claims)))

    # --- leases of this and of dead processes ---------------------------------------------

    def release(self) -> int:
        """Give back unfinished leases (on shutdown); payloads stay for the re-send."""
        with transaction(self.conn):
            return store.release(self.conn, self.owner, self.now_ms())

    def recover_dead_leases(self) -> int:
        """Leases of dead processes are claimable at once: of this host's processes that no
        longer run, and of daemons on any host whose heartbeat went silent."""
        now = self.now_ms()
        owners = {
            o for o in store.lease_owners(self.conn) if o != self.owner and process.is_dead(o)
        }
        owners.update(store.silent_lease_owners(self.conn, now - HEARTBEAT_STALE_MS))
        owners.discard(self.owner)
        if not owners:
            return 0
        with transaction(self.conn):
            count = store.expire_leases(self.conn, sorted(owners), now)
        if count:  # once: leases already recovered (still `sending`, ran out) are not counted
            log.warning("recovered %d deliveries from %d dead process(es)", count, len(owners))
        return count

    def next_wake_ms(self, lanes: Lanes | None = None) -> int | None:
        """The next due time or lease expiry, of the platforms with a free slot."""
        platforms = self.pool.platforms
        if lanes is not None:
            platforms = tuple(p for p in platforms if lanes.room(p) > 0)
        return store.next_wake_ms(self.conn, platforms)


def error_text(text: str) -> str:
    """What a platform said, as it is stored, printed and logged: without the account's
    secrets (a server may echo the token it got) and at most MAX_ERROR_CHARS long."""
    text = redact(text)
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]}… ({len(text) - MAX_ERROR_CHARS:,} more characters)"
    return text


def _reply(claim: Claimed) -> Reply | None:
    """What the delivery's payload must link to: its parent of ours, else the post's
    `--reply-to` (someone else's post), else nothing."""
    if claim.parent is not None:
        parent = claim.parent
        return Reply(parent.remote_id, parent.remote_cid, parent.payload)
    reference = claim.metadata.get("reply_to")
    return Reply(reference=reference) if isinstance(reference, str) else None


def _failure(exc: Exception, claim: Claimed) -> Outcome:
    """What a failure before any byte went out means for the delivery.

    Config and input errors cannot mend themselves (dead, with the reason; config
    ones are auth errors, plur-post exits 2); a RuntimeFailure is passing (retry);
    anything else is a bug in an adapter, logged with its traceback and retried
    rather than allowed to take the daemon down.
    """
    if isinstance(exc, RuntimeFailure):
        return Outcome(OutcomeKind.TRANSIENT, error=str(exc))
    if isinstance(exc, PlurcastError):
        return Outcome(OutcomeKind.PERMANENT, error=str(exc), auth=isinstance(exc, ConfigError))
    log.exception("preparing post %s for %s failed unexpectedly", claim.post_id, claim.platform)
    return Outcome(OutcomeKind.TRANSIENT, error=f"{type(exc).__name__}: {exc}")


def _fields(claim: Claimed) -> dict[str, str]:
    """Structured fields for logs (journald/json): which post, where, as whom."""
    return {"post_id": claim.post_id, "platform": claim.platform, "account": claim.account}
