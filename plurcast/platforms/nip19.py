"""NIP-19: the bech32 forms of Nostr keys and events (`nsec1…`, `note1…`, `nevent1…`), in pure
Python — the CLIs read them at start-up, where importing nostr-sdk (~90 ms) is too slow.
"""

from __future__ import annotations

from plurcast.value import Value

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# BIP-173 caps a string at 90 characters; NIP-19's TLV forms (nevent with relays) are longer.
MAX_KEY_LENGTH = 90
MAX_TLV_LENGTH = 5000

# nevent TLV types (NIP-19).
_SPECIAL, _RELAY, _AUTHOR, _KIND = 0, 1, 2, 3
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def is_hex64(text: str) -> bool:
    """Whether `text` is 64 hex digits, either case: a key or an event id written out in hex.
    (A set, not a pattern: a pattern compiles on every command that reads a key.)"""
    return len(text) == 64 and _HEX_DIGITS.issuperset(text)


def bech32_payload(text: str, hrp: str, max_length: int = MAX_KEY_LENGTH) -> bytes | None:
    """The bytes of a lower-case bech32 (BIP-173) string with prefix `hrp`, or None."""
    prefix = hrp + "1"
    if not text.startswith(prefix) or len(text) > max_length:
        return None
    values = [_BECH32.find(c) for c in text[len(prefix) :]]
    if len(values) < 7 or -1 in values:
        return None
    checksum = 1
    for value in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                checksum ^= g
    if checksum != 1:
        return None
    acc = bits = 0
    out = bytearray()
    for value in values[:-6]:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        return None  # non-zero padding
    return bytes(out)


class EventPointer(Value):
    """An event as `note1…` or `nevent1…` names it: its id, and hints where to find it."""

    event_id: str  # 64 lower-case hex
    relays: tuple[str, ...] = ()
    author: str | None = None  # 64 lower-case hex, when the nevent carries it
    kind: int | None = None


def decode_event(text: str) -> EventPointer | None:
    """A `note1…` or `nevent1…` string (any case, not mixed), or None if it is neither."""
    lower = text.lower()
    if text not in (lower, text.upper()):
        return None
    note = bech32_payload(lower, "note")
    if note is not None:
        return EventPointer(note.hex()) if len(note) == 32 else None
    data = bech32_payload(lower, "nevent", MAX_TLV_LENGTH)
    if data is None:
        return None
    event_id: str | None = None
    relays: list[str] = []
    author: str | None = None
    kind: int | None = None
    i = 0
    while i + 2 <= len(data):
        kind_of, size = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + size]
        if len(value) != size:
            return None  # a truncated TLV
        if kind_of == _SPECIAL and size == 32:
            event_id = value.hex()
        elif kind_of == _RELAY:
            relay = value.decode("ascii", errors="replace")
            if relay.startswith(("ws://", "wss://")):
                relays.append(relay)
        elif kind_of == _AUTHOR and size == 32:
            author = value.hex()
        elif kind_of == _KIND and size == 4:
            kind = int.from_bytes(value, "big")
        i += 2 + size
    if event_id is None or i != len(data):
        return None
    return EventPointer(event_id, tuple(relays), author, kind)
