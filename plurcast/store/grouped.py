"""Writes asked for in one turn of the event loop, committed in one transaction.

In a burst, deliveries finish a few at a time: the relay's answers come in while the loop is
busy, and the tasks they wake run in the same turn. Each record in a transaction of its own
meant a commit each, and on SQLite (synchronous = FULL) a commit is an fdatasync of the WAL,
made in the loop's thread: nothing else runs meanwhile, and on a busy machine the thread waits
for a core again after it. `GroupedWrites.write` queues the write and commits it at the next
turn, with every write queued by then, in one transaction; each caller's `await` returns once
that commit is done, never before — what a write's caller reports (a post sent) is on disk.

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


class _Group:
    """The writes queued for one commit, on one event loop."""

    __slots__ = ("loop", "writes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.writes: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []


class GroupedWrites:
    def __init__(self, conn: Database) -> None:
        self.conn = conn
        self._open: _Group | None = None

    async def write(self, work: Callable[[], _T]) -> _T:
        """Run `work` (statements, no transaction of its own) in the transaction of the next
        turn of the event loop; its result once that transaction is committed.

        A caller cancelled while it waits does not take its write back: the write still
        runs (a delivery's outcome, once known, is recorded), only its result goes unread."""
        import asyncio

        loop = asyncio.get_running_loop()
        group = self._open
        if group is None or group.loop is not loop:
            group = self._open = _Group(loop)
            loop.call_soon(self._commit, group)
        done: asyncio.Future[_T] = loop.create_future()
        group.writes.append((work, done))
        return await done

    def _commit(self, group: _Group) -> None:
        if self._open is group:
            self._open = None
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
