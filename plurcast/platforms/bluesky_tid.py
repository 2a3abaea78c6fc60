"""Bluesky record keys: TIDs (atproto.com/specs/tid), never the same one twice in a process."""

from __future__ import annotations

_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"


def tid(micros: int, clock_id: int) -> str:
    """A TID: 53 bits of microseconds since 1970 and a 10-bit clock id, as 13 base32-sortable
    characters (atproto.com/specs/tid); later times sort later."""
    if not 0 <= micros < 1 << 53 or not 0 <= clock_id < 1 << 10:
        raise ValueError("a TID holds 53 bits of microseconds and a 10-bit clock id")
    value = micros << 10 | clock_id
    return "".join(_TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


class _TidClock:
    """Hands out TIDs that never repeat within this process.

    putRecord replaces whatever record holds the key, so two posts must never share one: the
    microseconds are bumped past the last TID's (two posts in one microsecond, or the clock
    stepping back), and a random clock id per TID separates processes.
    """

    def __init__(self) -> None:
        self.last_micros = 0

    def next(self, now: float) -> str:
        import secrets

        self.last_micros = max(int(now * 1_000_000), self.last_micros + 1)
        return tid(self.last_micros, secrets.randbelow(1 << 10))


next_tid = _TidClock().next
