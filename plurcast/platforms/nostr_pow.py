"""Nostr proof of work (NIP-13): a `nonce` tag that makes the event id start with zero bits.

`plur-post --nostr-pow N` (or `[nostr] default_pow_difficulty`) stores the difficulty in the
post's metadata; the delivery's prepare step mines it — once, before the first byte goes
out — and the signed event it stores is what every retry re-sends, byte for byte.

Mining hashes NIP-01's serialisation `[0,pubkey,created_at,kind,tags,content]` with the
nonce's digits as the only part that changes: the bytes before them are hashed once and
copied. It runs in worker processes (one per CPU, as the original did), chunk by chunk,
so the daemon's event loop stays free, progress can be logged, and a timeout stops it.
The hidden `--21e8` asks, as the original did, for the id to continue `21e8` right after
its zero nibbles; here the zero nibbles are counted so that the committed difficulty is
always met too (the original fell one bit short when N % 4 == 3).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from plurcast.errors import InvalidInput
from plurcast.value import Value

METADATA_KEY = "nostr"  # a post's metadata: {"nostr": {"pow_difficulty": N, "21e8": true}}
MAX_DIFFICULTY = 64
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 3600.0  # [nostr] pow_timeout: an hour of mining at most (inf would never stop)
CHUNK = 100_000  # nonces per task: ~0.1 s, so a stop or a timeout is quick
PROGRESS_SECONDS = 5.0
PATTERN = 0x21E8


class Work(Value):
    """What to mine: the difficulty in leading zero bits, and the 21e8 pattern or not."""

    difficulty: int
    pattern_21e8: bool = False


def check_difficulty(value: int) -> int:
    """0-64, as the original's --nostr-pow took (0: no proof of work)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DIFFICULTY:
        raise InvalidInput(
            f"--nostr-pow must be from 0 to {MAX_DIFFICULTY}, not {value}",
            "20-25 takes seconds; each step up doubles the work",
        )
    return value


def requested(metadata: Mapping[str, Any]) -> Work | None:
    """The proof of work a post's metadata asks for (`{"nostr": {"pow_difficulty": N}}`)."""
    nostr = metadata.get(METADATA_KEY)
    if not isinstance(nostr, dict):
        return None
    difficulty = nostr.get("pow_difficulty")
    if not isinstance(difficulty, int) or isinstance(difficulty, bool) or difficulty <= 0:
        return None
    return Work(min(difficulty, MAX_DIFFICULTY), bool(nostr.get("21e8")))


