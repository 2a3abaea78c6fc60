"""Writes asked for in one turn of the event loop, committed in one transaction — and, while
other deliveries are still on the wire, those of the next few turns with them.

In a burst, deliveries finish a few at a time: the relay's answers come in while the loop is
busy, and the tasks they wake run in the same turn. Each record in a transaction of its own
meant a commit each, and on SQLite (synchronous = FULL) a commit is an fdatasync of the WAL,
made in the loop's thread: nothing else runs meanwhile, and on a busy machine the thread waits
for a core again after it. `GroupedWrites.write` queues the write and commits it with every
write queued by then, in one transaction; each caller's `await` returns once that commit is
done, never before — what a write's caller reports (a post sent) is on disk.

When the commit comes: at the next turn, unless writes announced as `coming` (the engine counts
its deliveries on the wire: each will write its outcome) outnumber those queued — then once as
many are queued as are still coming, or `wait` after the first, whichever is sooner. In a burst
over 16 lanes about half of them are recorded, and their lanes refilled, in each commit while
the other half are on the wire (400 posts through `plur-send --once` to a local relay: 67
fdatasyncs instead of 137); a lone delivery is recorded at the next turn, as before. Nothing
is sent later for it: a payload is stored before its send, and a crash before the record's
commit re-sends those same bytes, which the platform recognises.

A group that fails is undone as a whole and its writes run again one transaction each, so
that the one that fails alone fails, as it would have without the group (a database that went
away fails each of them, and each caller waits it out as it would have).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from plurcast.store.base import Database
from plurcast.store.connection import transaction

if TYPE_CHECKING:
    import asyncio

_T = TypeVar("_T")

# The longest a queued write waits for the writes still coming: a relay answers a burst's
# events within a few ms of each other; one that takes longer leaves the others to commit.
WAIT_SECONDS = 0.02


class _Group:
    """The writes queued for one commit, on one event loop."""

    __slots__ = ("committed", "loop", "soon", "timer", "writes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.writes: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self.soon = False  # its commit comes at the next turn
        self.timer: asyncio.TimerHandle | None = None  # … or, at the latest, when this fires
        self.committed = False


class GroupedWrites:
    def __init__(self, conn: Database, wait: float = WAIT_SECONDS) -> None:
        self.conn = conn
        self.wait = wait
        # Writes that will be asked for soon (the engine's deliveries on the wire, each to be
        # recorded): an open group waits for them, up to `wait`.
        self.coming = 0
        self._open: _Group | None = None

    async def write(self, work: Callable[[], _T]) -> _T:
        """Run `work` (statements, no transaction of its own) in the transaction of the next
        turn of the event loop, or of a later one while more writes are `coming`; its result
        once that transaction is committed.

        A caller cancelled while it waits does not take its write back: the write still
        runs (a delivery's outcome, once known, is recorded) — at once, not left waiting for
        the others — only its result goes unread."""
        import asyncio

        loop = asyncio.get_running_loop()
        group = self._open
        if group is None or group.loop is not loop:
            group = self._open = _Group(loop)
        done: asyncio.Future[_T] = loop.create_future()
        group.writes.append((work, done))
        if not group.soon:
            if len(group.writes) >= self.coming:
                group.soon = True
                loop.call_soon(self._commit, group)
            elif group.timer is None:
                group.timer = loop.call_later(self.wait, self._commit, group)
        try:
            return await done
        except asyncio.CancelledError:
            self._commit(group)
            raise

    def _commit(self, group: _Group) -> None:
        if group.committed:
            return  # its turn, its timer or a cancelled caller came first
        group.committed = True
        if self._open is group:
            self._open = None
        if group.timer is not None:
            group.timer.cancel()
        writes = group.writes
        if len(writes) > 1:
            try:
                with transaction(self.conn):
                    results = [work() for work, _ in writes]
            except Exception:
                pass  # undone: each again in a transaction of its own, below
            else:
                for (_, done), result in zip(writes, results, strict=True):
                    if not done.cancelled():
                        done.set_result(result)
                return
        for work, done in writes:
            try:
                with transaction(self.conn):
                    result = work()
            except Exception as exc:
                if not done.cancelled():
                    done.set_exception(exc)
            else:
                if not done.cancelled():
                    done.set_result(result)
