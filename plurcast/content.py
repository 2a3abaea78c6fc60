"""What a post's text must satisfy, checked when it is written rather than when it is sent.

A post that a platform would refuse at 9 am should be refused now, while the
user is at the keyboard.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from plurcast.errors import InvalidInput

MAX_BYTES = 100_000
BLUESKY_MAX_GRAPHEMES = 300
BLUESKY_MAX_BYTES = 3000  # the lexicon's maxLength, beside maxGraphemes
NOSTR_MAX_BYTES = 65536  # relays set their own; this is a common ceiling
# Mastodon counts every link as 23 characters and a mention by its local part only.
MASTODON_URL_LENGTH = 23
# A link ends before trailing punctuation, as Mastodon's own parser ends it.
_URL = re.compile(r"https?://[^\s<>\"]*[^\s<>\".,;:!?'()\[\]]", re.IGNORECASE)
_MENTION = re.compile(r"(@[A-Za-z0-9_]+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


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
    return text


def graphemes(text: str) -> int:
    """User-perceived characters: a flag or a family emoji counts once, as the platforms count."""
    import regex

    return len(regex.findall(r"\X", text))


def mastodon_length(text: str) -> int:
    text = _URL.sub("x" * MASTODON_URL_LENGTH, text)
    text = _MENTION.sub(r"\1", text)
    return graphemes(text)


def check_limits(
    text: str,
    platforms: Sequence[str],
    mastodon_max_chars: int,
    nostr_max_bytes: int = NOSTR_MAX_BYTES,
) -> None:
    """Refuse content over any target platform's limit, naming platform, limit and length."""
    size = len(text.encode("utf-8"))
    if "nostr" in platforms:
        _refuse_over(
            "nostr",
            size,
            nostr_max_bytes,
            "bytes",
            "shorten it, or raise [nostr] max_bytes if your relays take more",
        )
    if "mastodon" in platforms:
        _refuse_over("mastodon", mastodon_length(text), mastodon_max_chars, "characters")
    if "bluesky" in platforms:
        _refuse_over("bluesky", graphemes(text), BLUESKY_MAX_GRAPHEMES, "characters")
        _refuse_over("bluesky", size, BLUESKY_MAX_BYTES, "bytes")


def _refuse_over(platform: str, measured: int, limit: int, unit: str, hint: str = "") -> None:
    if measured > limit:
        raise InvalidInput(
            f"content is {measured:,} {unit}, over {platform}'s limit of {limit:,}",
            hint or f"shorten it, or leave {platform} out with -p",
        )
