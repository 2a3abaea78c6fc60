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
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BIN = Path(sys.executable).parent
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


def timed(argv: list[str], env: dict[str, str], db: Path) -> float:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    begin = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - begin


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
        db = work / "posts.db"
        env = {
            **os.environ,
            "PLURCAST_CONFIG": str(work / "config.toml"),
            "PLURCAST_DB_PATH": str(db),
            "PYTHONPYCACHEPREFIX": str(work / "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        ours = [str(BIN / "plur-import"), str(plan)]
        theirs = [str(BIN / "sqlite-utils"), "insert", str(db), "posts", str(plan), "--csv"]
        samples: dict[str, list[float]] = {"plur-import": [], "sqlite-utils insert": []}
        for i in range(RUNS + 1):
            for name, argv in (("plur-import", ours), ("sqlite-utils insert", theirs)):
                took = timed(argv, env, db)
                if i:
                    samples[name].append(took)
        timed(ours, env, db)
        with sqlite3.connect(db) as conn:
            posts = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
            deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    assert (posts, deliveries) == (ROWS, 2 * ROWS), (posts, deliveries)
    ours_s = statistics.median(samples["plur-import"])
    theirs_s = statistics.median(samples["sqlite-utils insert"])
    ratio = ours_s / theirs_s
    print(f"{'import of ' + format(ROWS, ',') + ' CSV rows':<36} {'median s':>10} {'rows/s':>10}")
    for name, took in (("plur-import", ours_s), ("sqlite-utils insert", theirs_s)):
        print(f"{name:<36} {took:>10.2f} {ROWS / took:>10,.0f}")
    verdict = "ok" if ratio <= RATIO_TARGET else "MISSED"
    name = "ratio (plur-import / sqlite-utils)"
    print(f"{name:<36} {ratio:>10.1f}× target <= {RATIO_TARGET:g}× {verdict}")


if __name__ == "__main__":
    main()
