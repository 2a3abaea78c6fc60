"""What the delivery path costs per post in SQL, counted (no clock involved): a change that
adds a statement or a transaction to every delivery shows here, not only in `make bench`.

The count comes from bench/bench_statements.py (an in-process `plur-send --once` through a
publisher that answers at once, every statement traced); 25.9 statements and 4 transactions
per post before the rate window read each key once per claim, pruned at most once a minute,
a full lane stopped opening empty claim transactions and an attempt's number was counted
inside its INSERT; 21.02 before a claim's due walks became one statement.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_statements import measure


def test_a_delivered_post_costs_at_most_19_statements_in_3_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLURCAST_CONFIG", str(tmp_path / "plurcast.toml"))
    monkeypatch.setenv("PLURCAST_DB_PATH", str(tmp_path / "queue.db"))
    sent, shapes, _ = measure(100, tmp_path)
    assert sent == 100
    per_post = sum(shapes.values()) / sent
    assert per_post <= 19.5, f"{per_post:.2f} statements per post: {shapes.most_common()}"
    # claim, prepare, record: one transaction each (the claim is shared when lanes free at once)
    assert shapes["BEGIN IMMEDIATE"] / sent <= 3.05
    assert shapes["BEGIN IMMEDIATE"] == shapes["COMMIT"]
