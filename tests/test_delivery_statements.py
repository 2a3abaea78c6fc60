"""What the delivery path costs per post in SQL, counted (no clock involved): a change that
adds a statement or a transaction to every delivery shows here, not only in `make bench`.

The count comes from bench/bench_statements.py (an in-process `plur-send --once` through a
publisher that answers at once, every statement traced); 25.9 statements and 4 transactions
per post before the rate window read each key once per claim, pruned at most once a minute,
a full lane stopped opening empty claim transactions and an attempt's number was counted
inside its INSERT; 21.02 before a claim's due walks became one statement; 19.01 in 3.01
transactions before a payload made at once (a plain Nostr note) was prepared and stored in the
claim's transaction; 17.09 in 2.05 before the record of a delivery claimed the next one for its
lane (the daemon's loop no longer runs a pass, nor a claim transaction, per post in a burst);
13.03 in 1.21 before a record waited for those of the deliveries still on the wire (about half
the lanes' records now share each commit, and its BEGIN and COMMIT).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_statements import measure


def test_a_delivered_post_costs_at_most_11_statements_in_0_3_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLURCAST_CONFIG", str(tmp_path / "plurcast.toml"))
    monkeypatch.setenv("PLURCAST_DB_PATH", str(tmp_path / "queue.db"))
    sent, shapes, _ = measure(100, tmp_path)
    assert sent == 100
    per_post = sum(shapes.values()) / sent
    assert per_post <= 11, f"{per_post:.2f} statements per post: {shapes.most_common()}"
    # a record claims (and prepares and stores) the next delivery for its lane, in the
    # transaction it shares with the records of the others finishing meanwhile: 25 over 100
    # (0.25 a post; 1.21 when each record waited only for those of its own turn)
    assert shapes["BEGIN IMMEDIATE"] / sent <= 0.3
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
