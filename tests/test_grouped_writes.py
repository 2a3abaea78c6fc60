"""Writes asked for in one turn of the event loop share one commit (plurcast.store.grouped),
and none of their callers hears of its write before that commit is done. What the waiting for
writes still `coming` promises is shown on both stores."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from plurcast.store import connect, connect_url
from plurcast.store.base import Database
from plurcast.store.connection import SqliteDatabase, transaction
from plurcast.store.grouped import GroupedWrites
from tests.peers.postgres import Backend, run_sql


def opened(tmp_path: Path) -> tuple[SqliteDatabase, list[str]]:
    conn = connect(tmp_path / "queue.db")
    conn.execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return conn, statements


def committed(tmp_path: Path) -> list[int]:
    """What another connection sees: only committed rows (of the test's store)."""
    return [int(r[0]) for r in run_sql(tmp_path / "queue.db", "SELECT x FROM t ORDER BY x")]


def opened_on(backend: Backend, tmp_path: Path) -> tuple[Database, list[str]]:
    """`opened`, or on PostgreSQL the test's database with the same table (no statements
    traced there)."""
    if not backend.is_postgresql:
        return opened(tmp_path)
    assert backend.url is not None
    conn = connect_url(backend.url)
    with transaction(conn):
        conn.execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
    return conn, []


def test_writes_of_one_turn_are_one_transaction_and_each_returns_after_its_commit(
    tmp_path: Path,
) -> None:
    conn, statements = opened(tmp_path)
    grouped = GroupedWrites(conn)
    heard: list[tuple[int, list[int]]] = []

    def insert(x: int) -> int:
        assert conn.in_transaction
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    async def one(x: int) -> None:
        done = await grouped.write(lambda: insert(x))
        heard.append((done, committed(tmp_path)))

    async def main() -> None:
        await asyncio.gather(*(one(x) for x in (1, 2, 3)))
        await one(4)  # a later turn: a transaction of its own

    asyncio.run(main())
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ] * 2
    assert heard == [(1, [1, 2, 3]), (2, [1, 2, 3]), (3, [1, 2, 3]), (4, [1, 2, 3, 4])]
    conn.close()


def test_a_write_that_fails_fails_alone_and_the_others_of_its_turn_are_committed(
    tmp_path: Path,
) -> None:
    conn, _ = opened(tmp_path)
    conn.execute("INSERT INTO t (x) VALUES (2)")
    grouped = GroupedWrites(conn)

    def insert(x: int) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(
            *(grouped.write(lambda x=x: insert(x)) for x in (1, 2, 3)), return_exceptions=True
        )

    first, second, third = asyncio.run(main())
    assert (first, third) == (1, 3)
    assert isinstance(second, sqlite3.IntegrityError)
    assert committed(tmp_path) == [1, 2, 3]
    assert not conn.in_transaction
    conn.close()


def test_a_caller_cancelled_while_it_waits_still_has_its_write_committed(
    tmp_path: Path,
) -> None:
    """A delivery's outcome, once known, is recorded even if its task is stopped meanwhile."""
    conn, _ = opened(tmp_path)
    grouped = GroupedWrites(conn)

    def insert(x: int) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    async def main() -> None:
        waiting = asyncio.ensure_future(grouped.write(lambda: insert(7)))
        await asyncio.sleep(0)  # the write is queued
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await grouped.write(lambda: insert(8)) == 8

    asyncio.run(main())
    assert committed(tmp_path) == [7, 8]
    conn.close()


def test_writes_still_coming_are_waited_for_and_share_the_commit(
    backend: Backend, tmp_path: Path
) -> None:
    """Deliveries on the wire (`coming`) finish over several turns: their records make one
    commit, once as many are queued as are still to come, and none is heard of before it."""
    conn, statements = opened_on(backend, tmp_path)
    grouped = GroupedWrites(conn, wait=3600)  # only the count may end the wait here
    heard: list[tuple[int, list[int]]] = []

    def insert(x: int) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    async def delivery(x: int) -> None:
        for _ in range(x):  # answers come a turn apart
            await asyncio.sleep(0)
        grouped.coming -= 1  # its answer came: its record is asked for next
        done = await grouped.write(lambda: insert(x))
        heard.append((done, committed(tmp_path)))

    async def main() -> None:
        grouped.coming = 4
        await asyncio.gather(*(delivery(x) for x in (1, 2, 3, 4)))

    asyncio.run(main())
    # 1 queued and 3 to come: it waits; 2 queued, 2 to come: 1 and 2 commit together; then 3
    # with 1 to come, and 4 with none, each at the next turn
    if not backend.is_postgresql:
        assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
            "BEGIN IMMEDIATE",
            "COMMIT",
        ] * 3
    assert heard == [(1, [1, 2]), (2, [1, 2]), (3, [1, 2, 3]), (4, [1, 2, 3, 4])]
    conn.close()


def test_a_write_whose_company_does_not_come_is_committed_after_the_wait(
    backend: Backend, tmp_path: Path
) -> None:
    conn, _ = opened_on(backend, tmp_path)
    grouped = GroupedWrites(conn, wait=0)
    grouped.coming = 15  # a relay that never answers the others

    def insert(x: int) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    assert asyncio.run(grouped.write(lambda: insert(5))) == 5
    assert committed(tmp_path) == [5]
    conn.close()


def test_a_caller_cancelled_while_its_group_waits_has_its_write_committed_at_once(
    backend: Backend, tmp_path: Path
) -> None:
    """A daemon stopping cancels its deliveries' tasks, then its loop ends: a write left
    waiting for company would never be made."""
    conn, _ = opened_on(backend, tmp_path)
    grouped = GroupedWrites(conn, wait=3600)
    grouped.coming = 5

    def insert(x: int) -> int:
        conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
        return x

    async def main() -> None:
        waiting = asyncio.ensure_future(grouped.write(lambda: insert(7)))
        await asyncio.sleep(0)  # the write is queued, its group waiting
        assert committed(tmp_path) == []
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert committed(tmp_path) == [7]

    asyncio.run(main())
    conn.close()
