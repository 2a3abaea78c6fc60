"""CLI start-up and latency, each beside an anchor run interleaved with it (issue #16).

- `plur-post x --schedule 30m` (Nostr and Mastodon configured): <= 5x `python -c pass` from
  the same venv (the interpreter's floor), and <= 0.5x `sqlite-utils insert` of one row (a
  Python CLI writing a row to SQLite)
- `plur-post x --image IMG.jpg --alt … --schedule 30m` with a 12-megapixel phone photo: <= 4x
  the same post without it (Pillow's import, decoding every pixel to find a damaged file,
  removing the metadata, hashing and storing the copy)
- `plur-send --once` with nothing due (10,000 posts queued for later): <= 5x the floor
- `plur-queue list -f json` over 10,000 queued posts (two platforms each): <= 3x `sqlite3 -json`
  reading the same rows and columns
- `plur-post "…"` published now to a local nostr-relay: <= 1.2x bench/bare_nostr.py, a bare
  nostr-sdk script that imports, connects and sends the same note
- beside the two start-up rows, with no target: each command against a bare run of the
  libraries it imports (POST_LIBRARIES, ONCE_LIBRARIES), and those against the floor — how
  much of the ratio is the standard library's and click's, and how much ours

Bytecode is cached, as for an installed package (see ratios.bytecode_cached). Prints the
figures beside their targets and never fails the build (like the other benchmarks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ratios import (
    BIN,
    PYTHON,
    Ratio,
    bytecode_cached,
    command,
    instructions,
    interleave,
    machine,
    report,
)
from tests.peers.nostr import NostrRelay

QUEUED = 10_000
RUNS = 15
LIST_RUNS = 9
PUBLISH_RUNS = 9

# The zone of the bench's config, and the zone the sqlite3 shell is run in (TZ), so that both
# sides write local times with their offset.
ZONE = "Europe/Berlin"


# What plur-post --schedule and plur-send --once import that is not ours (the standard
# library's and click's, as bulk.console has click: inspect deferred), in one bare run: the
# part of a command's start-up that no change of ours can cut.
POST_LIBRARIES = (
    "from plurcast import deferred; deferred.defer(); "
    "import click, sqlite3, tomllib, zoneinfo, pathlib, json, uuid, datetime"
)
ONCE_LIBRARIES = f"{POST_LIBRARIES}, logging"


def _local_iso(ms: str) -> str:
    """SQL for the time in column `ms` as the listing writes it: local (the shell's TZ), to
    the second, with its offset."""
    seconds = f"{ms} / 1000"
    local = f"unixepoch({seconds}, 'unixepoch', 'localtime')"
    return (
        f"strftime('%Y-%m-%dT%H:%M:%S', {seconds}, 'unixepoch', 'localtime') || printf("
        f"'%+03d:%02d', ({local} - {seconds}) / 3600, abs({local} - {seconds}) % 3600 / 60)"
    )


# What `plur-queue list -f json` shows, read by the sqlite3 shell: the same posts (a time and
# waiting work), in the same order, with the same fields in the same order and the same values
# — times in the user's zone with their offset, the status as the post's (here: scheduled, or
# sending), the account only where all deliveries share it, a thread's part count and what a
# post answers. The one difference left is in sqlite3's favour: `platforms` in the index's
# order (ours: the registry's), so it sorts nothing.
LIST_SQL = f"""
SELECT p.id, p.content,
       p.scheduled_at_ms / 1000 AS scheduled_at,
       {_local_iso("p.scheduled_at_ms")} AS scheduled_at_iso,
       p.created_at_ms / 1000 AS created_at,
       {_local_iso("p.created_at_ms")} AS created_at_iso,
       (SELECT CASE WHEN max(d.state = 'sending') THEN 'sending' ELSE 'scheduled' END
        FROM deliveries d WHERE d.post_id = p.id) AS status,
       (SELECT json_group_array(d.platform) FROM deliveries d WHERE d.post_id = p.id)
           AS platforms,
       (SELECT CASE WHEN min(d.account) = max(d.account) THEN min(d.account) END
        FROM deliveries d WHERE d.post_id = p.id) AS account,
       p.schedule_id, p.thread_id, p.thread_part,
       CASE WHEN p.thread_id IS NOT NULL THEN
           (SELECT count(*) FROM posts t WHERE t.thread_id = p.thread_id) END AS thread_parts,
       CASE WHEN p.thread_part > 1 THEN (SELECT t.id FROM posts t
                WHERE t.thread_id = p.thread_id AND t.thread_part = p.thread_part - 1)
            WHEN p.metadata <> '{{}}' THEN p.metadata ->> '$.reply_to' END AS reply_to
FROM posts p
WHERE p.scheduled_at_ms IS NOT NULL AND EXISTS (
    SELECT 1 FROM deliveries w WHERE w.post_id = p.id AND w.state IN ('pending', 'retry'))
ORDER BY p.scheduled_at_ms, p.created_at_ms, coalesce(p.thread_id, p.id), p.thread_part
"""

# The anchor of the tables before that one (README until main 5977c54), for comparison: the
# same posts and order with 10 of the 14 fields, as stored — UTC times without an offset,
# the deliveries' states joined, the smallest account.
LIST_SQL_RAW = """
SELECT p.id, p.content,
       p.scheduled_at_ms / 1000 AS scheduled_at,
       strftime('%Y-%m-%dT%H:%M:%S', p.scheduled_at_ms / 1000, 'unixepoch') AS scheduled_at_iso,
       p.created_at_ms / 1000 AS created_at,
       strftime('%Y-%m-%dT%H:%M:%S', p.created_at_ms / 1000, 'unixepoch') AS created_at_iso,
       (SELECT group_concat(d.state) FROM deliveries d WHERE d.post_id = p.id) AS status,
       (SELECT json_group_array(d.platform) FROM deliveries d WHERE d.post_id = p.id)
           AS platforms,
       (SELECT min(d.account) FROM deliveries d WHERE d.post_id = p.id) AS account,
       p.schedule_id
FROM posts p
WHERE p.scheduled_at_ms IS NOT NULL AND EXISTS (
    SELECT 1 FROM deliveries w WHERE w.post_id = p.id AND w.state IN ('pending', 'retry'))
ORDER BY p.scheduled_at_ms, p.created_at_ms, p.id
"""


def fill_queue(env: dict[str, str]) -> None:
    """10,000 scheduled posts, two platforms each, written straight through the store."""
    from plurcast.store import connect
    from plurcast.store.connection import transaction
    from plurcast.store.posts import NewPost, insert_post

    conn = connect(Path(env["PLURCAST_DB_PATH"]))
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
                    timezone=ZONE,
                    targets=[("nostr", "default"), ("mastodon", "default")],
                ),
            )
    conn.close()


def same_listing(anchor: list[str], listing: list[str], env: dict[str, str]) -> None:
    """The anchor must say what the listing says, or the ratio compares different work."""
    import json

    def read(argv: list[str], run_env: dict[str, str]) -> list[dict[str, Any]]:
        done = subprocess.run(argv, env=run_env, capture_output=True, check=True)
        found: list[dict[str, Any]] = json.loads(done.stdout)
        return found

    theirs = read(anchor, {**env, "TZ": ZONE})
    ours = read(listing, env)
    for row in theirs:
        row["platforms"] = json.loads(row["platforms"])
    for row in (*theirs, *ours):
        row["platforms"] = sorted(row["platforms"])
    if [list(row.items()) for row in theirs] != [list(row.items()) for row in ours]:
        raise SystemExit("bench_cli: sqlite3's listing no longer says what plur-queue list does")


def phone_photo() -> bytes:
    """A 4032×3024 JPEG as a phone takes it (a smooth picture, ~5 MB), GPS and maker note in."""
    from tests.images import photo

    return photo("JPEG", (4032, 3024), smooth=True, quality=92)


def migrated(db: Path) -> None:
    from plurcast.store import connect

    connect(db).close()


def write_config(work: Path, name: str, relays: str, extra: str = "") -> dict[str, str]:
    key = work / "nostr.keys"
    key.write_text("11" * 32)
    key.chmod(0o600)
    cfg = work / f"{name}.toml"
    cfg.write_text(
        f'timezone = "{ZONE}"\n[nostr]\nkeys_file = "{key}"\nrelays = [{relays}]\n{extra}'
    )
    return bytecode_cached(
        {
            **os.environ,
            "PLURCAST_CONFIG": str(cfg),
            "PLURCAST_DB_PATH": str(work / f"{name}.db"),
            "PLURCAST_MASTODON_TOKEN": "bench-token",
        },
        work,
    )


def start_up(work: Path) -> list[Ratio]:
    env = write_config(
        work,
        "queue",
        '"ws://127.0.0.1:7777"',
        'blossom_servers = ["http://127.0.0.1:7778"]\n[mastodon]\ninstance = "x"\n',
    )
    fill_queue(env)
    post_env = {**env, "PLURCAST_DB_PATH": str(work / "post.db")}
    migrated(Path(post_env["PLURCAST_DB_PATH"]))
    photo = work / "IMG_0001.jpg"
    photo.write_bytes(phone_photo())
    sqlite3 = shutil.which("sqlite3")
    if sqlite3 is None:
        raise SystemExit("bench_cli needs the sqlite3 shell: apt-get install sqlite3")
    row = b'{"content": "x", "scheduled_at": 1795000000, "platform": "nostr"}'
    t = interleave(
        RUNS,
        {
            "floor": command([PYTHON, "-c", "pass"], env),
            "insert": command(
                [str(BIN / "sqlite-utils"), "insert", str(work / "anchor.db"), "posts", "-"],
                env,
                stdin=row,
            ),
            "post": command([str(BIN / "plur-post"), "x", "--schedule", "30m"], post_env),
            "image": command(
                [
                    str(BIN / "plur-post"),
                    "x",
                    "--image",
                    str(photo),
                    "--alt",
                    "A kite",
                    "-s",
                    "30m",
                ],
                post_env,
            ),
            "once": command([str(BIN / "plur-send"), "--once"], env),
            "libraries": command([PYTHON, "-c", POST_LIBRARIES], env),
            "daemon libraries": command([PYTHON, "-c", ONCE_LIBRARIES], env),
        },
    )
    anchor = [sqlite3, "-json", env["PLURCAST_DB_PATH"], LIST_SQL]
    listing = [str(BIN / "plur-queue"), "list", "-f", "json"]
    same_listing(anchor, listing, env)
    lists = interleave(
        LIST_RUNS,
        {
            "sqlite3": command(anchor, {**env, "TZ": ZONE}),
            "list": command(listing, env),
            "raw": command([sqlite3, "-json", env["PLURCAST_DB_PATH"], LIST_SQL_RAW], env),
        },
    )
    floor = "python -c pass"
    return [
        Ratio("plur-post x --schedule 30m", t["post"], floor, t["floor"], 5),
        Ratio(
            "plur-post x --schedule 30m", t["post"], "sqlite-utils insert (1 row)", t["insert"], 0.5
        ),
        Ratio(
            "plur-post x --image (12 MP JPEG) --schedule 30m",
            t["image"],
            "the same post without the image",
            t["post"],
            4,
        ),
        Ratio(
            "plur-post x --schedule 30m", t["post"], "its libraries' imports", t["libraries"], None
        ),
        Ratio("its libraries' imports", t["libraries"], floor, t["floor"], None),
        Ratio("plur-send --once, nothing due", t["once"], floor, t["floor"], 5),
        Ratio(
            "plur-send --once, nothing due",
            t["once"],
            "its libraries' imports",
            t["daemon libraries"],
            None,
        ),
        Ratio("its libraries' imports", t["daemon libraries"], floor, t["floor"], None),
        Ratio(
            f"plur-queue list -f json ({QUEUED:,} posts)",
            lists["list"],
            "sqlite3 -json, same rows, fields and values",
            lists["sqlite3"],
            3,
        ),
        Ratio(
            f"plur-queue list -f json ({QUEUED:,} posts)",
            lists["list"],
            "sqlite3 -json, 10 fields as stored (earlier tables' anchor)",
            lists["raw"],
            3,
        ),
        *_counted(
            {
                "floor": [PYTHON, "-c", "pass"],
                "post": [str(BIN / "plur-post"), "x", "--schedule", "30m"],
                "libraries": [PYTHON, "-c", POST_LIBRARIES],
                "once": [str(BIN / "plur-send"), "--once"],
                "daemon libraries": [PYTHON, "-c", ONCE_LIBRARIES],
            },
            env,
            post_env,
        ),
    ]


def _counted(
    argvs: dict[str, list[str]], env: dict[str, str], post_env: dict[str, str]
) -> list[Ratio]:
    """The start-up rows again in instructions (callgrind), which do not move with the load
    as times do: one run each, after the timed rounds have cached the bytecode. No rows
    where valgrind is not installed."""
    counts: dict[str, float] = {}
    for name, argv in argvs.items():
        sample = instructions(argv, post_env if name == "post" else env)
        if sample is None:
            print("bench_cli: no valgrind, so no rows in instructions")
            return []
        counts[name] = sample()
    unit = "M instr"
    floor = "python -c pass"
    return [
        Ratio(
            "plur-post x --schedule 30m", counts["post"], floor, counts["floor"], None, unit=unit
        ),
        Ratio(
            "its libraries' imports", counts["libraries"], floor, counts["floor"], None, unit=unit
        ),
        Ratio(
            "plur-send --once, nothing due", counts["once"], floor, counts["floor"], None, unit=unit
        ),
        Ratio(
            "its libraries' imports",
            counts["daemon libraries"],
            floor,
            counts["floor"],
            None,
            unit=unit,
        ),
    ]


def publish_now(work: Path) -> list[Ratio]:
    with NostrRelay(work / "relay") as relay:
        env = write_config(work, "publish", f'"{relay.url}"')
        migrated(Path(env["PLURCAST_DB_PATH"]))
        key = str(work / "nostr.keys")
        bare = Path(__file__).resolve().parent / "bare_nostr.py"
        counter = iter(range(10**6))

        def ours() -> float:
            return command([str(BIN / "plur-post"), f"bench note {next(counter)}"], env)()

        def theirs() -> float:
            return command([PYTHON, str(bare), key, relay.url, f"bare note {next(counter)}"], env)()

        t = interleave(PUBLISH_RUNS, {"bare": theirs, "post": ours})
    return [
        Ratio(
            'plur-post "…" now, to a local nostr-relay',
            t["post"],
            "bare nostr-sdk script, same note",
            t["bare"],
            1.2,
        )
    ]


def main() -> None:
    print(f"bench_cli on {machine()}")
    with tempfile.TemporaryDirectory(prefix="plurcast-bench-cli-") as tmp:
        rows = start_up(Path(tmp))
        rows += publish_now(Path(tmp))
    report(rows)


if __name__ == "__main__":
    main()