def leading_zero_bits(digest: bytes) -> int:
    """NIP-13's difficulty of an id."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def zero_nibbles_21e8(difficulty: int) -> int:
    """Zero hex digits before `21e8` so that the id has at least `difficulty` zero bits
    (`2` = 0010 adds two): 20 → 5, as the original; 23 → 6, where it gave 5 (22 bits)."""
    return max(0, -(-(difficulty - 2) // 4))


def meets(digest: bytes, work: Work) -> bool:
    if not work.pattern_21e8:
        return leading_zero_bits(digest) >= work.difficulty
    bits = 4 * (zero_nibbles_21e8(work.difficulty) + 4)
    return int.from_bytes(digest, "big") >> (256 - bits) == PATTERN


def serialize(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str
) -> bytes:
    """NIP-01's commitment: the id is its sha256 (nostr-sdk escapes the same way)."""
    return json.dumps(
        [0, pubkey, created_at, kind, [list(t) for t in tags], content],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def split_at_nonce(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str, work: Work
) -> tuple[bytes, bytes]:
    """The serialisation before and after the nonce's digits (the nonce tag comes last)."""
    marker = "\x00nonce\x00"
    text = serialize(
        pubkey, created_at, kind, [*tags, ["nonce", marker, str(work.difficulty)]], content
    )
    encoded_marker = json.dumps(marker)[1:-1].encode()
    before, _, after = text.partition(encoded_marker)
    return before, after


def search(
    before: bytes, after: bytes, work: Work, start: int, count: int
) -> tuple[int | None, int]:
    """Try nonces start … start+count-1: (the first that meets `work` or None, best bits seen).

    The hot loop of mining, run in worker processes."""
    import hashlib

    head = hashlib.sha256(before)
    limit = ((1 << (256 - work.difficulty)) - 1).to_bytes(32, "big")
    best = 0
    for nonce in range(start, start + count):
        h = head.copy()
        h.update(b"%d" % nonce + after)
        digest = h.digest()
        if digest <= limit:
            best = max(best, leading_zero_bits(digest))
            if meets(digest, work):
                return nonce, best
    return None, best


class Timeout(InvalidInput):
    """No nonce within the time allowed: retrying would likely fail the same way."""


async def mine(
    before: bytes,
    after: bytes,
    work: Work,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    label: str = "",
    workers: int | None = None,
) -> int:
    """A nonce that meets `work`, searched in worker processes, within `timeout` seconds."""
    import asyncio
    import logging  # mining only: checking a post's settings must not pay for it
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    log = logging.getLogger("plurcast.nostr.pow")
    size = workers or os.cpu_count() or 1
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    next_report = started + PROGRESS_SECONDS
    tried = best = 0
    next_start = 0
    log.info(
        "mining proof of work for %s: difficulty %d%s on %d worker%s",
        label,
        work.difficulty,
        " with the 21e8 pattern" if work.pattern_21e8 else "",
        size,
        "s" if size != 1 else "",
    )
    # spawn, not fork: the daemon has nostr-sdk's threads running.
    pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"))
    pending: set[asyncio.Future[tuple[int | None, int]]] = set()
    try:
        while True:
            while len(pending) < 2 * size:
                pending.add(
                    asyncio.wrap_future(
                        pool.submit(search, before, after, work, next_start, CHUNK), loop=loop
                    )
                )
                next_start += CHUNK
            left = started + timeout - time.monotonic()
            if left <= 0:
                raise Timeout(
                    f"no proof of work of difficulty {work.difficulty} found within "
                    f"{timeout:g} s ({tried:,} hashes, best {best} bits)",
                    "lower it with plur-queue update ID --nostr-pow N, then "
                    "plur-queue failed retry ID",
                )
            done, pending = await asyncio.wait(
                pending, timeout=min(left, PROGRESS_SECONDS), return_when="FIRST_COMPLETED"
            )
            for task in done:
                nonce, bits = task.result()
                tried += CHUNK
                best = max(best, bits)
                if nonce is not None:
                    elapsed = time.monotonic() - started
                    log.info(
                        "mined proof of work for %s: nonce %d, difficulty %d, %s hashes in %.1f s",
                        label,
                        nonce,
                        work.difficulty,
                        f"{tried:,}",
                        elapsed,
                    )
                    return nonce
            if time.monotonic() >= next_report:
                elapsed = time.monotonic() - started
                log.info(
                    "mining proof of work for %s: %s hashes in %.0f s (%s/s), best %d of %d bits",
                    label,
                    f"{tried:,}",
                    elapsed,
                    f"{tried / max(elapsed, 1e-9):,.0f}",
                    best,
                    work.difficulty,
                )
                next_report = time.monotonic() + PROGRESS_SECONDS
    finally:
        for task in pending:
            task.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


async def mined_event(
    sdk: Any,
    keys: Any,
    content: str,
    tags: Sequence[Sequence[str]],
    work: Work,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    label: str = "",
    workers: int | None = None,
) -> Any:
    """A signed kind-1 event whose id meets `work`, with NIP-13's nonce tag last."""
    created_at = int(time.time())
    pubkey = keys.public_key().to_hex()
    before, after = split_at_nonce(pubkey, created_at, 1, tags, content, work)
    nonce = await mine(before, after, work, timeout=timeout, label=label, workers=workers)
    final = [*tags, ["nonce", str(nonce), str(work.difficulty)]]
    event = (
        sdk.EventBuilder(sdk.Kind(1), content)
        .tags([sdk.Tag.parse(list(t)) for t in final])
        .custom_created_at(sdk.Timestamp.from_secs(created_at))
        .finalize(keys)
    )
    import hashlib

    expected = hashlib.sha256(serialize(pubkey, created_at, 1, final, content)).hexdigest()
    if event.id().to_hex() != expected or not meets(bytes.fromhex(expected), work):
        raise RuntimeError(f"the mined event's id {event.id().to_hex()} is not {expected}")
    return event
