"""CLI latency: plur-post --schedule and plur-queue list -f json over 10,000 queued posts.

Each figure is the median wall time of several runs of the installed console
script, beside `python -c pass` from the same venv so the interpreter's own
start-up is visible. Targets (issue #2): plur-post <= 100 ms, the 10k list <= 250 ms.

Bytecode is cached (under a temp PYTHONPYCACHEPREFIX, even where the environment
sets PYTHONDONTWRITEBYTECODE), as it is for an installed package: otherwise every
run would compile the project's modules from source (~20 ms) — a cost of the
editable development install that users never pay.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BIN = Path(sys.executable).parent
QUEUED = 10_000
TARGETS_MS = {"plur-post --schedule 30m": 100.0, f"plur-queue list -f json ({QUEUED:,})": 250.0}


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median and max wall time in ms; the first (cold cache) run is not counted."""
    samples = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        if i:
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def fill_queue(env: dict[str, str]) -> None:
    """10,000 scheduled posts, two platforms each, written straight through the store."""
    os.environ.update(env)
    from plurcast import config
    from plurcast.store import connect
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    cfg = config.load()
    conn = connect(cfg.db_path)
    now_ms = int(time.time() * 1000)
    with transaction(conn):
        for i in range(QUEUED):
            insert_post(
                conn,
                NewPost(
                    id=str(uuid.uuid4()),
                    content=f"Queued post number {i} — with some text to list ✨",
                    created_at_ms=now_ms,
                    scheduled_at_ms=now_ms + 3_600_000 + i * 60_000,
                    timezone="Europe/Berlin",
                    targets=[("nostr", "default"), ("mastodon", "default")],
                ),
            )
    conn.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.toml"
        key = Path(tmp) / "nostr.keys"
        key.write_text("11" * 32)
        key.chmod(0o600)
        cfg.write_text(
            f'timezone = "Europe/Berlin"\n[nostr]\nkeys_file = "{key}"\n'
            'relays = ["ws://127.0.0.1:7777"]\n[mastodon]\ninstance = "x"\n'
        )
        env = {
            **os.environ,
            "PLURCAST_CONFIG": str(cfg),
            "PLURCAST_DB_PATH": str(Path(tmp) / "posts.db"),
            "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache"),
            "PLURCAST_MASTODON_TOKEN": "bench-token",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        fill_queue(env)
        rows = [
            ("python -c pass", timed([sys.executable, "-c", "pass"], env, 20)),
            (
                "plur-post --schedule 30m",
                timed([str(BIN / "plur-post"), "x", "--schedule", "30m"], env, 20),
            ),
            (
                f"plur-queue list -f json ({QUEUED:,})",
                timed([str(BIN / "plur-queue"), "list", "-f", "json"], env, 10),
            ),
        ]
    print(f"{'command':<36} {'median ms':>10} {'max ms':>8} {'target':>8}")
    for name, (median, worst) in rows:
        target = TARGETS_MS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"<= {target:.0f}" + (" ok" if median <= target else " MISSED")
        print(f"{name:<36} {median:>10.1f} {worst:>8.1f} {verdict:>8}")


if __name__ == "__main__":
    main()
