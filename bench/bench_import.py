"""plur-import of 10,000 rows, beside `sqlite-utils insert` of the same CSV.

Both run as their installed console scripts on the same 10,000-row CSV (content, a time,
two platforms), into a fresh database each run; the figure is the median wall time of a few
runs (the first, cold, not counted). sqlite-utils only stores the cells; plur-import checks
every row as plur-post would (text, targets, credentials, limits, the time grammar), works
out its key, and writes posts and deliveries in one transaction — the ratio says what those
checks and that model cost. Target: within 10× of sqlite-utils (issue #15 gives none; this
keeps an import of a month's plan an interactive command).

Prints figures beside the target and never fails the build (like the other benchmarks).
"""

from __future__ import annotations

import csv
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ratios import BIN, Ratio, bytecode_cached, interleave, machine, report

ROWS = 10_000
RUNS = 3
RATIO_TARGET = 10.0


def write_plan(path: Path) -> None:
    start = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(days=1)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["content", "schedule", "platforms"])
        for i in range(ROWS):
            at = start + timedelta(minutes=10 * i)
            out.writerow(
                [
                    f"Planned post {i}: a line of text, a link https://example.org/{i} ✨",
                    at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "nostr,mastodon",
                ]
            )


def into_fresh_database(argv: list[str], env: dict[str, str], db: Path) -> Callable[[], float]:
    """A contender: one run of `argv` into a database removed first (untimed), in ms."""
    import subprocess

    def run() -> float:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        begin = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        return (time.perf_counter() - begin) * 1000

    return run


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = work / "nostr.keys"
        key.write_text("11" * 32)
        key.chmod(0o600)
        token = work / "mastodon.token"
        token.write_text("bench-token")
        token.chmod(0o600)
        (work / "config.toml").write_text(
            f'timezone = "Europe/Berlin"\n[nostr]\nkeys_file = "{key}"\n'
            'relays = ["ws://127.0.0.1:7777"]\n'
            f'[mastodon]\ninstance = "mastodon.example"\ntoken_file = "{token}"\n'
        )
        plan = work / "plan.csv"
        write_plan(plan)
        ours_db, theirs_db = work / "posts.db", work / "insert.db"
        env = bytecode_cached(
            {
                **os.environ,
                "PLURCAST_CONFIG": str(work / "config.toml"),
                "PLURCAST_DB_PATH": str(ours_db),
            },
            work,
        )
        ours = [str(BIN / "plur-import"), str(plan)]
        theirs = [str(BIN / "sqlite-utils"), "insert", str(theirs_db), "posts", str(plan), "--csv"]
        times = interleave(
            RUNS,
            {
                "ours": into_fresh_database(ours, env, ours_db),
                "theirs": into_fresh_database(theirs, env, theirs_db),
            },
        )
        with sqlite3.connect(ours_db) as conn:
            posts = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
            deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    assert (posts, deliveries) == (ROWS, 2 * ROWS), (posts, deliveries)
    print(machine())
    report(
        [
            Ratio(
                f"plur-import, {ROWS:,} CSV rows",
                times["ours"],
                "sqlite-utils insert, same CSV",
                times["theirs"],
                RATIO_TARGET,
            )
        ]
    )


if __name__ == "__main__":
    main()
