"""Per-(platform, account) sliding-window rate limits, decided at claim time.

A slot is reserved in the same transaction that claims the delivery, so two
daemons cannot both take the last slot. A full window defers the delivery to the
moment a slot frees — it is never dropped — and a platform's own "wait until"
(a hold) closes the window until then. Any doubt fails closed: no slot, no send.
"""

from __future__ import annotations

from collections.abc import Mapping

from plurcast.store import rates
from plurcast.store.base import Database

WINDOW_MS = 3_600_000


# Slots that left the window are deleted at most this often per (platform, account) and
# process, and whenever the window looks full: a count that still holds old slots is an
# upper bound, so "room left" read from it is true, and "full" is checked after a prune.
PRUNE_EVERY_MS = 60_000


class Window:
    """The slots of one claim transaction; remembers how many it already deferred.

    Each (platform, account) is read once per claim (its hold and its count), then counted
    here: the claim's transaction (SQLite's write lock; PostgreSQL's advisory lock per key,
    see `lock`) keeps every other process's reservations out until it commits.
    """

    def __init__(
        self,
        conn: Database,
        per_hour: Mapping[str, int],
        now_ms: int,
        pruned: dict[tuple[str, str], int] | None = None,
    ) -> None:
        self.conn, self.per_hour, self.now_ms = conn, per_hour, now_ms
        self._deferred: dict[tuple[str, str], int] = {}
        self._read: dict[tuple[str, str], tuple[int | None, int]] = {}
        self._pruned_here: set[tuple[str, str]] = set()
        # key -> when this process last pruned it (shared across its claims by the engine)
        self._pruned = {} if pruned is None else pruned

    def lock(self, keys: set[tuple[str, str]]) -> None:
        """Serialise this claim's check-and-reserve with other processes' (on PostgreSQL an
        advisory lock per (platform, account), taken in one order so that two claims never
        wait for each other in a circle; SQLite's write lock already does it)."""
        for platform, account in sorted(keys):
            self.conn.lock(f"rate:{platform}:{account}")

    def reserve(self, platform: str, account: str, delivery_id: int) -> int | None:
        """Reserve a slot now (None), or say when the next free slot for this one opens."""
        key = (platform, account)
        if key not in self._read:
            self._read[key] = rates.rate_state(self.conn, platform, account)
        hold, used = self._read[key]
        if hold is not None and hold > self.now_ms:
            return hold
        limit = self.per_hour[platform]
        since = self.now_ms - WINDOW_MS
        last = self._pruned.get(key)
        if key not in self._pruned_here and (
            used >= limit or last is None or self.now_ms - last >= PRUNE_EVERY_MS
        ):
            rates.prune_slots(self.conn, platform, account, since)
            self._pruned_here.add(key)
            self._pruned[key] = self.now_ms
            used = rates.slots_used(self.conn, platform, account)
        if used < limit:
            rates.reserve_slot(self.conn, platform, account, self.now_ms, delivery_id)
            self._read[key] = (hold, used + 1)
            return None
        self._read[key] = (hold, used)
        # The k-th delivery waiting in this batch gets the k-th slot to leave the window.
        position = used - limit + self._deferred.get(key, 0)
        self._deferred[key] = self._deferred.get(key, 0) + 1
        frees = rates.nth_slot_time(self.conn, platform, account, since, position)
        return (frees if frees is not None else self.now_ms) + WINDOW_MS + 1
