"""What the delivery path costs per post in SQL, counted (no clock involved): a change that
adds a statement or a transaction to every delivery shows here, not only in `make bench`.

The count comes from bench/bench_statements.py (an in-process `plur-send --once` through a
publisher that answers at once, every statement traced); 25.9 statements and 4 transactions
per post before the rate window read each key once per claim, pruned at most once a minute,
a full lane stopped opening empty claim transactions and an attempt's number was counted
inside its INSERT; 21.02 before a claim's due walks became one statement; 19.01 in 3.01
transactions before a payload made at once (a plain Nostr note) was prepared and stored in the
claim's transaction; 17.09 in 2.05 before the record of a delivery claimed the next one for its
lane (the daemon's loop no longer runs a pass, nor a claim transaction, per post in a burst).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_statements import measure


def test_a_delivered_post_costs_at_most_13_5_statements_in_1_25_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLURCAST_CONFIG", str(tmp_path / "plurcast.toml"))
    monkeypatch.setenv("PLURCAST_DB_PATH", str(tmp_path / "queue.db"))
    sent, shapes, _ = measure(100, tmp_path)
    assert sent == 100
    per_post = sum(shapes.values()) / sent
    assert per_post <= 13.5, f"{per_post:.2f} statements per post: {shapes.most_common()}"
    # one transaction a post: its record, which also claims (and prepares and stores) the next
    # one for its lane; besides, the first claim of 16, and their 16 prepares (their publisher
    # is made when the first of them is delivered), stored together in one more: 1.21 over 100
    # (1.36 when each prepare was stored in a transaction of its own)
    assert shapes["BEGIN IMMEDIATE"] / sent <= 1.25
    assert shapes["BEGIN IMMEDIATE"] == shapes["COMMIT"]


def test_a_claim_reads_no_more_due_rows_than_the_lanes_it_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a burst a claim comes each time a lane frees: it must read that one delivery (the
    oldest), not a whole batch it then leaves."""
    import time
    import uuid

    from plurcast import config
    from plurcast.store import claiming, connect
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    (tmp_path / "plurcast.toml").write_text("")
    monkeypatch.setenv("PLURCAST_CONFIG", str(tmp_path / "plurcast.toml"))
    monkeypatch.setenv("PLURCAST_DB_PATH", str(tmp_path / "queue.db"))
    conn = connect(config.load().db_path)
    now_ms = int(time.time() * 1000)
    with transaction(conn):
        for i in range(50):
            due = now_ms - 60_000 + (i * 7919) % 50 * 1000  # due in a shuffled order
            insert_post(
                conn,
                NewPost(str(uuid.uuid4()), f"p{i}", now_ms, due, "UTC", [("nostr", "default")]),
            )
    due_order = [
        row[0]
        for row in conn.execute("SELECT id FROM deliveries ORDER BY due_at_ms, id").fetchall()
    ]
    for lanes in (1, 5):
        taken = [c.delivery_id for c, _ in claiming.due_candidates(conn, now_ms, {"nostr": lanes})]
        assert taken == due_order[:lanes]
    conn.close()
