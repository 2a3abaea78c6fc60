"""NIP-13 proof of work: the id's zero bits, the nonce tag, the hidden 21e8 pattern, and
mining that nostr-sdk agrees with (the id it computes is the one mined)."""

from __future__ import annotations

import asyncio
import hashlib

import nostr_sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plurcast.errors import InvalidInput
from plurcast.platforms import nostr_pow
from plurcast.platforms.nostr_pow import Work

KEYS = nostr_sdk.Keys.parse("11" * 32)
PUBKEY = KEYS.public_key().to_hex()


def ff(prefix: bytes) -> bytes:
    return prefix + b"\xff" * (32 - len(prefix))


def test_difficulty_range() -> None:
    assert nostr_pow.check_difficulty(0) == 0
    assert nostr_pow.check_difficulty(64) == 64
    for bad in (65, -1, True):
        with pytest.raises(InvalidInput, match="--nostr-pow must be from 0 to 64"):
            nostr_pow.check_difficulty(bad)  # type: ignore[arg-type]


def test_leading_zero_bits_as_nip13_counts_them() -> None:
    assert nostr_pow.leading_zero_bits(ff(b"")) == 0
    assert nostr_pow.leading_zero_bits(ff(b"\x00")) == 8
    assert nostr_pow.leading_zero_bits(ff(b"\x00\x00")) == 16
    assert nostr_pow.leading_zero_bits(ff(b"\x00\x0f")) == 12
    assert nostr_pow.leading_zero_bits(bytes(32)) == 256
    assert nostr_pow.meets(ff(b"\x00"), Work(8)) and not nostr_pow.meets(ff(b"\x00"), Work(9))


@pytest.mark.parametrize(
    ("digest", "difficulty", "ok"),
    [  # the original's own cases
        (ff(b"\x00\x00\x02\x1e\x8f"), 20, True),  # 00000 21e8
        (ff(b"\x00\x00\x21\xe8"), 16, True),  # 0000 21e8
        (ff(b"\x00\x00\x00\x21\xe8"), 24, True),  # 000000 21e8
        (ff(b"\x00\x00\x01\x23\x4f"), 20, False),  # zeros, then not 21e8
        (ff(b"\x00\x21\xe8\x00"), 20, False),  # 21e8 too early
        (ff(b"\x00\x00\x02\x1e\x8f"), 21, True),  # 21 → 5 zero nibbles (22 bits)
        (ff(b"\x00\x21\xe8\x00"), 8, True),
        # Its bug, not kept: at 23 five zero nibbles + "2" are only 22 bits.
        (ff(b"\x00\x00\x02\x1e\x8f"), 23, False),
        (ff(b"\x00\x00\x00\x21\xe8"), 23, True),
    ],
)
def test_the_21e8_pattern(digest: bytes, difficulty: int, ok: bool) -> None:
    assert nostr_pow.meets(digest, Work(difficulty, pattern_21e8=True)) is ok
    if ok:
        assert nostr_pow.leading_zero_bits(digest) >= difficulty


@settings(max_examples=40, deadline=None)
@given(content=st.text(st.characters(blacklist_categories=("Cs",))), created=st.integers(0, 2**32))
def test_our_serialisation_is_nostr_sdks(content: str, created: int) -> None:
    tags = [["t", "plurcast"], ["nonce", "42", "8"]]
    event = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(1), content)
        .tags([nostr_sdk.Tag.parse(t) for t in tags])
        .custom_created_at(nostr_sdk.Timestamp.from_secs(created))
        .finalize(KEYS)
    )
    ours = hashlib.sha256(nostr_pow.serialize(PUBKEY, created, 1, tags, content)).hexdigest()
    assert ours == event.id().to_hex()


def test_search_is_deterministic_and_its_nonce_commits_to_the_target() -> None:
    work = Work(10)
    before, after = nostr_pow.split_at_nonce(PUBKEY, 1_800_000_000, 1, [], "Hello, NIP-13", work)
    nonce, best = nostr_pow.search(before, after, work, 0, 200_000)
    assert nonce is not None and best >= 10
    # The nonce is the first in order that works: none before it does.
    assert nostr_pow.search(before, after, work, 0, nonce)[0] is None
    digest = hashlib.sha256(before + str(nonce).encode() + after).digest()
    assert (
        digest
        == hashlib.sha256(
            nostr_pow.serialize(
                PUBKEY, 1_800_000_000, 1, [["nonce", str(nonce), "10"]], "Hello, NIP-13"
            )
        ).digest()
    )
    assert nostr_pow.leading_zero_bits(digest) >= 10


@pytest.mark.parametrize("pattern", [False, True])
def test_a_mined_event_meets_its_target_and_says_so_in_its_nonce_tag(pattern: bool) -> None:
    work = Work(2 if pattern else 8, pattern_21e8=pattern)  # 21e8 adds 16 bits of work
    tags = [["t", "plurcast"]]
    event = asyncio.run(
        nostr_pow.mined_event(nostr_sdk, KEYS, "mined ✨", tags, work, workers=1, label="test")
    )
    assert event.verify()
    raw = [t.to_vec() for t in event.tags()]
    assert raw[0] == ["t", "plurcast"]
    assert raw[-1][0] == "nonce" and raw[-1][2] == str(work.difficulty) and raw[-1][1].isdigit()
    digest = bytes.fromhex(event.id().to_hex())
    assert nostr_pow.leading_zero_bits(digest) >= work.difficulty
    assert event.id().to_hex().startswith("21e8") if pattern else True


def test_mining_logs_its_progress_and_stops_at_its_timeout(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nostr_pow, "PROGRESS_SECONDS", 0.1)
    work = Work(64)
    before, after = nostr_pow.split_at_nonce(PUBKEY, 0, 1, [], "x", work)
    with (
        caplog.at_level("INFO", "plurcast.nostr.pow"),
        pytest.raises(nostr_pow.Timeout, match="no proof of work of difficulty 64 found"),
    ):
        asyncio.run(nostr_pow.mine(before, after, work, timeout=0.5, workers=1, label="post p"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "mining proof of work for post p: difficulty 64 on 1 worker"
    assert any(" hashes in " in m and "best" in m and "of 64 bits" in m for m in messages[1:])


def test_metadata_asks_for_work() -> None:
    assert nostr_pow.requested({}) is None
    assert nostr_pow.requested({"nostr": {"pow_difficulty": 0}}) is None
    assert nostr_pow.requested({"nostr": {"pow_difficulty": 20}}) == Work(20)
    assert nostr_pow.requested({"nostr": {"pow_difficulty": 20, "21e8": True}}) == Work(20, True)
    assert nostr_pow.requested({"nostr": "junk"}) is None
