"""The one delivery path: claim → prepare and commit → publish → record.

plur-post (now), plur-queue now / failed retry and plur-send all deliver through
this module. The guarantees rest on where its transactions begin and end:

- claim: one BEGIN IMMEDIATE takes due deliveries (and those whose holder's lease
  ran out), reserves their rate-limit slots and leases them to this process — two
  processes can never hold the same delivery (G1);
- prepare: the payload is made once, at the first attempt, and committed before
  any byte goes out, under a check that this process still holds a delivery that
  is still wanted — a cancelled post is never sent, and every re-send after a
  crash sends the same bytes, which the platform recognises (G2). A payload the
  publisher can make at once (`prepare_now`: no network, no mining) is made and
  committed in the claim's own transaction, which holds that check; from then on,
  as for any stored payload, a cancel is refused (it may be out);
- record: the outcome is written in one transaction (plurcast.record), with those of the
  deliveries finishing about the same time (plurcast.store.grouped: the same turn of the event
  loop, or the next few while others are on the wire), and told only once committed; only
  failed deliveries are retried (G3), with backoff, or given up with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from plurcast import process
from plurcast.config import Config
from plurcast.health import HEARTBEAT_STALE_MS
from plurcast.outcomes import failure, log_fields
from plurcast.platforms.base import Outcome, OutcomeKind, Reply, Work
from plurcast.pool import Lanes, PublisherPool
from plurcast.ratelimit import Window
from plurcast.record import Delivered, Record
from plurcast.store import claiming, daemons, recording
from plurcast.store.base import Database, DatabaseUnavailable
from plurcast.store.claiming import Claimed
from plurcast.store.connection import transaction
from plurcast.store.grouped import GroupedWrites

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
        self._grouped = GroupedWrites(conn)  # the records of deliveries finishing together

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
            return self._settle(claiming.lease_due(self.conn, lease, platforms, limit, room), lease)

    def claim_post(self, post_id: str) -> list[Claimed]:
        """Lease a post's waiting deliveries whatever their time (plur-queue now)."""
        with transaction(self.conn):
            return self.claim_post_locked(post_id)

    def claim_post_locked(self, post_id: str) -> list[Claimed]:
        """As claim_post, inside the caller's transaction (plur-post inserts and claims at once)."""
        lease = self._lease_now()
        leased = claiming.lease_post(self.conn, lease, post_id, self.pool.platforms)
        return self._settle(leased, lease)

    def claim_children(
        self, parent_id: int, post_ids: Sequence[str], *, any_time: bool = False
    ) -> list[Claimed]:
        """Lease the deliveries of `post_ids` that answer `parent_id` (just sent): the next
        part of a thread published in the foreground. Only those due, unless `any_time`."""
        lease = self._lease_now()
        due_by = None if any_time else lease.now_ms
        with transaction(self.conn):
            leased = claiming.lease_children(self.conn, lease, parent_id, post_ids, due_by)
            return self._settle(leased, lease)

    def _lease_now(self) -> claiming.Lease:
        now = self.now_ms()
        return claiming.Lease(self.owner, now, now + self.lease_ms)

    def _settle(
        self, leased: Iterable[tuple[Claimed, str]], lease: claiming.Lease
    ) -> list[Claimed]:
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
                claiming.expire(self.conn, lease, claim.delivery_id, reason)
                log.warning(
                    "post %s to %s: %s",
                    claim.post_id,
                    claim.platform,
                    reason,
                    extra=log_fields(claim),
                )
                continue
            frees_at = window.reserve(claim.platform, claim.account, claim.delivery_id)
            if frees_at is not None:
                claiming.give_back(self.conn, lease, claim.delivery_id, was, frees_at)
                log.info(
                    "rate limit: post %s to %s/%s deferred by %.0f s",
                    claim.post_id,
                    claim.platform,
                    claim.account,
                    (frees_at - now) / 1000,
                    extra=log_fields(claim),
                )
                continue
            claimed.append(self._prepared_at_once(claim, now))
        return claimed

    def _prepared_at_once(self, claim: Claimed, now_ms: int) -> Claimed:
        """The claim with its payload prepared and stored in the claim's own transaction, and
        `ready` to publish, when its publisher is made and can make it at once (`prepare_now`:
        no network, no mining, e.g. a plain Nostr note, signed): `deliver` then needs no
        transaction and no task of its own for it. Else the claim as it is: `deliver`
        prepares it (and records why, should that fail)."""
        if claim.payload is not None:
            return claim
        prepare_now = getattr(self.pool.made(claim.platform, claim.account), "prepare_now", None)
        if prepare_now is None:
            return claim
        try:
            payload: str | None = prepare_now(_work(claim))
        except Exception:
            return claim  # `deliver` prepares it again, and records the error
        if payload is None:
            return claim
        stored = recording.store_payload(self.conn, claim.delivery_id, self.owner, payload, now_ms)
        return claim if stored is None else claim._replace(payload=stored, ready=True)

    # --- prepare, publish, record -----------------------------------------------------

    async def deliver(self, claim: Claimed, refill: Callable[[], bool] | None = None) -> Delivered:
        """Prepare (unless the claim did), publish and record one claimed delivery.

        With `refill`, and when it says yes at the time, the transaction that records the
        outcome also claims the next due delivery of the same platform (`successor`): the
        lane this one leaves is taken again without a claim transaction of its own, as the
        daemon does in a burst."""
        started = self.now_ms()
        try:
            publisher = self.pool.get(claim.platform, claim.account)
        except Exception as exc:
            return self._record(claim, failure(exc, claim), started)
        notes: dict[str, str] = {}
        media = self.media if claim.metadata.get("images") else None
        stored = claim.payload if claim.ready else None
        if not claim.ready:
            payload = claim.payload
            if payload is None:
                work = _work(claim, media, notes)
                try:
                    payload = await self._holding_lease(claim, publisher.prepare(work))
                except Exception as exc:
                    return self._record(claim, failure(exc, claim), started, notes)
                for key, note in notes.items():
                    log.warning(
                        "post %s to %s/%s: %s: %s",
                        claim.post_id,
                        claim.platform,
                        claim.account,
                        key,
                        note,
                        extra=log_fields(claim),
                    )
            if payload is not None:
                prepared = payload

                def store_prepared() -> str | None:
                    return recording.store_payload(
                        self.conn, claim.delivery_id, self.owner, prepared, self.now_ms()
                    )

                # Committed, with the writes asked for about the same time, before a byte is sent.
                stored = await self._written(lambda: self._grouped.write(store_prepared), claim)
        if stored is None:
            log.info(
                "post %s to %s/%s was cancelled or taken over before sending; not sent",
                claim.post_id,
                claim.platform,
                claim.account,
                extra=log_fields(claim),
            )
            return Delivered(claim, "cancelled", None)
        import asyncio  # here, not at the top: plur-send --once finding nothing needs none

        limit = min(publisher.timeout + PUBLISH_MARGIN_SECONDS, MAX_PUBLISH_SECONDS)
        self._grouped.coming += 1  # its record will follow: a group being written may wait for it
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
        finally:
            self._grouped.coming -= 1
        record = Record(self, claim, outcome, started, notes, refill)
        delivered = record.told(await self._written(lambda: self._grouped.write(record), claim))
        if delivered.state == "sent" and claim.metadata.get("images"):
            self._collect(claim)
        return delivered

    async def _written(self, write: Callable[[], Awaitable[_T]], claim: Claimed) -> _T:
        """Run a write, waiting out a broken database connection (PostgreSQL: reopened at
        the next try) for as long as the lease may still be ours. After that another
        process may have taken the delivery over: the write would be refused anyway."""
        import asyncio

        deadline = time.monotonic() + self.lease_ms / 2000
        pause = 0.2
        while True:
            try:
                return await write()
            except DatabaseUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning(
                    "post %s to %s: %s; writing again in %.1f s",
                    claim.post_id,
                    claim.platform,
                    exc.message,
                    pause,
                    extra=log_fields(claim),
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
                    held = recording.extend_lease(
                        self.conn, claim.delivery_id, self.owner, self.now_ms() + self.lease_ms
                    )
                if not held:
                    task.cancel()
                    return None
        except BaseException:
            task.cancel()
            raise

    def _record(
        self,
        claim: Claimed,
        outcome: Outcome,
        started: int,
        notes: dict[str, str] | None = None,
        refill: Callable[[], bool] | None = None,
    ) -> Delivered:
        """Record an attempt's outcome in a transaction of its own (`deliver` groups those
        of a publish with the others finishing at the same time)."""
        record = Record(self, claim, outcome, started, notes, refill)
        with transaction(self.conn):
            written = record()
        return record.told(written)

    def successor(self, platform: str) -> Claimed | None:
        """In the caller's transaction: the platform's next due delivery, leased, its rate
        slot reserved (and its payload prepared at once where it can be), as `claim_due`
        takes them; None when nothing is due or a rate limit defers it."""
        lease = self._lease_now()
        claimed = self._settle(claiming.lease_due(self.conn, lease, (platform,), 1), lease)
        return claimed[0] if claimed else None

    # --- leases of this and of dead processes ---------------------------------------------

    def release(self) -> int:
        """Give back unfinished leases (on shutdown); payloads stay for the re-send."""
        with transaction(self.conn):
            return daemons.release(self.conn, self.owner, self.now_ms())

    def recover_dead_leases(self) -> int:
        """Leases of dead processes are claimable at once: of this host's processes that no
        longer run, and of daemons on any host whose heartbeat went silent."""
        now = self.now_ms()
        owners = {
            o for o in daemons.lease_owners(self.conn) if o != self.owner and process.is_dead(o)
        }
        owners.update(daemons.silent_lease_owners(self.conn, now - HEARTBEAT_STALE_MS))
        owners.discard(self.owner)
        if not owners:
            return 0
        with transaction(self.conn):
            count = daemons.expire_leases(self.conn, sorted(owners), now)
        if count:  # once: leases already recovered (still `sending`, ran out) are not counted
            log.warning("recovered %d deliveries from %d dead process(es)", count, len(owners))
        return count

    def next_wake_ms(self, lanes: Lanes | None = None) -> int | None:
        """The next due time or lease expiry, of the platforms with a free slot."""
        platforms = self.pool.platforms
        if lanes is not None:
            platforms = tuple(p for p in platforms if lanes.room(p) > 0)
        return daemons.next_wake_ms(self.conn, platforms)


def _work(
    claim: Claimed, media: MediaStore | None = None, notes: dict[str, str] | None = None
) -> Work:
    """The delivery as its platform's prepare sees it."""
    return Work(
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


def _reply(claim: Claimed) -> Reply | None:
    """What the delivery's payload must link to: its parent of ours, else the post's
    `--reply-to` (someone else's post), else nothing."""
    if claim.parent is not None:
        parent = claim.parent
        return Reply(parent.remote_id, parent.remote_cid, parent.payload)
    reference = claim.metadata.get("reply_to")
    return Reply(reference=reference) if isinstance(reference, str) else None
