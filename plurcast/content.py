"""A post's text as text: its encoding, its size, and the ways of counting it.

Each platform's own limits, and which of these counts it applies, are in
`plurcast.platforms.registry`; `plurcast.validation` checks a post against them.
"""

from __future__ import annotations

from plurcast.errors import InvalidInput

MAX_BYTES = 100_000


def decode(raw: bytes) -> str:
    """Text from stdin: must be UTF-8 (a byte-offset in the error helps find the culprit)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"content is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "convert it with iconv -t UTF-8",
        ) from None


def normalise(text: str) -> str:
    """Validate size and encoding; strip surrounding blank space (a trailing newline from echo)."""
    try:
        encoded = text.strip().encode("utf-8")
    except UnicodeEncodeError:
        # Arguments that were not UTF-8 reach Python as lone surrogates.
        raise InvalidInput("content is not valid UTF-8", "convert it with iconv -t UTF-8") from None
    if len(encoded) > MAX_BYTES:
        raise InvalidInput(
            f"content is {len(encoded):,} bytes, over the limit of {MAX_BYTES:,}", "shorten it"
        )
    text = text.strip()
    if not text:
        raise InvalidInput(
            "content is empty", 'give the text as an argument or on stdin: plur-post "Hello"'
        )
    # PostgreSQL's text cannot hold a NUL, and no platform shows one: refused here, before
    # SQLite would take it and PostgreSQL fail on it (other control characters are kept,
    # and escaped wherever they are shown).
    nul = text.find("\0")
    if nul >= 0:
        raise InvalidInput(
            f"content contains a NUL character (at character {nul + 1})",
            "remove it; no platform can show one",
        )
    return text


# Below U+0300, where the combining marks begin, every code point is a character of its own
# but CR LF (UAX #29, rule GB3): such text (ASCII, Latin-1, Latin Extended) is counted without
# the regex module, whose import costs more than the rest of a scheduling plur-post.
_FIRST_COMBINING = "\u0300"


def graphemes(text: str) -> int:
    """User-perceived characters: a flag or a family emoji counts once, as the platforms count."""
    if not text or max(text) < _FIRST_COMBINING:
        return len(text) - text.count("\r\n")
    import regex

    return len(regex.findall(r"\X", text))


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))
