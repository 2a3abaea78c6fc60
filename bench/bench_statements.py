"""What the daemon's delivery path costs per post, in figures the machine's load cannot move.

An in-process `plur-send --once` (the real Daemon and Engine, SQLite) delivers N posts due at
once through a publisher that answers at once (no network, no signing): every SQL statement
is counted with sqlite3's trace callback (BEGIN and COMMIT too: the transactions), and the
process's CPU time per post is taken beside them. Statements and transactions per post are
exact and repeatable; CPU ms per post moves a little with the machine.

    python -m bench.bench_statements [N]     # default 400
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plurcast.platforms.base import Outcome, OutcomeKind, Work

if TYPE_CHECKING:
    from plurcast.media.store import MediaReader

POSTS = 400


class Instant:
    """A publisher that prepares and publishes at once: what is left is our own cost."""

    platform = "nostr"
    timeout = 10.0

    def __init__(self, account: str) -> None:
        self.account = account
        self.sent = 0
        self.wire = asyncio.Lock()

    def prepare_now(self, work: Work) -> str:
        """As a Nostr note's payload is made: at once, in the claim's transaction."""
        return f'{{"id": "{work.delivery_id:064x}", "content": "{work.content}"}}'

    async def prepare(self, work: Work) -> str:
        return self.prepare_now(work)

    async def publish(self, payload: str, media: MediaReader | None = None) -> Outcome:
        # One answer at a time, each a few loop turns after the last, as a relay's come back:
        # the daemon then claims again after each, as it does in a real burst.
        async with self.wire:
            for _ in range(3):
                await asyncio.sleep(0)
        self.sent += 1
        return Outcome(OutcomeKind.SENT, remote_id=payload[8:72])

    async def close(self) -> None:
        pass


def _shape(sql: str) -> str:
    """A statement by its kind and table, to see where the count goes (a trigger's own
    statements are traced too, as "-- TRIGGER name")."""
    words = sql.split()
    if words[:2] == ["--", "TRIGGER"]:
        return f"trigger {words[2]}"
    if not words:
        return "?"
    head = words[0].upper()
    if head in ("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA"):
        return " ".join(words[:2]).upper()
    for i, word in enumerate(words):
        if word.upper() in ("FROM", "INTO", "UPDATE") and i + 1 < len(words):
            return f"{head} {words[i + 1].strip('(')}"
    return head


def measure(posts: int, work: Path) -> tuple[int, Counter[str], float]:
    from plurcast import config
    from plurcast.daemon import Daemon, Options
    from plurcast.pool import PublisherPool
    from plurcast.store import connect
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    cfg_path = work / "plurcast.toml"
    cfg_path.write_text(
        "[scheduling]\npoll_interval = 60\nmax_concurrency = 16\n"
        "[scheduling.rate_limits.nostr]\nposts_per_hour = 1000000\n"
    )
    os.environ["PLURCAST_CONFIG"] = str(cfg_path)
    os.environ["PLURCAST_DB_PATH"] = str(work / "queue.db")
    cfg = config.load()
    conn = connect(cfg.db_path)
    now_ms = int(time.time() * 1000)
    with transaction(conn):
        for i in range(posts):
            insert_post(
                conn,
                NewPost(
                    str(uuid.uuid4()), f"post {i}", now_ms, now_ms, "UTC", [("nostr", "default")]
                ),
            )
    conn.close()

    shapes: Counter[str] = Counter()

    def connect_traced(cfg: config.Config) -> Any:
        db = connect(cfg.db_path)
        db.set_trace_callback(lambda sql: shapes.update([_shape(sql)]))
        return db

    def pool(cfg: config.Config) -> PublisherPool:
        return PublisherPool(cfg, {"nostr": lambda cfg, account: Instant(account)})

    cpu = time.process_time()
    daemon = Daemon(config.load, connect_traced, Options(once=True), pool_factory=pool)
    code = asyncio.run(daemon.run())
    cpu = time.process_time() - cpu
    sent = daemon.stats.sent
    if code != 0 or sent != posts:
        raise SystemExit(f"sent {sent} of {posts} (exit {code})")
    return sent, shapes, cpu


def main() -> None:
    posts = int(sys.argv[1]) if len(sys.argv) > 1 else POSTS
    with tempfile.TemporaryDirectory() as tmp:
        sent, shapes, cpu = measure(posts, Path(tmp))
    total = sum(shapes.values())
    print(f"{sent} posts through an in-process plur-send --once (SQLite, instant publisher)")
    print(f"  SQL statements per post: {total / sent:.2f} ({total} in all)")
    print(f"  transactions per post:   {shapes['BEGIN IMMEDIATE'] / sent:.2f}")
    print(f"  CPU per post:            {cpu / sent * 1000:.3f} ms")
    for shape, count in shapes.most_common():
        print(f"    {count / sent:6.2f}  {shape}")


if __name__ == "__main__":
    main()
